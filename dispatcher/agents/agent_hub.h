// AgentHub: the dispatcher's end of the agent spine. It serves
// AgentSpine (Register, and each agent's Connect stream), knows which agents
// are online, and hands runs of agent-mode connectors to them on behalf of
// AgentProxyConnector. Everything durable (agents, their state, events) is
// in the store; the hub holds only live streams. Thread-safe.
//
// Keepalive, agreed with agents/ (their pings every 30 s): the server
// accepts pings without data every 10 s or more
// (GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS = 10000) and
// without calls, so it never answers a healthy agent with GOAWAY
// "too_many_pings".
#ifndef IDSYNC_DISPATCHER_AGENTS_AGENT_HUB_H_
#define IDSYNC_DISPATCHER_AGENTS_AGENT_HUB_H_

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connector/clock.h"
#include "dispatcher/store/store.h"
#include "idsync/v1/agent.grpc.pb.h"

namespace idsync {

struct AgentHubOptions {
  absl::Duration heartbeat = absl::Seconds(10);  // Agents send this often.
  // An agent silent for this long is disconnected.
  absl::Duration silence_limit = absl::Seconds(45);
  // A run whose agent stays away this long fails.
  absl::Duration agent_timeout = absl::Minutes(3);
  int32_t window = 8;  // Unacknowledged chunks an agent may send.
};

class AgentRunChannel;

class AgentHub final : public idsync::v1::AgentSpine::Service {
 public:
  // Everything passed must outlive the hub.
  AgentHub(Store& store, Clock& clock, AgentHubOptions options = {});
  ~AgentHub() override;

  // --- AgentSpine ---
  grpc::Status Register(grpc::ServerContext* context,
                        const idsync::v1::RegisterAgentRequest* request,
                        idsync::v1::RegisterAgentResponse* response) override;
  grpc::Status Connect(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<idsync::v1::DispatcherMessage,
                               idsync::v1::AgentMessage>* stream) override;

  // Closes the agent's stream now (its token was revoked). Its runs wait
  // for it, then fail after agent_timeout.
  void Disconnect(int64_t agent_id);
  // Closes every stream and refuses new ones, so a stopping server need not
  // wait out its deadline for streams that never end by themselves.
  void Shutdown();
  bool IsOnline(int64_t agent_id) const;

  // For AgentProxyConnector: a channel to run one sync on an agent of
  // `tenant_id` whose name or group is `binding`.
  std::unique_ptr<AgentRunChannel> OpenRun(int64_t tenant_id,
                                           std::string binding);

  const AgentHubOptions& options() const { return options_; }

 private:
  friend class AgentRunChannel;
  struct Session;

 public:
  struct Slot;  // A run's mailbox (agent_hub.cc).

 private:
  // The online session for `binding` (least busy), waiting up to
  // `deadline` for one; nullptr if none came.
  std::shared_ptr<Session> WaitForAgent(int64_t tenant_id,
                                        const std::string& binding,
                                        absl::Time deadline);
  bool Send(Session& session, const idsync::v1::DispatcherMessage& message);
  void Watchdog();

  Store& store_;
  Clock& clock_;
  const AgentHubOptions options_;

  // Writes the agent's online flag as the session map says it is now.
  absl::Status PublishOnline(int64_t agent_id, const std::string& version,
                             const std::vector<std::string>& types)
      ABSL_LOCKS_EXCLUDED(mu_, publish_mu_);

  absl::Mutex publish_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable absl::Mutex mu_;
  // agent id -> its live session (at most one: a new stream replaces it).
  absl::flat_hash_map<int64_t, std::shared_ptr<Session>> sessions_
      ABSL_GUARDED_BY(mu_);
  // run handle -> the proxy waiting for its chunks.
  absl::flat_hash_map<int64_t, std::shared_ptr<Slot>> slots_
      ABSL_GUARDED_BY(mu_);
  int64_t next_handle_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread watchdog_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_AGENTS_AGENT_HUB_H_
