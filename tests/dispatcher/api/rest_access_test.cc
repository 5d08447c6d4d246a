// Who may call what: the tenant-isolation matrix, roles (admin, auditor),
// agent tokens, revoked and missing credentials. Driven by one table of every
// route, checked against the server's own /openapi.json so that no route is
// left out.
#include <map>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/dispatcher/api/api_fixture.h"

namespace idsync::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// Which resource a route's {id} names.
enum class IdOf {
  kNone,
  kIdentity,
  kAccount,
  kEntitlement,
  kGrant,
  kConnector,
  kRun,
  kToken,
  kWebhook,
  kDelivery,  // {id} the webhook, {delivery_id} its delivery.
  kAgent
};

// What a route needs: open to anyone, any service token, or a tenant's data
// (kAdminRead: a read for admin tokens only).
enum class Kind { kPublic, kOps, kRead, kWrite, kAdminRead };

struct RouteSpec {
  const char* method;
  const char* path;  // As in /openapi.json.
  IdOf id;
  Kind kind;
};

// Every route the server serves.
const std::vector<RouteSpec>& AllRoutes() {
  static const auto* routes = new std::vector<RouteSpec>{
      {"GET", "/health", IdOf::kNone, Kind::kPublic},
      {"GET", "/openapi.json", IdOf::kNone, Kind::kPublic},
      {"GET", "/metrics", IdOf::kNone, Kind::kOps},
      {"GET", "/api/v1/identities", IdOf::kNone, Kind::kRead},
      {"POST", "/api/v1/identities", IdOf::kNone, Kind::kWrite},
      {"GET", "/api/v1/identities/{id}", IdOf::kIdentity, Kind::kRead},
      {"PATCH", "/api/v1/identities/{id}", IdOf::kIdentity, Kind::kWrite},
      {"POST", "/api/v1/identities/{id}/deactivate", IdOf::kIdentity,
       Kind::kWrite},
      {"GET", "/api/v1/accounts", IdOf::kNone, Kind::kRead},
      {"GET", "/api/v1/accounts/{id}", IdOf::kAccount, Kind::kRead},
      {"GET", "/api/v1/entitlements", IdOf::kNone, Kind::kRead},
      {"GET", "/api/v1/entitlements/{id}", IdOf::kEntitlement, Kind::kRead},
      {"GET", "/api/v1/grants", IdOf::kNone, Kind::kRead},
      {"GET", "/api/v1/grants/{id}", IdOf::kGrant, Kind::kRead},
      {"GET", "/api/v1/connectors", IdOf::kNone, Kind::kRead},
      {"POST", "/api/v1/connectors", IdOf::kNone, Kind::kWrite},
      {"GET", "/api/v1/connectors/{id}", IdOf::kConnector, Kind::kRead},
      {"PATCH", "/api/v1/connectors/{id}", IdOf::kConnector, Kind::kWrite},
      {"DELETE", "/api/v1/connectors/{id}", IdOf::kConnector, Kind::kWrite},
      {"POST", "/api/v1/connectors/{id}/test", IdOf::kConnector, Kind::kWrite},
      {"POST", "/api/v1/connectors/{id}/sync", IdOf::kConnector, Kind::kWrite},
      {"GET", "/api/v1/connectors/{id}/runs", IdOf::kConnector, Kind::kRead},
      {"GET", "/api/v1/sync-runs/{id}", IdOf::kRun, Kind::kRead},
      {"POST", "/api/v1/sync-runs/{id}/cancel", IdOf::kRun, Kind::kWrite},
      {"GET", "/api/v1/sync-runs/{id}/events", IdOf::kRun, Kind::kRead},
      {"GET", "/api/v1/tokens", IdOf::kNone, Kind::kRead},
      {"POST", "/api/v1/tokens", IdOf::kNone, Kind::kWrite},
      {"POST", "/api/v1/tokens/{id}/revoke", IdOf::kToken, Kind::kWrite},
      {"POST", "/api/v1/agents/registration-tokens", IdOf::kNone, Kind::kWrite},
      {"GET", "/api/v1/agents", IdOf::kNone, Kind::kRead},
      {"GET", "/api/v1/agents/{id}", IdOf::kAgent, Kind::kRead},
      {"DELETE", "/api/v1/agents/{id}", IdOf::kAgent, Kind::kWrite},
      {"GET", "/api/v1/audit-events", IdOf::kNone, Kind::kRead},
      {"GET", "/api/v1/webhooks", IdOf::kNone, Kind::kRead},
      {"POST", "/api/v1/webhooks", IdOf::kNone, Kind::kWrite},
      {"GET", "/api/v1/webhooks/{id}", IdOf::kWebhook, Kind::kRead},
      {"PATCH", "/api/v1/webhooks/{id}", IdOf::kWebhook, Kind::kWrite},
      {"DELETE", "/api/v1/webhooks/{id}", IdOf::kWebhook, Kind::kWrite},
      {"GET", "/api/v1/webhooks/{id}/deliveries", IdOf::kWebhook, Kind::kRead},
      {"POST", "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay",
       IdOf::kDelivery, Kind::kWrite},
      {"GET", "/api/v1/callback-secret", IdOf::kNone, Kind::kAdminRead},
  };
  return *routes;
}

// The table behind a list route.
std::string TableOf(const std::string& list_path) {
  std::string table = list_path.substr(list_path.rfind('/') + 1);
  return table == "audit-events" ? "audit_events" : table;
}

int64_t IdIn(const TenantData& t, IdOf id) {
  switch (id) {
    case IdOf::kIdentity:
      return t.identity_id;
    case IdOf::kAccount:
      return t.account_id;
    case IdOf::kEntitlement:
      return t.entitlement_id;
    case IdOf::kGrant:
      return t.grant_id;
    case IdOf::kConnector:
      return t.connector_id;
    case IdOf::kRun:
      return t.run_id;
    case IdOf::kToken:
      return t.auditor_token_id;
    case IdOf::kWebhook:
    case IdOf::kDelivery:
      return t.webhook_id;
    case IdOf::kAgent:
      return t.agent_id;
    case IdOf::kNone:
      break;
  }
  return 0;
}

class RestAccessTest : public ApiTest {
 protected:
  // The table and the server's OpenAPI document list the same routes.
  void ExpectTableCoversOpenApi() {
    Reply doc = Get("/openapi.json", "");
    ASSERT_EQ(doc.status, 200) << doc.Describe();
    std::set<std::pair<std::string, std::string>> served, table;
    for (const auto& [path, methods] : doc.json["paths"].items()) {
      for (const auto& [method, op] : methods.items()) {
        served.insert({absl::AsciiStrToUpper(method), path});
      }
    }
    for (const RouteSpec& r : AllRoutes()) table.insert({r.method, r.path});
    for (const auto& route : served) {
      EXPECT_EQ(table.count(route), 1u)
          << "route missing from the test table: " << route.first << " "
          << route.second;
    }
    for (const auto& route : table) {
      EXPECT_EQ(served.count(route), 1u)
          << "route not in /openapi.json: " << route.first << " "
          << route.second;
    }
    EXPECT_GE(served.size(), 29u);
  }

  // The concrete path of `r` for tenant `t`'s resources.
  static std::string PathOf(const RouteSpec& r, const TenantData& t) {
    return absl::StrReplaceAll(
        r.path, {{"{id}", absl::StrCat(IdIn(t, r.id))},
                 {"{delivery_id}", absl::StrCat(t.delivery_id)}});
  }

  // A body a write route would accept.
  std::string BodyOf(const RouteSpec& r) {
    const std::string path = r.path;
    const std::string method = r.method;
    ++serial_;
    if (method == "GET" || method == "DELETE") return "";
    if (method == "PATCH" && r.id == IdOf::kIdentity) {
      return Json({{"department", "Changed"}}).dump();
    }
    if (method == "PATCH" && r.id == IdOf::kWebhook) {
      return Json({{"event_types", {"identity.*", "sync.*"}}}).dump();
    }
    if (method == "PATCH") {
      return Json({{"deletion_threshold", 0.5}}).dump();
    }
    if (path == "/api/v1/identities") {
      return Json({{"external_id", absl::StrCat("new-joiner-", serial_)}})
          .dump();
    }
    if (path == "/api/v1/connectors") {
      return CsvConnectorBody(absl::StrCat("new-source-", serial_),
                              WriteCsv("any.csv", 1))
          .dump();
    }
    if (path == "/api/v1/agents/registration-tokens") {
      return Json({{"name", absl::StrCat("new-agent-", serial_)}}).dump();
    }
    if (path == "/api/v1/tokens") {
      return Json({{"name", absl::StrCat("new-token-", serial_)},
                   {"role", "auditor"}})
          .dump();
    }
    if (path == "/api/v1/webhooks") {
      return Json({{"url", absl::StrCat("http://127.0.0.1:9/new-", serial_)},
                   {"event_types", {"*"}}})
          .dump();
    }
    if (path == "/api/v1/connectors/{id}/sync") return "{}";
    return "";
  }

  // Per-tenant state that no other tenant's request may change.
  std::map<std::string, int64_t> TenantState(int64_t tenant) {
    std::map<std::string, int64_t> state;
    for (const char* table :
         {"identities", "accounts", "entitlements", "grants", "connectors",
          "sync_runs", "tokens", "audit_events", "idempotency_keys", "webhooks",
          "deliveries", "outbox", "agents"}) {
      state[table] = Count(absl::StrCat("SELECT count(*) FROM ", table,
                                        " WHERE tenant_id=", tenant));
    }
    const std::string where = absl::StrCat(" WHERE tenant_id=", tenant);
    state["identity_changes"] = Count(absl::StrCat(
        "SELECT coalesce(max(updated_at), 0) FROM identities", where));
    state["inactive_identities"] =
        Count(absl::StrCat("SELECT count(*) FROM identities", where,
                           " AND deleted_at IS NOT NULL"));
    state["connector_changes"] = Count(absl::StrCat(
        "SELECT coalesce(max(updated_at), 0) FROM connectors", where));
    state["revoked_tokens"] = Count(absl::StrCat(
        "SELECT count(*) FROM tokens", where, " AND revoked_at IS NOT NULL"));
    state["runs_running"] = Count(absl::StrCat("SELECT count(*) FROM sync_runs",
                                               where, " AND status='running'"));
    state["webhook_changes"] = Count(absl::StrCat(
        "SELECT coalesce(max(updated_at), 0) FROM webhooks", where));
    state["delivery_changes"] = Count(absl::StrCat(
        "SELECT coalesce(max(updated_at), 0) FROM deliveries", where));
    state["callback_secret"] =
        Count(absl::StrCat("SELECT count(*) FROM tenants WHERE id=", tenant,
                           " AND callback_secret IS NOT NULL"));
    return state;
  }

  int serial_ = 0;
};

TEST_F(RestAccessTest, TheRouteTableCoversEveryRouteOfTheServer) {
  ExpectTableCoversOpenApi();
}

// With tenant B's admin token, every route on tenant A's resources answers
// 404 (or 403) and never with A's data; lists show B's rows only; A is left
// exactly as it was.
TEST_F(RestAccessTest, TenantIsolationMatrix) {
  ExpectTableCoversOpenApi();
  const TenantData a = SeedTenant("acme", "alphamark", admin_);
  const TenantData b = SeedTenant("bravo", "bravomark");
  ASSERT_FALSE(HasFailure());
  Reply a_secret = Get("/api/v1/callback-secret", a.admin);
  ASSERT_EQ(a_secret.status, 200) << a_secret.Describe();
  const auto a_before = TenantState(a.tenant_id);
  const Json a_connector =
      Get(absl::StrCat("/api/v1/connectors/", a.connector_id), a.admin).json;

  int id_routes = 0, lists = 0;
  for (const RouteSpec& r : AllRoutes()) {
    if (r.kind == Kind::kPublic || r.kind == Kind::kOps) continue;
    SCOPED_TRACE(absl::StrCat(r.method, " ", r.path));
    if (r.kind == Kind::kAdminRead) {
      // The callback secret: B gets its own.
      Reply reply = Get(r.path, b.admin);
      ASSERT_EQ(reply.status, 200) << reply.Describe();
      EXPECT_NE(reply.json["secret"], a_secret.json["secret"]);
    } else if (r.id != IdOf::kNone) {
      ++id_routes;
      Reply reply = Send(r.method, PathOf(r, a), b.admin, BodyOf(r));
      EXPECT_TRUE(reply.status == 404 || reply.status == 403)
          << reply.Describe();
      ExpectError(reply, reply.status,
                  reply.status == 404 ? "not_found" : "permission_denied");
      EXPECT_THAT(reply.body, Not(HasSubstr("alphamark")));
      if (r.id == IdOf::kIdentity) {
        // A's synced identity too.
        Reply synced =
            Send(r.method,
                 absl::StrReplaceAll(
                     r.path, {{"{id}", absl::StrCat(a.synced_identity_id)}}),
                 b.admin, BodyOf(r));
        EXPECT_EQ(synced.status, 404) << synced.Describe();
      }
    } else if (std::string(r.method) == "GET") {
      ++lists;
      Reply reply = Get(r.path, b.admin);
      ASSERT_EQ(reply.status, 200) << reply.Describe();
      EXPECT_THAT(reply.body, Not(HasSubstr("alphamark")));
      ASSERT_TRUE(reply.json["items"].is_array()) << reply.body;
      EXPECT_FALSE(reply.json["items"].empty()) << "B has rows here";
      EXPECT_EQ(reply.json["total"], reply.json["items"].size());
      // Every row listed is B's.
      const std::string table = TableOf(r.path);
      for (const Json& item : reply.json["items"]) {
        EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM ", table,
                                     " WHERE tenant_id=", b.tenant_id,
                                     " AND id=", item["id"].get<int64_t>())),
                  1)
            << "not B's row: " << item.dump();
      }
    }
  }
  EXPECT_EQ(id_routes, 23);
  EXPECT_EQ(lists, 9);

  // B's own runs list holds B's run only.
  Reply runs = Get(absl::StrCat("/api/v1/connectors/", b.connector_id, "/runs"),
                   b.admin);
  ASSERT_EQ(runs.status, 200) << runs.Describe();
  ASSERT_EQ(runs.json["total"], 1);
  EXPECT_EQ(runs.json["items"][0]["id"], b.run_id);
  // Filters cannot reach across either.
  Reply by_source = Get(
      "/api/v1/identities?source=alphamark-hr&include_inactive=true", b.admin);
  EXPECT_EQ(by_source.json["total"], 0) << by_source.body;
  Reply by_identity = Get("/api/v1/grants?identity_external_id=E0", b.admin);
  ASSERT_EQ(by_identity.status, 200) << by_identity.Describe();
  ASSERT_EQ(by_identity.json["total"], 1) << by_identity.body;
  EXPECT_EQ(by_identity.json["items"][0]["id"], b.grant_id);

  // Creating in B with A's names works: names are unique per tenant only.
  EXPECT_EQ(CreateIdentity(b.admin, "alphamark-joiner").status, 201);
  EXPECT_EQ(Post("/api/v1/connectors", b.admin,
                 CsvConnectorBody("alphamark-hr",
                                  WriteCsv("b2.csv", 1, 0, "x", b.name)))
                .status,
            201);
  // But never with A's files: each tenant reads only its import directory.
  ExpectError(Post("/api/v1/connectors", b.admin,
                   CsvConnectorBody("steal-hr", WriteCsv("a.csv", 1))),
              403, "permission_denied");

  // A is exactly as it was.
  EXPECT_EQ(TenantState(a.tenant_id), a_before);
  EXPECT_EQ(
      Get(absl::StrCat("/api/v1/connectors/", a.connector_id), a.admin).json,
      a_connector);
  Reply identity =
      Get(absl::StrCat("/api/v1/identities/", a.identity_id), a.admin);
  EXPECT_EQ(identity.json["active"], true);
  EXPECT_EQ(identity.json["department"], "alphamark");
  EXPECT_EQ(Get("/api/v1/identities", a.auditor).status, 200)
      << "A's auditor token was revoked";
  Reply agent = Get(absl::StrCat("/api/v1/agents/", a.agent_id), a.admin);
  ASSERT_EQ(agent.status, 200) << agent.Describe();
  EXPECT_TRUE(agent.json["revoked_at"].is_null()) << "A's agent was revoked";
  EXPECT_EQ(
      Get(absl::StrCat("/api/v1/sync-runs/", a.run_id), a.admin).json["status"],
      "succeeded");
  EXPECT_EQ(Get("/api/v1/callback-secret", a.admin).json, a_secret.json);
}

// An auditor reads everything; every write is 403 and writes nothing, not
// even its Idempotency-Key.
TEST_F(RestAccessTest, AuditorReadsEverythingAndWritesNothing) {
  const TenantData a = SeedTenant("acme", "alphamark", admin_);
  ASSERT_FALSE(HasFailure());
  int reads = 0, writes = 0, admin_reads = 0;
  for (const RouteSpec& r : AllRoutes()) {
    if (r.kind == Kind::kPublic) continue;
    SCOPED_TRACE(absl::StrCat(r.method, " ", r.path));
    if (r.kind == Kind::kOps) {
      // The operator's: no tenant token reads it.
      ExpectError(Get(PathOf(r, a), a.auditor), 403, "permission_denied");
      ExpectError(Get(PathOf(r, a), a.admin), 403, "permission_denied");
      continue;
    }
    if (r.kind == Kind::kAdminRead) {
      ++admin_reads;
      const auto before = RowCounts();
      Reply reply = Get(PathOf(r, a), a.auditor);
      ExpectError(reply, 403, "permission_denied", "auditor");
      EXPECT_EQ(RowCounts(), before);
    } else if (r.kind == Kind::kWrite) {
      ++writes;
      const auto before = RowCounts();
      Reply reply = Send(r.method, PathOf(r, a), a.auditor, BodyOf(r),
                         {{"Idempotency-Key", absl::StrCat("k", writes)}});
      ExpectError(reply, 403, "permission_denied", "auditor");
      EXPECT_EQ(RowCounts(), before);
    } else {
      ++reads;
      Reply reply = Get(PathOf(r, a), a.auditor);
      EXPECT_EQ(reply.status, 200) << reply.Describe();
      if (r.id == IdOf::kNone && r.kind == Kind::kRead) {
        EXPECT_FALSE(reply.json["items"].empty()) << reply.body;
      }
    }
  }
  EXPECT_EQ(writes, 17);
  EXPECT_EQ(reads, 20);
  EXPECT_EQ(admin_reads, 1);
  // And the same requests with the admin token go through (the table is
  // not refused for some other reason).
  Reply patched =
      Send("PATCH", absl::StrCat("/api/v1/identities/", a.identity_id), a.admin,
           Json({{"department", "ok"}}).dump());
  EXPECT_EQ(patched.status, 200) << patched.Describe();
}

// Agent tokens work on the agent spine only: 403 on every API route. So do
// registration tokens, which are for registering an agent there.
TEST_F(RestAccessTest, AgentTokenIsRefusedOnEveryRoute) {
  const TenantData a = SeedTenant("acme", "alphamark", admin_);
  const std::string inserted = InsertAgentToken(a.tenant_id);
  const std::string registration =
      CreateRegistrationToken(a.admin, "unused-agent", "dc1");
  ASSERT_FALSE(HasFailure());
  for (const auto& [name, token] :
       std::vector<std::pair<std::string, std::string>>{
           {"registered agent", a.agent_token},
           {"agent token", inserted},
           {"registration token", registration}}) {
    SCOPED_TRACE(name);
    int refused = 0;
    for (const RouteSpec& r : AllRoutes()) {
      SCOPED_TRACE(absl::StrCat(r.method, " ", r.path));
      const auto before = RowCounts();
      Reply reply = Send(r.method, PathOf(r, a), token, BodyOf(r));
      if (r.kind == Kind::kPublic) {
        EXPECT_EQ(reply.status, 200) << reply.Describe();
        continue;
      }
      ++refused;
      ExpectError(reply, 403, "permission_denied", "only works on the agent");
      EXPECT_EQ(RowCounts(), before);
    }
    EXPECT_EQ(refused, 39);
  }
  // The registration token was not used up by any of that.
  EXPECT_TRUE(RegisterWith(registration).ok());
}

TEST_F(RestAccessTest, RevokedTokenIsUnauthenticated) {
  int64_t id = 0;
  const std::string ci = CreateToken(admin_, "ci-pipeline", "admin", &id);
  ASSERT_FALSE(ci.empty());
  EXPECT_TRUE(absl::StartsWith(ci, "idsync_svc_")) << ci;
  EXPECT_GE(ci.size(), 11u + 43u);
  EXPECT_EQ(CreateIdentity(ci, "R-1").status, 201);

  Reply revoked = Post(absl::StrCat("/api/v1/tokens/", id, "/revoke"), admin_);
  ASSERT_EQ(revoked.status, 200) << revoked.Describe();
  EXPECT_TRUE(revoked.json["revoked_at"].is_string()) << revoked.body;
  EXPECT_THAT(revoked.body, Not(HasSubstr(ci)));

  const auto before = RowCounts();
  for (const Reply& r : {Get("/api/v1/identities", ci),
                         CreateIdentity(ci, "R-2"), Get("/metrics", ci)}) {
    ExpectError(r, 401, "unauthenticated", "revoked");
    EXPECT_EQ(r.Header("WWW-Authenticate"), "Bearer");
  }
  EXPECT_EQ(RowCounts(), before);
  // The listing shows it revoked, and never a secret.
  Reply tokens = Get("/api/v1/tokens", admin_);
  bool found = false;
  for (const Json& t : tokens.json["items"]) {
    EXPECT_FALSE(t.contains("secret"));
    if (t["id"] == id) {
      found = true;
      EXPECT_TRUE(t["revoked_at"].is_string());
      EXPECT_EQ(t["prefix"], ci.substr(0, 15));
    }
  }
  EXPECT_TRUE(found) << tokens.body;
}

TEST_F(RestAccessTest, MissingOrGarbageAuthorizationIsUnauthenticated) {
  const auto before = RowCounts();
  const std::string unknown = NewToken(kServiceTokenPrefix);
  for (const auto& [name, header] :
       std::vector<std::pair<std::string, std::string>>{
           {"missing", ""},
           {"empty bearer", "Bearer "},
           {"basic", "Basic dXNlcjpwYXNz"},
           {"not an idsync token", "Bearer garbage"},
           {"unknown token", "Bearer " + unknown},
           {"token without scheme", admin_},
           {"too long", "Bearer idsync_svc_" + std::string(500, 'a')}}) {
    SCOPED_TRACE(name);
    httplib::Headers headers;
    if (!header.empty()) headers.emplace("Authorization", header);
    for (const auto& [method, path, body] :
         std::vector<std::tuple<std::string, std::string, std::string>>{
             {"GET", "/api/v1/identities", ""},
             {"POST", "/api/v1/identities", R"({"external_id":"X-1"})"},
             {"GET", "/api/v1/sync-runs/1/events", ""},
             {"GET", "/metrics", ""}}) {
      SCOPED_TRACE(method + " " + path);
      Reply r = Send(method, path, "", body, headers);
      ExpectError(r, 401, "unauthenticated");
      EXPECT_EQ(r.Header("WWW-Authenticate"), "Bearer");
    }
  }
  EXPECT_EQ(RowCounts(), before);
  // The scheme is case-insensitive.
  httplib::Headers lower = {{"Authorization", "bearer " + admin_}};
  EXPECT_EQ(Send("GET", "/api/v1/identities", "", "", lower).status, 200);
}

}  // namespace
}  // namespace idsync::testing
