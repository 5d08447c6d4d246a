// WriteGate: this process's SQLite write transactions take turns here, in a
// queue, instead of spinning on SQLITE_BUSY; and API writes go first. A sync
// asks PriorityWaiting() after each chunk and commits its group early when
// an API write waits, and a sync's next group starts only once no API write
// waits, so an HR joiner is not stuck behind a long sync. Across processes
// SQLite's busy timeout still applies. Thread-safe.
#ifndef IDSYNC_DISPATCHER_STORE_WRITE_GATE_H_
#define IDSYNC_DISPATCHER_STORE_WRITE_GATE_H_

#include <atomic>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace idsync {

class ABSL_LOCKABLE WriteGate {
 public:
  // For API and control writes: short, and ahead of any sync.
  void LockPriority() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    waiting_.fetch_add(1);
    mu_.Lock();
    waiting_.fetch_sub(1);
  }
  // For a sync's commit group: waits while a priority write waits.
  void LockBackground() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    mu_.LockWhen(absl::Condition(
        +[](std::atomic<int>* waiting) { return waiting->load() == 0; },
        &waiting_));
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.Unlock(); }
  bool PriorityWaiting() const { return waiting_.load() > 0; }

 private:
  absl::Mutex mu_;
  std::atomic<int> waiting_{0};
};

// Holds the gate with priority for a scope.
class ABSL_SCOPED_LOCKABLE PriorityWrite {
 public:
  explicit PriorityWrite(WriteGate& gate) ABSL_EXCLUSIVE_LOCK_FUNCTION(gate)
      : gate_(gate) {
    gate_.LockPriority();
  }
  ~PriorityWrite() ABSL_UNLOCK_FUNCTION() { gate_.Unlock(); }
  PriorityWrite(const PriorityWrite&) = delete;
  PriorityWrite& operator=(const PriorityWrite&) = delete;

 private:
  WriteGate& gate_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_WRITE_GATE_H_
