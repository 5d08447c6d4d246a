// The idsync-agent binary: status, and the checks that need no dispatcher.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agents/state_files.h"
#include "agents/token_file.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agents/fake_spine.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class AgentCliTest : public ::testing::Test {
 protected:
  testing::ProcessResult Run(std::vector<std::string> args) {
    args.insert(args.begin(), IDSYNC_AGENT_BIN);
    auto result = testing::RunProcess(args);
    EXPECT_TRUE(result.ok()) << result.status();
    return result.ok() ? *result : testing::ProcessResult{};
  }
  std::vector<std::string> Paths() {
    return {"--token-file", token_, "--state-dir", state_};
  }
  testing::ProcessResult Status(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"status"};
    for (auto& a : Paths()) args.push_back(a);
    for (auto& a : extra) args.push_back(a);
    return Run(args);
  }

  testing::ScopedTestDir dir_{"agent_cli"};
  std::string token_ = dir_.File("conf/agent.token");
  std::string state_ = dir_.File("conf");
};

TEST_F(AgentCliTest, StatusSaysNotRegistered) {
  auto r = Status();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("registered: no"));
  EXPECT_THAT(r.out, HasSubstr("idsync-agent register"));
  EXPECT_THAT(r.out, HasSubstr("connected:  no"));
}

TEST_F(AgentCliTest, StatusSaysRegisteredAndConnected) {
  ASSERT_TRUE(WriteTokenFile(token_, "idsync_agt_SECRET", false).ok());
  RegistrationInfo info;
  info.agent_id = 12;
  info.name = "edge-1";
  info.dispatcher = "idsync.example.com:443";
  ASSERT_TRUE(WriteRegistrationFile(state_, info).ok());
  AgentStatus s;
  s.pid = getpid();  // Alive: this test.
  s.dispatcher = "idsync.example.com:443";
  s.connected = true;
  s.agent_id = 12;
  RunStatus run;
  run.run_id = 77;
  run.connector = "corp-ad";
  run.type = "ldap";
  s.runs.push_back(run);
  ASSERT_TRUE(WriteStatusFile(state_, s).ok());
  auto r = Status();
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("registered: yes"));
  EXPECT_THAT(r.out, HasSubstr("agent:      12 \"edge-1\""));
  EXPECT_THAT(r.out, HasSubstr("connected:  yes (to idsync.example.com:443"));
  EXPECT_THAT(r.out, HasSubstr("run 77 (corp-ad, ldap)"));
  EXPECT_THAT(r.out, Not(HasSubstr("idsync_agt_SECRET")));

  auto json = Status({"--json"});
  EXPECT_EQ(json.exit_code, 0);
  EXPECT_THAT(json.out, HasSubstr("\"registered\": true"));
  EXPECT_THAT(json.out, HasSubstr("\"connected\": true"));
  EXPECT_THAT(json.out, HasSubstr("\"runs_in_progress\": 1"));
}

TEST_F(AgentCliTest, StatusSeesADeadAgent) {
  ASSERT_TRUE(WriteTokenFile(token_, "t", false).ok());
  auto child = testing::ChildProcess::Start({"/bin/true"}, dir_.path());
  ASSERT_TRUE(child.ok());
  const pid_t dead = child->pid();
  child->Wait();
  AgentStatus s;
  s.pid = dead;
  s.connected = true;  // What it last wrote before it died.
  ASSERT_TRUE(WriteStatusFile(state_, s).ok());
  auto r = Status();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("registered: yes"));
  EXPECT_THAT(r.out, HasSubstr("connected:  no (the agent is not running"));
}

TEST_F(AgentCliTest, StatusSaysWhenReconnecting) {
  ASSERT_TRUE(WriteTokenFile(token_, "t", false).ok());
  AgentStatus s;
  s.pid = getpid();
  s.dispatcher = "d.example.com:443";
  s.last_error = "UNAVAILABLE: connection refused";
  ASSERT_TRUE(WriteStatusFile(state_, s).ok());
  auto r = Status();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("reconnecting to d.example.com:443"));
  EXPECT_THAT(r.out, HasSubstr("connection refused"));
}

TEST_F(AgentCliTest, StatusRefusesATokenOthersCanRead) {
  ASSERT_TRUE(WriteTokenFile(token_, "t", false).ok());
  chmod(token_.c_str(), 0644);
  auto r = Status();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.out, HasSubstr("registered: no"));
  EXPECT_THAT(r.out, HasSubstr("mode 0644"));
}

TEST_F(AgentCliTest, RunRefusesPlaintextToARemoteDispatcher) {
  ASSERT_TRUE(WriteTokenFile(token_, "t", false).ok());
  std::vector<std::string> args = {"run", "--dispatcher",
                                   "idsync.example.com:50051", "--insecure"};
  for (auto& a : Paths()) args.push_back(a);
  auto r = Run(args);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("loopback"));
}

TEST_F(AgentCliTest, RunWithoutATokenSaysToRegister) {
  std::vector<std::string> args = {"run", "--dispatcher", "127.0.0.1:1",
                                   "--insecure"};
  for (auto& a : Paths()) args.push_back(a);
  auto r = Run(args);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("register"));
}

TEST_F(AgentCliTest, RegisterRefusesAnExistingTokenFile) {
  ASSERT_TRUE(WriteTokenFile(token_, "idsync_agt_old", false).ok());
  std::vector<std::string> args = {
      "register",   "--dispatcher",         "127.0.0.1:1",
      "--insecure", "--registration-token", "idsync_reg_x"};
  for (auto& a : Paths()) args.push_back(a);
  auto r = Run(args);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("already exists"));
  EXPECT_THAT(r.err, HasSubstr("--force"));
  EXPECT_EQ(*ReadTokenFile(token_), "idsync_agt_old");
}

TEST_F(AgentCliTest, ConfigUnknownKeyIsNamed) {
  const std::string config = dir_.File("agent.json");
  std::ofstream(config) << R"({"dispatcher": "127.0.0.1:1", "capacty": 3})";
  auto r = Run({"status", "--config", config});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.err, HasSubstr("unknown key 'capacty'"));
}

TEST_F(AgentCliTest, ConfigGivesThePaths) {
  const std::string config = dir_.File("agent.json");
  std::ofstream(config) << "{\"token_file\": \"" << token_
                        << "\", \"state_dir\": \"" << state_ << "\"}";
  ASSERT_TRUE(WriteTokenFile(token_, "t", false).ok());
  auto r = Run({"status", "--config", config});
  EXPECT_THAT(r.out, HasSubstr("registered: yes"));
}

// The config often sits next to the token as agent.json: registering must
// not write over it (the registration record has its own name).
TEST_F(AgentCliTest, RegisterKeepsAConfigInTheStateDir) {
  auto spine = testing::FakeSpine::Start();
  ASSERT_NE(spine, nullptr);
  spine->set_registration("idsync_reg_1", 5, "idsync_agt_FROMREG", "edge-9");
  const std::string config = state_ + "/agent.json";
  std::filesystem::create_directories(state_);
  const std::string text = absl::StrCat(R"({"dispatcher": ")", spine->address(),
                                        R"(", "token_file": ")", token_,
                                        R"(", "tls": {"insecure": true}})");
  std::ofstream(config) << text;
  auto r = Run(
      {"register", "--config", config, "--registration-token", "idsync_reg_1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::ifstream in(config);
  std::string after((std::istreambuf_iterator<char>(in)),
                    std::istreambuf_iterator<char>());
  EXPECT_EQ(after, text);
  EXPECT_TRUE(std::filesystem::exists(state_ + "/registration.json"));
}

// The whole life of the binary against a scripted dispatcher: register,
// run (hello, welcome), status while connected, SIGTERM.
TEST_F(AgentCliTest, RegisterRunStatusAndStop) {
  auto spine = testing::FakeSpine::Start();
  ASSERT_NE(spine, nullptr);
  spine->set_registration("idsync_reg_1", 5, "idsync_agt_FROMREG", "edge-9");
  spine->set_expected_authorization("Bearer idsync_agt_FROMREG");

  std::vector<std::string> reg = {
      "register",   "--dispatcher",         spine->address(),
      "--insecure", "--registration-token", "idsync_reg_1"};
  for (auto& a : Paths()) reg.push_back(a);
  auto registered = Run(reg);
  ASSERT_EQ(registered.exit_code, 0) << registered.err;
  EXPECT_THAT(registered.out, HasSubstr("Registered agent 5 (edge-9)"));
  EXPECT_THAT(registered.out + registered.err,
              Not(HasSubstr("idsync_agt_FROMREG")));

  // `run` finds the dispatcher in registration.json, written by `register`.
  std::vector<std::string> run = {IDSYNC_AGENT_BIN, "run", "--insecure"};
  for (auto& a : Paths()) run.push_back(a);
  auto agent = testing::ChildProcess::Start(run, dir_.path());
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto conn = spine->NextConn();
  ASSERT_NE(conn, nullptr);
  auto hello = conn->Next();
  ASSERT_TRUE(hello.has_value() && hello->has_hello());
  ASSERT_TRUE(conn->Send(testing::WelcomeMessage(5, "edge-9", 30)));

  testing::ProcessResult status;
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  do {
    status = Status();
  } while (status.exit_code != 0 && absl::Now() < deadline);
  EXPECT_EQ(status.exit_code, 0) << status.out;
  EXPECT_THAT(status.out, HasSubstr("connected:  yes"));

  agent->Kill(SIGTERM);
  auto ended = agent->Wait();
  EXPECT_EQ(ended.exit_code, 0) << ended.err;
  EXPECT_THAT(ended.err, HasSubstr("connected to"));
  EXPECT_THAT(ended.err, Not(HasSubstr("idsync_agt_FROMREG")));
  auto after = Status();
  EXPECT_EQ(after.exit_code, 1);
  EXPECT_THAT(after.out, HasSubstr("stopped"));
}

TEST_F(AgentCliTest, HelpSaysPlaintextIsForDevelopment) {
  auto r = Run({"run", "--help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_THAT(r.out, HasSubstr("--insecure"));
  EXPECT_THAT(r.out, HasSubstr("FOR DEVELOPMENT ONLY"));
  EXPECT_THAT(r.out, HasSubstr("loopback"));
}

}  // namespace
}  // namespace idsync
