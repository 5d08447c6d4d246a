#include "dispatcher/metrics.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace idsync {

void Metrics::CountRequest(absl::string_view method, int status) {
  // Any token is a method to the HTTP parser: a label per made-up one would
  // let anyone, without a token, grow this map (and /metrics) at will.
  static constexpr absl::string_view kMethods[] = {
      "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"};
  absl::string_view label = "other";
  for (absl::string_view known : kMethods) {
    if (method == known) label = known;
  }
  // Statuses come from the server, but bound them the same way.
  if (status < 100 || status > 599) status = 0;
  absl::MutexLock lock(&mu_);
  ++requests_[{std::string(label), status}];
}

void Metrics::CountAuthFailure(absl::string_view reason) {
  absl::MutexLock lock(&mu_);
  ++auth_failures_[std::string(reason)];
}

void Metrics::AddCollector(Collector collector) {
  absl::MutexLock lock(&mu_);
  collectors_.push_back(std::move(collector));
}

void Metrics::CountRun(const RunRow& run) {
  absl::MutexLock lock(&mu_);
  const std::string tenant =
      options_.tenant_labels
          ? absl::StrCat("tenant_id=\"", run.tenant_id, "\",")
          : "";
  ++runs_[absl::StrCat(tenant, "status=\"", RunStatusName(run.status), "\"")];
  for (auto [name, n] :
       {std::pair<const char*, int64_t>{"created", run.created},
        {"updated", run.updated},
        {"unchanged", run.unchanged},
        {"deleted", run.deleted},
        {"rejected", run.rejected}}) {
    records_[absl::StrCat(tenant, "outcome=\"", name, "\"")] += n;
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
                  "# HELP idsync_auth_failures_total Refused credentials, by "
                  "reason.\n"
                  "# TYPE idsync_auth_failures_total counter\n");
  for (const auto& [reason, n] : auth_failures_) {
    absl::StrAppend(&out, "idsync_auth_failures_total{reason=\"", reason,
                    "\"} ", n, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP idsync_sync_runs_total Sync runs that ended.\n"
                  "# TYPE idsync_sync_runs_total counter\n");
  for (const auto& [labels, n] : runs_) {
    absl::StrAppend(&out, "idsync_sync_runs_total{", labels, "} ", n, "\n");
  }
  absl::StrAppend(&out,
                  "# HELP idsync_sync_records_total Records applied by ended "
                  "runs, by outcome.\n"
                  "# TYPE idsync_sync_records_total counter\n");
  for (const auto& [labels, n] : records_) {
    absl::StrAppend(&out, "idsync_sync_records_total{", labels, "} ", n, "\n");
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
  for (const Collector& collect : collectors_) collect(&out);
  return out;
}

}  // namespace idsync
