#include "agents/agent_config.h"

#include <cstdlib>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST(AgentConfigTest, ParsesEveryKey) {
  auto config = ParseAgentConfig(R"({
    "dispatcher": "idsync.example.com:443",
    "token_file": "/etc/idsync/agent.token",
    "state_dir": "/var/lib/idsync-agent",
    "capacity": 4,
    "local_connectors_only": true,
    "tls": {"ca_file": "ca.pem", "client_cert": "c.pem", "client_key": "k.pem",
            "insecure": false, "insecure_allow_remote": false},
    "connectors": {
      "corp-ad": {"type": "ldap", "config": {"url": "ldaps://dc1"},
                  "auth_config": {"password": "pw"}},
      "hr": {"type": "csv"}
    }
  })",
                                 "agent.json");
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->dispatcher, "idsync.example.com:443");
  EXPECT_EQ(config->token_file, "/etc/idsync/agent.token");
  EXPECT_EQ(config->state_dir, "/var/lib/idsync-agent");
  EXPECT_EQ(config->capacity, 4);
  EXPECT_FALSE(config->accept_dispatcher_configs);
  EXPECT_EQ(config->tls.ca_file, "ca.pem");
  EXPECT_EQ(config->tls.client_cert, "c.pem");
  EXPECT_EQ(config->tls.client_key, "k.pem");
  ASSERT_EQ(config->connectors.size(), 2u);
  const LocalConnector& ad = config->connectors.at("corp-ad");
  EXPECT_EQ(ad.type, "ldap");
  EXPECT_EQ(ad.config.fields().at("url").string_value(), "ldaps://dc1");
  EXPECT_TRUE(ad.has_auth_config);
  EXPECT_FALSE(config->connectors.at("hr").has_auth_config);
}

TEST(AgentConfigTest, EmptyObjectGivesDefaults) {
  auto config = ParseAgentConfig("{}", "c");
  ASSERT_TRUE(config.ok());
  EXPECT_EQ(config->capacity, kDefaultAgentCapacity);
  EXPECT_FALSE(config->tls.insecure);
  EXPECT_TRUE(config->connectors.empty());
}

TEST(AgentConfigTest, UnknownKeysAreErrorsNamingTheKey) {
  for (const char* json :
       {R"({"dispatchr": "x:1"})", R"({"tls": {"insecur": true}})",
        R"({"connectors": {"hr": {"type": "csv", "secret": "x"}}})"}) {
    auto config = ParseAgentConfig(json, "agent.json");
    ASSERT_FALSE(config.ok()) << json;
    EXPECT_THAT(config.status().message(), HasSubstr("unknown key"));
    EXPECT_THAT(config.status().message(), HasSubstr("agent.json"));
  }
  EXPECT_THAT(
      ParseAgentConfig(R"({"dispatchr": "x:1"})", "c").status().message(),
      HasSubstr("'dispatchr'"));
}

TEST(AgentConfigTest, BadValuesAreRefused) {
  EXPECT_FALSE(ParseAgentConfig(R"({"capacity": 0})", "c").ok());
  EXPECT_FALSE(ParseAgentConfig(R"({"capacity": 65})", "c").ok());
  EXPECT_FALSE(ParseAgentConfig(R"({"capacity": 1.5})", "c").ok());
  EXPECT_FALSE(ParseAgentConfig(R"({"dispatcher": 5})", "c").ok());
  EXPECT_FALSE(ParseAgentConfig(R"({"connectors": {"hr": {}}})", "c").ok());
  EXPECT_FALSE(ParseAgentConfig(R"({"connectors": {"hr": 1}})", "c").ok());
  EXPECT_FALSE(
      ParseAgentConfig(R"({"connectors": {"hr": {"type": ""}}})", "c").ok());
  EXPECT_FALSE(ParseAgentConfig("[]", "c").ok());
}

TEST(AgentConfigTest, ErrorsNeverEchoSecrets) {
  // A syntax error right after a secret value.
  auto config = ParseAgentConfig(
      R"({"connectors": {"ad": {"type": "ldap", "auth_config": {"password": "hunter2" "x"}}}})",
      "agent.json");
  ASSERT_FALSE(config.ok());
  EXPECT_THAT(config.status().message(), Not(HasSubstr("hunter2")));
  auto wrong_type = ParseAgentConfig(
      R"({"connectors": {"ad": {"type": "ldap", "auth_config": "hunter2"}}})",
      "agent.json");
  ASSERT_FALSE(wrong_type.ok());
  EXPECT_THAT(wrong_type.status().message(), Not(HasSubstr("hunter2")));
  EXPECT_THAT(wrong_type.status().message(), HasSubstr("auth_config"));
}

TEST(AgentConfigTest, DefaultPathsFollowTheTokenFile) {
  setenv("IDSYNC_AGENT_TOKEN_FILE", "/srv/agent/token", 1);
  AgentConfig config;
  ASSERT_TRUE(FillDefaultPaths(config).ok());
  EXPECT_EQ(config.token_file, "/srv/agent/token");
  EXPECT_EQ(config.state_dir, "/srv/agent");
  unsetenv("IDSYNC_AGENT_TOKEN_FILE");

  const char* old_home = std::getenv("HOME");
  const std::string saved = old_home != nullptr ? old_home : "";
  setenv("HOME", "/home/op", 1);
  AgentConfig home;
  ASSERT_TRUE(FillDefaultPaths(home).ok());
  EXPECT_EQ(home.token_file, "/home/op/.config/idsync/agent.token");
  EXPECT_EQ(home.state_dir, "/home/op/.config/idsync");
  if (old_home != nullptr) setenv("HOME", saved.c_str(), 1);

  AgentConfig given;
  given.token_file = "/a/t";
  given.state_dir = "/b";
  ASSERT_TRUE(FillDefaultPaths(given).ok());
  EXPECT_EQ(given.state_dir, "/b");
}

TEST(AgentConfigTest, LocalTypesMustBeBuiltIn) {
  LocalConnectors local;
  local["hr"].type = "csv";
  EXPECT_TRUE(CheckLocalConnectorTypes(local, {"csv", "ldap"}).ok());
  local["x"].type = "oracle";
  auto s = CheckLocalConnectorTypes(local, {"csv", "ldap"});
  EXPECT_THAT(s.message(), HasSubstr("connectors.x"));
  EXPECT_THAT(s.message(), HasSubstr("oracle"));
}

idsync::v1::AssignRun Assignment() {
  idsync::v1::AssignRun a;
  a.set_run_id(5);
  a.set_assignment(1);
  a.set_connector_business_id("corp-ad");
  a.set_connector_type("ldap");
  auto& config = *a.mutable_config()->mutable_fields();
  config["url"].set_string_value("ldap://dispatcher-view");
  config["user_base"].set_string_value("ou=people");
  auto& auth = *a.mutable_request()->mutable_auth_config()->mutable_fields();
  auth["password"].set_string_value("from-dispatcher");
  a.mutable_request()->set_resume_token("r");
  return a;
}

const DispatcherConfigs kAccept{/*accept=*/true, /*import_dir=*/""};

TEST(PrepareRunTest, WithoutLocalConfigTakesTheDispatchersWhenAccepted) {
  auto run = PrepareRun({}, Assignment(), kAccept);
  ASSERT_TRUE(run.ok());
  // The dispatcher's config reads no file on this host (no import_dir).
  EXPECT_FALSE(run->spec.access.files->secret_files());
  EXPECT_TRUE(absl::IsPermissionDenied(
      run->spec.access.files->CheckPath("/etc/passwd", "CSV file")));
  EXPECT_EQ(run->type, "ldap");
  EXPECT_EQ(run->spec.business_id, "corp-ad");
  EXPECT_EQ(run->request.connector_business_id(), "corp-ad");
  EXPECT_EQ(run->request.resume_token(), "r");
  EXPECT_EQ(run->spec.config.fields().at("url").string_value(),
            "ldap://dispatcher-view");
  EXPECT_EQ(run->spec.auth_config.fields().at("password").string_value(),
            "from-dispatcher");
}

TEST(PrepareRunTest, LocalKeysOverrideAndLocalAuthReplaces) {
  LocalConnectors local;
  LocalConnector& ad = local["corp-ad"];
  ad.type = "ldap";
  (*ad.config.mutable_fields())["url"].set_string_value("ldaps://dc1.corp");
  ad.has_auth_config = true;
  (*ad.auth_config.mutable_fields())["bind_password"].set_string_value("pw");
  auto run = PrepareRun(local, Assignment(), kAccept);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->spec.config.fields().at("url").string_value(),
            "ldaps://dc1.corp");
  EXPECT_EQ(run->spec.config.fields().at("user_base").string_value(),
            "ou=people");
  EXPECT_EQ(run->request.auth_config().fields().size(), 1u);
  EXPECT_EQ(run->request.auth_config().fields().count("bind_password"), 1u);
  EXPECT_EQ(run->spec.auth_config.fields().count("bind_password"), 1u);
}

// The agent's own credentials never follow a target the dispatcher chose:
// with accept_dispatcher_configs, a tenant admin could otherwise point `url`
// at a listener of theirs and receive the agent's bind password.
TEST(PrepareRunTest, LocalAuthNeverGoesWhereTheDispatcherPoints) {
  LocalConnectors local;
  LocalConnector& ad = local["corp-ad"];
  ad.type = "ldap";
  (*ad.config.mutable_fields())["user_base"].set_string_value("ou=people");
  ad.has_auth_config = true;
  (*ad.auth_config.mutable_fields())["password"].set_string_value("agent-pw");
  auto run = PrepareRun(local, Assignment(), kAccept);
  ASSERT_FALSE(run.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(run.status())) << run.status();
  EXPECT_THAT(run.status().message(), HasSubstr("pin 'url'"));
  EXPECT_THAT(run.status().message(), Not(HasSubstr("agent-pw")));
  // Not accepted: the dispatcher's url is not used at all, so no conflict.
  auto own = PrepareRun(local, Assignment());
  ASSERT_TRUE(own.ok()) << own.status();
  EXPECT_FALSE(own->spec.config.fields().contains("url"));
}

// By default a local connector is the local config alone: the dispatcher
// (a tenant admin) adds no key, so it cannot name a file on this host.
TEST(PrepareRunTest, DispatcherKeysAreIgnoredUnlessAccepted) {
  LocalConnectors local;
  LocalConnector& ad = local["corp-ad"];
  ad.type = "ldap";
  (*ad.config.mutable_fields())["url"].set_string_value("ldaps://dc1.corp");
  auto run = PrepareRun(local, Assignment());
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->spec.config.fields().size(), 1u);
  EXPECT_TRUE(run->spec.access.files->secret_files());  // The agent's own.
  // Accepted, the dispatcher's keys confine the connector's files.
  auto merged = PrepareRun(local, Assignment(), kAccept);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_FALSE(merged->spec.access.files->secret_files());
}

TEST(PrepareRunTest, LocalWithoutAuthKeepsTheDispatchers) {
  LocalConnectors local;
  local["corp-ad"].type = "ldap";
  auto run = PrepareRun(local, Assignment());
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->request.auth_config().fields().count("password"), 1u);
}

TEST(PrepareRunTest, TypeMismatchIsFailedPrecondition) {
  LocalConnectors local;
  local["corp-ad"].type = "csv";
  auto run = PrepareRun(local, Assignment());
  EXPECT_EQ(run.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(run.status().message(), HasSubstr("'csv'"));
  EXPECT_THAT(run.status().message(), HasSubstr("'ldap'"));
}

TEST(PrepareRunTest, LocalOnlyRefusesConnectorsNotConfiguredHere) {
  LocalConnectors local;
  local["hr"].type = "csv";
  auto run = PrepareRun(local, Assignment());
  EXPECT_EQ(run.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(run.status().message(), HasSubstr("corp-ad"));
  EXPECT_TRUE(PrepareRun(local, Assignment(), kAccept).ok());
  local["corp-ad"].type = "ldap";
  EXPECT_TRUE(PrepareRun(local, Assignment()).ok());
}

TEST(PrepareRunTest, OtherConnectorsLocalConfigDoesNotApply) {
  LocalConnectors local;
  local["hr"].type = "csv";
  auto run = PrepareRun(local, Assignment(), kAccept);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->type, "ldap");
}

}  // namespace
}  // namespace idsync
