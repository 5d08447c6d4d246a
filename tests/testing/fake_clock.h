// FakeClock: simulated time for tests. SleepFor advances time instantly.
// Thread-safe.
#ifndef IDSYNC_TESTS_TESTING_FAKE_CLOCK_H_
#define IDSYNC_TESTS_TESTING_FAKE_CLOCK_H_

#include "absl/synchronization/mutex.h"
#include "connector/clock.h"

namespace idsync::testing {

class FakeClock final : public Clock {
 public:
  explicit FakeClock(absl::Time start = absl::FromUnixSeconds(1700000000))
      : now_(start) {}
  absl::Time Now() override {
    absl::MutexLock lock(&mu_);
    return now_;
  }
  void SleepFor(absl::Duration d) override { Advance(d); }
  void Advance(absl::Duration d) {
    absl::MutexLock lock(&mu_);
    now_ += d;
  }

 private:
  absl::Mutex mu_;
  absl::Time now_ ABSL_GUARDED_BY(mu_);
};

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_TESTING_FAKE_CLOCK_H_
