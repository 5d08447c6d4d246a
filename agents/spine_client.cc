#include "agents/spine_client.h"

#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agents/spine_channel.h"
#include "agents/token_file.h"
#include "connector/status_macros.h"
#include "idsync/v1/agent.grpc.pb.h"
#include "spdlog/spdlog.h"

#ifndef IDSYNC_VERSION
#define IDSYNC_VERSION "0.0.0"
#endif

namespace idsync {

using idsync::v1::AgentMessage;
using idsync::v1::DispatcherMessage;
using Stream = grpc::ClientReaderWriter<AgentMessage, DispatcherMessage>;

absl::string_view AgentVersion() { return IDSYNC_VERSION; }

// Serializes writes on one stream (gRPC allows one Write at a time) and,
// once closed, never touches the stream again.
class SpineClient::StreamOutlet final : public SpineOutlet {
 public:
  // "stream" and "context" must outlive Close().
  StreamOutlet(Stream* stream, grpc::ClientContext* context)
      : stream_(stream), context_(context) {}

  bool Send(const AgentMessage& message) override {
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &StreamOutlet::Writable));
      if (closed_) return false;
      writing_ = true;
    }
    const bool ok = stream_->Write(message);
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) closed_ = true;
    return ok;
  }

  // Refuses further sends and waits for the one in progress, cancelling the
  // call if it takes longer than `grace` (a peer that stopped reading).
  void Close(absl::Duration grace) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    if (!mu_.AwaitWithTimeout(absl::Condition(this, &StreamOutlet::Idle),
                              grace)) {
      context_->TryCancel();
      mu_.Await(absl::Condition(this, &StreamOutlet::Idle));
    }
  }

 private:
  bool Writable() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return closed_ || !writing_;
  }
  bool Idle() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !writing_; }

  Stream* const stream_;
  grpc::ClientContext* const context_;
  absl::Mutex mu_;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

// Shared by a session's reader and its helper thread.
struct SpineClient::SessionState {
  absl::Mutex mu;
  bool welcomed ABSL_GUARDED_BY(mu) = false;
  bool done ABSL_GUARDED_BY(mu) = false;
  absl::Duration heartbeat ABSL_GUARDED_BY(mu);
  std::string error ABSL_GUARDED_BY(mu);  // Why the helper ended the stream.

  bool WelcomedOrDone() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return welcomed || done;
  }
  bool Done() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) { return done; }
};

struct SpineClient::SessionResult {
  absl::Status status;
  bool welcomed = false;
  absl::Time welcomed_at;
};

absl::StatusOr<std::unique_ptr<SpineClient>> SpineClient::Create(
    SpineClientOptions options) {
  IDSYNC_RETURN_IF_ERROR(ParseDispatcherAddress(options.dispatcher).status());
  if (!IsValidTokenText(options.token)) {
    return absl::InvalidArgumentError(
        "the agent token is empty or holds characters a token cannot have");
  }
  if (options.capacity < 1 || options.capacity > kMaxAgentCapacity) {
    return absl::InvalidArgumentError(
        absl::StrCat("capacity must be in [1, ", kMaxAgentCapacity, "]"));
  }
  IDSYNC_ASSIGN_OR_RETURN(auto credentials,
                          SpineCredentials(options.dispatcher, options.tls));
  std::unique_ptr<ConnectorRegistry> owned;
  if (options.registry == nullptr) {
    owned = std::make_unique<ConnectorRegistry>();
    RegisterBuiltinConnectors(*owned);
  }
  const ConnectorRegistry& registry =
      options.registry != nullptr ? *options.registry : *owned;
  IDSYNC_RETURN_IF_ERROR(
      CheckLocalConnectorTypes(options.connectors, registry.Types()));
  return std::unique_ptr<SpineClient>(new SpineClient(
      std::move(options), std::move(owned), std::move(credentials)));
}

SpineClient::SpineClient(SpineClientOptions options,
                         std::unique_ptr<ConnectorRegistry> owned_registry,
                         std::shared_ptr<grpc::ChannelCredentials> credentials)
    : options_(std::move(options)),
      owned_registry_(std::move(owned_registry)),
      registry_(options_.registry != nullptr ? *options_.registry
                                             : *owned_registry_),
      clock_(options_.clock != nullptr ? *options_.clock : Clock::Real()),
      credentials_(std::move(credentials)),
      rng_(options_.random_seed != 0 ? options_.random_seed
                                     : std::random_device()()) {
  RunExecutorOptions run_options;
  run_options.capacity = options_.capacity;
  run_options.local_connectors = options_.connectors;
  run_options.dispatcher_configs = options_.dispatcher_configs;
  run_options.default_window = options_.default_window;
  run_options.max_message_bytes = options_.max_message_bytes;
  run_options.clock = &clock_;
  executor_ = std::make_unique<RunExecutor>(registry_, std::move(run_options));
  status_.pid = getpid();
  status_.dispatcher = options_.dispatcher;
  status_.since = clock_.Now();
}

SpineClient::~SpineClient() {
  Stop();
  if (thread_.joinable()) thread_.join();
  executor_.reset();  // Joins the runs' threads.
}

void SpineClient::Start() {
  thread_ = std::thread([this] { Run(); });
}

void SpineClient::Stop() {
  absl::MutexLock lock(&mu_);
  stopping_ = true;
  if (context_ != nullptr) context_->TryCancel();
}

bool SpineClient::WaitIdle(absl::Duration timeout) {
  return executor_->WaitIdle(timeout);
}

AgentStatus SpineClient::Status() {
  std::vector<RunStatus> runs = executor_->Runs();
  absl::MutexLock lock(&mu_);
  AgentStatus status = status_;
  status.runs = std::move(runs);
  status.updated = clock_.Now();
  return status;
}

void SpineClient::WriteStatus() {
  if (options_.state_dir.empty()) return;
  AgentStatus status = Status();
  absl::MutexLock lock(&file_mu_);
  if (absl::Status s = WriteStatusFile(options_.state_dir, status); !s.ok()) {
    spdlog::warn("cannot write the status file: {}", std::string(s.message()));
  }
}

void SpineClient::SetConnected(bool connected, int64_t agent_id,
                               const std::string& name,
                               const std::string& error) {
  {
    absl::MutexLock lock(&mu_);
    if (status_.connected != connected) status_.since = clock_.Now();
    status_.connected = connected;
    if (agent_id != 0) status_.agent_id = agent_id;
    if (!name.empty()) status_.name = name;
    if (!error.empty()) status_.last_error = error;
  }
  WriteStatus();
}

void SpineClient::Run() {
  Backoff backoff(options_.backoff, rng_);
  spdlog::info(
      "idsync-agent {}: dispatcher {}, capacity {}, {} local "
      "connector(s)",
      std::string(AgentVersion()), options_.dispatcher, options_.capacity,
      options_.connectors.size());
  WriteStatus();
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    SessionResult result = RunSession();
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) break;
    }
    if (result.welcomed &&
        clock_.Now() - result.welcomed_at >= options_.healthy_after) {
      backoff.Reset();
    }
    std::string error =
        absl::StrCat(absl::StatusCodeToString(result.status.code()), ": ",
                     result.status.message());
    if (absl::IsUnauthenticated(result.status) ||
        absl::IsPermissionDenied(result.status)) {
      absl::StrAppend(&error,
                      " (the agent token was refused: if this agent was "
                      "revoked, register it again)");
    }
    spdlog::warn("disconnected from {}: {}", options_.dispatcher, error);
    SetConnected(false, 0, "", error);
    if (options_.on_disconnect) options_.on_disconnect(result.status);

    const absl::Duration delay = backoff.Next();
    if (options_.on_backoff) options_.on_backoff(delay);
    spdlog::info("reconnecting in {:.1f} s", absl::ToDoubleSeconds(delay));
    absl::MutexLock lock(&mu_);
    if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), delay)) break;
  }
  spdlog::info("stopping: {} run(s) to stop", executor_->Runs().size());
  executor_->StopAll();
  {
    absl::MutexLock lock(&mu_);
    status_.running = false;
    status_.connected = false;
    status_.since = clock_.Now();
  }
  WriteStatus();
}

SpineClient::SessionResult SpineClient::RunSession() {
  SessionResult result;
  auto channel =
      CreateSpineChannel(options_.dispatcher, credentials_, options_.backoff);
  auto stub = idsync::v1::AgentSpine::NewStub(channel);
  grpc::ClientContext context;
  context.AddMetadata("authorization", absl::StrCat("Bearer ", options_.token));
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) {
      result.status = absl::CancelledError("stopping");
      return result;
    }
    context_ = &context;
  }
  spdlog::info("connecting to {}", options_.dispatcher);
  std::unique_ptr<Stream> stream = stub->Connect(&context);
  auto outlet = std::make_shared<StreamOutlet>(stream.get(), &context);

  SessionState state;
  {
    absl::MutexLock lock(&state.mu);
    state.heartbeat = options_.default_heartbeat;
  }
  std::thread helper([&] { SessionHelper(state, *outlet, context); });

  AgentMessage hello;
  idsync::v1::AgentHello* h = hello.mutable_hello();
  h->set_version(std::string(AgentVersion()));
  for (const std::string& type : registry_.Types())
    h->add_connector_types(type);
  h->set_capacity(options_.capacity);
  for (const auto& [id, local] : options_.connectors) {
    h->add_local_connectors(id);
  }
  outlet->Send(hello);  // On failure, Read below ends at once.

  DispatcherMessage message;
  while (stream->Read(&message)) {
    switch (message.kind_case()) {
      case DispatcherMessage::kWelcome: {
        const idsync::v1::Welcome& w = message.welcome();
        {
          absl::MutexLock lock(&state.mu);
          if (w.heartbeat_seconds() > 0) {
            state.heartbeat =
                absl::Seconds(std::min(w.heartbeat_seconds(), 3600));
          }
          state.welcomed = true;
        }
        if (!result.welcomed) {
          result.welcomed = true;
          result.welcomed_at = clock_.Now();
          spdlog::info("connected to {} as agent {} ({})", options_.dispatcher,
                       w.agent_id(), w.name());
          SetConnected(true, w.agent_id(), w.name(), "");
        }
        break;
      }
      case DispatcherMessage::kAssign: {
        const idsync::v1::AssignRun& a = message.assign();
        spdlog::info("assigned run {} (assignment {}) of {} connector '{}'",
                     a.run_id(), a.assignment(), a.connector_type(),
                     a.connector_business_id());
        executor_->Assign(a, outlet);
        break;
      }
      case DispatcherMessage::kAck:
        executor_->Ack(message.ack());
        break;
      case DispatcherMessage::kCancel:
        executor_->Cancel(message.cancel());
        break;
      case DispatcherMessage::kHeartbeat:
        break;
      case DispatcherMessage::KIND_NOT_SET:
        // A message kind newer than this agent: ignore it.
        spdlog::debug("ignoring an unknown dispatcher message");
        break;
    }
  }
  {
    absl::MutexLock lock(&state.mu);
    state.done = true;
  }
  executor_->StreamLost(outlet.get());
  outlet->Close(options_.close_grace);
  helper.join();
  result.status = FromGrpcStatus(stream->Finish());
  {
    absl::MutexLock lock(&state.mu);
    if (!state.error.empty()) {
      result.status = absl::DeadlineExceededError(state.error);
    }
  }
  if (result.status.ok()) {
    result.status = absl::UnavailableError("the dispatcher ended the stream");
  }
  absl::MutexLock lock(&mu_);
  context_ = nullptr;
  return result;
}

void SpineClient::SessionHelper(SessionState& state, StreamOutlet& outlet,
                                grpc::ClientContext& context) {
  absl::Duration heartbeat;
  {
    absl::MutexLock lock(&state.mu);
    if (!state.mu.AwaitWithTimeout(
            absl::Condition(&state, &SessionState::WelcomedOrDone),
            options_.welcome_timeout)) {
      state.error =
          absl::StrCat("no welcome from the dispatcher within ",
                       absl::FormatDuration(options_.welcome_timeout));
      context.TryCancel();
      return;
    }
    if (state.done) return;
    heartbeat = state.heartbeat;
  }
  absl::Time next_heartbeat = absl::Now() + heartbeat;
  absl::Time next_status = absl::Now() + options_.status_interval;
  while (true) {
    {
      absl::MutexLock lock(&state.mu);
      if (state.mu.AwaitWithDeadline(
              absl::Condition(&state, &SessionState::Done),
              std::min(next_heartbeat, next_status))) {
        return;
      }
    }
    const absl::Time now = absl::Now();
    if (now >= next_heartbeat) {
      AgentMessage m;
      m.mutable_heartbeat()->set_unix_ms(absl::ToUnixMillis(clock_.Now()));
      outlet.Send(m);
      next_heartbeat = now + heartbeat;
    }
    if (now >= next_status) {
      WriteStatus();
      next_status = now + options_.status_interval;
    }
  }
}

}  // namespace idsync
