// Running real binaries from tests: run to completion capturing output, or
// start in the background to signal (e.g. SIGKILL) and reap.
#ifndef IDSYNC_TESTS_TESTING_SUBPROCESS_H_
#define IDSYNC_TESTS_TESTING_SUBPROCESS_H_

#include <sys/types.h>

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace idsync::testing {

struct ProcessResult {
  int exit_code = -1;  // 128 + signal when killed by a signal.
  std::string out;
  std::string err;
};

// A loopback TCP port that was free a moment ago (for servers the test
// starts; another process may take it first, rarely).
absl::StatusOr<int> FreeLoopbackPort();

// Runs argv[0] with the arguments and waits for it.
absl::StatusOr<ProcessResult> RunProcess(const std::vector<std::string>& argv);

class ChildProcess {
 public:
  // Starts argv in the background, stdout/stderr into files under `dir`.
  static absl::StatusOr<ChildProcess> Start(
      const std::vector<std::string>& argv, const std::string& dir);
  pid_t pid() const { return pid_; }
  // True if the process has exited (reaps it).
  bool Exited();
  void Kill(int signal);
  // Waits for the exit and returns the result.
  ProcessResult Wait();

 private:
  pid_t pid_ = -1;
  std::string out_path_, err_path_;
  bool reaped_ = false;
  int status_ = 0;
};

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_TESTING_SUBPROCESS_H_
