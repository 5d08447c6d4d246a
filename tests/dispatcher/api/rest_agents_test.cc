// Agent mode over REST: one-time registration tokens, the registered agents
// (list, get, revoke), connectors bound to agents, and agent and
// registration tokens kept off the admin API. Agents register the way the
// agent spine registers them (Store::RegisterAgent); no hub runs here, so
// `online` is the stored flag (grpc_service_test covers the live hub).
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/dispatcher/api/api_fixture.h"

namespace idsync::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using RestAgentsTest = ApiTest;

std::string AgentPath(int64_t id) {
  return absl::StrCat("/api/v1/agents/", id);
}

constexpr char kRegistrationTokens[] = "/api/v1/agents/registration-tokens";

TEST_F(RestAgentsTest, RegistrationTokenIsShownOnceAndStoredHashed) {
  Reply created = Post(kRegistrationTokens, admin_,
                       {{"name", "branch-dc1"}, {"group", "branch-sites"}},
                       {{"Idempotency-Key", "reg-dc1"}});
  ASSERT_EQ(created.status, 201) << created.Describe();
  const std::string token = created.json["token"].get<std::string>();
  EXPECT_TRUE(absl::StartsWith(token, "idsync_reg_")) << token;
  EXPECT_EQ(token.size(), 11u + 43u);
  const int64_t id = created.json["id"].get<int64_t>();
  EXPECT_GT(id, 0);
  EXPECT_EQ(created.json["name"], "branch-dc1");
  EXPECT_EQ(created.json["group"], "branch-sites");
  EXPECT_TRUE(created.json["created_at"].is_string()) << created.body;

  // Stored as a registration token of role agent, by hash, with its group.
  auto row = store_->FindToken(TokenHash(token));
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->id, id);
  EXPECT_EQ(row->kind, "registration");
  EXPECT_EQ(row->role, "agent");
  EXPECT_EQ(row->agent_group, "branch-sites");
  EXPECT_EQ(row->prefix, token.substr(0, 15));
  EXPECT_FALSE(row->revoked_at.has_value());

  // A replay has no token; the store's files, the audit log and the token
  // list never hold it.
  Reply replay = Post(kRegistrationTokens, admin_,
                      {{"name", "branch-dc1"}, {"group", "branch-sites"}},
                      {{"Idempotency-Key", "reg-dc1"}});
  EXPECT_EQ(replay.status, 201) << replay.Describe();
  EXPECT_EQ(replay.Header("Idempotent-Replayed"), "true");
  EXPECT_EQ(replay.json["token"], "");
  EXPECT_EQ(replay.json["id"], id);
  EXPECT_EQ(Count("SELECT count(*) FROM tokens WHERE kind='registration'"), 1);
  const std::string random = token.substr(15);
  for (const Reply& r : {replay, Get("/api/v1/audit-events?limit=500", admin_),
                         Get("/api/v1/tokens", admin_)}) {
    EXPECT_EQ(r.status / 100, 2) << r.Describe();
    EXPECT_THAT(r.body, Not(HasSubstr(random)));
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir_->path())) {
    if (!absl::StartsWith(entry.path().filename().string(), "store.db")) {
      continue;
    }
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find(random), std::string::npos) << entry.path();
  }
  Reply audit =
      Get("/api/v1/audit-events?action=registration_token.create", admin_);
  ASSERT_EQ(audit.json["total"], 1) << audit.body;
  EXPECT_EQ(audit.json["items"][0]["resource_type"], "token");
  EXPECT_EQ(audit.json["items"][0]["details"]["group"], "branch-sites");
}

TEST_F(RestAgentsTest, RegistrationTokensAreForAdminsAndCheckTheirInput) {
  const std::string auditor = CreateToken(admin_, "dashboard", "auditor");
  const auto before = RowCounts();
  ExpectError(Post(kRegistrationTokens, auditor, {{"name", "dc1"}}), 403,
              "permission_denied", "auditor");
  ExpectError(Post(kRegistrationTokens, admin_, Json::object()), 400,
              "invalid_argument", "name");
  ExpectError(Post(kRegistrationTokens, admin_, {{"name", "bad name!"}}), 400,
              "invalid_argument", "name");
  ExpectError(Post(kRegistrationTokens, admin_,
                   {{"name", "dc1"}, {"group", std::string(65, 'g')}}),
              400, "invalid_argument", "group");
  ExpectError(
      Post(kRegistrationTokens, admin_, {{"name", "dc1"}, {"expires", 3}}), 400,
      "invalid_argument", "expires");
  EXPECT_EQ(RowCounts(), before);
  // No group is fine.
  Reply ok = Post(kRegistrationTokens, admin_, {{"name", "dc1"}});
  ASSERT_EQ(ok.status, 201) << ok.Describe();
  EXPECT_EQ(ok.json["group"], "");
}

// A registration token registers one agent: the second use, and a use after
// it was revoked, are refused.
TEST_F(RestAgentsTest, RegistrationTokenWorksOnce) {
  const std::string registration =
      CreateRegistrationToken(admin_, "branch-dc1", "branch-sites");
  std::string agent_token;
  auto agent = RegisterWith(registration, "", &agent_token);
  ASSERT_TRUE(agent.ok()) << agent.status();
  EXPECT_EQ(agent->name, "branch-dc1");  // The token's name by default.
  EXPECT_EQ(agent->group, "branch-sites");
  EXPECT_EQ(agent->tenant_id, tenant_id_);
  EXPECT_TRUE(absl::StartsWith(agent_token, "idsync_agt_"));

  auto again = RegisterWith(registration, "another");
  EXPECT_TRUE(absl::IsPermissionDenied(again.status())) << again.status();
  auto used = store_->FindToken(TokenHash(registration));
  ASSERT_TRUE(used.ok()) << used.status();
  EXPECT_TRUE(used->revoked_at.has_value());

  // One revoked before use never registers anything.
  int64_t id = 0;
  const std::string unused =
      CreateRegistrationToken(admin_, "branch-dc2", "", &id);
  Reply revoked = Post(absl::StrCat("/api/v1/tokens/", id, "/revoke"), admin_);
  ASSERT_EQ(revoked.status, 200) << revoked.Describe();
  EXPECT_TRUE(revoked.json["revoked_at"].is_string());
  auto refused = RegisterWith(unused, "branch-dc2");
  EXPECT_TRUE(absl::IsPermissionDenied(refused.status())) << refused.status();
  EXPECT_EQ(Get("/api/v1/agents", admin_).json["total"], 1);
}

TEST_F(RestAgentsTest, AgentsAreListedAndRead) {
  std::string token1;
  const int64_t first = RegisterAgent(admin_, "branch-dc1", "sites", &token1);
  const int64_t second = RegisterAgent(admin_, "branch-dc2");
  ASSERT_GT(first, 0);
  ASSERT_GT(second, 0);
  // Another tenant's agent is not listed.
  const std::string other = Bootstrap("globex");
  ASSERT_GT(RegisterAgent(other, "globex-dc"), 0);

  Reply list = Get("/api/v1/agents", admin_);
  ASSERT_EQ(list.status, 200) << list.Describe();
  EXPECT_EQ(list.json["total"], 2);
  ASSERT_EQ(list.json["items"].size(), 2u);
  const Json& a = list.json["items"][0];
  EXPECT_EQ(a["id"], first);
  EXPECT_EQ(a["name"], "branch-dc1");
  EXPECT_EQ(a["group"], "sites");
  EXPECT_EQ(a["version"], "");
  EXPECT_EQ(a["connector_types"], Json::array());
  EXPECT_EQ(a["online"], false);
  EXPECT_TRUE(a["last_seen_at"].is_null()) << a.dump();
  EXPECT_TRUE(a["created_at"].is_string()) << a.dump();
  EXPECT_TRUE(a["revoked_at"].is_null()) << a.dump();
  auto token = store_->FindToken(TokenHash(token1));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_EQ(a["token_id"], token->id);
  EXPECT_EQ(token->kind, "agent");
  EXPECT_EQ(list.json["items"][1]["name"], "branch-dc2");
  EXPECT_EQ(list.json["items"][1]["group"], "");
  EXPECT_THAT(list.body, Not(HasSubstr("globex")));
  EXPECT_THAT(list.body, Not(HasSubstr(token1.substr(15))));

  // Paging like every list.
  Reply page = Get("/api/v1/agents?limit=1", admin_);
  ASSERT_EQ(page.status, 200) << page.Describe();
  ASSERT_EQ(page.json["items"].size(), 1u);
  Reply next = Get(absl::StrCat("/api/v1/agents?limit=1&cursor=",
                                page.json["next_cursor"].get<std::string>()),
                   admin_);
  ASSERT_EQ(next.status, 200) << next.Describe();
  EXPECT_EQ(next.json["items"][0]["id"], second);
  ExpectError(Get("/api/v1/agents?limit=501", admin_), 400, "invalid_argument",
              "limit");

  // Get; the stored state after a hello (no hub here: the stored flag).
  Reply got = Get(AgentPath(first), admin_);
  ASSERT_EQ(got.status, 200) << got.Describe();
  EXPECT_EQ(got.json, a);
  ASSERT_TRUE(
      store_->SetAgentOnline(first, true, "1.4.2", {"csv", "ldap"}).ok());
  got = Get(AgentPath(first), admin_);
  EXPECT_EQ(got.json["online"], true);
  EXPECT_EQ(got.json["version"], "1.4.2");
  EXPECT_EQ(got.json["connector_types"], Json({"csv", "ldap"}));
  EXPECT_TRUE(got.json["last_seen_at"].is_string()) << got.body;

  ExpectError(Get(AgentPath(999999), admin_), 404, "not_found", "agent");
  const int64_t globex_agent =
      Get("/api/v1/agents", other).json["items"][0]["id"].get<int64_t>();
  ExpectError(Get(AgentPath(globex_agent), admin_), 404, "not_found");
  ExpectError(Delete(AgentPath(globex_agent), admin_), 404, "not_found");
}

// DELETE revokes the agent's token (its stream would close at once): the
// token is refused from then on, and the agent stays listed, revoked.
TEST_F(RestAgentsTest, DeleteAgentRevokesItsToken) {
  std::string agent_token;
  const int64_t id = RegisterAgent(admin_, "branch-dc1", "", &agent_token);
  ASSERT_GT(id, 0);
  ASSERT_TRUE(store_->SetAgentOnline(id, true, "1.0.0", {"csv"}).ok());
  const std::string auditor = CreateToken(admin_, "dashboard", "auditor");
  ExpectError(Delete(AgentPath(id), auditor), 403, "permission_denied",
              "auditor");
  EXPECT_FALSE(
      store_->FindToken(TokenHash(agent_token))->revoked_at.has_value());

  Reply deleted = Delete(AgentPath(id), admin_);
  ASSERT_EQ(deleted.status, 200) << deleted.Describe();
  EXPECT_EQ(deleted.json["id"], id);
  EXPECT_EQ(deleted.json["online"], false);
  EXPECT_TRUE(deleted.json["revoked_at"].is_string()) << deleted.body;
  auto token = store_->FindToken(TokenHash(agent_token));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_TRUE(token->revoked_at.has_value());
  EXPECT_EQ(deleted.json["token_id"], token->id);
  ExpectError(Get("/api/v1/identities", agent_token), 401, "unauthenticated",
              "revoked");

  Reply got = Get(AgentPath(id), admin_);
  ASSERT_EQ(got.status, 200) << got.Describe();
  EXPECT_EQ(got.json["revoked_at"], deleted.json["revoked_at"]);
  EXPECT_EQ(got.json["online"], false);  // Revoked: never online.
  // Again: the same answer, its revocation time kept.
  Reply again = Delete(AgentPath(id), admin_);
  ASSERT_EQ(again.status, 200) << again.Describe();
  EXPECT_EQ(again.json["revoked_at"], deleted.json["revoked_at"]);
  Reply audit = Get("/api/v1/audit-events?action=agent.revoke", admin_);
  EXPECT_EQ(audit.json["total"], 2) << audit.body;
  EXPECT_EQ(audit.json["items"][0]["resource_id"], absl::StrCat(id));
}

// The agent's token can be revoked like any other token, with the same
// effect.
TEST_F(RestAgentsTest, RevokingAnAgentsTokenRevokesTheAgent) {
  std::string agent_token;
  const int64_t id = RegisterAgent(admin_, "branch-dc1", "", &agent_token);
  ASSERT_GT(id, 0);
  const int64_t token_id =
      Get(AgentPath(id), admin_).json["token_id"].get<int64_t>();
  Reply revoked =
      Post(absl::StrCat("/api/v1/tokens/", token_id, "/revoke"), admin_);
  ASSERT_EQ(revoked.status, 200) << revoked.Describe();
  EXPECT_EQ(revoked.json["role"], "agent");
  EXPECT_TRUE(revoked.json["revoked_at"].is_string());
  EXPECT_EQ(Get(AgentPath(id), admin_).json["revoked_at"],
            revoked.json["revoked_at"]);
  ExpectError(Get("/api/v1/agents", agent_token), 401, "unauthenticated",
              "revoked");
  Reply audit = Get("/api/v1/audit-events?action=token.revoke", admin_);
  ASSERT_EQ(audit.json["total"], 1) << audit.body;
  EXPECT_EQ(audit.json["items"][0]["details"]["agent_id"], id);
  EXPECT_EQ(audit.json["items"][0]["details"]["kind"], "agent");
}

TEST_F(RestAgentsTest, AgentAndRegistrationTokensAreRefusedOnTheAdminApi) {
  std::string agent_token;
  ASSERT_GT(RegisterAgent(admin_, "branch-dc1", "", &agent_token), 0);
  const std::string registration = CreateRegistrationToken(admin_, "dc2");
  const auto before = RowCounts();
  for (const std::string& token : {agent_token, registration}) {
    SCOPED_TRACE(token.substr(0, 11));
    ExpectError(Get("/api/v1/agents", token), 403, "permission_denied",
                "only works on the agent spine");
    ExpectError(Post(kRegistrationTokens, token, {{"name", "sneaky"}}), 403,
                "permission_denied", "agent spine");
    ExpectError(CreateIdentity(token, "X-1"), 403, "permission_denied",
                "agent spine");
    ExpectError(Get("/metrics", token), 403, "permission_denied",
                "agent spine");
  }
  EXPECT_EQ(RowCounts(), before);
}

// --- Connectors in agent mode

Json AgentConnector(const std::string& business_id, const std::string& agent) {
  Json body = {{"business_id", business_id},
               {"type", "csv"},
               {"mode", "agent"},
               // A path on the agent's machine, not here: never opened here.
               {"config", {{"path", "/srv/agent-only/hr.csv"}}}};
  if (!agent.empty()) body["agent"] = agent;
  return body;
}

TEST_F(RestAgentsTest, ConnectorInAgentModeIsBoundToAnAgent) {
  Reply created = Post("/api/v1/connectors", admin_,
                       AgentConnector("onprem-hr", "branch-sites"));
  ASSERT_EQ(created.status, 201) << created.Describe();
  const int64_t id = created.json["id"].get<int64_t>();
  EXPECT_EQ(created.json["mode"], "agent");
  EXPECT_EQ(created.json["agent"], "branch-sites");
  EXPECT_EQ(created.json["config"]["path"], "/srv/agent-only/hr.csv");
  Reply got = Get(absl::StrCat("/api/v1/connectors/", id), admin_);
  EXPECT_EQ(got.json, created.json);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM connectors WHERE id=", id,
                               " AND mode='agent' AND agent='branch-sites'")),
            1);
  // A hosted connector shows an empty binding.
  const int64_t hosted =
      CreateCsvConnector(admin_, "hosted-hr", WriteCsv("hosted.csv", 1));
  EXPECT_EQ(
      Get(absl::StrCat("/api/v1/connectors/", hosted), admin_).json["agent"],
      "");

  // Its config is the agent's: keys this dispatcher's csv would refuse are
  // not checked here; the type is.
  Json loose = AgentConnector("loose-hr", "branch-dc1");
  loose["config"]["colour"] = "blue";
  Reply loose_created = Post("/api/v1/connectors", admin_, loose);
  EXPECT_EQ(loose_created.status, 201) << loose_created.Describe();

  // Testing one is not supported (yet): 409, and it did not build here.
  ExpectError(Post(absl::StrCat("/api/v1/connectors/", id, "/test"), admin_),
              409, "failed_precondition", "not supported");

  // Rebinding, and the audit trail.
  Reply rebound = Patch(absl::StrCat("/api/v1/connectors/", id), admin_,
                        {{"agent", "branch-dc1"}});
  ASSERT_EQ(rebound.status, 200) << rebound.Describe();
  EXPECT_EQ(rebound.json["agent"], "branch-dc1");
  Reply audit = Get("/api/v1/audit-events?action=connector.update", admin_);
  ASSERT_EQ(audit.json["total"], 1) << audit.body;
  EXPECT_EQ(audit.json["items"][0]["details"]["agent"], "branch-dc1");

  // Back to hosted: the binding goes, and the config must now build here.
  const int64_t loose_id = loose_created.json["id"].get<int64_t>();
  const std::string loose_path = absl::StrCat("/api/v1/connectors/", loose_id);
  ExpectError(Patch(loose_path, admin_, {{"mode", "hosted"}}), 400,
              "invalid_argument", "colour");
  Reply local = Patch(
      loose_path, admin_,
      {{"mode", "hosted"}, {"config", {{"path", WriteCsv("local.csv", 1)}}}});
  ASSERT_EQ(local.status, 200) << local.Describe();
  EXPECT_EQ(local.json["mode"], "hosted");
  EXPECT_EQ(local.json["agent"], "");
  // And to an agent again: it needs a binding.
  ExpectError(Patch(loose_path, admin_, {{"mode", "agent"}}), 400,
              "invalid_argument", "'agent' is required");
  Reply moved =
      Patch(loose_path, admin_, {{"mode", "agent"}, {"agent", "branch-dc2"}});
  ASSERT_EQ(moved.status, 200) << moved.Describe();
  EXPECT_EQ(moved.json["agent"], "branch-dc2");
}

TEST_F(RestAgentsTest, AgentModeNeedsABindingAndAKnownType) {
  const int64_t hosted =
      CreateCsvConnector(admin_, "hosted-hr", WriteCsv("hosted.csv", 1));
  Reply bound =
      Post("/api/v1/connectors", admin_, AgentConnector("agent-hr", "dc1"));
  ASSERT_EQ(bound.status, 201) << bound.Describe();
  const int64_t agent_id = bound.json["id"].get<int64_t>();
  const auto before = RowCounts();
  const Json hosted_json =
      Get(absl::StrCat("/api/v1/connectors/", hosted), admin_).json;
  // Create.
  ExpectError(Post("/api/v1/connectors", admin_, AgentConnector("x1", "")), 400,
              "invalid_argument", "'agent' is required");
  ExpectError(Post("/api/v1/connectors", admin_,
                   AgentConnector("x2", std::string(201, 'a'))),
              400, "invalid_argument", "'agent' is longer");
  ExpectError(
      Post("/api/v1/connectors", admin_, AgentConnector("x2", "dc\x01")), 400,
      "invalid_argument", "'agent' holds a control character");
  Json unknown = AgentConnector("x3", "dc1");
  unknown["type"] = "no-such-type";
  ExpectError(Post("/api/v1/connectors", admin_, unknown), 400,
              "invalid_argument", "no-such-type");
  Json with_auth = AgentConnector("x4", "dc1");
  with_auth["auth_config"] = {{"password", "p"}};
  ExpectError(Post("/api/v1/connectors", admin_, with_auth), 400,
              "invalid_argument", "auth_config");
  Json hosted_bound = CsvConnectorBody("x5", WriteCsv("x5.csv", 1));
  hosted_bound["agent"] = "dc1";
  ExpectError(Post("/api/v1/connectors", admin_, hosted_bound), 400,
              "invalid_argument", "only for connectors in mode");
  Json carrier = AgentConnector("x6", "dc1");
  carrier["mode"] = "carrier";
  ExpectError(Post("/api/v1/connectors", admin_, carrier), 400,
              "invalid_argument", "mode");
  // Update.
  const std::string hosted_path = absl::StrCat("/api/v1/connectors/", hosted);
  const std::string agent_path = absl::StrCat("/api/v1/connectors/", agent_id);
  ExpectError(Patch(hosted_path, admin_, {{"agent", "dc1"}}), 400,
              "invalid_argument", "only for connectors in mode");
  ExpectError(Patch(hosted_path, admin_, {{"mode", "agent"}}), 400,
              "invalid_argument", "'agent' is required");
  ExpectError(Patch(agent_path, admin_, {{"agent", ""}}), 400,
              "invalid_argument", "'agent' is required");
  ExpectError(Patch(agent_path, admin_, {{"auth_config", {{"password", "p"}}}}),
              400, "invalid_argument", "auth_config");
  EXPECT_EQ(RowCounts(), before);
  EXPECT_EQ(Get(hosted_path, admin_).json, hosted_json);
}

// A hosted connector with a stored secret moves to an agent only once the
// secret is cleared: agents never get it.
TEST_F(RestAgentsTest, AStoredSecretKeepsAConnectorHosted) {
  Json body = CsvConnectorBody("vault-hr", WriteCsv("vault.csv", 1));
  body["auth_config"] = {{"password", "p"}};
  Reply created = Post("/api/v1/connectors", admin_, body);
  ASSERT_EQ(created.status, 201) << created.Describe();
  const std::string path =
      absl::StrCat("/api/v1/connectors/", created.json["id"].get<int64_t>());
  ExpectError(Patch(path, admin_, {{"mode", "agent"}, {"agent", "dc1"}}), 400,
              "invalid_argument", "auth_config");
  Reply moved = Patch(
      path, admin_,
      {{"mode", "agent"}, {"agent", "dc1"}, {"auth_config", Json::object()}});
  ASSERT_EQ(moved.status, 200) << moved.Describe();
  EXPECT_EQ(moved.json["mode"], "agent");
  EXPECT_EQ(moved.json["auth_config_set"], false);
}

// A connector with an active run stays where the run is going on.
TEST_F(RestAgentsTest, AConnectorWithAnActiveRunDoesNotMove) {
  const int64_t id =
      CreateCsvConnector(admin_, "busy-hr", WriteCsv("busy.csv", 1));
  RunRow run;  // Running in some other process.
  run.tenant_id = tenant_id_;
  run.connector_id = id;
  run.chunk_size = 10;
  run.owner = "elsewhere";
  auto created = store_->CreateRun(run);
  ASSERT_TRUE(created.ok()) << created.status();
  const std::string path = absl::StrCat("/api/v1/connectors/", id);
  const auto before = RowCounts();
  ExpectError(Patch(path, admin_, {{"mode", "agent"}, {"agent", "dc1"}}), 409,
              "failed_precondition", "active run");
  EXPECT_EQ(RowCounts(), before);
  // Other changes are fine.
  EXPECT_EQ(Patch(path, admin_, {{"deletion_threshold", 0.3}}).status, 200);
}

}  // namespace
}  // namespace idsync::testing
