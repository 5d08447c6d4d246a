#include "dispatcher/agents/agent_hub.h"

#include <deque>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "dispatcher/agents/agent_run_channel.h"
#include "dispatcher/secrets.h"
#include "spdlog/spdlog.h"

namespace idsync {

using idsync::v1::AgentMessage;
using idsync::v1::DispatcherMessage;

struct AgentHub::Session {
  int64_t agent_id = 0;
  int64_t tenant_id = 0;
  std::string name, group;
  std::vector<std::string> types;
  grpc::ServerContext* context = nullptr;
  grpc::ServerReaderWriter<DispatcherMessage, AgentMessage>* stream = nullptr;
  absl::Mutex write_mu;  // One Write at a time on a gRPC stream.
  bool broken ABSL_GUARDED_BY(write_mu) = false;
  // Guarded by the hub's mu_.
  absl::Time last_seen;
  int runs = 0;
};

// What the agent sent for one run, waiting for its proxy.
struct AgentHub::Slot {
  struct Event {
    AgentRunChannel::Kind kind;
    int64_t assignment = 0;
    idsync::v1::SyncChunk chunk;
    idsync::v1::RunDone done;
  };
  absl::Mutex mu;
  std::deque<Event> events ABSL_GUARDED_BY(mu);
  // Guarded by the hub's mu_: where the current assignment runs.
  std::shared_ptr<Session> session;
  int64_t assignment = 0;
  int64_t tenant_id = 0;
  std::string binding;

  // Returns how many events wait for the proxy.
  size_t Push(Event e) {
    absl::MutexLock lock(&mu);
    events.push_back(std::move(e));
    return events.size();
  }
};

namespace {

std::string BearerToken(const grpc::ServerContext& context) {
  auto it = context.client_metadata().find("authorization");
  if (it == context.client_metadata().end()) return "";
  absl::string_view value(it->second.data(), it->second.size());
  if (!absl::ConsumePrefix(&value, "Bearer ")) return "";
  return std::string(value);
}

bool Matches(const std::string& binding, const std::string& name,
             const std::string& group) {
  return binding == name || (!group.empty() && binding == group);
}

}  // namespace

AgentHub::AgentHub(Store& store, Clock& clock, AgentHubOptions options)
    : store_(store), clock_(clock), options_(std::move(options)) {
  // No stream survives a restart: agents the store still shows online (the
  // last process was killed) are offline until they reconnect.
  absl::StatusOr<std::vector<int64_t>> online = store_.OnlineAgents();
  if (!online.ok()) spdlog::warn("agents: {}", online.status().ToString());
  for (int64_t id : online.value_or(std::vector<int64_t>())) {
    PublishOnline(id, "", {}).IgnoreError();
  }
  watchdog_ = std::thread([this] { Watchdog(); });
}

absl::Status AgentHub::PublishOnline(int64_t agent_id,
                                     const std::string& version,
                                     const std::vector<std::string>& types) {
  // Serialised, and reading the session map inside: when a stream ends as
  // its replacement connects, the last write says what is true now.
  absl::MutexLock publishing(&publish_mu_);
  bool online = false;
  {
    absl::MutexLock lock(&mu_);
    online = sessions_.contains(agent_id);
  }
  return store_.SetAgentOnline(agent_id, online, version, types);
}

AgentHub::~AgentHub() {
  Shutdown();
  watchdog_.join();
}

void AgentHub::Shutdown() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  for (auto& [id, session] : sessions_) session->context->TryCancel();
}

grpc::Status AgentHub::Register(grpc::ServerContext* context,
                                const idsync::v1::RegisterAgentRequest* request,
                                idsync::v1::RegisterAgentResponse* response) {
  if (request->registration_token().size() > 256 ||
      request->name().size() > 200) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "registration token or name too long");
  }
  const std::string agent_token = NewToken(kAgentTokenPrefix);
  absl::StatusOr<AgentRow> agent =
      store_.RegisterAgent(TokenHash(request->registration_token()),
                           request->name(), TokenHash(agent_token),
                           agent_token.substr(0, kAgentTokenPrefix.size() + 4));
  if (!agent.ok()) {
    const bool denied = absl::IsPermissionDenied(agent.status());
    return grpc::Status(denied ? grpc::StatusCode::PERMISSION_DENIED
                               : grpc::StatusCode::UNAVAILABLE,
                        std::string(agent.status().message()));
  }
  spdlog::info("agent {} '{}' registered", agent->id, agent->name);
  response->set_agent_id(agent->id);
  response->set_agent_token(agent_token);
  response->set_name(agent->name);
  return grpc::Status::OK;
}

grpc::Status AgentHub::Connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<DispatcherMessage, AgentMessage>* stream) {
  const std::string token = BearerToken(*context);
  absl::StatusOr<TokenRow> row = token.empty()
                                     ? absl::NotFoundError("")
                                     : store_.FindToken(TokenHash(token));
  if (!row.ok() || row->kind != "agent" || row->revoked_at.has_value()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "missing, unknown or revoked agent token");
  }
  absl::StatusOr<AgentRow> agent = store_.AgentByToken(row->id);
  if (!agent.ok()) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "the token belongs to no agent");
  }
  AgentMessage first;
  if (!stream->Read(&first) || !first.has_hello()) {
    return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION,
                        "the first message must be hello");
  }
  auto session = std::make_shared<Session>();
  session->agent_id = agent->id;
  session->tenant_id = agent->tenant_id;
  session->name = agent->name;
  session->group = agent->group;
  session->types.assign(first.hello().connector_types().begin(),
                        first.hello().connector_types().end());
  session->context = context;
  session->stream = stream;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          "the dispatcher is stopping");
    }
    session->last_seen = clock_.Now();
    auto [it, inserted] = sessions_.try_emplace(agent->id, session);
    if (!inserted) {
      it->second->context->TryCancel();  // A newer stream replaces it.
      it->second = session;
    }
  }
  absl::Status online =
      PublishOnline(agent->id, first.hello().version(), session->types);
  if (!online.ok()) spdlog::warn("agent {}: {}", agent->id, online.ToString());
  spdlog::info("agent {} '{}' connected", agent->id, agent->name);
  DispatcherMessage welcome;
  welcome.mutable_welcome()->set_agent_id(agent->id);
  welcome.mutable_welcome()->set_name(agent->name);
  welcome.mutable_welcome()->set_heartbeat_seconds(
      static_cast<int32_t>(absl::ToInt64Seconds(options_.heartbeat)));
  Send(*session, welcome);

  AgentMessage msg;
  absl::Time touched = clock_.Now();
  while (stream->Read(&msg)) {
    std::shared_ptr<Slot> slot;
    {
      absl::MutexLock lock(&mu_);
      session->last_seen = clock_.Now();
      int64_t handle = 0;
      if (msg.has_chunk()) handle = msg.chunk().run_id();
      if (msg.has_done()) handle = msg.done().run_id();
      auto it = slots_.find(handle);
      if (it != slots_.end() && it->second->session == session) {
        slot = it->second;
      }
    }
    if (msg.has_heartbeat() && clock_.Now() - touched > absl::Seconds(30)) {
      touched = clock_.Now();
      // A token revoked behind the hub's back is noticed here.
      absl::StatusOr<TokenRow> still = store_.FindToken(TokenHash(token));
      if (still.ok() && still->revoked_at.has_value()) break;
      store_.TouchAgent(agent->id).IgnoreError();
    }
    if (slot == nullptr) continue;  // Heartbeat, or a stale run.
    Slot::Event e;
    if (msg.has_chunk()) {
      e.kind = AgentRunChannel::Kind::kChunk;
      e.assignment = msg.chunk().assignment();
      e.chunk = std::move(*msg.mutable_chunk()->mutable_chunk());
    } else {
      e.kind = AgentRunChannel::Kind::kDone;
      e.assignment = msg.done().assignment();
      e.done = std::move(*msg.mutable_done());
    }
    const int64_t assignment = e.assignment;
    // The window bounds what an agent may send ahead; one that ignores it
    // (a buggy or hostile client of the .proto) must not fill our memory.
    if (slot->Push(std::move(e)) > static_cast<size_t>(options_.window) + 2) {
      Slot::Event stop;
      stop.kind = AgentRunChannel::Kind::kDone;
      stop.assignment = assignment;
      stop.done.set_code(
          static_cast<int>(absl::StatusCode::kResourceExhausted));
      stop.done.set_error("the agent sent more chunks than its window allows");
      slot->Push(std::move(stop));
      spdlog::warn("agent {} ignored the chunk window; disconnecting",
                   agent->id);
      break;
    }
  }

  // No write may touch the stream once this handler returns: stop them
  // first (an in-flight one finishes or fails before write_mu is ours).
  context->TryCancel();
  {
    absl::MutexLock lock(&session->write_mu);
    session->broken = true;
  }
  bool current = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = sessions_.find(agent->id);
    current = it != sessions_.end() && it->second == session;
    if (current) sessions_.erase(it);
    for (auto& [handle, slot] : slots_) {
      if (slot->session == session) {
        slot->session = nullptr;
        slot->Push({AgentRunChannel::Kind::kLost, slot->assignment, {}, {}});
      }
    }
  }
  if (current) PublishOnline(agent->id, "", {}).IgnoreError();
  spdlog::info("agent {} '{}' disconnected", agent->id, agent->name);
  return grpc::Status::OK;
}

bool AgentHub::Send(Session& session, const DispatcherMessage& message) {
  absl::MutexLock lock(&session.write_mu);
  if (session.broken) return false;
  if (!session.stream->Write(message)) {
    session.broken = true;
    session.context->TryCancel();
    return false;
  }
  return true;
}

void AgentHub::Disconnect(int64_t agent_id) {
  absl::MutexLock lock(&mu_);
  auto it = sessions_.find(agent_id);
  if (it != sessions_.end()) it->second->context->TryCancel();
}

bool AgentHub::IsOnline(int64_t agent_id) const {
  absl::MutexLock lock(&mu_);
  return sessions_.contains(agent_id);
}

void AgentHub::Watchdog() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Seconds(1));
    const absl::Time now = clock_.Now();
    for (auto& [id, session] : sessions_) {
      if (now - session->last_seen > options_.silence_limit) {
        spdlog::warn("agent {} silent for {}; disconnecting", id,
                     absl::FormatDuration(now - session->last_seen));
        session->context->TryCancel();
      }
    }
  }
}

std::shared_ptr<AgentHub::Session> AgentHub::WaitForAgent(
    int64_t tenant_id, const std::string& binding, absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  while (true) {
    std::shared_ptr<Session> best;
    for (auto& [id, s] : sessions_) {
      if (s->tenant_id != tenant_id || !Matches(binding, s->name, s->group)) {
        continue;
      }
      if (best == nullptr || s->runs < best->runs) best = s;
    }
    if (best != nullptr) return best;
    if (stopping_ || clock_.Now() >= deadline) return nullptr;
    // Sessions appear under mu_; re-check every 100 ms (and on clock jumps).
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(100));
  }
}

std::unique_ptr<AgentRunChannel> AgentHub::OpenRun(int64_t tenant_id,
                                                   std::string binding) {
  auto slot = std::make_shared<Slot>();
  slot->tenant_id = tenant_id;
  slot->binding = std::move(binding);
  int64_t handle = 0;
  {
    absl::MutexLock lock(&mu_);
    // Unique across restarts too: a late chunk of an old process's run is
    // never mistaken for a new one's.
    if (next_handle_ == 0) next_handle_ = absl::ToUnixMillis(clock_.Now()) << 8;
    handle = ++next_handle_;
    slots_[handle] = slot;
  }
  return std::unique_ptr<AgentRunChannel>(
      new AgentRunChannel(*this, handle, std::move(slot)));
}

// --- AgentRunChannel ---------------------------------------------------------

AgentRunChannel::AgentRunChannel(AgentHub& hub, int64_t handle,
                                 std::shared_ptr<AgentHub::Slot> slot)
    : hub_(hub), handle_(handle), slot_(std::move(slot)) {}

AgentRunChannel::~AgentRunChannel() {
  if (!done_) Cancel("the run stopped on the dispatcher");
  absl::MutexLock lock(&hub_.mu_);
  if (slot_->session != nullptr) --slot_->session->runs;
  hub_.slots_.erase(handle_);
}

absl::Status AgentRunChannel::Assign(const std::string& business_id,
                                     const std::string& type,
                                     const google::protobuf::Struct& config,
                                     const idsync::v1::SyncRequest& request) {
  const absl::Time deadline = hub_.clock_.Now() + hub_.options_.agent_timeout;
  while (true) {
    std::shared_ptr<AgentHub::Session> session =
        hub_.WaitForAgent(slot_->tenant_id, slot_->binding, deadline);
    if (session == nullptr) {
      return absl::UnavailableError(absl::StrCat(
          "no agent named or grouped '", slot_->binding, "' was online for ",
          absl::FormatDuration(hub_.options_.agent_timeout)));
    }
    DispatcherMessage m;
    idsync::v1::AssignRun* a = m.mutable_assign();
    {
      absl::MutexLock lock(&hub_.mu_);
      if (slot_->session != nullptr) --slot_->session->runs;
      slot_->session = session;
      ++session->runs;
      a->set_assignment(++slot_->assignment);
    }
    {
      absl::MutexLock lock(&slot_->mu);
      slot_->events.clear();  // Whatever an older assignment left.
    }
    a->set_run_id(handle_);
    a->set_connector_business_id(business_id);
    a->set_connector_type(type);
    *a->mutable_config() = config;
    *a->mutable_request() = request;
    a->set_window(hub_.options_.window);
    if (hub_.Send(*session, m)) return absl::OkStatus();
    // The stream broke as we sent: wait for the agent to come back.
  }
}

AgentRunChannel::Kind AgentRunChannel::Next(idsync::v1::SyncChunk* chunk,
                                            idsync::v1::RunDone* done,
                                            absl::Duration timeout) {
  int64_t assignment = 0;
  {
    absl::MutexLock lock(&hub_.mu_);
    assignment = slot_->assignment;
  }
  absl::MutexLock lock(&slot_->mu);
  while (true) {
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(slot_->mu) {
      return !slot_->events.empty();
    };
    if (!slot_->mu.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
      return Kind::kTimeout;
    }
    AgentHub::Slot::Event e = std::move(slot_->events.front());
    slot_->events.pop_front();
    if (e.assignment != assignment) continue;  // An older assignment's.
    if (e.kind == Kind::kChunk) *chunk = std::move(e.chunk);
    if (e.kind == Kind::kDone) {
      *done = std::move(e.done);
      done_ = true;
    }
    return e.kind;
  }
}

void AgentRunChannel::Ack(int64_t sequence) {
  std::shared_ptr<AgentHub::Session> session;
  DispatcherMessage m;
  {
    absl::MutexLock lock(&hub_.mu_);
    session = slot_->session;
    m.mutable_ack()->set_assignment(slot_->assignment);
  }
  if (session == nullptr) return;
  m.mutable_ack()->set_run_id(handle_);
  m.mutable_ack()->set_sequence(sequence);
  hub_.Send(*session, m);
}

void AgentRunChannel::Cancel(const std::string& reason) {
  std::shared_ptr<AgentHub::Session> session;
  {
    absl::MutexLock lock(&hub_.mu_);
    session = slot_->session;
  }
  if (session == nullptr) return;
  DispatcherMessage m;
  m.mutable_cancel()->set_run_id(handle_);
  m.mutable_cancel()->set_reason(reason);
  hub_.Send(*session, m);
}

}  // namespace idsync
