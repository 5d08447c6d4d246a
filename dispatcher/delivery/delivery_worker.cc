#include "dispatcher/delivery/delivery_worker.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "connector/http/signing.h"
#include "connector/status_macros.h"
#include "spdlog/spdlog.h"

namespace idsync {
namespace {

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

// Webhooks get the Standard Webhooks envelope; a callback gets the run's
// progress object itself.
std::string Body(const DueDelivery& d) {
  if (d.delivery.webhook_id == 0) return d.data;
  return absl::StrCat("{\"type\":\"", d.delivery.event_type,
                      "\",\"timestamp\":\"", Rfc3339(d.event_time),
                      "\",\"data\":", d.data, "}");
}

}  // namespace

absl::StatusOr<HttpResponse> PostSigned(const SignedMessage& m,
                                        const DeliveryOptions& options,
                                        const SecretBox& secrets,
                                        Clock& clock) {
  absl::StatusOr<std::string> secret =
      m.sealed_secret.empty()
          ? absl::FailedPreconditionError("no signing secret")
          : secrets.Open(m.sealed_secret, m.secret_context);
  absl::StatusOr<std::string> key =
      secret.ok() ? SigningKey(*secret) : secret.status();
  if (!key.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot sign: ", key.status().message()));
  }
  HttpClientOptions http;
  http.timeout = options.timeout;
  http.connect_timeout = std::min(options.timeout, absl::Seconds(10));
  http.max_attempts = 1;  // Delivery retries on its own schedule.
  http.max_response_bytes = 64 << 10;
  http.address_policy = options.allow_private ? AddressPolicy::Any()
                                              : AddressPolicy::PublicOnly();
  http.ca_file = options.ca_file;
  http.clock = &clock;
  IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> client,
                          HttpClient::Create(std::move(http)));
  HttpRequest req;
  req.method = "POST";
  req.url = m.url;
  req.body = m.body;
  const std::string ts = absl::StrCat(absl::ToUnixSeconds(clock.Now()));
  const std::string mac =
      HmacSha256(*key, absl::StrCat(m.msg_id, ".", ts, ".", m.body));
  req.headers = {
      {"webhook-id", m.msg_id},
      {"webhook-timestamp", ts},
      {"webhook-signature", absl::StrCat("v1,", absl::Base64Escape(mac))},
      {"Content-Type", "application/json"}};
  return client->SendOnce(req);
}

DeliveryWorker::DeliveryWorker(Store& store, const SecretBox& secrets,
                               Clock& clock, DeliveryOptions options)
    : store_(store),
      secrets_(secrets),
      clock_(clock),
      options_(std::move(options)) {}

DeliveryWorker::~DeliveryWorker() { Stop(); }

void DeliveryWorker::Start() {
  absl::MutexLock lock(&mu_);
  if (running_) return;
  running_ = true;
  for (int i = 0; i < std::max(1, options_.threads); ++i) {
    threads_.emplace_back([this] { Loop(); });
  }
}

void DeliveryWorker::Stop() {
  {
    absl::MutexLock lock(&mu_);
    running_ = false;
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

absl::StatusOr<std::optional<DueDelivery>> DeliveryWorker::Claim() {
  // The query runs under mu_: a list read before another thread recorded
  // and released a delivery could otherwise hand it out a second time.
  absl::MutexLock lock(&mu_);
  IDSYNC_ASSIGN_OR_RETURN(
      std::vector<DueDelivery> due,
      store_.DueDeliveries(clock_.Now(), options_.threads * 4));
  for (DueDelivery& d : due) {
    if (busy_.insert(d.endpoint).second) return std::move(d);
  }
  return std::nullopt;
}

void DeliveryWorker::Release(const std::string& endpoint) {
  absl::MutexLock lock(&mu_);
  busy_.erase(endpoint);
}

void DeliveryWorker::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (!running_) return;
      if (clock_.Now() >= next_prune_) {
        next_prune_ = clock_.Now() + absl::Hours(1);
        absl::Status pruned =
            store_.PruneDeliveries(clock_.Now() - options_.retention);
        if (!pruned.ok())
          spdlog::warn("delivery: prune: {}", std::string(pruned.message()));
      }
    }
    absl::StatusOr<std::optional<DueDelivery>> claimed = Claim();
    if (!claimed.ok()) {
      spdlog::warn("delivery: {}", std::string(claimed.status().message()));
    }
    if (!claimed.ok() || !claimed->has_value()) {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(
          absl::Condition(
              +[](bool* running) { return !*running; }, &running_),
          options_.poll);
      continue;
    }
    const DueDelivery& d = **claimed;
    absl::Status s = Deliver(d);
    if (!s.ok())
      spdlog::warn("delivery {}: {}", d.delivery.id, std::string(s.message()));
    Release(d.endpoint);
  }
}

absl::StatusOr<int> DeliveryWorker::RunOnce() {
  int attempted = 0;
  IDSYNC_ASSIGN_OR_RETURN(std::vector<DueDelivery> due,
                          store_.DueDeliveries(clock_.Now(), 1000));
  for (const DueDelivery& d : due) {
    IDSYNC_RETURN_IF_ERROR(Deliver(d));
    ++attempted;
  }
  return attempted;
}

absl::Status DeliveryWorker::Deliver(const DueDelivery& d) {
  return store_.RecordDelivery(Judge(d, Send(d)));
}

DeliveryWorker::Attempt DeliveryWorker::Send(const DueDelivery& d) {
  Attempt a;
  absl::StatusOr<HttpResponse> r =
      PostSigned({d.delivery.url, absl::StrCat("msg_", d.delivery.event_id),
                  Body(d), d.sealed_secret, d.secret_context},
                 options_, secrets_, clock_);
  if (!r.ok()) {
    a.error = std::string(r.status().message());
    return a;
  }
  a.status = r->status;
  if (r->status == 429 || r->status == 503) {
    if (std::optional<std::string> ra = r->Header("retry-after")) {
      a.retry_after = ParseRetryAfter(*ra, clock_.Now());
    }
  }
  if (r->status >= 300 && r->status < 400) {
    a.error = "redirects are not followed";
  } else if (r->status >= 300) {
    a.error = absl::StrCat("HTTP ", r->status);
  }
  return a;
}

DeliveryOutcome DeliveryWorker::Judge(const DueDelivery& d, const Attempt& a) {
  DeliveryOutcome o;
  o.id = d.delivery.id;
  o.attempts = d.delivery.attempts + 1;
  o.last_status = a.status;
  o.last_error = a.error.substr(0, 500);
  const absl::Time now = clock_.Now();
  o.next_attempt_at = now;
  if (a.status >= 200 && a.status < 300) {
    o.state = "delivered";
    return o;
  }
  if (a.status == 410 && d.delivery.webhook_id > 0) {
    o.state = "dead";
    o.disable_webhook = "the endpoint answered 410 Gone";
    return o;
  }
  if (o.attempts >= kMaxDeliveryAttempts) {
    o.state = "dead";
    return o;
  }
  o.state = "pending";
  const size_t step =
      std::min<size_t>(o.attempts - 1, options_.schedule.size() - 1);
  double jitter;
  {
    absl::MutexLock lock(&mu_);
    jitter = absl::Uniform(rng_, 0.8, 1.2);
  }
  absl::Duration wait = options_.schedule[step] * jitter;
  if (a.retry_after.has_value()) {
    wait = std::min(*a.retry_after, options_.max_retry_after);
  }
  o.next_attempt_at = now + wait;
  return o;
}

}  // namespace idsync
