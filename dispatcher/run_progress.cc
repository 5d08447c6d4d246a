#include "dispatcher/run_progress.h"

#include <vector>

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
  std::vector<std::function<void()>> wakes;
  {
    absl::MutexLock lock(&watch_mu_);
    if (watched_runs_.contains(run.id)) {
      for (const auto& [handle, w] : watchers_) {
        if (w.run_id == run.id) wakes.push_back(w.wake);
      }
    }
  }
  for (const auto& wake : wakes) wake();
}

uint64_t RunProgress::Watch(int64_t run_id, std::function<void()> wake) {
  absl::MutexLock lock(&watch_mu_);
  const uint64_t handle = next_watch_++;
  watchers_[handle] = Watcher{run_id, std::move(wake)};
  ++watched_runs_[run_id];
  return handle;
}

void RunProgress::Unwatch(uint64_t handle) {
  absl::MutexLock lock(&watch_mu_);
  auto it = watchers_.find(handle);
  if (it == watchers_.end()) return;
  auto run = watched_runs_.find(it->second.run_id);
  if (run != watched_runs_.end() && --run->second == 0) {
    watched_runs_.erase(run);
  }
  watchers_.erase(it);
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
