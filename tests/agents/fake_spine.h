// FakeSpine: a scripted dispatcher for agent tests. A real gRPC server on
// 127.0.0.1 (a free port) implementing AgentSpine: every Connect call
// becomes a Conn the test drives (read what the agent sent, send welcome,
// assignments, acks, cancels, drop the stream); Register answers from
// fields the test sets. Thread-safe.
#ifndef IDSYNC_TESTS_AGENTS_FAKE_SPINE_H_
#define IDSYNC_TESTS_AGENTS_FAKE_SPINE_H_

#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "idsync/v1/agent.grpc.pb.h"

namespace grpc {
class Server;
class ServerContext;
}  // namespace grpc

namespace idsync::testing {

class FakeSpine final : public idsync::v1::AgentSpine::Service {
 public:
  // One Connect call.
  class Conn {
   public:
    Conn(grpc::ServerContext* context,
         grpc::ServerReaderWriter<idsync::v1::DispatcherMessage,
                                  idsync::v1::AgentMessage>* stream,
         absl::Time started);

    // The next message from the agent other than a heartbeat; nullopt
    // after `timeout` or when the stream has ended with nothing left.
    std::optional<idsync::v1::AgentMessage> Next(
        absl::Duration timeout = absl::Seconds(10));
    bool Send(const idsync::v1::DispatcherMessage& message);
    // Cancels the call from the server's side (a dropped stream).
    void Drop();
    // Waits for the handler to return.
    bool WaitEnded(absl::Duration timeout = absl::Seconds(10));
    int heartbeats();
    const std::string& authorization() const { return authorization_; }
    absl::Time started() const { return started_; }

    // Used by the handler.
    void Push(idsync::v1::AgentMessage message);
    void Close();

   private:
    grpc::ServerContext* const context_;
    grpc::ServerReaderWriter<idsync::v1::DispatcherMessage,
                             idsync::v1::AgentMessage>* const stream_;
    const absl::Time started_;
    std::string authorization_;
    absl::Mutex mu_;
    std::deque<idsync::v1::AgentMessage> inbox_ ABSL_GUARDED_BY(mu_);
    int heartbeats_ ABSL_GUARDED_BY(mu_) = 0;
    bool closed_ ABSL_GUARDED_BY(mu_) = false;
    absl::Mutex write_mu_;  // Held across Write; Close takes it too.
  };

  // Starts the server on 127.0.0.1 and a free port.
  static std::unique_ptr<FakeSpine> Start();
  ~FakeSpine() override;

  std::string address() const;  // "127.0.0.1:PORT"

  // The next Connect call (after the ones already taken); nullptr on timeout.
  std::shared_ptr<Conn> NextConn(absl::Duration timeout = absl::Seconds(10));
  // When each Connect call arrived.
  std::vector<absl::Time> connect_times();

  // Connect: the authorization the agent must send; anything else gets
  // UNAUTHENTICATED at once.
  void set_expected_authorization(std::string value);
  // Connect: the next `n` calls read the hello, then end with `status`.
  void RefuseNext(int n, grpc::Status status);

  // Register: answers these to the right registration token.
  void set_registration(std::string registration_token, int64_t agent_id,
                        std::string agent_token, std::string name);
  int register_calls();
  std::string last_register_name();

  // AgentSpine.
  grpc::Status Register(grpc::ServerContext* context,
                        const idsync::v1::RegisterAgentRequest* request,
                        idsync::v1::RegisterAgentResponse* response) override;
  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<idsync::v1::DispatcherMessage,
                               idsync::v1::AgentMessage>* stream) override;

 private:
  FakeSpine() = default;

  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;

  absl::Mutex mu_;
  std::deque<std::shared_ptr<Conn>> conns_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Time> connect_times_ ABSL_GUARDED_BY(mu_);
  std::string expected_authorization_ ABSL_GUARDED_BY(mu_);
  int refuse_ ABSL_GUARDED_BY(mu_) = 0;
  grpc::Status refusal_ ABSL_GUARDED_BY(mu_);
  std::string registration_token_ ABSL_GUARDED_BY(mu_);
  int64_t agent_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::string agent_token_ ABSL_GUARDED_BY(mu_);
  std::string agent_name_ ABSL_GUARDED_BY(mu_);
  int register_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::string last_register_name_ ABSL_GUARDED_BY(mu_);
};

// Message builders.
idsync::v1::DispatcherMessage WelcomeMessage(int64_t agent_id, std::string name,
                                             int heartbeat_seconds);
idsync::v1::DispatcherMessage AckMessage(int64_t run_id, int64_t assignment,
                                         int64_t sequence);
idsync::v1::DispatcherMessage CancelMessage(int64_t run_id, std::string reason);

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_AGENTS_FAKE_SPINE_H_
