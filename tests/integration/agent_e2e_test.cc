// Agent mode end to end: the real idsync-dispatcher and idsync-agent
// binaries on loopback. A CSV sync through an agent gives the same store as
// the same sync hosted, also when the agent is killed with SIGKILL mid-sync
// or the dispatcher is restarted (the stream cut); registration tokens work
// once; a revoked agent is refused; an agent token is refused on the admin
// API; and a second agent written in Node from the .proto alone syncs too.
#include <signal.h>

#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "connector/http/http_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/dispatcher_fixture.h"
#include "tests/testing/node_server.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::idsync::testing::ChildProcess;
using ::testing::HasSubstr;
using ::testing::Not;
using Json = nlohmann::json;

class AgentE2eTest : public testing::DispatcherTest {
 protected:
  void SetUp() override {
    dispatcher_args_.insert(dispatcher_args_.end(), {"--agent-timeout", "60"});
    DispatcherTest::SetUp();
  }
  void TearDown() override {
    Reap(agent_);
    DispatcherTest::TearDown();
  }

  // Agent connection flags: plaintext on loopback unless TLS is set up.
  std::vector<std::string> ConnectFlags() const {
    if (ca_file_.empty()) return {"--insecure"};
    return {"--ca-file", ca_file_};
  }

  std::string RegistrationToken(const std::string& name) {
    return Ok("POST", "/api/v1/agents/registration-tokens",
              {{"name", name}})["token"]
        .get<std::string>();
  }
  testing::ProcessResult Register(
      const std::string& registration, const std::string& name,
      const std::string& token_file = "agent.token") {
    std::vector<std::string> argv = {IDSYNC_AGENT_BIN,
                                     "register",
                                     "--dispatcher",
                                     Spine(),
                                     "--registration-token",
                                     registration,
                                     "--name",
                                     name,
                                     "--token-file",
                                     tmp_->File(token_file)};
    for (const std::string& f : ConnectFlags()) argv.push_back(f);
    auto r = testing::RunProcess(argv);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : testing::ProcessResult{};
  }
  void StartAgent() {
    std::vector<std::string> argv = {
        IDSYNC_AGENT_BIN, "run",          "--dispatcher",
        Spine(),          "--token-file", tmp_->File("agent.token"),
        "--state-dir",    dir_,           "--config",
        agent_config_};
    for (const std::string& f : ConnectFlags()) argv.push_back(f);
    auto child = ChildProcess::Start(argv, dir_);
    ASSERT_TRUE(child.ok()) << child.status();
    agent_ = *std::move(child);
  }
  void StopAgent() {
    agent_->Kill(SIGKILL);
    agent_->Wait();
    agent_.reset();
  }
  // Waits until the agent named `name` is online (or 15 s pass).
  bool WaitOnline(const std::string& name) {
    for (int i = 0; i < 300; ++i) {
      Json agents = Ok("GET", "/api/v1/agents");
      for (const Json& a : agents["items"]) {
        if (a["name"] == name && a["online"] == true) return true;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  // A registered, running agent "onprem-1" whose local config alone knows
  // where the CSV is, and an agent-mode connector "hr" bound to it.
  int64_t SetUpAgentAndConnector(const std::string& csv) {
    agent_config_ = tmp_->File("agent-config.json");
    std::ofstream(agent_config_)
        << Json{{"connectors",
                 {{"hr", {{"type", "csv"}, {"config", {{"path", csv}}}}}}}}
               .dump();
    EXPECT_EQ(Register(RegistrationToken("onprem-1"), "onprem-1").exit_code, 0);
    StartAgent();
    EXPECT_TRUE(WaitOnline("onprem-1"));
    Json c = Ok("POST", "/api/v1/connectors",
                {{"business_id", "hr"},
                 {"type", "csv"},
                 {"mode", "agent"},
                 {"agent", "onprem-1"},
                 {"config", Json::object()}});
    return c["id"].get<int64_t>();
  }

  std::string WriteCsv(int rows) {
    const std::string path = tmp_->File(absl::StrCat("hr", rows, ".csv"));
    std::ofstream out(path);
    out << "external_id,email,first_name,last_name,department,"
           "manager_external_id\n";
    for (int i = 0; i < rows; ++i) {
      out << "E" << i << ",e" << i << "@example.com,First" << i << ",Last" << i
          << ",Dept" << i % 10 << "," << (i > 0 ? "E" : "")
          << (i > 0 ? std::to_string(i / 10) : "") << "\n";
    }
    return path;
  }
  // The same file synced hosted by the CLI into its own store.
  testing::StoreSignature Hosted(const std::string& csv) {
    const std::string db = tmp_->File("hosted.db");
    auto r = testing::RunProcess({IDSYNC_BIN, "sync", "--file", csv, "--db", db,
                                  "--connector", "hr", "--tenant", "acme"});
    EXPECT_TRUE(r.ok() && r->exit_code == 0);
    auto sig = testing::SignStore(db);
    EXPECT_TRUE(sig.ok()) << sig.status();
    return sig.ok() ? *sig : testing::StoreSignature{};
  }
  int64_t StartSync(int64_t connector, int chunk_size = 1000) {
    Json run =
        Ok("POST", absl::StrCat("/api/v1/connectors/", connector, "/sync"),
           {{"chunk_size", chunk_size}});
    return run["id"].get<int64_t>();
  }
  Json Run(int64_t id) {
    return Ok("GET", absl::StrCat("/api/v1/sync-runs/", id));
  }
  // Polls until the run ends (or `timeout`); returns its last state.
  Json WaitRun(int64_t id, absl::Duration timeout = absl::Seconds(90)) {
    const absl::Time end = absl::Now() + timeout;
    Json r = Run(id);
    while (r["status"] == "running" && absl::Now() < end) {
      absl::SleepFor(absl::Milliseconds(50));
      r = Run(id);
    }
    return r;
  }
  // Polls until the run has processed at least `n` records.
  void WaitProcessed(int64_t id, int64_t n) {
    for (int i = 0; i < 2000; ++i) {
      Json r = Run(id);
      if (r["processed"].get<int64_t>() >= n || r["status"] != "running") {
        return;
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  testing::StoreSignature Dispatched() {
    auto sig = testing::SignStore(db_);
    EXPECT_TRUE(sig.ok()) << sig.status();
    return sig.ok() ? *sig : testing::StoreSignature{};
  }

  std::string agent_config_, ca_file_;
  std::optional<ChildProcess> agent_;
};

TEST_F(AgentE2eTest, SyncThroughAnAgentEqualsTheHostedSync) {
  const std::string csv = WriteCsv(20000);
  const int64_t connector = SetUpAgentAndConnector(csv);
  const Json run = WaitRun(StartSync(connector));
  ASSERT_EQ(run["status"], "succeeded") << run.dump();
  EXPECT_EQ(run["created"], 20000);
  EXPECT_EQ(Dispatched(), Hosted(csv));

  auto status =
      testing::RunProcess({IDSYNC_AGENT_BIN, "status", "--token-file",
                           tmp_->File("agent.token"), "--state-dir", dir_});
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->exit_code, 0) << status->out << status->err;
}

TEST_F(AgentE2eTest, AgentKilledMidSyncResumesToTheSameStore) {
  const std::string csv = WriteCsv(300000);
  const int64_t connector = SetUpAgentAndConnector(csv);
  const int64_t id = StartSync(connector, 500);
  WaitProcessed(id, 60000);
  StopAgent();
  const int64_t at_kill = Run(id)["processed"].get<int64_t>();
  EXPECT_LT(at_kill, 300000) << "the kill came too late to test anything";
  StartAgent();
  const Json run = WaitRun(id);
  ASSERT_EQ(run["status"], "succeeded") << run.dump();
  EXPECT_EQ(run["created"], 300000);
  EXPECT_EQ(Dispatched(), Hosted(csv));
}

TEST_F(AgentE2eTest, DispatcherRestartedMidSyncResumesToTheSameStore) {
  const std::string csv = WriteCsv(300000);
  const int64_t connector = SetUpAgentAndConnector(csv);
  const int64_t id = StartSync(connector, 500);
  WaitProcessed(id, 60000);
  StopDispatcher(SIGKILL);  // The stream is cut; the agent reconnects.
  StartDispatcher();
  const Json run = WaitRun(id);
  ASSERT_EQ(run["status"], "succeeded") << run.dump();
  EXPECT_EQ(run["created"], 300000);
  EXPECT_GE(run["resumes"].get<int64_t>(), 1) << run.dump();
  EXPECT_EQ(Dispatched(), Hosted(csv));
}

TEST_F(AgentE2eTest, RegistrationTokensWorkOnceAndAgentTokensOnlyOnTheSpine) {
  const std::string registration = RegistrationToken("onprem-2");
  EXPECT_EQ(Register(registration, "onprem-2").exit_code, 0);
  const testing::ProcessResult again =
      Register(registration, "onprem-3", "agent-3.token");
  EXPECT_NE(again.exit_code, 0);
  EXPECT_THAT(again.out + again.err, HasSubstr("already used"));

  std::ifstream in(tmp_->File("agent.token"));
  std::string agent_token;
  in >> agent_token;
  ASSERT_FALSE(agent_token.empty());
  auto admin = Call("GET", "/api/v1/identities", nullptr, {}, agent_token);
  ASSERT_TRUE(admin.ok());
  EXPECT_EQ(admin->status, 403);
  EXPECT_THAT(admin->body, Not(HasSubstr(agent_token)));
}

TEST_F(AgentE2eTest, RevokedAgentIsDisconnectedAndRefused) {
  const std::string csv = WriteCsv(100);
  SetUpAgentAndConnector(csv);
  Json agents = Ok("GET", "/api/v1/agents");
  ASSERT_EQ(agents["items"].size(), 1u);
  const int64_t agent = agents["items"][0]["id"].get<int64_t>();
  Ok("DELETE", absl::StrCat("/api/v1/agents/", agent));
  bool offline = false;
  for (int i = 0; i < 100 && !offline; ++i) {
    offline =
        Ok("GET", absl::StrCat("/api/v1/agents/", agent))["online"] == false;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(offline);
  absl::SleepFor(absl::Seconds(2));  // It tries to reconnect: refused.
  EXPECT_FALSE(WaitOnline("onprem-1"));
  auto status =
      testing::RunProcess({IDSYNC_AGENT_BIN, "status", "--token-file",
                           tmp_->File("agent.token"), "--state-dir", dir_});
  ASSERT_TRUE(status.ok());
  EXPECT_NE(status->exit_code, 0) << status->out;
}

TEST_F(AgentE2eTest, AnAgentWrittenInNodeFromTheProtoAloneSyncs) {
  const std::string registration = RegistrationToken("node-1");
  auto node = ChildProcess::Start(
      {"/usr/bin/env", "node",
       absl::StrCat(testing::SourceDir(),
                    "/tests/integration/agent_spine/node_agent.mjs"),
       "--dispatcher", Spine(), "--registration-token", registration, "--name",
       "node-1", "--identities", "7"},
      dir_);
  ASSERT_TRUE(node.ok()) << node.status();
  ASSERT_TRUE(WaitOnline("node-1"));
  Json c = Ok("POST", "/api/v1/connectors",
              {{"business_id", "from-node"},
               {"type", "csv"},
               {"mode", "agent"},
               {"agent", "node-1"},
               {"config", Json::object()}});
  const Json run = WaitRun(StartSync(c["id"].get<int64_t>()));
  EXPECT_EQ(run["status"], "succeeded") << run.dump();
  EXPECT_EQ(run["created"], 7);
  const testing::ProcessResult out = node->Wait();
  EXPECT_EQ(out.exit_code, 0) << out.out << out.err;
  EXPECT_THAT(out.out, HasSubstr("\"done\""));
}

// The spine over TLS: the agent checks the dispatcher's certificate against
// its --ca-file.
class AgentTlsE2eTest : public AgentE2eTest {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<testing::ScopedTestDir>("agent-tls");
    const std::string cert = tmp_->File("server.pem");
    const std::string key = tmp_->File("server.key");
    auto made = testing::RunProcess(
        {"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"});
    ASSERT_TRUE(made.ok() && made->exit_code == 0)
        << (made.ok() ? made->err : made.status().ToString());
    dispatcher_args_ = {"--grpc-tls-cert", cert, "--grpc-tls-key", key};
    keep_ = std::move(tmp_);
    AgentE2eTest::SetUp();
    ca_file_ = cert;
  }
  std::unique_ptr<testing::ScopedTestDir> keep_;  // Holds the certificate.
};

TEST_F(AgentTlsE2eTest, RegistersAndSyncsOverTls) {
  const std::string csv = WriteCsv(500);
  const int64_t connector = SetUpAgentAndConnector(csv);
  const Json run = WaitRun(StartSync(connector));
  EXPECT_EQ(run["status"], "succeeded") << run.dump();
  EXPECT_EQ(run["created"], 500);
}

}  // namespace
}  // namespace idsync
