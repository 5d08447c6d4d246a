#include "dispatcher/run_progress.h"

#include "absl/time/clock.h"

namespace idsync {

void RunProgress::Publish(const RunRow& run, bool done) {
  {
    absl::MutexLock lock(&mu_);
    Entry& e = runs_[run.id];
    e.snapshot.run = run;
    ++e.snapshot.version;
    e.snapshot.done = done;
    if (done) e.ended_at = absl::Now();
  }
  if (listener_) listener_(run, done);
}

std::optional<RunProgress::Snapshot> RunProgress::Wait(int64_t run_id,
                                                       int64_t after_version,
                                                       absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto newer = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = runs_.find(run_id);
    return it == runs_.end() || it->second.snapshot.version > after_version ||
           it->second.snapshot.done;
  };
  mu_.AwaitWithTimeout(absl::Condition(&newer), timeout);
  auto it = runs_.find(run_id);
  if (it == runs_.end()) return std::nullopt;
  return it->second.snapshot;
}

void RunProgress::Forget(absl::Duration age) {
  absl::MutexLock lock(&mu_);
  const absl::Time cutoff = absl::Now() - age;
  for (auto it = runs_.begin(); it != runs_.end();) {
    if (it->second.ended_at < cutoff) {
      runs_.erase(it++);
    } else {
      ++it;
    }
  }
}

}  // namespace idsync
