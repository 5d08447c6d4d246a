// RunProgress: the live state of the runs executing in this process, for
// watchers (Server-Sent Events, gRPC WatchSyncRun). Publishing never blocks
// on a watcher: each run keeps only its latest state and a version number,
// and a watcher that falls behind skips to the latest. Thread-safe.
#ifndef IDSYNC_DISPATCHER_RUN_PROGRESS_H_
#define IDSYNC_DISPATCHER_RUN_PROGRESS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dispatcher/store/store.h"

namespace idsync {

class RunProgress {
 public:
  struct Snapshot {
    RunRow run;
    int64_t version = 0;
    bool done = false;  // The run has ended; no more versions follow.
  };

  // Records the run's state; `done` when it has ended.
  void Publish(const RunRow& run, bool done);

  // Also tells `listener` every published state (e.g. progress callbacks),
  // on the publishing thread; it must be quick. Set before runs start.
  using Listener = std::function<void(const RunRow& run, bool done)>;
  void SetListener(Listener listener) { listener_ = std::move(listener); }

  // Waits until the run has a version newer than `after_version` or `timeout`
  // passes. nullopt if the run is not executing (and did not end) here.
  std::optional<Snapshot> Wait(int64_t run_id, int64_t after_version,
                               absl::Duration timeout);

  // Calls `wake` after every Publish of `run_id` (on the publishing thread,
  // so it must be quick, e.g. post to an event loop) until Unwatch. A wake
  // racing Unwatch may still come once. Returns the handle for Unwatch.
  uint64_t Watch(int64_t run_id, std::function<void()> wake);
  void Unwatch(uint64_t handle);

  // Drops state of runs that ended more than `age` ago.
  void Forget(absl::Duration age);

 private:
  struct Entry {
    Snapshot snapshot;
    absl::Time ended_at = absl::InfiniteFuture();
  };
  struct Watcher {
    int64_t run_id;
    std::function<void()> wake;
  };
  Listener listener_;
  absl::Mutex mu_;
  absl::flat_hash_map<int64_t, Entry> runs_ ABSL_GUARDED_BY(mu_);
  absl::Mutex watch_mu_;
  uint64_t next_watch_ ABSL_GUARDED_BY(watch_mu_) = 1;
  absl::flat_hash_map<uint64_t, Watcher> watchers_ ABSL_GUARDED_BY(watch_mu_);
  absl::flat_hash_map<int64_t, int> watched_runs_ ABSL_GUARDED_BY(watch_mu_);
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_RUN_PROGRESS_H_
