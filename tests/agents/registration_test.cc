#include "agents/registration.h"

#include <sys/stat.h>

#include <filesystem>

#include "agents/token_file.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "tests/agents/fake_spine.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class RegistrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spine_ = testing::FakeSpine::Start();
    ASSERT_NE(spine_, nullptr);
    spine_->set_registration("idsync_reg_once", 42, "idsync_agt_NEWTOKEN",
                             "edge-1");
  }

  RegisterOptions Options() {
    RegisterOptions o;
    o.dispatcher = spine_->address();
    o.tls.insecure = true;
    o.registration_token = "idsync_reg_once";
    o.token_file = dir_.File("conf/agent.token");
    o.state_dir = dir_.File("conf");
    o.timeout = absl::Seconds(10);
    return o;
  }

  testing::ScopedTestDir dir_{"registration"};
  std::unique_ptr<testing::FakeSpine> spine_;
};

TEST_F(RegistrationTest, SavesTheAgentTokenWithMode0600) {
  RegisterOptions o = Options();
  o.name = "dc-west";
  auto info = RegisterAgent(o);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->agent_id, 42);
  EXPECT_EQ(info->name, "dc-west");
  EXPECT_EQ(spine_->last_register_name(), "dc-west");
  struct stat st;
  ASSERT_EQ(stat(o.token_file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600);
  EXPECT_EQ(*ReadTokenFile(o.token_file), "idsync_agt_NEWTOKEN");
  auto recorded = ReadRegistrationFile(o.state_dir);
  ASSERT_TRUE(recorded.ok()) << recorded.status();
  EXPECT_EQ(recorded->agent_id, 42);
  EXPECT_EQ(recorded->dispatcher, spine_->address());
}

TEST_F(RegistrationTest, RefusesToOverwriteBeforeSpendingTheToken) {
  ASSERT_TRUE(RegisterAgent(Options()).ok());
  EXPECT_EQ(spine_->register_calls(), 1);
  spine_->set_registration("idsync_reg_two", 43, "idsync_agt_OTHER", "x");
  RegisterOptions o = Options();
  o.registration_token = "idsync_reg_two";
  auto again = RegisterAgent(o);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(again.status().message(), HasSubstr("--force"));
  EXPECT_EQ(spine_->register_calls(), 1) << "the registration token was spent";
  EXPECT_EQ(*ReadTokenFile(o.token_file), "idsync_agt_NEWTOKEN");

  o.force = true;
  auto forced = RegisterAgent(o);
  ASSERT_TRUE(forced.ok()) << forced.status();
  EXPECT_EQ(forced->agent_id, 43);
  EXPECT_EQ(*ReadTokenFile(o.token_file), "idsync_agt_OTHER");
}

TEST_F(RegistrationTest, RefusedRegistrationWritesNothing) {
  RegisterOptions o = Options();
  o.registration_token = "idsync_reg_wrong";
  auto info = RegisterAgent(o);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(info.status().message(), Not(HasSubstr("idsync_reg_wrong")));
  EXPECT_FALSE(std::filesystem::exists(o.token_file));
}

TEST_F(RegistrationTest, PlaintextToARemoteDispatcherIsRefused) {
  RegisterOptions o = Options();
  o.dispatcher = "idsync.example.com:50051";
  auto info = RegisterAgent(o);
  EXPECT_EQ(info.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(spine_->register_calls(), 0);
}

}  // namespace
}  // namespace idsync
