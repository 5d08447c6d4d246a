// DeliveryWorker: sends the outbox's deliveries (webhook events and final
// progress callbacks) at least once, in order per endpoint, signed per the
// Standard Webhooks spec. A failed attempt is retried on a schedule (5
// attempts over about 6 hours, +-20% jitter; a 429/503 Retry-After is
// honoured), then dead-lettered; 410 disables the webhook. Redirects are not
// followed and non-public addresses are refused at connect time unless
// allowed. Everything it knows is in the store, so a restart loses nothing.
// Thread-safe.
#ifndef IDSYNC_DISPATCHER_DELIVERY_DELIVERY_WORKER_H_
#define IDSYNC_DISPATCHER_DELIVERY_DELIVERY_WORKER_H_

#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/random/random.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "connector/clock.h"
#include "connector/http/http_client.h"
#include "dispatcher/secrets.h"
#include "dispatcher/store/store.h"

namespace idsync {

inline constexpr int kMaxDeliveryAttempts = 5;

struct DeliveryOptions {
  int threads = 4;  // Endpoints served at once; one request per endpoint.
  absl::Duration timeout = absl::Seconds(15);
  bool allow_private = false;  // Loopback/private targets (tests, labs).
  // The waits after attempts 1..4: about 6 hours in all.
  std::vector<absl::Duration> schedule = {absl::Minutes(1), absl::Minutes(10),
                                          absl::Hours(1), absl::Hours(5)};
  absl::Duration max_retry_after = absl::Hours(6);
  absl::Duration poll = absl::Milliseconds(50);  // Idle re-check.
  absl::Duration retention = absl::Hours(24 * 7);
  std::string ca_file;
};

// A JSON message for a webhook or callback URL, and the sealed whsec_
// secret that signs it.
struct SignedMessage {
  std::string url;
  std::string msg_id;  // webhook-id: the same on every retry.
  std::string body;
  std::string sealed_secret;  // "" when there is none.
  std::string secret_context;
};

// One POST of `m`, signed per Standard Webhooks (webhook-id,
// webhook-timestamp, webhook-signature "v1,<base64 HMAC-SHA256 of
// id.timestamp.body>"), with the options' timeout and address policy, no
// retries. kFailedPrecondition "cannot sign: ..." when the secret is missing
// or does not open; else the transport's error or the response.
absl::StatusOr<HttpResponse> PostSigned(const SignedMessage& m,
                                        const DeliveryOptions& options,
                                        const SecretBox& secrets, Clock& clock);

class DeliveryWorker {
 public:
  // Everything passed must outlive the worker.
  DeliveryWorker(Store& store, const SecretBox& secrets, Clock& clock,
                 DeliveryOptions options);
  ~DeliveryWorker();  // Stops the threads.

  void Start();
  // Lets in-flight requests finish (at most `timeout`), then returns.
  void Stop();

  // One pass on the calling thread: attempts every due delivery (one per
  // endpoint) and records the outcomes. Returns how many were attempted.
  // For tests on an injected clock; do not mix with Start().
  absl::StatusOr<int> RunOnce();

 private:
  struct Attempt {
    int status = 0;  // HTTP status; 0 when no response.
    std::string error;
    std::optional<absl::Duration> retry_after;
  };

  void Loop();
  // Claims a due delivery whose endpoint is not busy, if any.
  absl::StatusOr<std::optional<DueDelivery>> Claim();
  void Release(const std::string& endpoint);
  absl::Status Deliver(const DueDelivery& d);
  Attempt Send(const DueDelivery& d);
  DeliveryOutcome Judge(const DueDelivery& d, const Attempt& a);

  Store& store_;
  const SecretBox& secrets_;
  Clock& clock_;
  const DeliveryOptions options_;

  absl::Mutex mu_;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<std::string> busy_ ABSL_GUARDED_BY(mu_);
  absl::BitGen rng_ ABSL_GUARDED_BY(mu_);
  absl::Time next_prune_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_DELIVERY_DELIVERY_WORKER_H_
