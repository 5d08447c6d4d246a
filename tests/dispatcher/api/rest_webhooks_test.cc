// Webhook endpoints, their deliveries and the callback secret over real
// HTTP: CRUD, the signing secret shown once (never in reads, the audit log,
// idempotent replays or the store in plaintext), SSRF refusal of private
// targets, event type validation, the per-tenant limit, delivery listing
// and replay.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "dispatcher/secrets.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/dispatcher/api/api_fixture.h"

namespace idsync::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using WebhookTest = ApiTest;

// Production's default: private targets are refused.
class WebhookTargetTest : public ApiTest {
 protected:
  WebhookTargetTest() { allow_private_callbacks_ = false; }
};

httplib::Headers Key(const std::string& key) {
  return {{"Idempotency-Key", key}};
}

std::string WebhookPath(int64_t id, const std::string& rest = "") {
  return absl::StrCat("/api/v1/webhooks/", id, rest);
}

// The secret is nowhere in the store's files (it is sealed).
void ExpectNotInStoreFiles(const std::string& dir, const std::string& secret) {
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    if (!absl::StartsWith(entry.path().filename().string(), "store.db")) {
      continue;
    }
    ++files;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find(secret), std::string::npos)
        << "the secret is in " << entry.path();
  }
  EXPECT_GE(files, 1);
}

TEST_F(WebhookTest, CreateReadUpdateListAndDelete) {
  Reply created = Post("/api/v1/webhooks", admin_,
                       {{"url", "http://127.0.0.1:9/hooks/hr?tag=1"},
                        {"event_types", {"identity.created", "sync.*"}}});
  ASSERT_EQ(created.status, 201) << created.Describe();
  const Json webhook = created.json["webhook"];
  const int64_t id = webhook["id"].get<int64_t>();
  EXPECT_GT(id, 0);
  EXPECT_EQ(webhook["url"], "http://127.0.0.1:9/hooks/hr?tag=1");
  EXPECT_EQ(webhook["event_types"], Json({"identity.created", "sync.*"}));
  EXPECT_EQ(webhook["enabled"], true);
  EXPECT_EQ(webhook["disabled_reason"], "");
  EXPECT_TRUE(webhook["created_at"].is_string());
  EXPECT_EQ(webhook["created_at"], webhook["updated_at"]);
  const std::string secret = created.json["secret"].get<std::string>();
  EXPECT_TRUE(absl::StartsWith(secret, "whsec_")) << secret;
  EXPECT_TRUE(SigningKey(secret).ok()) << secret;
  EXPECT_EQ(SigningKey(secret).value_or("").size(), 32u);

  // Reads never show the secret, to admins or auditors.
  const std::string auditor = CreateToken(admin_, "viewer", "auditor");
  for (const std::string& token : {admin_, auditor}) {
    Reply got = Get(WebhookPath(id), token);
    ASSERT_EQ(got.status, 200) << got.Describe();
    EXPECT_EQ(got.json, webhook);
    EXPECT_FALSE(got.json.contains("secret"));
    Reply list = Get("/api/v1/webhooks", token);
    ASSERT_EQ(list.status, 200) << list.Describe();
    EXPECT_EQ(list.json["total"], 1);
    EXPECT_EQ(list.json["items"][0], webhook);
    for (const Reply& r : {got, list}) {
      EXPECT_THAT(r.body, Not(HasSubstr(secret)));
      EXPECT_THAT(r.body, Not(HasSubstr("whsec_")));
    }
  }

  // PATCH changes only the fields present.
  Reply disabled = Patch(WebhookPath(id), admin_, {{"enabled", false}});
  ASSERT_EQ(disabled.status, 200) << disabled.Describe();
  EXPECT_EQ(disabled.json["enabled"], false);
  EXPECT_EQ(disabled.json["url"], webhook["url"]);
  EXPECT_EQ(disabled.json["event_types"], webhook["event_types"]);
  Reply changed = Patch(WebhookPath(id), admin_,
                        {{"url", "https://127.0.0.1:8443/v2"},
                         {"event_types", {"*"}},
                         {"enabled", true}});
  ASSERT_EQ(changed.status, 200) << changed.Describe();
  EXPECT_EQ(changed.json["url"], "https://127.0.0.1:8443/v2");
  EXPECT_EQ(changed.json["event_types"], Json({"*"}));
  EXPECT_EQ(changed.json["enabled"], true);
  EXPECT_EQ(changed.json["created_at"], webhook["created_at"]);
  EXPECT_EQ(Get(WebhookPath(id), auditor).json, changed.json);
  ExpectError(Patch(WebhookPath(id), auditor, {{"enabled", false}}), 403,
              "permission_denied", "auditor");

  // Paging like the other lists.
  const int64_t second =
      CreateWebhook(admin_, "http://127.0.0.1:9/b", {"identity.*"});
  const int64_t third = CreateWebhook(admin_, "http://127.0.0.1:9/c", {"*"});
  Reply page = Get("/api/v1/webhooks?limit=2", admin_);
  ASSERT_EQ(page.status, 200) << page.Describe();
  EXPECT_EQ(page.json["total"], 3);
  ASSERT_EQ(page.json["items"].size(), 2u);
  ASSERT_FALSE(page.json["next_cursor"].get<std::string>().empty());
  Reply rest = Get(absl::StrCat("/api/v1/webhooks?limit=2&cursor=",
                                page.json["next_cursor"].get<std::string>()),
                   admin_);
  ASSERT_EQ(rest.status, 200) << rest.Describe();
  ASSERT_EQ(rest.json["items"].size(), 1u);
  EXPECT_EQ(rest.json["items"][0]["id"], third);
  EXPECT_EQ(page.json["items"][1]["id"], second);

  // Delete, then it is gone.
  Reply deleted = Delete(WebhookPath(id), admin_);
  ASSERT_EQ(deleted.status, 200) << deleted.Describe();
  EXPECT_EQ(deleted.json, Json({{"id", id}, {"deleted", true}}));
  ExpectError(Get(WebhookPath(id), admin_), 404, "not_found", "webhook");
  ExpectError(Delete(WebhookPath(id), admin_), 404, "not_found");
  ExpectError(Patch(WebhookPath(id), admin_, {{"enabled", true}}), 404,
              "not_found");
  ExpectError(Get(WebhookPath(id, "/deliveries"), admin_), 404, "not_found");
  EXPECT_EQ(Get("/api/v1/webhooks", admin_).json["total"], 2);

  // The audit log has every write and never the secret (nor the query of
  // the URL, which may hold the receiver's own token).
  int webhook_events = 0;
  for (const Json& e : ListAll("/api/v1/audit-events", admin_)) {
    const std::string dump = e.dump();
    EXPECT_THAT(dump, Not(HasSubstr(secret)));
    EXPECT_THAT(dump, Not(HasSubstr("whsec_")));
    EXPECT_THAT(dump, Not(HasSubstr("tag=1")));
    if (e["resource_type"] == "webhook") ++webhook_events;
  }
  EXPECT_EQ(webhook_events, 6);  // 3 creates, 2 updates, 1 delete.
  ExpectNotInStoreFiles(dir_->path(), secret.substr(6));
}

TEST_F(WebhookTest, EachWebhookHasItsOwnSecret) {
  std::string a, b;
  CreateWebhook(admin_, "http://127.0.0.1:9/a", {"*"}, &a);
  CreateWebhook(admin_, "http://127.0.0.1:9/b", {"*"}, &b);
  EXPECT_NE(a, b);
  EXPECT_EQ(Count("SELECT count(*) FROM webhooks WHERE secret IS NULL OR "
                  "length(secret) = 0"),
            0);
}

// An Idempotency-Key replay of a webhook's creation returns the webhook but
// not its secret, which is never stored.
TEST_F(WebhookTest, IdempotentReplayOfCreateHasNoSecret) {
  const Json body = {{"url", "http://127.0.0.1:9/idem"},
                     {"event_types", {"identity.*"}},
                     {"enabled", false}};
  Reply first = Post("/api/v1/webhooks", admin_, body, Key("hook-1"));
  ASSERT_EQ(first.status, 201) << first.Describe();
  const std::string secret = first.json["secret"].get<std::string>();
  ASSERT_TRUE(absl::StartsWith(secret, "whsec_"));
  EXPECT_EQ(first.json["webhook"]["enabled"], false);
  Reply replay = Post("/api/v1/webhooks", admin_, body, Key("hook-1"));
  EXPECT_EQ(replay.status, 201) << replay.Describe();
  EXPECT_EQ(replay.Header("Idempotent-Replayed"), "true");
  EXPECT_EQ(replay.json["webhook"], first.json["webhook"]);
  EXPECT_EQ(replay.json.value("secret", "?"), "");
  EXPECT_EQ(Count("SELECT count(*) FROM webhooks"), 1);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM idempotency_keys WHERE "
                               "instr(response, '",
                               secret.substr(6), "') > 0")),
            0);
  ExpectNotInStoreFiles(dir_->path(), secret.substr(6));
}

TEST_F(WebhookTest, BadInputIsRefusedAndWritesNothing) {
  const auto before = RowCounts();
  const std::string url = "http://127.0.0.1:9/x";
  struct Case {
    Json body;
    const char* message;
  };
  std::vector<std::string> too_many(51, "identity.created");
  const std::vector<Case> cases = {
      {{{"event_types", {"*"}}}, "'url' is required"},
      {{{"url", url}}, "'event_types'"},
      {{{"url", url}, {"event_types", Json::array()}}, "'event_types'"},
      {{{"url", url}, {"event_types", {"identity.created", "bogus.event"}}},
       "bogus.event"},
      {{{"url", url}, {"event_types", {"identity.created", "identity"}}},
       "event_types[1]"},
      {{{"url", url}, {"event_types", {"identity.*", "nothing.*"}}},
       "nothing.*"},
      {{{"url", url}, {"event_types", {"**"}}}, "**"},
      {{{"url", url}, {"event_types", too_many}}, "more than 50"},
      {{{"url", url}, {"event_types", {1}}}, "event_types"},
      {{{"url", url}, {"event_types", {"*"}}, {"enabled", "yes"}}, "enabled"},
      {{{"url", url}, {"event_types", {"*"}}, {"secret", "whsec_x"}}, "secret"},
      {{{"url", absl::StrCat("http://127.0.0.1:9/", std::string(2030, 'a'))},
        {"event_types", {"*"}}},
       "longer than 2048"},
      {{{"url", "ftp://127.0.0.1/x"}, {"event_types", {"*"}}}, "http"},
      {{{"url", "127.0.0.1:9/x"}, {"event_types", {"*"}}}, "'url'"},
      {{{"url", "http://user:pw@127.0.0.1:9/x"}, {"event_types", {"*"}}},
       "user info"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.body.dump().substr(0, 200));
    Reply r = Post("/api/v1/webhooks", admin_, c.body);
    ExpectError(r, 400, "invalid_argument", c.message);
  }
  EXPECT_EQ(RowCounts(), before);
  const int64_t id = CreateWebhook(admin_, url, {"*"});
  const auto after_create = RowCounts();
  for (const Json& patch :
       {Json{{"event_types", {"identity.created", "bogus"}}}, Json{{"url", ""}},
        Json{{"url", "gopher://127.0.0.1/"}}, Json{{"id", id + 1}}}) {
    SCOPED_TRACE(patch.dump());
    Reply r = Patch(WebhookPath(id), admin_, patch);
    ExpectError(r, 400, "invalid_argument");
  }
  EXPECT_EQ(RowCounts(), after_create);
  EXPECT_EQ(Get(WebhookPath(id), admin_).json["event_types"], Json({"*"}));
}

TEST_F(WebhookTest, AtMostTwentyWebhooksPerTenant) {
  std::vector<int64_t> ids;
  for (int i = 0; i < kMaxWebhooksPerTenant; ++i) {
    ids.push_back(CreateWebhook(admin_, absl::StrCat("http://127.0.0.1:9/h", i),
                                {"identity.*"}));
  }
  const auto before = RowCounts();
  Reply refused =
      Post("/api/v1/webhooks", admin_,
           {{"url", "http://127.0.0.1:9/h20"}, {"event_types", {"*"}}});
  ExpectError(refused, 409, "failed_precondition", "20");
  EXPECT_EQ(RowCounts(), before);
  // Another tenant has its own limit.
  const std::string other = Bootstrap("globex");
  EXPECT_GT(CreateWebhook(other, "http://127.0.0.1:9/g", {"*"}), 0);
  // Deleting one makes room.
  ASSERT_EQ(Delete(WebhookPath(ids.back()), admin_).status, 200);
  EXPECT_GT(CreateWebhook(admin_, "http://127.0.0.1:9/h21", {"*"}), 0);
}

// Without --allow-private-callbacks, targets on loopback, private,
// link-local, CGNAT and unique-local addresses are refused when registered:
// webhook URLs on create and update, and a sync's callback_url.
TEST_F(WebhookTargetTest, PrivateTargetsAreRefused) {
  const int64_t connector =
      CreateCsvConnector(admin_, "hr", WriteCsv("hr.csv", 2));
  // A public address literal is fine (nothing resolves it).
  const int64_t id =
      CreateWebhook(admin_, "https://93.184.215.14/hooks/idsync", {"*"});
  ASSERT_GT(id, 0);
  const auto before = RowCounts();
  for (const std::string url :
       {"http://127.0.0.1/", "http://127.0.0.1:8080/hook",
        "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
        "http://[::ffff:127.0.0.1]/", "http://10.1.2.3/", "http://192.168.0.1/",
        "http://172.16.0.1/", "http://100.64.0.1/", "http://[fd00::1]/",
        "http://[fe80::1]/", "http://0.0.0.0/", "http://localhost:8080/",
        "http://api.localhost/", "http://2130706433/", "http://0x7f000001/",
        "http://127.1/"}) {
    SCOPED_TRACE(url);
    Reply created = Post("/api/v1/webhooks", admin_,
                         {{"url", url}, {"event_types", {"*"}}});
    ExpectError(created, 400, "invalid_argument", "'url'");
    EXPECT_THAT(created.json.value("message", ""),
                HasSubstr("loopback/private"));
    ExpectError(Patch(WebhookPath(id), admin_, {{"url", url}}), 400,
                "invalid_argument", "'url'");
    ExpectError(Post(absl::StrCat("/api/v1/connectors/", connector, "/sync"),
                     admin_, {{"callback_url", url}}),
                400, "invalid_argument", "'callback_url'");
  }
  ExpectError(Post(absl::StrCat("/api/v1/connectors/", connector, "/sync"),
                   admin_, {{"callback_url", "file:///etc/passwd"}}),
              400, "invalid_argument", "http");
  EXPECT_EQ(RowCounts(), before);
  EXPECT_EQ(Get(WebhookPath(id), admin_).json["url"],
            "https://93.184.215.14/hooks/idsync");
}

// With private targets allowed (as in every other test here), loopback
// works, for webhooks and callbacks alike; other schemes still do not.
TEST_F(WebhookTest, PrivateTargetsAreAllowedWhenTheOperatorSaysSo) {
  EXPECT_GT(CreateWebhook(admin_, "http://[::1]:9/x", {"*"}), 0);
  EXPECT_GT(CreateWebhook(admin_, "http://localhost:9/x", {"*"}), 0);
  ExpectError(Post("/api/v1/webhooks", admin_,
                   {{"url", "ftp://127.0.0.1/"}, {"event_types", {"*"}}}),
              400, "invalid_argument", "http");
}

// A change that produces an event writes a pending delivery for each
// webhook that wants it; deliveries are listed and can be replayed.
TEST_F(WebhookTest, DeliveriesAreListedAndReplayed) {
  const int64_t wants =
      CreateWebhook(admin_, "http://127.0.0.1:9/a", {"identity.created"});
  const int64_t group =
      CreateWebhook(admin_, "http://127.0.0.1:9/b", {"identity.*"});
  const int64_t other =
      CreateWebhook(admin_, "http://127.0.0.1:9/c", {"sync.completed"});
  const int64_t off = CreateWebhook(admin_, "http://127.0.0.1:9/d", {"*"});
  ASSERT_EQ(Patch(WebhookPath(off), admin_, {{"enabled", false}}).status, 200);
  ASSERT_EQ(CreateIdentity(admin_, "E-1").status, 201);

  Reply list = Get(WebhookPath(wants, "/deliveries"), admin_);
  ASSERT_EQ(list.status, 200) << list.Describe();
  ASSERT_EQ(list.json["total"], 1) << list.body;
  const Json d = list.json["items"][0];
  EXPECT_EQ(d["webhook_id"], wants);
  EXPECT_EQ(d["event_type"], "identity.created");
  EXPECT_EQ(d["state"], "pending");
  EXPECT_EQ(d["attempts"], 0);
  EXPECT_TRUE(d["next_attempt_at"].is_string()) << d.dump();
  EXPECT_EQ(d["last_status"], 0);
  EXPECT_EQ(d["last_error"], "");
  EXPECT_TRUE(d["created_at"].is_string());
  EXPECT_TRUE(d["delivered_at"].is_null());
  const std::string event_id = d["event_id"].get<std::string>();
  EXPECT_TRUE(absl::StartsWith(event_id, "msg_")) << event_id;
  // The same event to the group subscriber; nothing to the others.
  Reply grouped = Get(WebhookPath(group, "/deliveries"), admin_);
  ASSERT_EQ(grouped.json["total"], 1) << grouped.body;
  EXPECT_EQ(grouped.json["items"][0]["event_id"], event_id);
  EXPECT_NE(grouped.json["items"][0]["id"], d["id"]);
  EXPECT_EQ(Get(WebhookPath(other, "/deliveries"), admin_).json["total"], 0);
  EXPECT_EQ(Get(WebhookPath(off, "/deliveries"), admin_).json["total"], 0);
  // Auditors read deliveries too.
  const std::string auditor = CreateToken(admin_, "viewer", "auditor");
  EXPECT_EQ(Get(WebhookPath(wants, "/deliveries"), auditor).json, list.json);

  // Paging.
  ASSERT_EQ(CreateIdentity(admin_, "E-2").status, 201);
  ASSERT_EQ(CreateIdentity(admin_, "E-3").status, 201);
  Reply page = Get(WebhookPath(wants, "/deliveries?limit=2"), admin_);
  ASSERT_EQ(page.status, 200) << page.Describe();
  EXPECT_EQ(page.json["total"], 3);
  ASSERT_EQ(page.json["items"].size(), 2u);
  EXPECT_EQ(page.json["items"][0], d);  // Oldest first.
  Reply next =
      Get(WebhookPath(
              wants, absl::StrCat("/deliveries?limit=2&cursor=",
                                  page.json["next_cursor"].get<std::string>())),
          admin_);
  ASSERT_EQ(next.json["items"].size(), 1u) << next.body;

  // The delivery died (as the delivery worker would leave it); replay it.
  const int64_t delivery_id = d["id"].get<int64_t>();
  ASSERT_TRUE(
      ExecSql(db_path_, absl::StrCat("UPDATE deliveries SET state='dead', "
                                     "attempts=5, last_status=500, "
                                     "last_error='HTTP 500' WHERE id=",
                                     delivery_id))
          .ok());
  Reply dead = Get(WebhookPath(wants, "/deliveries?limit=1"), admin_);
  EXPECT_EQ(dead.json["items"][0]["state"], "dead");
  EXPECT_TRUE(dead.json["items"][0]["next_attempt_at"].is_null());
  const std::string replay_path =
      WebhookPath(wants, absl::StrCat("/deliveries/", delivery_id, "/replay"));
  ExpectError(Post(replay_path, auditor), 403, "permission_denied");
  Reply replayed = Post(replay_path, admin_, nullptr, Key("replay-1"));
  ASSERT_EQ(replayed.status, 202) << replayed.Describe();
  EXPECT_EQ(replayed.json["id"], delivery_id);
  EXPECT_EQ(replayed.json["event_id"], event_id);
  EXPECT_EQ(replayed.json["state"], "pending");
  EXPECT_EQ(replayed.json["attempts"], 0);
  EXPECT_TRUE(replayed.json["next_attempt_at"].is_string());
  Reply after = Get(WebhookPath(wants, "/deliveries?limit=1"), admin_);
  EXPECT_EQ(after.json["items"][0]["state"], "pending");
  EXPECT_EQ(after.json["items"][0]["attempts"], 0);
  EXPECT_EQ(after.json["items"][0]["next_attempt_at"],
            replayed.json["next_attempt_at"]);
  EXPECT_EQ(Count(absl::StrCat(
                "SELECT count(*) FROM deliveries WHERE id=", delivery_id,
                " AND state='pending' AND "
                "attempts=0")),
            1);
  // The same key replays the stored answer.
  Reply again = Post(replay_path, admin_, nullptr, Key("replay-1"));
  EXPECT_EQ(again.Header("Idempotent-Replayed"), "true");
  EXPECT_EQ(again.body, replayed.body);

  // A delivery of another webhook, or none, is not found under this one.
  const int64_t grouped_id = grouped.json["items"][0]["id"].get<int64_t>();
  const auto before = RowCounts();
  for (const std::string& path :
       {WebhookPath(wants, absl::StrCat("/deliveries/", grouped_id, "/replay")),
        WebhookPath(wants, "/deliveries/999999/replay"),
        WebhookPath(999999,
                    absl::StrCat("/deliveries/", delivery_id, "/replay")),
        WebhookPath(wants, "/deliveries/abc/replay")}) {
    SCOPED_TRACE(path);
    ExpectError(Post(path, admin_), 404, "not_found");
  }
  ExpectError(Send("POST", replay_path, admin_, R"({"x":1})"), 400,
              "invalid_argument", "no body");
  EXPECT_EQ(RowCounts(), before);

  // Deleting the webhook removes its deliveries.
  ASSERT_EQ(Delete(WebhookPath(wants), admin_).status, 200);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM deliveries WHERE "
                               "webhook_id=",
                               wants)),
            0);
  EXPECT_EQ(Get(WebhookPath(group, "/deliveries"), admin_).json["total"], 3);
}

// The tenant's callback secret: admin only, created on first use, the same
// on every call, audited once without the secret, per tenant.
TEST_F(WebhookTest, CallbackSecretIsAdminOnlyAndStable) {
  const std::string auditor = CreateToken(admin_, "viewer", "auditor");
  const auto before = RowCounts();
  ExpectError(Get("/api/v1/callback-secret", auditor), 403, "permission_denied",
              "admin");
  EXPECT_EQ(RowCounts(), before);

  Reply first = Get("/api/v1/callback-secret", admin_);
  ASSERT_EQ(first.status, 200) << first.Describe();
  EXPECT_EQ(first.json.size(), 1u) << first.body;
  const std::string secret = first.json["secret"].get<std::string>();
  EXPECT_TRUE(absl::StartsWith(secret, "whsec_")) << secret;
  EXPECT_TRUE(SigningKey(secret).ok());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Get("/api/v1/callback-secret", admin_).json["secret"], secret);
  }
  ExpectError(Get("/api/v1/callback-secret", auditor), 403,
              "permission_denied");
  Reply audit =
      Get("/api/v1/audit-events?action=callback_secret.create", admin_);
  EXPECT_EQ(audit.json["total"], 1) << audit.body;
  EXPECT_THAT(audit.body, Not(HasSubstr(secret)));
  ExpectNotInStoreFiles(dir_->path(), secret.substr(6));

  // Another tenant has its own.
  const std::string other = Bootstrap("globex");
  Reply theirs = Get("/api/v1/callback-secret", other);
  ASSERT_EQ(theirs.status, 200) << theirs.Describe();
  EXPECT_NE(theirs.json["secret"], secret);
}

// A sync started with a callback_url makes sure the tenant has a callback
// secret (so its callbacks can be signed), and keeps an existing one.
TEST_F(WebhookTest, SyncWithCallbackUrlCreatesTheCallbackSecret) {
  const int64_t connector =
      CreateCsvConnector(admin_, "hr", WriteCsv("hr.csv", 3));
  const std::string tenant_has_secret =
      absl::StrCat("SELECT count(*) FROM tenants WHERE id=", tenant_id_,
                   " AND callback_secret IS NOT NULL");
  Json run = StartSync(admin_, connector);
  WaitForRun(admin_, run["id"].get<int64_t>());
  EXPECT_EQ(Count(tenant_has_secret), 0) << "no callback_url, no secret";

  run = StartSync(admin_, connector,
                  {{"callback_url", "http://127.0.0.1:9/progress"}});
  EXPECT_EQ(run["callback_url"], "http://127.0.0.1:9/progress");
  WaitForRun(admin_, run["id"].get<int64_t>());
  EXPECT_EQ(Count(tenant_has_secret), 1);
  Reply secret = Get("/api/v1/callback-secret", admin_);
  ASSERT_EQ(secret.status, 200) << secret.Describe();
  // It existed: reading it created nothing.
  EXPECT_EQ(Get("/api/v1/audit-events?action=callback_secret.create", admin_)
                .json["total"],
            0);
  run = StartSync(admin_, connector,
                  {{"callback_url", "https://127.0.0.1:9/progress"}});
  WaitForRun(admin_, run["id"].get<int64_t>());
  EXPECT_EQ(Get("/api/v1/callback-secret", admin_).json, secret.json);
}

}  // namespace
}  // namespace idsync::testing
