// AgentRunChannel: one sync run's line to an agent, from AgentHub::OpenRun.
// Assign() sends the run to an online agent bound to the connector (waiting
// up to the hub's agent_timeout for one); Next() returns what the agent sent
// for the current assignment; Ack() lets the agent send more. When the
// agent's stream drops, Next() says kLost and Assign() may be called again
// with a later resume token. Used by one thread.
#ifndef IDSYNC_DISPATCHER_AGENTS_AGENT_RUN_CHANNEL_H_
#define IDSYNC_DISPATCHER_AGENTS_AGENT_RUN_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "dispatcher/agents/agent_hub.h"
#include "google/protobuf/struct.pb.h"
#include "idsync/v1/agent.pb.h"

namespace idsync {

class AgentRunChannel {
 public:
  enum class Kind { kChunk, kDone, kLost, kTimeout };

  // Cancels the run on the agent unless it reported done.
  ~AgentRunChannel();

  absl::Status Assign(const std::string& business_id, const std::string& type,
                      const google::protobuf::Struct& config,
                      const idsync::v1::SyncRequest& request);
  Kind Next(idsync::v1::SyncChunk* chunk, idsync::v1::RunDone* done,
            absl::Duration timeout);
  void Ack(int64_t sequence);
  void Cancel(const std::string& reason);

 private:
  friend class AgentHub;
  AgentRunChannel(AgentHub& hub, int64_t handle,
                  std::shared_ptr<AgentHub::Slot> slot);

  AgentHub& hub_;
  const int64_t handle_;
  std::shared_ptr<AgentHub::Slot> slot_;
  bool done_ = false;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_AGENTS_AGENT_RUN_CHANNEL_H_
