#include "agents/token_file.h"

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

int Mode(const std::string& path) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0) return -1;
  return st.st_mode & 07777;
}

class TokenFileTest : public ::testing::Test {
 protected:
  testing::ScopedTestDir dir_{"token_file"};
};

TEST_F(TokenFileTest, WritesMode0600AndReadsBack) {
  const mode_t old = umask(0);  // Even a permissive umask gives 0600.
  const std::string path = dir_.File("sub/dir/agent.token");
  ASSERT_TRUE(WriteTokenFile(path, "idsync_agt_abc", false).ok());
  umask(old);
  EXPECT_EQ(Mode(path), 0600);
  EXPECT_EQ(Mode(dir_.File("sub")), 0700);
  EXPECT_EQ(Mode(dir_.File("sub/dir")), 0700);
  auto token = ReadTokenFile(path);
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(*token, "idsync_agt_abc");
  // No temporary file is left behind.
  int files = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(dir_.File("sub/dir")))
    ++files, (void)e;
  EXPECT_EQ(files, 1);
}

TEST_F(TokenFileTest, RefusesToOverwriteUnlessAsked) {
  const std::string path = dir_.File("agent.token");
  ASSERT_TRUE(WriteTokenFile(path, "first", false).ok());
  absl::Status s = WriteTokenFile(path, "second", false);
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(*ReadTokenFile(path), "first");
  EXPECT_EQ(PrepareTokenFile(path, false).code(),
            absl::StatusCode::kAlreadyExists);
  ASSERT_TRUE(PrepareTokenFile(path, true).ok());
  ASSERT_TRUE(WriteTokenFile(path, "second", true).ok());
  EXPECT_EQ(*ReadTokenFile(path), "second");
  EXPECT_EQ(Mode(path), 0600);
}

TEST_F(TokenFileTest, PrepareCreatesTheDirectory) {
  const std::string path = dir_.File("a/b/agent.token");
  ASSERT_TRUE(PrepareTokenFile(path, false).ok());
  EXPECT_EQ(Mode(dir_.File("a/b")), 0700);
  EXPECT_FALSE(std::filesystem::exists(path));
}

TEST_F(TokenFileTest, ReadRefusesAFileOthersCanRead) {
  const std::string path = dir_.File("agent.token");
  ASSERT_TRUE(WriteTokenFile(path, "idsync_agt_secret", false).ok());
  chmod(path.c_str(), 0644);
  auto token = ReadTokenFile(path);
  EXPECT_EQ(token.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(token.status().message(), HasSubstr("0644"));
  EXPECT_THAT(token.status().message(), HasSubstr("chmod 600"));
  EXPECT_THAT(token.status().message(), Not(HasSubstr("idsync_agt_secret")));
  chmod(path.c_str(), 0400);
  EXPECT_TRUE(ReadTokenFile(path).ok());
}

TEST_F(TokenFileTest, ReadRefusesSymlinksEmptyAndMissing) {
  const std::string real = dir_.File("real");
  ASSERT_TRUE(WriteTokenFile(real, "t", false).ok());
  const std::string link = dir_.File("link");
  ASSERT_EQ(symlink(real.c_str(), link.c_str()), 0);
  EXPECT_EQ(ReadTokenFile(link).status().code(),
            absl::StatusCode::kPermissionDenied);

  const std::string empty = dir_.File("empty");
  { std::ofstream out(empty); }
  chmod(empty.c_str(), 0600);
  EXPECT_EQ(ReadTokenFile(empty).status().code(),
            absl::StatusCode::kInvalidArgument);

  EXPECT_EQ(ReadTokenFile(dir_.File("none")).status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(TokenFileTest, TokenTextIsChecked) {
  EXPECT_TRUE(IsValidTokenText("idsync_agt_AZaz09-_."));
  EXPECT_FALSE(IsValidTokenText(""));
  EXPECT_FALSE(IsValidTokenText("a b"));
  EXPECT_FALSE(IsValidTokenText("a\nb"));
  EXPECT_FALSE(WriteTokenFile(dir_.File("x"), "bad\ntoken", false).ok());
  EXPECT_FALSE(std::filesystem::exists(dir_.File("x")));
}

TEST_F(TokenFileTest, DefaultPathUsesTheEnvironment) {
  setenv("IDSYNC_AGENT_TOKEN_FILE", "/x/agent.token", 1);
  EXPECT_EQ(*DefaultTokenFile(), "/x/agent.token");
  unsetenv("IDSYNC_AGENT_TOKEN_FILE");
}

}  // namespace
}  // namespace idsync
