// ScopedTestDir: a fresh, empty directory for the running test, named after
// the test and the process, removed when the object goes away.
#ifndef IDSYNC_TESTS_TESTING_TEST_DIR_H_
#define IDSYNC_TESTS_TESTING_TEST_DIR_H_

#include <unistd.h>

#include <filesystem>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace idsync::testing {

class ScopedTestDir {
 public:
  explicit ScopedTestDir(absl::string_view prefix) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::path(::testing::TempDir()) /
            absl::StrCat(prefix, "_", info != nullptr ? info->name() : "suite",
                         "_", getpid());
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~ScopedTestDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  ScopedTestDir(const ScopedTestDir&) = delete;
  ScopedTestDir& operator=(const ScopedTestDir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string File(absl::string_view name) const {
    return (path_ / std::string(name)).string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_TESTING_TEST_DIR_H_
