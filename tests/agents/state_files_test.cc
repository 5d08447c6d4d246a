#include "agents/state_files.h"

#include <unistd.h>

#include "agents/token_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;

TEST(StateFilesTest, StatusRoundTrips) {
  testing::ScopedTestDir dir("state_files");
  AgentStatus s;
  s.pid = 1234;
  s.dispatcher = "d:1";
  s.connected = true;
  s.since = absl::FromUnixSeconds(1700000000);
  s.agent_id = 9;
  s.name = "edge";
  s.last_error = "UNAVAILABLE: x";
  RunStatus run;
  run.run_id = 5;
  run.assignment = 2;
  run.connector = "hr";
  run.type = "csv";
  run.chunks_sent = 7;
  run.chunks_acked = 6;
  s.runs.push_back(run);
  ASSERT_TRUE(WriteStatusFile(dir.File("state"), s).ok());
  auto back = ReadStatusFile(dir.File("state"));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->pid, 1234);
  EXPECT_TRUE(back->connected);
  EXPECT_EQ(back->since, s.since);
  EXPECT_EQ(back->agent_id, 9);
  EXPECT_EQ(back->last_error, "UNAVAILABLE: x");
  ASSERT_EQ(back->runs.size(), 1u);
  EXPECT_EQ(back->runs[0].chunks_sent, 7);
  EXPECT_EQ(back->runs[0].connector, "hr");
}

TEST(StateFilesTest, ReportNeedsATokenAndALiveConnectedAgent) {
  testing::ScopedTestDir dir("state_files");
  const std::string token = dir.File("agent.token");
  const std::string state = dir.path().string();
  StatusReport r = CheckAgentStatus(token, state);
  EXPECT_FALSE(r.registered);
  EXPECT_FALSE(r.connected);

  ASSERT_TRUE(WriteTokenFile(token, "t", false).ok());
  AgentStatus s;
  s.pid = getpid();
  s.dispatcher = "d:1";
  s.connected = true;
  ASSERT_TRUE(WriteStatusFile(state, s).ok());
  r = CheckAgentStatus(token, state);
  EXPECT_TRUE(r.registered);
  EXPECT_TRUE(r.connected);
  EXPECT_THAT(FormatStatusText(r), HasSubstr("connected:  yes"));

  s.running = false;
  ASSERT_TRUE(WriteStatusFile(state, s).ok());
  r = CheckAgentStatus(token, state);
  EXPECT_FALSE(r.connected);
  EXPECT_THAT(r.connected_detail, HasSubstr("stopped"));
}

}  // namespace
}  // namespace idsync
