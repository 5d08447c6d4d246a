// SyncWorkers: runs the syncs the dispatcher starts on a bounded pool of
// threads (at most max_concurrent at once; one per connector, which the
// store enforces). A run is created and reserved inside the caller's write
// transaction, queued, then executed with its connector's secrets opened
// from the store. At start-up, runs left running by a dispatcher that died
// are resumed. Thread-safe.
#ifndef IDSYNC_DISPATCHER_SYNC_WORKERS_H_
#define IDSYNC_DISPATCHER_SYNC_WORKERS_H_

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "connector/registry.h"
#include "dispatcher/connector_dispatcher.h"
#include "dispatcher/metrics.h"
#include "dispatcher/run_progress.h"
#include "dispatcher/secrets.h"
#include "dispatcher/sync_engine.h"

namespace idsync {

class SourcePolicy;

class SyncWorkers {
 public:
  struct Options {
    int max_concurrent = 2;
    SyncEngineOptions engine;
    AgentHub* agents = nullptr;  // Serves agent-mode connectors.
    // Confines hosted connectors to what their tenant may reach; without
    // one they reach what the process can (tests of the engine alone).
    SourcePolicy* sources = nullptr;
  };
  // Everything passed must outlive the workers.
  SyncWorkers(Store& store, const ConnectorRegistry& registry,
              const SecretBox& secrets, Clock& clock, RunProgress& progress,
              Metrics& metrics, Options options);
  // Stops taking work and waits for the runs executing now. Queued runs stay
  // running in the store and are resumed by the next start-up.
  ~SyncWorkers();

  // Creates a run of `row` in one write transaction with whatever `in_txn`
  // writes (audit, idempotency), then queues it. kFailedPrecondition if the
  // connector has an active run.
  absl::StatusOr<RunRow> Start(
      const ConnectorRow& row, const SyncOptions& options,
      const std::function<absl::Status(const RunRow&, WriteTxn&)>& in_txn);

  // Asks a run queued or executing here to stop; kNotFound otherwise.
  absl::Status Cancel(int64_t run_id);

  // Queues every run left running by a process that is gone; returns how
  // many.
  absl::StatusOr<int> ResumeInterrupted();

  // The connector's TestConnection, with its secrets.
  absl::Status Test(const ConnectorRow& row);

  // The connector's auth_config, opened (empty if none is stored).
  absl::StatusOr<google::protobuf::Struct> AuthConfig(const ConnectorRow& row);

  // Waits until no run is queued or executing (for tests and shutdown).
  void WaitIdle();

 private:
  struct Job {
    ConnectorRow row;
    std::optional<RunRow> run;  // A new run; nullopt: resume the active one.
    std::optional<SyncEngine::Reservation> reservation;
    std::shared_ptr<std::atomic<bool>> cancel;
    int64_t run_id = 0;
  };
  void Work();
  void Execute(Job& job);

  Store& store_;
  const SecretBox& secrets_;
  RunProgress& progress_;
  Metrics& metrics_;
  ConnectorDispatcher dispatcher_;
  SyncEngine engine_;

  absl::Mutex mu_;
  std::deque<Job> queue_ ABSL_GUARDED_BY(mu_);
  // Cancel flags of queued and executing runs, by run id.
  absl::flat_hash_map<int64_t, std::shared_ptr<std::atomic<bool>>> active_
      ABSL_GUARDED_BY(mu_);
  int busy_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

// The context a connector's sealed auth_config is bound to.
std::string AuthContext(const ConnectorRow& row);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_SYNC_WORKERS_H_
