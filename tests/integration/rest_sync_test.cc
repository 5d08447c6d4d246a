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
#include "tests/integration/http_source_util.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/node_server.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::idsync::testing::CollectingSink;
using ::idsync::testing::Fault;
using ::idsync::testing::Groups;
using ::idsync::testing::kWriteCounter;
using ::idsync::testing::Memberships;
using ::idsync::testing::NodeServer;
using ::idsync::testing::ReadJson;
using ::idsync::testing::Stats;
using ::idsync::testing::ToStruct;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kScript[] = "tests/integration/rest/api_shapes.mjs";
constexpr int kUsers = 10000;

class RestSyncTest : public testing::HttpSourceTest {
 protected:
  RestSyncTest() : HttpSourceTest("rest", CreateRestConnector) {}

  std::unique_ptr<NodeServer> Start(const std::string& shape, int users,
                                    std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--shape", shape, "--count",
                                     absl::StrCat(users)};
    args.insert(args.end(), extra.begin(), extra.end());
    return StartServer(kScript, args);
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
