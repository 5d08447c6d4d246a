#include "dispatcher/delivery/progress_callbacks.h"

#include <algorithm>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "connector/http/http_client.h"
#include "dispatcher/store/outbox.h"
#include "spdlog/spdlog.h"

namespace idsync {

ProgressCallbacks::ProgressCallbacks(Store& store, const SecretBox& secrets,
                                     Clock& clock,
                                     const DeliveryOptions& options)
    : store_(store), secrets_(secrets), clock_(clock), options_(options) {
  sender_ = std::thread([this] { Loop(); });
}

ProgressCallbacks::~ProgressCallbacks() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  sender_.join();
}

void ProgressCallbacks::Update(const RunRow& run, bool done) {
  if (run.callback_url.empty()) return;
  absl::MutexLock lock(&mu_);
  if (done || run.status != RunStatus::kRunning) {
    pending_.erase(run.id);  // The outbox carries the final state.
    return;
  }
  pending_[run.id] = run;
}

int64_t ProgressCallbacks::sent() const {
  absl::MutexLock lock(&mu_);
  return sent_;
}

void ProgressCallbacks::Loop() {
  while (true) {
    RunRow run;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !pending_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      auto oldest = std::min_element(
          pending_.begin(), pending_.end(), [](const auto& a, const auto& b) {
            return a.second.updated_at < b.second.updated_at;
          });
      run = std::move(oldest->second);
      pending_.erase(oldest);
    }
    Send(run);
    absl::MutexLock lock(&mu_);
    ++sent_;
  }
}

void ProgressCallbacks::Send(const RunRow& run) {
  absl::StatusOr<std::string> sealed = store_.CallbackSecret(run.tenant_id);
  absl::StatusOr<std::string> secret =
      !sealed.ok() ? sealed.status()
      : sealed->empty()
          ? absl::FailedPreconditionError("no callback secret")
          : secrets_.Open(*sealed, absl::StrCat("callback:", run.tenant_id));
  absl::StatusOr<std::string> key =
      secret.ok() ? SigningKey(*secret) : secret.status();
  if (!key.ok()) {
    spdlog::warn("progress callback of run {}: cannot sign: {}", run.id,
                 std::string(key.status().message()));
    return;
  }
  HttpClientOptions http;
  http.timeout = options_.timeout;
  http.connect_timeout = std::min(options_.timeout, absl::Seconds(10));
  http.max_attempts = 1;
  http.max_response_bytes = 64 << 10;
  http.allow_private_addresses = options_.allow_private;
  http.ca_file = options_.ca_file;
  http.clock = &clock_;
  absl::StatusOr<std::unique_ptr<HttpClient>> client =
      HttpClient::Create(std::move(http));
  if (!client.ok()) return;
  HttpRequest req;
  req.method = "POST";
  req.url = run.callback_url;
  req.body = RunProgressJson(run);
  req.headers = SignatureHeaders(
      *key, absl::StrCat("run_", run.id, "_chunk_", run.chunks), clock_.Now(),
      req.body);
  req.headers.emplace_back("Content-Type", "application/json");
  absl::StatusOr<HttpResponse> r = (*client)->SendOnce(req);
  if (!r.ok()) {
    spdlog::info("progress callback of run {}: {}", run.id,
                 std::string(r.status().message()));
  }
}

}  // namespace idsync
