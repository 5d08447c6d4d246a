#include "tests/agents/fake_spine.h"

#include <grpcpp/grpcpp.h>

#include <utility>

#include "absl/time/clock.h"

namespace idsync::testing {

using idsync::v1::AgentMessage;
using idsync::v1::DispatcherMessage;

FakeSpine::Conn::Conn(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<DispatcherMessage, AgentMessage>* stream,
    absl::Time started)
    : context_(context), stream_(stream), started_(started) {
  auto it = context->client_metadata().find("authorization");
  if (it != context->client_metadata().end()) {
    authorization_.assign(it->second.data(), it->second.size());
  }
}

void FakeSpine::Conn::Push(AgentMessage message) {
  absl::MutexLock lock(&mu_);
  if (message.has_heartbeat()) {
    ++heartbeats_;
  } else {
    inbox_.push_back(std::move(message));
  }
}

std::optional<AgentMessage> FakeSpine::Conn::Next(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !inbox_.empty() || closed_;
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (inbox_.empty()) return std::nullopt;
  AgentMessage m = std::move(inbox_.front());
  inbox_.pop_front();
  return m;
}

bool FakeSpine::Conn::Send(const DispatcherMessage& message) {
  absl::MutexLock write_lock(&write_mu_);
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
  }
  return stream_->Write(message);
}

void FakeSpine::Conn::Drop() {
  absl::MutexLock lock(&mu_);
  if (!closed_) context_->TryCancel();
}

void FakeSpine::Conn::Close() {
  absl::MutexLock write_lock(&write_mu_);
  absl::MutexLock lock(&mu_);
  closed_ = true;
}

bool FakeSpine::Conn::WaitEnded(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithTimeout(absl::Condition(&closed_), timeout);
}

int FakeSpine::Conn::heartbeats() {
  absl::MutexLock lock(&mu_);
  return heartbeats_;
}

std::unique_ptr<FakeSpine> FakeSpine::Start() {
  std::unique_ptr<FakeSpine> spine(new FakeSpine());
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &spine->port_);
  // What the dispatcher allows (see agents/spine_channel.h).
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.RegisterService(spine.get());
  spine->server_ = builder.BuildAndStart();
  if (spine->server_ == nullptr || spine->port_ == 0) return nullptr;
  return spine;
}

FakeSpine::~FakeSpine() {
  if (server_ != nullptr) {
    {
      absl::MutexLock lock(&mu_);
      for (auto& conn : conns_) conn->Drop();
    }
    server_->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(1)));
    server_->Wait();
  }
}

std::string FakeSpine::address() const {
  return "127.0.0.1:" + std::to_string(port_);
}

std::shared_ptr<FakeSpine::Conn> FakeSpine::NextConn(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !conns_.empty();
  };
  if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) return nullptr;
  auto conn = conns_.front();
  conns_.pop_front();
  return conn;
}

std::vector<absl::Time> FakeSpine::connect_times() {
  absl::MutexLock lock(&mu_);
  return connect_times_;
}

void FakeSpine::set_expected_authorization(std::string value) {
  absl::MutexLock lock(&mu_);
  expected_authorization_ = std::move(value);
}

void FakeSpine::RefuseNext(int n, grpc::Status status) {
  absl::MutexLock lock(&mu_);
  refuse_ = n;
  refusal_ = std::move(status);
}

void FakeSpine::set_registration(std::string registration_token,
                                 int64_t agent_id, std::string agent_token,
                                 std::string name) {
  absl::MutexLock lock(&mu_);
  registration_token_ = std::move(registration_token);
  agent_id_ = agent_id;
  agent_token_ = std::move(agent_token);
  agent_name_ = std::move(name);
}

int FakeSpine::register_calls() {
  absl::MutexLock lock(&mu_);
  return register_calls_;
}

std::string FakeSpine::last_register_name() {
  absl::MutexLock lock(&mu_);
  return last_register_name_;
}

grpc::Status FakeSpine::Register(
    grpc::ServerContext* context,
    const idsync::v1::RegisterAgentRequest* request,
    idsync::v1::RegisterAgentResponse* response) {
  absl::MutexLock lock(&mu_);
  ++register_calls_;
  last_register_name_ = request->name();
  if (registration_token_.empty() ||
      request->registration_token() != registration_token_) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                        "unknown or used registration token");
  }
  registration_token_.clear();  // One time.
  response->set_agent_id(agent_id_);
  response->set_agent_token(agent_token_);
  response->set_name(request->name().empty() ? agent_name_ : request->name());
  return grpc::Status::OK;
}

grpc::Status FakeSpine::Connect(
    grpc::ServerContext* context,
    grpc::ServerReaderWriter<DispatcherMessage, AgentMessage>* stream) {
  auto conn = std::make_shared<Conn>(context, stream, absl::Now());
  std::string expected;
  bool refuse = false;
  grpc::Status refusal;
  {
    absl::MutexLock lock(&mu_);
    connect_times_.push_back(conn->started());
    expected = expected_authorization_;
    if (refuse_ > 0) {
      --refuse_;
      refuse = true;
      refusal = refusal_;
    }
  }
  if (!expected.empty() && conn->authorization() != expected) {
    return grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "bad agent token");
  }
  AgentMessage message;
  if (refuse) {
    stream->Read(&message);  // The hello.
    return refusal;
  }
  {
    absl::MutexLock lock(&mu_);
    conns_.push_back(conn);
  }
  while (stream->Read(&message)) conn->Push(std::move(message));
  conn->Close();
  return grpc::Status::OK;
}

DispatcherMessage WelcomeMessage(int64_t agent_id, std::string name,
                                 int heartbeat_seconds) {
  DispatcherMessage m;
  m.mutable_welcome()->set_agent_id(agent_id);
  m.mutable_welcome()->set_name(std::move(name));
  m.mutable_welcome()->set_heartbeat_seconds(heartbeat_seconds);
  return m;
}

DispatcherMessage AckMessage(int64_t run_id, int64_t assignment,
                             int64_t sequence) {
  DispatcherMessage m;
  m.mutable_ack()->set_run_id(run_id);
  m.mutable_ack()->set_assignment(assignment);
  m.mutable_ack()->set_sequence(sequence);
  return m;
}

DispatcherMessage CancelMessage(int64_t run_id, std::string reason) {
  DispatcherMessage m;
  m.mutable_cancel()->set_run_id(run_id);
  m.mutable_cancel()->set_reason(std::move(reason));
  return m;
}

}  // namespace idsync::testing
