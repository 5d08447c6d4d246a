// SyncEngine: runs one connector sync into the store (a SyncRun).
//
// The connector writes chunks from its own thread into a bounded queue; the
// engine applies them on the calling thread. Records are hashed and written
// only when new or changed. Chunks commit in groups, each group together with
// the run's checkpoint (resume token, counters, seen row ids), so a crash
// loses at most the group in flight and the next sync of the connector picks
// the run up where it stopped. A full sync then removes what it did not see,
// unless that would remove more than the deletion threshold.
//
// A SyncEngine may run syncs of different connectors from several threads.
#ifndef IDSYNC_DISPATCHER_SYNC_ENGINE_H_
#define IDSYNC_DISPATCHER_SYNC_ENGINE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "connector/clock.h"
#include "connector/connector.h"
#include "dispatcher/store/store.h"
#include "google/protobuf/struct.pb.h"

namespace idsync {

// What the caller asks of one run.
struct SyncOptions {
  bool incremental = false;
  int32_t chunk_size = kDefaultChunkSize;  // 1..kMaxChunkSize.
  std::optional<int64_t> max_records;      // Stop after this many records.
  // Overrides the connector's threshold for this run, e.g. after an operator
  // has checked that a large removal is real.
  std::optional<double> deletion_threshold;
  std::string callback_url;

  // Held in memory only, for this execution (also when it resumes a run).
  google::protobuf::Struct auth_config;  // Secrets for the connector.
  // Set to true to stop the run: it ends cancelled and deletes nothing.
  std::shared_ptr<std::atomic<bool>> cancel;
};

struct SyncEngineOptions {
  // A commit group ends after this long or this many records, whichever
  // comes first. Larger groups write each B-tree page fewer times.
  absl::Duration commit_interval = absl::Milliseconds(500);
  int64_t max_group_records = 50000;
  int queue_chunks = 4;                // Chunks the connector may run ahead.
  int64_t max_stored_rejects = 10000;  // Per run; all are counted.
  // A run with more rejects than this fraction of its records fails (once it
  // has seen min_records_for_reject_ratio records).
  double max_reject_ratio = 0.1;
  int64_t min_records_for_reject_ratio = 20;
  int64_t max_key_bytes = 1024;
  int64_t max_record_bytes = 1 << 20;
};

// Called on the engine's thread after each chunk with the run's counters.
using ProgressFn = std::function<void(const RunRow& run)>;

class SyncEngine {
 public:
  // `store` and `clock` must outlive the engine.
  SyncEngine(Store& store, Clock& clock, SyncEngineOptions options = {});

  // Syncs `connector` (configured as `row`) into the store, or resumes the
  // connector's interrupted run if its owner process is gone. Returns the
  // run as it ended: a run that failed is still returned, with status
  // kFailed and its error. Errors: kInvalidArgument for bad options,
  // kFailedPrecondition when another live process runs this connector,
  // store errors.
  absl::StatusOr<RunRow> Run(Connector& connector, const ConnectorRow& row,
                             const SyncOptions& options,
                             const ProgressFn& progress = nullptr);

  // An owner for one execution in this process: a unique string that marks
  // the run it names as executing here until the reservation ends, so no
  // other thread resumes that run as abandoned. Create the reservation
  // before the run row that names its owner becomes visible.
  class Reservation {
   public:
    Reservation(Reservation&& other) noexcept;
    Reservation& operator=(Reservation&& other) noexcept;
    ~Reservation();
    const std::string& owner() const { return owner_; }

   private:
    friend class SyncEngine;
    explicit Reservation(std::string owner) : owner_(std::move(owner)) {}
    std::string owner_;  // Empty once moved from.
  };
  static Reservation Reserve();

  // Executes `run`, created by the caller with run.owner taken from a live
  // Reservation, to its end.
  // `options` supplies the runtime fields (auth_config, cancel); the run's
  // own row holds the rest.
  absl::StatusOr<RunRow> Execute(Connector& connector, const ConnectorRow& row,
                                 RunRow run, const SyncOptions& options,
                                 const ProgressFn& progress = nullptr);

 private:
  class Execution;

  Store& store_;
  Clock& clock_;
  const SyncEngineOptions options_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_SYNC_ENGINE_H_
