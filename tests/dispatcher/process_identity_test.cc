#include "dispatcher/process_identity.h"

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

// Splits "pid:start" into its parts, failing the test if it is not that.
void Parse(const std::string& identity, int64_t* pid, uint64_t* start) {
  std::vector<std::string> parts = absl::StrSplit(identity, ':');
  ASSERT_EQ(parts.size(), 2u) << identity;
  ASSERT_TRUE(absl::SimpleAtoi(parts[0], pid)) << identity;
  ASSERT_TRUE(absl::SimpleAtoi(parts[1], start)) << identity;
}

// A forked child that reports its identity and exits when told to.
class Child {
 public:
  Child() {
    int to_child[2], from_child[2];
    if (pipe(to_child) != 0 || pipe(from_child) != 0) return;
    pid_ = fork();
    if (pid_ == 0) {
      // Child: only async-signal-safe calls after reporting.
      close(to_child[1]);
      close(from_child[0]);
      const std::string id = CurrentProcessIdentity();
      if (write(from_child[1], id.data(), id.size()) < 0) _exit(2);
      close(from_child[1]);
      char byte;
      (void)!read(to_child[0], &byte, 1);  // Returns at EOF: parent said go.
      _exit(0);
    }
    close(to_child[0]);
    close(from_child[1]);
    release_fd_ = to_child[1];
    char buf[128];
    ssize_t n;
    while ((n = read(from_child[0], buf, sizeof buf)) > 0) {
      identity_.append(buf, static_cast<size_t>(n));
    }
    close(from_child[0]);
  }
  ~Child() { ExitAndReap(); }

  pid_t pid() const { return pid_; }
  const std::string& identity() const { return identity_; }

  // Lets the child exit and waits for it, so its pid is gone.
  void ExitAndReap() {
    if (release_fd_ >= 0) {
      close(release_fd_);
      release_fd_ = -1;
    }
    if (pid_ > 0) {
      int status = 0;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
  int release_fd_ = -1;
  std::string identity_;
};

TEST(ProcessIdentityTest, CurrentProcessIsPidColonStartTime) {
  const std::string identity = CurrentProcessIdentity();
  int64_t pid = 0;
  uint64_t start = 0;
  Parse(identity, &pid, &start);
  EXPECT_EQ(pid, getpid());
  EXPECT_GT(start, 0u);
  EXPECT_EQ(CurrentProcessIdentity(), identity);  // Stable.
}

TEST(ProcessIdentityTest, CurrentProcessIsAlive) {
  EXPECT_TRUE(IsProcessAlive(CurrentProcessIdentity()));
}

TEST(ProcessIdentityTest, RunningChildIsAliveAndReapedChildIsNot) {
  Child child;
  ASSERT_GT(child.pid(), 0);
  const std::string identity = child.identity();
  int64_t pid = 0;
  uint64_t start = 0;
  Parse(identity, &pid, &start);
  EXPECT_EQ(pid, child.pid());
  EXPECT_NE(identity, CurrentProcessIdentity());
  EXPECT_TRUE(IsProcessAlive(identity));

  child.ExitAndReap();
  EXPECT_FALSE(IsProcessAlive(identity));
}

TEST(ProcessIdentityTest, WrongStartTimeForOurPidIsNotAlive) {
  int64_t pid = 0;
  uint64_t start = 0;
  Parse(CurrentProcessIdentity(), &pid, &start);
  // Our pid reused by a process that started at another time.
  EXPECT_FALSE(IsProcessAlive(absl::StrCat(pid, ":", start + 1)));
  EXPECT_FALSE(IsProcessAlive(absl::StrCat(pid, ":", start - 1)));
  EXPECT_FALSE(IsProcessAlive(absl::StrCat(pid, ":0")));
  EXPECT_FALSE(IsProcessAlive(absl::StrCat(pid, ":", start, "0")));
}

TEST(ProcessIdentityTest, ASuffixNamingOneExecutionKeepsItAlive) {
  EXPECT_TRUE(IsProcessAlive(absl::StrCat(CurrentProcessIdentity(), ":7")));
  EXPECT_TRUE(IsProcessAlive(absl::StrCat(CurrentProcessIdentity(), ":")));
}

TEST(ProcessIdentityTest, MalformedIdentitiesAreNotAlive) {
  int64_t pid = 0;
  uint64_t start = 0;
  Parse(CurrentProcessIdentity(), &pid, &start);
  const std::string kMalformed[] = {
      "",
      ":",
      "abc",
      absl::StrCat(pid),         // No start time.
      absl::StrCat(pid, ":"),    // Empty start time.
      absl::StrCat(":", start),  // No pid.
      absl::StrCat("x", pid, ":", start),
      absl::StrCat(pid, "x:", start),
      absl::StrCat("0:", start),
      absl::StrCat("-", pid, ":", start),
      absl::StrCat("99999999999999999999:", start),  // Overflows int64.
      absl::StrCat("self:", start),  // /proc/self must not be reachable.
      absl::StrCat("../", pid, ":", start),
  };
  for (const std::string& identity : kMalformed) {
    EXPECT_FALSE(IsProcessAlive(identity)) << "'" << identity << "'";
  }
}

TEST(ProcessIdentityTest, NonexistentPidIsNotAlive) {
  // Above the kernel's pid_max limit (4194304 at most on Linux).
  EXPECT_FALSE(IsProcessAlive("4194305:12345"));
  EXPECT_FALSE(IsProcessAlive("2147483647:12345"));
}

}  // namespace
}  // namespace idsync
