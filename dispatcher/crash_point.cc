#include "dispatcher/crash_point.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace idsync {
namespace {

// The point to crash at, from IDSYNC_CRASH_AT; constant once parsed.
struct Target {
  std::string name;
  int64_t n = 0;
  std::atomic<int64_t> hits{0};
};

void Say(const std::string& line) {
  // Unbuffered: the process dies right after.
  ssize_t ignored = write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

// nullptr when the variable is unset or malformed.
Target* ParseTarget() {
  const char* spec = std::getenv("IDSYNC_CRASH_AT");
  if (spec == nullptr || *spec == '\0') return nullptr;
  const absl::string_view s(spec);
  const size_t colon = s.rfind(':');
  int64_t n = 0;
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(s.substr(colon + 1), &n) || n < 1) {
    Say(absl::StrCat("IDSYNC_CRASH_AT='", s,
                     "' ignored: expected NAME:N with N >= 1\n"));
    return nullptr;
  }
  auto* target = new Target;  // Lives as long as the process.
  target->name = std::string(s.substr(0, colon));
  target->n = n;
  return target;
}

}  // namespace

void CrashPoint(absl::string_view name) {
  static Target* const target = ParseTarget();  // Thread-safe, once.
  if (target == nullptr || name != target->name) return;
  if (target->hits.fetch_add(1) + 1 != target->n) return;
  Say(absl::StrCat("crash point ", name, ":", target->n,
                   " reached: SIGKILL\n"));
  kill(getpid(), SIGKILL);
}

}  // namespace idsync
