// Backoff: the delays between reconnect attempts, as gRPC's connection
// backoff specifies (doc/connection-backoff.md): start at `initial`, multiply
// by `multiplier` up to `max`, and spread each delay by +-`jitter`.
// Not thread-safe.
#ifndef IDSYNC_AGENTS_BACKOFF_H_
#define IDSYNC_AGENTS_BACKOFF_H_

#include "absl/random/bit_gen_ref.h"
#include "absl/time/time.h"

namespace idsync {

struct BackoffOptions {
  absl::Duration initial = absl::Seconds(1);
  double multiplier = 1.6;
  absl::Duration max = absl::Seconds(120);
  double jitter = 0.2;  // +-20% of each delay.
};

class Backoff {
 public:
  // "rng" must outlive this object.
  Backoff(const BackoffOptions& options, absl::BitGenRef rng);

  // The delay before the next attempt: initial, initial x multiplier, ...
  // capped at max, each with jitter applied.
  absl::Duration Next();
  // After a connection that stayed up: the next delay is `initial` again.
  void Reset();

 private:
  const BackoffOptions options_;
  absl::BitGenRef rng_;
  absl::Duration current_;  // Before jitter.
};

}  // namespace idsync

#endif  // IDSYNC_AGENTS_BACKOFF_H_
