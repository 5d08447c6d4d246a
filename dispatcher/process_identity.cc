#include "dispatcher/process_identity.h"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace idsync {
namespace {

// Field 22 of /proc/PID/stat: start time in clock ticks since boot. The
// command name (field 2) may hold spaces, so parse after its closing ')'.
std::string StartTime(int64_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::stringstream buf;
  buf << in.rdbuf();
  const std::string stat = buf.str();
  const size_t paren = stat.rfind(')');
  if (paren == std::string::npos) return "";
  std::vector<absl::string_view> fields =
      absl::StrSplit(absl::string_view(stat).substr(paren + 2), ' ');
  // After ')' the fields start at 3 (state); starttime is field 22. A zombie
  // (state Z) has exited: it only waits to be reaped.
  if (fields.size() <= 19 || fields[0] == "Z") return "";
  return std::string(fields[19]);
}

}  // namespace

std::string CurrentProcessIdentity() {
  const int64_t pid = getpid();
  return absl::StrCat(pid, ":", StartTime(pid));
}

bool IsProcessAlive(absl::string_view identity) {
  // "pid:start", optionally followed by ":anything" naming one execution.
  std::vector<absl::string_view> parts = absl::StrSplit(identity, ':');
  int64_t pid = 0;
  if (parts.size() < 2 || !absl::SimpleAtoi(parts[0], &pid) || pid <= 0) {
    return false;
  }
  const std::string start = StartTime(pid);
  return !start.empty() && start == parts[1];
}

}  // namespace idsync
