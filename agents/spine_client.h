// SpineClient: the running agent. Dials out to the dispatcher's
// AgentSpine.Connect (one bidirectional stream, authorized by the agent
// token), says hello (version, connector types, capacity, local
// connectors), heartbeats, runs the syncs it is assigned (RunExecutor), and
// when the stream ends reconnects forever with exponential backoff and
// jitter (gRPC's connection backoff: 1 s x1.6, cap 120 s, +-20%), reset
// after a connection that stayed up. When a stream breaks, every run sending
// on it stops; the dispatcher re-assigns them with a resume token.
//
// Keeps state_dir/agent-status.json up to date for `idsync-agent status`.
// Thread-safe. Start an agent in-process (tests):
//   SpineClientOptions o;
//   o.dispatcher = "127.0.0.1:PORT"; o.tls.insecure = true;
//   o.token = "idsync_agt_...";
//   auto agent = SpineClient::Create(std::move(o));   // checks the options
//   (*agent)->Start();                                // background thread
//   ... (*agent)->Status().connected ...
//   agent->reset();                                   // stops and joins
#ifndef IDSYNC_AGENTS_SPINE_CLIENT_H_
#define IDSYNC_AGENTS_SPINE_CLIENT_H_

#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agents/agent_config.h"
#include "agents/backoff.h"
#include "agents/run_executor.h"
#include "agents/state_files.h"
#include "connector/clock.h"
#include "connector/registry.h"

namespace grpc {
class ChannelCredentials;
class ClientContext;
}  // namespace grpc

namespace idsync {

// "0.1.0": the agent's version, sent in the hello.
absl::string_view AgentVersion();

struct SpineClientOptions {
  std::string dispatcher;  // host:port
  TlsOptions tls;
  std::string token;  // The agent token; secret, never logged.
  int capacity = kDefaultAgentCapacity;
  LocalConnectors connectors;
  DispatcherConfigs dispatcher_configs;  // See AgentConfig.
  // Where agent-status.json goes; empty: no status file.
  std::string state_dir;

  BackoffOptions backoff;
  // A connection that got its welcome and stayed up this long resets the
  // backoff.
  absl::Duration healthy_after = absl::Seconds(10);
  // No welcome this long after connecting: give up on the stream.
  absl::Duration welcome_timeout = absl::Seconds(30);
  // Heartbeat period when the welcome gives none.
  absl::Duration default_heartbeat = absl::Seconds(30);
  absl::Duration status_interval = absl::Seconds(5);
  // How long a stuck write may hold up closing a broken stream.
  absl::Duration close_grace = absl::Seconds(5);

  // Connector types; nullptr: the built-in ones. Must outlive the client.
  const ConnectorRegistry* registry = nullptr;
  Clock* clock = nullptr;    // nullptr: the real clock. Must outlive us.
  uint64_t random_seed = 0;  // Backoff jitter; 0: random.
  // Passed to the RunExecutor.
  int default_window = 8;
  size_t max_message_bytes = 4 * 1024 * 1024;

  // Test hooks, called on the client's thread.
  std::function<void(absl::Duration delay)> on_backoff;
  std::function<void(const absl::Status& why)> on_disconnect;
};

class SpineClient {
 public:
  // Checks the options (address, TLS files, local connector types, token)
  // without connecting.
  static absl::StatusOr<std::unique_ptr<SpineClient>> Create(
      SpineClientOptions options);
  ~SpineClient();  // Stop(), then joins the background thread and the runs.
  SpineClient(const SpineClient&) = delete;
  SpineClient& operator=(const SpineClient&) = delete;

  // Connects and reconnects until Stop(). Blocks.
  void Run();
  // Run() on a background thread.
  void Start();
  // Ends Run(): cancels the stream and stops the runs. Any thread; repeatable.
  void Stop();
  // After Stop: waits for the runs' threads to finish; false on timeout.
  bool WaitIdle(absl::Duration timeout);

  // What agent-status.json holds, now.
  AgentStatus Status();

 private:
  struct SessionResult;
  class StreamOutlet;
  struct SessionState;

  SpineClient(SpineClientOptions options,
              std::unique_ptr<ConnectorRegistry> owned_registry,
              std::shared_ptr<grpc::ChannelCredentials> credentials);

  SessionResult RunSession();
  void SessionHelper(SessionState& state, StreamOutlet& outlet,
                     grpc::ClientContext& context);
  void SetConnected(bool connected, int64_t agent_id, const std::string& name,
                    const std::string& error);
  void WriteStatus();

  // Constant after construction.
  const SpineClientOptions options_;
  const std::unique_ptr<ConnectorRegistry> owned_registry_;
  const ConnectorRegistry& registry_;
  Clock& clock_;
  const std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::unique_ptr<RunExecutor> executor_;
  std::mt19937_64 rng_;  // Used by Run() only.
  std::thread thread_;   // Start() and the destructor only.

  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(mu_) = nullptr;
  AgentStatus status_ ABSL_GUARDED_BY(mu_);

  absl::Mutex file_mu_;  // Serializes status file writes.
};

}  // namespace idsync

#endif  // IDSYNC_AGENTS_SPINE_CLIENT_H_
