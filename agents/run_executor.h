// RunExecutor: runs the syncs the dispatcher assigns, one worker thread per
// run, at most `capacity` runs at once. Each run builds its connector from
// the registry (with the agent's local config applied, see PrepareRun) and
// streams its chunks to a SpineOutlet, keeping at most AssignRun.window
// chunks sent but not yet acknowledged: the connector's Write blocks until
// the dispatcher acks (backpressure), so memory stays bounded.
//
// A run stops (its Write fails, the connector returns) when the dispatcher
// cancels it, when a newer assignment of the same run arrives, or when its
// stream is lost. Thread-safe: Assign/Ack/Cancel come from the stream's
// reader thread, StreamLost/StopAll/Runs from anywhere.
#ifndef IDSYNC_AGENTS_RUN_EXECUTOR_H_
#define IDSYNC_AGENTS_RUN_EXECUTOR_H_

#include <cstddef>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agents/agent_config.h"
#include "agents/state_files.h"
#include "connector/clock.h"
#include "connector/registry.h"
#include "idsync/v1/agent.pb.h"

namespace idsync {

// Where runs send their messages: the current spine stream. Thread-safe.
class SpineOutlet {
 public:
  virtual ~SpineOutlet() = default;
  // Sends one message, blocking while the transport is full. False when
  // the stream is gone (the message was not sent).
  virtual bool Send(const idsync::v1::AgentMessage& message) = 0;
};

struct RunExecutorOptions {
  int capacity = kDefaultAgentCapacity;
  LocalConnectors local_connectors;
  DispatcherConfigs dispatcher_configs;  // See AgentConfig.
  int default_window = 8;                // When AssignRun.window is 0.
  int max_window = 1024;
  // A chunk message larger than this fails its run (kFailedPrecondition,
  // "lower chunk_size") instead of breaking the stream: gRPC's default
  // receive limit, which the dispatcher keeps unless it raises it.
  size_t max_message_bytes = 4 * 1024 * 1024;
  Clock* clock = &Clock::Real();  // Given to connectors; must outlive us.
};

class RunExecutor {
 public:
  // "registry" must outlive the executor.
  RunExecutor(const ConnectorRegistry& registry, RunExecutorOptions options);
  ~RunExecutor();  // Stops every run and waits for its thread.
  RunExecutor(const RunExecutor&) = delete;
  RunExecutor& operator=(const RunExecutor&) = delete;

  // Starts `assign` on a worker thread that sends its RunChunks and its
  // RunDone to `outlet`. A newer assignment of a run already here replaces
  // it (the older one stops and sends no RunDone); an older or repeated
  // assignment is ignored. A replacement takes its run's slot; otherwise,
  // at capacity, answers RunDone RESOURCE_EXHAUSTED at once.
  void Assign(const idsync::v1::AssignRun& assign,
              std::shared_ptr<SpineOutlet> outlet);
  // The dispatcher took chunks up to ack.sequence of that assignment.
  void Ack(const idsync::v1::AckChunk& ack);
  // Stops every assignment of the run; it answers RunDone CANCELLED.
  void Cancel(const idsync::v1::CancelRun& cancel);
  // The stream behind `outlet` is gone: its runs stop, without a RunDone.
  void StreamLost(const SpineOutlet* outlet);
  // Stops every run (the agent is shutting down).
  void StopAll();
  // Waits until no run is left; false on timeout.
  bool WaitIdle(absl::Duration timeout);

  std::vector<RunStatus> Runs();
  int capacity() const { return options_.capacity; }
  const LocalConnectors& local_connectors() const {
    return options_.local_connectors;
  }

 private:
  struct Run;
  class Sink;
  enum class StopKind {
    kNone,
    kCancelled,
    kSuperseded,
    kStreamLost,
    kShutdown
  };

  void Execute(std::shared_ptr<Run> run);
  static void StopRun(Run& run, StopKind kind, std::string reason);
  // Joins and forgets finished runs.
  void Reap() ABSL_LOCKS_EXCLUDED(mu_);

  // Constant after construction.
  const ConnectorRegistry& registry_;
  const RunExecutorOptions options_;

  absl::Mutex mu_;
  // Every run whose thread has not been joined, in start order.
  std::vector<std::shared_ptr<Run>> runs_ ABSL_GUARDED_BY(mu_);
  int unfinished_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace idsync

#endif  // IDSYNC_AGENTS_RUN_EXECUTOR_H_
