// The rest connector against real HTTP servers written for the tests
// (tests/integration/rest/api_shapes.mjs: express, and a real oidc-provider),
// through the real SyncEngine into a real SqliteStore. Each API shape is
// synced with the ready config from docs/connectors/rest/, so the documented
// configs are tested too.
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connector/http/auth.h"
#include "connector/rest/rest_connector.h"
#include "dispatcher/store/sqlite_store.h"
#include "dispatcher/sync_engine.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fake_clock.h"
#include "tests/testing/node_server.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::idsync::testing::NodeServer;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kScript[] = "tests/integration/rest/api_shapes.mjs";
constexpr int kUsers = 10000;

// What the servers generate for `users` (tests/integration/rest/README.md).
int64_t Groups(int users) { return (users + 49) / 50; }
int64_t Memberships(int users) {
  int64_t n = users;
  for (int i = 0; i < users; i += 7) n += (i % Groups(users)) != 0;
  return n;
}

nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

google::protobuf::Struct ToStruct(const nlohmann::json& j) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(j.dump(), &s).ok());
  return s;
}

// Writes to the synced tables, counted independently of idsync.
constexpr char kWriteCounter[] = R"sql(
CREATE TABLE write_log (kind TEXT);
CREATE TRIGGER li AFTER INSERT ON identities BEGIN INSERT INTO write_log VALUES ('identity'); END;
CREATE TRIGGER lu AFTER UPDATE ON identities BEGIN INSERT INTO write_log VALUES ('identity'); END;
CREATE TRIGGER ai AFTER INSERT ON accounts BEGIN INSERT INTO write_log VALUES ('account'); END;
CREATE TRIGGER au AFTER UPDATE ON accounts BEGIN INSERT INTO write_log VALUES ('account'); END;
)sql";

class RestSyncTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ClearOAuth2TokenCache();
    tmp_ = std::make_unique<testing::ScopedTestDir>("rest");
    db_ = tmp_->File("store.db");
    auto store = SqliteStore::Open({db_});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  void TearDown() override {
    store_.reset();
    tmp_.reset();
  }

  std::unique_ptr<NodeServer> Start(const std::string& shape, int users,
                                    std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--shape", shape, "--count",
                                     absl::StrCat(users)};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = NodeServer::Start(kScript, args);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  // The documented config and auth_config of `shape`, pointed at `server`.
  void LoadConfig(const std::string& shape, const NodeServer& server) {
    const std::string dir =
        absl::StrCat(testing::SourceDir(), "/docs/connectors/rest/");
    config_ = ReadJson(absl::StrCat(dir, shape, ".json"));
    auth_ = ReadJson(absl::StrCat(dir, shape, ".auth.json"));
    config_["base_url"] = server.url();
    if (auth_.contains("issuer")) auth_["issuer"] = server.url() + "/oidc";
    if (auth_.contains("token_url")) {
      auth_["token_url"] = server.url() + "/connect/token";
    }
  }

  absl::StatusOr<RunRow> RunSync(SyncOptions options = {},
                                 Clock* clock = &Clock::Real()) {
    auto tenant = store_->EnsureTenant("acme");
    if (!tenant.ok()) return tenant.status();
    ConnectorRow row;
    row.tenant_id = *tenant;
    row.business_id = "api";
    row.type = "rest";
    row.config_json = config_.dump();
    auto saved = store_->UpsertConnector(row);
    if (!saved.ok()) return saved.status();
    ConnectorSpec spec;
    spec.business_id = "api";
    spec.config = ToStruct(config_);
    spec.clock = clock;
    auto connector = CreateRestConnector(spec);
    if (!connector.ok()) return connector.status();
    options.auth_config = ToStruct(auth_);
    SyncEngine engine(*store_, Clock::Real());
    return engine.Run(**connector, *saved, options, nullptr);
  }
  RunRow Sync(SyncOptions options = {}, Clock* clock = &Clock::Real()) {
    auto run = RunSync(std::move(options), clock);
    EXPECT_TRUE(run.ok()) << run.status();
    return run.ok() ? *run : RunRow{};
  }

  int64_t Query(const std::string& sql) {
    auto v = testing::QueryInt(db_, sql);
    EXPECT_TRUE(v.ok()) << v.status() << ": " << sql;
    return v.ok() ? *v : -1;
  }
  int64_t Active(const std::string& table) {
    return Query(absl::StrCat("SELECT count(*) FROM ", table,
                              " WHERE deleted_at IS NULL"));
  }
  nlohmann::json Stats(NodeServer& server) {
    auto s = server.Control("GET", "/__control/stats");
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? nlohmann::json::parse(*s) : nlohmann::json::object();
  }
  void Fault(NodeServer& server, const std::string& spec) {
    auto r = server.Control("POST", "/__control/faults",
                            nlohmann::json{{"spec", spec}}.dump());
    ASSERT_TRUE(r.ok()) << r.status();
  }
  void ExpectFullDirectory(int users) {
    EXPECT_EQ(Active("identities"), users);
    EXPECT_EQ(Active("accounts"), users);
    EXPECT_EQ(Active("entitlements"), Groups(users));
    EXPECT_EQ(Active("grants"), Memberships(users));
    // One record checked field by field: user 11, manager user 1.
    EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE "
                    "external_id='u000011' AND email='user11@example.com' AND "
                    "first_name='First11' AND last_name='Last11' AND "
                    "department='Sales' AND manager_external_id='u000001' AND "
                    "status='active'"),
              1);
    EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE "
                    "external_id='u000000' AND manager_external_id=''"),
              1);
    EXPECT_EQ(Query("SELECT count(*) FROM grants WHERE "
                    "account_external_id='u000007'"),
              2);
  }

  std::unique_ptr<testing::ScopedTestDir> tmp_;
  std::string db_;
  std::unique_ptr<SqliteStore> store_;
  nlohmann::json config_, auth_;
};

class RestShapeTest : public RestSyncTest,
                      public ::testing::WithParamInterface<std::string> {};

// A 10k-user directory from each documented API shape lands exactly.
TEST_P(RestShapeTest, FullSyncLandsTheDirectory) {
  std::vector<std::string> extra;
  if (GetParam() == "apikey") extra = {"--hmac-secret", "hmac-shared-secret"};
  auto server = Start(GetParam(), kUsers, extra);
  ASSERT_NE(server, nullptr);
  LoadConfig(GetParam(), *server);
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.rejected, 0);
  ExpectFullDirectory(kUsers);

  // A second full sync changes nothing.
  const RunRow again = Sync();
  EXPECT_EQ(again.status, RunStatus::kSucceeded) << again.error;
  EXPECT_EQ(again.created + again.updated + again.deleted, 0);
}

INSTANTIATE_TEST_SUITE_P(Shapes, RestShapeTest,
                         ::testing::Values("paged", "offset", "oidc",
                                           "password", "apikey"),
                         [](const auto& info) { return info.param; });

TEST_F(RestSyncTest, OAuth2TokenIsReusedAcrossPagesAndRefreshedBeforeExpiry) {
  auto server = Start("oidc", 3000);
  ASSERT_NE(server, nullptr);
  LoadConfig("oidc", *server);
  testing::FakeClock clock(absl::Now());
  ASSERT_EQ(Sync({}, &clock).status, RunStatus::kSucceeded);
  nlohmann::json stats = Stats(*server);
  EXPECT_EQ(stats["tokens_issued"], 1) << stats.dump();
  EXPECT_GE(stats["requests_by_path"]["/v1/users"].get<int>(), 6);

  // Still fresh: the next run (a new connector instance) reuses it.
  ASSERT_EQ(Sync({}, &clock).status, RunStatus::kSucceeded);
  EXPECT_EQ(Stats(*server)["tokens_issued"], 1);

  // 59.5 minutes later the one-hour token is inside the refresh margin: a
  // new one is fetched before the server would have refused the old one.
  clock.Advance(absl::Minutes(59) + absl::Seconds(30));
  ASSERT_EQ(Sync({}, &clock).status, RunStatus::kSucceeded);
  stats = Stats(*server);
  EXPECT_EQ(stats["tokens_issued"], 2);
  EXPECT_EQ(stats["status_counts"].value("401", 0), 0) << stats.dump();
}

TEST_F(RestSyncTest, TokenThatExpiresMidSyncIsRefreshedOnce) {
  auto server = Start("password", 3000, {"--faults", "expire_token_after:4"});
  ASSERT_NE(server, nullptr);
  LoadConfig("password", *server);
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  ExpectFullDirectory(3000);
  const nlohmann::json stats = Stats(*server);
  // 7 users + 1 group + 8 membership pages (with the empty last pages), 4
  // per token: each 401 cost exactly one new token.
  EXPECT_GE(stats["tokens_issued"].get<int>(), 4) << stats.dump();
  EXPECT_EQ(stats["status_counts"].value("401", 0),
            stats["tokens_issued"].get<int>() - 1)
      << stats.dump();
}

TEST_F(RestSyncTest, WrongClientSecretFailsClearlyAndChangesNothing) {
  auto server = Start("oidc", 500);
  ASSERT_NE(server, nullptr);
  LoadConfig("oidc", *server);
  ASSERT_EQ(Sync().status, RunStatus::kSucceeded);
  const auto before = testing::SignStore(db_);
  ASSERT_TRUE(before.ok());

  auth_["client_secret"] = "Wr0ng-Secret-Value";
  ClearOAuth2TokenCache();
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("invalid_client"));
  EXPECT_THAT(run.error, Not(HasSubstr("Wr0ng-Secret-Value")));
  EXPECT_EQ(Stats(*server)["status_counts"].value("401", 0), 1)
      << "invalid_client must not be retried";
  const auto after = testing::SignStore(db_);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, *before);
}

TEST_F(RestSyncTest, RateLimitBurstsAreWaitedOut) {
  auto server = Start("paged", 2000, {"--faults", "rate429:3"});
  ASSERT_NE(server, nullptr);
  LoadConfig("paged", *server);
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  ExpectFullDirectory(2000);
  EXPECT_EQ(Stats(*server)["rate_limited"], 3);
}

TEST_F(RestSyncTest, IncrementalPicksUpExactlyTheModifiedUsers) {
  auto server = Start("paged", kUsers);
  ASSERT_NE(server, nullptr);
  LoadConfig("paged", *server);
  ASSERT_EQ(Sync().status, RunStatus::kSucceeded);
  EXPECT_EQ(Query("SELECT count(*) FROM connectors WHERE "
                  "sync_token='2024-01-07T22:39:00Z'"),
            1)
      << "the watermark is the newest updated_at (user 9999)";
  auto modified =
      server->Control("POST", "/__control/modify", R"({"count":100})");
  ASSERT_TRUE(modified.ok()) << modified.status();
  ASSERT_TRUE(testing::ExecSql(db_, kWriteCounter).ok());
  ASSERT_TRUE(server->Control("POST", "/__control/reset_stats").ok());

  SyncOptions incremental;
  incremental.incremental = true;
  const RunRow run = Sync(incremental);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(Query("SELECT count(*) FROM write_log WHERE kind='identity'"), 100);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE department='Changed'"),
            100);
  // Only the changed users (and the one at the old watermark) were read.
  EXPECT_LE(run.processed - Groups(kUsers) - Memberships(kUsers), 2 * 101);
  EXPECT_EQ(Stats(*server)["requests_by_path"]["/api/v1/users"], 1);
}

TEST_F(RestSyncTest, DeletedUsersAreRemovedByTheNextFullSync) {
  auto server = Start("offset", kUsers);
  ASSERT_NE(server, nullptr);
  LoadConfig("offset", *server);
  ASSERT_EQ(Sync().status, RunStatus::kSucceeded);
  ASSERT_TRUE(
      server->Control("POST", "/__control/delete", R"({"count":50})").ok());
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(Active("identities"), kUsers - 50);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NOT "
                  "NULL AND external_id >= 'u009950'"),
            50);
}

TEST_F(RestSyncTest, MalformedPageFailsTheRunAndDeletesNothing) {
  auto server = Start("password", 3000);
  ASSERT_NE(server, nullptr);
  LoadConfig("password", *server);
  ASSERT_EQ(Sync().status, RunStatus::kSucceeded);
  // Users vanish and a later page is broken: the run must not conclude that
  // the unread users were removed.
  ASSERT_TRUE(
      server->Control("POST", "/__control/delete", R"({"count":10})").ok());
  Fault(*server, "malformed:users:3");
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("not valid JSON"));
  EXPECT_EQ(Active("identities"), 3000);
  EXPECT_EQ(run.deleted, 0);
}

TEST_F(RestSyncTest, LoopingCursorIsDetectedAndStopped) {
  for (const std::string shape : {"apikey", "password"}) {
    SCOPED_TRACE(shape);
    auto server = Start(shape, 3000, {"--faults", "loop_cursor"});
    ASSERT_NE(server, nullptr);
    LoadConfig(shape, *server);
    if (shape == "apikey") auth_.erase("hmac");
    const RunRow run = Sync();
    EXPECT_EQ(run.status, RunStatus::kFailed);
    EXPECT_THAT(run.error, HasSubstr("pagination loop"));
    EXPECT_LT(Stats(*server)["requests"].get<int>(), 20);
  }
}

TEST_F(RestSyncTest, WrongHmacSecretIsRejectedAsCredentials) {
  auto server = Start("apikey", 200, {"--hmac-secret", "hmac-shared-secret"});
  ASSERT_NE(server, nullptr);
  LoadConfig("apikey", *server);
  auth_["hmac"]["secret"] = "not-the-secret";
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("bad_signature"));
  EXPECT_THAT(run.error, Not(HasSubstr("not-the-secret")));
  EXPECT_EQ(Active("identities"), 0);
}

// Keeps every chunk's records (as text) and resume token.
class CollectingSink final : public RecordSink {
 public:
  absl::Status Write(idsync::v1::SyncChunk chunk) override {
    std::vector<std::string> records;
    for (const auto& r : chunk.identities()) records.push_back(r.DebugString());
    for (const auto& r : chunk.accounts()) records.push_back(r.DebugString());
    for (const auto& r : chunk.entitlements()) {
      records.push_back(r.DebugString());
    }
    for (const auto& r : chunk.grants()) records.push_back(r.DebugString());
    chunks.push_back(std::move(records));
    tokens.push_back(chunk.resume_token());
    return absl::OkStatus();
  }
  void SetNextSyncToken(std::string) override {}
  std::vector<std::vector<std::string>> chunks;
  std::vector<std::string> tokens;
};

// A run resumed from any chunk's token reads exactly what followed it, for
// offset, cursor and link paging.
TEST_F(RestSyncTest, ResumeTokenContinuesRightAfterItsChunk) {
  for (const std::string shape : {"offset", "oidc"}) {
    SCOPED_TRACE(shape);
    auto server = Start(shape, 1200);
    ASSERT_NE(server, nullptr);
    LoadConfig(shape, *server);
    ConnectorSpec spec;
    spec.config = ToStruct(config_);
    spec.auth_config = ToStruct(auth_);
    auto connector = CreateRestConnector(spec);
    ASSERT_TRUE(connector.ok()) << connector.status();
    idsync::v1::SyncRequest request;
    request.set_chunk_size(333);
    CollectingSink full;
    ASSERT_TRUE((*connector)->Sync(request, full).ok());
    ASSERT_GT(full.chunks.size(), 8u);
    // Inside users (with accounts), at the users/groups seam, in grants.
    for (size_t k : {size_t{1}, size_t{7}, full.chunks.size() - 3}) {
      request.set_resume_token(full.tokens[k]);
      CollectingSink resumed;
      ASSERT_TRUE((*connector)->Sync(request, resumed).ok());
      std::vector<std::string> want, got;
      for (size_t i = k + 1; i < full.chunks.size(); ++i) {
        want.insert(want.end(), full.chunks[i].begin(), full.chunks[i].end());
      }
      for (const auto& c : resumed.chunks)
        got.insert(got.end(), c.begin(), c.end());
      EXPECT_EQ(got, want) << "resumed after chunk " << k;
    }
    request.set_resume_token("rest1:9:x");
    CollectingSink bad;
    EXPECT_EQ((*connector)->Sync(request, bad).code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST_F(RestSyncTest, CliSyncsFromARestApi) {
  auto server = Start("paged", 1000);
  ASSERT_NE(server, nullptr);
  LoadConfig("paged", *server);
  const std::string config = tmp_->File("rest.json");
  const std::string auth = tmp_->File("rest.auth.json");
  std::ofstream(config) << config_.dump();
  std::ofstream(auth) << auth_.dump();
  auto r = testing::RunProcess({IDSYNC_BIN, "sync", "--type", "rest",
                                "--config", config, "--auth-config", auth,
                                "--db", tmp_->File("cli.db"), "--json"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
  const nlohmann::json summary = nlohmann::json::parse(r->out);
  EXPECT_EQ(summary["status"], "succeeded");
  EXPECT_EQ(summary["created"], 1000 * 2 + Groups(1000) + Memberships(1000));
  EXPECT_THAT(r->out + r->err, Not(HasSubstr("wsk_live_test")));
}

}  // namespace
}  // namespace idsync
