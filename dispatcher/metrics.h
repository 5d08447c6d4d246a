// Metrics: the dispatcher's counters in the Prometheus text format: HTTP
// requests by method and status, failed authentications, sync runs by
// status, records processed, run durations (a histogram). For the
// operator: no tenant labels unless asked for. Thread-safe.
#ifndef IDSYNC_DISPATCHER_METRICS_H_
#define IDSYNC_DISPATCHER_METRICS_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dispatcher/store/store.h"

namespace idsync {

class Metrics {
 public:
  struct Options {
    // Runs and records by tenant id as well (the operator's choice: a
    // metrics reader then learns each tenant's volumes).
    bool tenant_labels = false;
  };
  Metrics() : Metrics(Options{}) {}
  explicit Metrics(Options options) : options_(options) {}

  // A request answered; methods other than the standard ones count as
  // "other".
  void CountRequest(absl::string_view method, int status);
  // A refused credential, by reason ("missing", "unknown", ...).
  void CountAuthFailure(absl::string_view reason);
  // Appends more exposition text to each Render (e.g. the HTTP server's
  // gauges); called on the rendering thread. Add before serving.
  using Collector = std::function<void(std::string* out)>;
  void AddCollector(Collector collector);
  // A run that ended.
  void CountRun(const RunRow& run);
  // Prometheus text exposition format, version 0.0.4.
  std::string Render() const;

 private:
  static constexpr std::array<double, 8> kBuckets = {1,   5,   15,   60,
                                                     300, 900, 3600, 14400};
  const Options options_;
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> auth_failures_ ABSL_GUARDED_BY(mu_);
  // Keyed by label text: `status="x"` or `tenant_id="1",status="x"`.
  std::map<std::string, int64_t> runs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> records_ ABSL_GUARDED_BY(mu_);
  std::vector<Collector> collectors_ ABSL_GUARDED_BY(mu_);
  std::array<int64_t, kBuckets.size()> duration_buckets_ ABSL_GUARDED_BY(mu_){};
  int64_t duration_count_ ABSL_GUARDED_BY(mu_) = 0;
  double duration_sum_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_METRICS_H_
