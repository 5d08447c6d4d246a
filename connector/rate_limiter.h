// RateLimiter: a token bucket per key (an API token, a source connector):
// `rate` requests a second, bursts up to `burst`. Time comes from the injected
// Clock, so tests are exact. Thread-safe.
#ifndef IDSYNC_CONNECTOR_RATE_LIMITER_H_
#define IDSYNC_CONNECTOR_RATE_LIMITER_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connector/clock.h"

namespace idsync {

class RateLimiter {
 public:
  struct Decision {
    bool allowed = false;
    int64_t remaining = 0;       // Whole requests left now.
    absl::Duration retry_after;  // When refused: until one is available.
  };

  // "*clock" must outlive the limiter.
  RateLimiter(Clock& clock, double rate_per_second, double burst)
      : clock_(clock), rate_(rate_per_second), burst_(burst) {}

  Decision Take(int64_t key);
  double burst() const { return burst_; }

 private:
  struct Bucket {
    double tokens = 0;
    absl::Time refilled;
  };
  Clock& clock_;
  const double rate_;
  const double burst_;
  absl::Mutex mu_;
  absl::flat_hash_map<int64_t, Bucket> buckets_ ABSL_GUARDED_BY(mu_);
};

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_RATE_LIMITER_H_
