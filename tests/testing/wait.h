// WaitUntil: the one way tests wait for something another thread or process
// does. Polls `done` until it returns true or `timeout` passes; true if it
// did. The poll interval grows from 1 ms to `max_interval`, so a quick
// condition is seen quickly and a slow one costs little CPU.
#ifndef IDSYNC_TESTS_TESTING_WAIT_H_
#define IDSYNC_TESTS_TESTING_WAIT_H_

#include <algorithm>

#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace idsync::testing {

template <typename Done>
bool WaitUntil(Done done, absl::Duration timeout = absl::Seconds(30),
               absl::Duration max_interval = absl::Milliseconds(50)) {
  const absl::Time deadline = absl::Now() + timeout;
  absl::Duration interval = absl::Milliseconds(1);
  while (true) {
    if (done()) return true;
    const absl::Time now = absl::Now();
    if (now >= deadline) return false;
    absl::SleepFor(std::min(interval, deadline - now));
    interval = std::min(interval * 2, max_interval);
  }
}

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_TESTING_WAIT_H_
