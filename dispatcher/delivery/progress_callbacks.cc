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
  absl::StatusOr<HttpResponse> r =
      !sealed.ok()
          ? sealed.status()
          : PostSigned({run.callback_url,
                        absl::StrCat("run_", run.id, "_chunk_", run.chunks),
                        RunProgressJson(run), *sealed,
                        absl::StrCat("callback:", run.tenant_id)},
                       options_, secrets_, clock_);
  if (!r.ok()) {
    spdlog::info("progress callback of run {}: {}", run.id,
                 std::string(r.status().message()));
  }
}

}  // namespace idsync
