// Scheduler: starts connectors' scheduled syncs. A connector's schedule
// (ConnectorSchedule in the store) has an incremental sync every N minutes
// and a full reconciliation on a cron expression in a time zone, each
// optional. Due times derive from what the store says was last handled, not
// from memory, so a restarted dispatcher neither forgets nor repeats a run:
// - a due sync starts unless the connector has an active run; then the tick
//   is skipped and recorded (audit action "sync.schedule_skipped");
// - after downtime, each kind catches up at most once, however many due
//   times it missed;
// - when a full and an incremental sync fall due together, the full one
//   runs (it covers the other).
// Thread-safe.
#ifndef IDSYNC_DISPATCHER_SCHEDULER_H_
#define IDSYNC_DISPATCHER_SCHEDULER_H_

#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connector/clock.h"
#include "dispatcher/store/store.h"
#include "dispatcher/sync_workers.h"

namespace idsync {

// The longest incremental interval: one week.
inline constexpr int kMaxIncrementalMinutes = 7 * 24 * 60;

// For the API: bounds and a cron expression that parses in its zone.
absl::Status CheckSchedule(const ConnectorSchedule& schedule);

struct NextRuns {
  std::optional<absl::Time> incremental;  // nullopt: none scheduled.
  std::optional<absl::Time> full;
};

// When the schedule's next syncs fall due. A kind never handled counts from
// `since` (the connector's last update).
absl::StatusOr<NextRuns> NextScheduledRuns(const ConnectorSchedule& schedule,
                                           absl::Time since);

class Scheduler {
 public:
  struct TickReport {
    int started = 0;
    int skipped = 0;  // Due while the connector had an active run.
    int failed = 0;   // Could not be started; retried at the next tick.
    std::string last_error;
  };

  // Everything passed must outlive the scheduler.
  Scheduler(Store& store, SyncWorkers& workers, Clock& clock);
  ~Scheduler();  // Stop().

  // Starts or skips whatever is due at clock.Now().
  absl::StatusOr<TickReport> Tick();

  // Calls Tick() every `every` of real time on a thread, writing failures
  // to stderr, until Stop().
  void Start(absl::Duration every);
  void Stop();

 private:
  // Starts or skips `row`'s due syncs; adds to `report`.
  void Handle(const ConnectorRow& row, absl::Time now, TickReport& report);

  Store& store_;
  SyncWorkers& workers_;
  Clock& clock_;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_SCHEDULER_H_
