#include "dispatcher/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace idsync {

void Metrics::CountRequest(absl::string_view method, int status) {
  absl::MutexLock lock(&mu_);
  ++requests_[{std::string(method), status}];
}

void Metrics::CountRun(const RunRow& run) {
  absl::MutexLock lock(&mu_);
  ++runs_[std::string(RunStatusName(run.status))];
  for (auto [name, n] :
       {std::pair<const char*, int64_t>{"created", run.created},
        {"updated", run.updated},
        {"unchanged", run.unchanged},
        {"deleted", run.deleted},
        {"rejected", run.rejected}}) {
    records_[name] += n;
  }
  const double seconds = absl::ToDoubleSeconds(
      run.finished_at.value_or(run.updated_at) - run.started_at);
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    if (seconds <= kBuckets[i]) ++duration_buckets_[i];
  }
  ++duration_count_;
  duration_sum_ += seconds;
}

std::string Metrics::Render() const {
  absl::MutexLock lock(&mu_);
  std::string out;
  absl::StrAppend(&out,
                  "# HELP idsync_http_requests_total HTTP requests served.\n"
                  "# TYPE idsync_http_requests_total counter\n");
  for (const auto& [key, n] : requests_) {
    absl::StrAppend(&out, "idsync_http_requests_total{method=\"", key.first,
                    "\",code=\"", key.second, "\"} ", n, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP idsync_sync_runs_total Sync runs that ended.\n"
                  "# TYPE idsync_sync_runs_total counter\n");
  for (const auto& [status, n] : runs_) {
    absl::StrAppend(&out, "idsync_sync_runs_total{status=\"", status, "\"} ", n,
                    "\n");
  }
  absl::StrAppend(&out,
                  "# HELP idsync_sync_records_total Records applied by ended "
                  "runs, by outcome.\n"
                  "# TYPE idsync_sync_records_total counter\n");
  for (const auto& [outcome, n] : records_) {
    absl::StrAppend(&out, "idsync_sync_records_total{outcome=\"", outcome,
                    "\"} ", n, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP idsync_sync_run_duration_seconds Duration of ended "
                  "runs.\n"
                  "# TYPE idsync_sync_run_duration_seconds histogram\n");
  for (size_t i = 0; i < kBuckets.size(); ++i) {
    absl::StrAppend(&out, "idsync_sync_run_duration_seconds_bucket{le=\"",
                    kBuckets[i], "\"} ", duration_buckets_[i], "\n");
  }
  absl::StrAppend(
      &out, "idsync_sync_run_duration_seconds_bucket{le=\"+Inf\"} ",
      duration_count_, "\n", "idsync_sync_run_duration_seconds_sum ",
      absl::StrFormat("%.3f", duration_sum_), "\n",
      "idsync_sync_run_duration_seconds_count ", duration_count_, "\n");
  return out;
}

}  // namespace idsync
