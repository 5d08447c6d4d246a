#include "agents/backoff.h"

#include <algorithm>

#include "absl/random/distributions.h"

namespace idsync {

Backoff::Backoff(const BackoffOptions& options, absl::BitGenRef rng)
    : options_(options), rng_(rng), current_(options.initial) {}

absl::Duration Backoff::Next() {
  const absl::Duration base = current_;
  current_ = std::min(current_ * options_.multiplier, options_.max);
  if (options_.jitter <= 0) return base;
  const double factor =
      absl::Uniform(rng_, 1.0 - options_.jitter, 1.0 + options_.jitter);
  return std::max(base * factor, absl::ZeroDuration());
}

void Backoff::Reset() { current_ = options_.initial; }

}  // namespace idsync
