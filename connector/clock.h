// Clock: the source of time for everything that waits, expires or schedules,
// injected so tests run on simulated time (LevelDB's Env, Envoy's TimeSource).
// Implementations must be thread-safe.
#ifndef IDSYNC_CONNECTOR_CLOCK_H_
#define IDSYNC_CONNECTOR_CLOCK_H_

#include "absl/time/time.h"

namespace idsync {

class Clock {
 public:
  virtual ~Clock() = default;
  virtual absl::Time Now() = 0;
  virtual void SleepFor(absl::Duration duration) = 0;

  // The process-wide wall clock. Never destroyed.
  static Clock& Real();
};

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_CLOCK_H_
