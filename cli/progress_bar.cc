#include "cli/progress_bar.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace idsync {

std::string FormatProgress(const RunRow& run, absl::Duration elapsed,
                           int width) {
  const double seconds = std::max(absl::ToDoubleSeconds(elapsed), 1e-3);
  const double rate = static_cast<double>(run.processed) / seconds;
  std::string line;
  if (run.source_total > 0) {
    const double fraction = std::clamp(
        static_cast<double>(run.source_done) / run.source_total, 0.0, 1.0);
    const int filled = static_cast<int>(fraction * width);
    absl::StrAppend(&line, "[", std::string(filled, '#'),
                    std::string(width - filled, '.'), "] ",
                    absl::StrFormat("%3.0f%% ", 100 * fraction));
    if (fraction > 0 && fraction < 1) {
      const double eta = seconds * (1 - fraction) / fraction;
      absl::StrAppend(&line, absl::StrFormat("ETA %.0fs  ", eta));
    }
  }
  absl::StrAppend(&line, absl::StrFormat("%d records  %.0f rec/s  %d chunks",
                                         run.processed, rate, run.chunks));
  if (run.rejected > 0) absl::StrAppend(&line, "  ", run.rejected, " rejected");
  return line;
}

void ProgressBar::Update(const RunRow& run, absl::Time now) {
  if (now - last_draw_ < absl::Milliseconds(100)) return;
  last_draw_ = now;
  std::fprintf(out_, "\r\033[K%s",
               FormatProgress(run, now - start_, 30).c_str());
  std::fflush(out_);
  drawn_ = true;
}

void ProgressBar::Finish() {
  if (drawn_) std::fprintf(out_, "\r\033[K");
  std::fflush(out_);
}

}  // namespace idsync
