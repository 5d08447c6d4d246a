#include "connector/rate_limiter.h"

#include <algorithm>
#include <cmath>

namespace idsync {

RateLimiter::Decision RateLimiter::Take(int64_t key) {
  const absl::Time now = clock_.Now();
  absl::MutexLock lock(&mu_);
  auto [it, inserted] = buckets_.try_emplace(key);
  Bucket& b = it->second;
  if (inserted) {
    b.tokens = burst_;
  } else {
    const double elapsed =
        std::max(0.0, absl::ToDoubleSeconds(now - b.refilled));
    b.tokens = std::min(burst_, b.tokens + elapsed * rate_);
  }
  b.refilled = now;
  Decision d;
  if (b.tokens >= 1) {
    b.tokens -= 1;
    d.allowed = true;
  } else {
    d.retry_after = absl::Seconds((1 - b.tokens) / rate_);
  }
  d.remaining = static_cast<int64_t>(std::floor(b.tokens));
  return d;
}

}  // namespace idsync
