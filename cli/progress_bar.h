// ProgressBar: a one-line live view of a running sync for a terminal:
// percentage and bar when the source size is known, records, records/s,
// chunks and ETA. Redraws at most every 100 ms. Not thread-safe.
#ifndef IDSYNC_CLI_PROGRESS_BAR_H_
#define IDSYNC_CLI_PROGRESS_BAR_H_

#include <cstdio>
#include <string>

#include "absl/time/time.h"
#include "dispatcher/store/store.h"

namespace idsync {

// The line to show for `run` after `elapsed`. Exposed for tests.
std::string FormatProgress(const RunRow& run, absl::Duration elapsed,
                           int width);

class ProgressBar {
 public:
  // "*out" must outlive the bar. `start` is when the run began.
  ProgressBar(std::FILE* out, absl::Time start) : out_(out), start_(start) {}
  void Update(const RunRow& run, absl::Time now);
  // Clears the line so the summary starts on a clean one.
  void Finish();

 private:
  std::FILE* const out_;
  const absl::Time start_;
  absl::Time last_draw_ = absl::InfinitePast();
  bool drawn_ = false;
};

}  // namespace idsync

#endif  // IDSYNC_CLI_PROGRESS_BAR_H_
