// Metrics: the dispatcher's counters in the Prometheus text format: HTTP
// requests by method and status, sync runs by status, records processed, run
// durations (a histogram). Thread-safe.
#ifndef IDSYNC_DISPATCHER_METRICS_H_
#define IDSYNC_DISPATCHER_METRICS_H_

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "dispatcher/store/store.h"

namespace idsync {

class Metrics {
 public:
  void CountRequest(absl::string_view method, int status);
  // A run that ended.
  void CountRun(const RunRow& run);
  // Prometheus text exposition format, version 0.0.4.
  std::string Render() const;

 private:
  static constexpr std::array<double, 8> kBuckets = {1,   5,   15,   60,
                                                     300, 900, 3600, 14400};
  mutable absl::Mutex mu_;
  std::map<std::pair<std::string, int>, int64_t> requests_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> runs_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, int64_t> records_ ABSL_GUARDED_BY(mu_);
  std::array<int64_t, kBuckets.size()> duration_buckets_ ABSL_GUARDED_BY(mu_){};
  int64_t duration_count_ ABSL_GUARDED_BY(mu_) = 0;
  double duration_sum_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_METRICS_H_
