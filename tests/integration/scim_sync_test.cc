// The scim connector against a real SCIM 2.0 server (npm scimmy +
// scimmy-routers behind express, tests/integration/scim/scim_server.mjs),
// through the real SyncEngine into a real SqliteStore: full, unchanged,
// incremental (filtered, and without filter support), deletions, 429/503
// waited out, a totalResults that moves during the walk, bad credentials,
// resume, and the CLI.
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connector/scim/scim_connector.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/http_source_util.h"
#include "tests/testing/node_server.h"
#include "tests/testing/subprocess.h"

namespace idsync {
namespace {

using ::idsync::testing::CollectingSink;
using ::idsync::testing::Fault;
using ::idsync::testing::Groups;
using ::idsync::testing::kWriteCounter;
using ::idsync::testing::Memberships;
using ::idsync::testing::NodeServer;
using ::idsync::testing::Stats;
using ::idsync::testing::ToStruct;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kScript[] = "tests/integration/scim/scim_server.mjs";
constexpr char kToken[] = "scim-test-token";
constexpr int kUsers = 10000;

class ScimSyncTest : public testing::HttpSourceTest {
 protected:
  ScimSyncTest() : HttpSourceTest("scim", CreateScimConnector) {}

  std::unique_ptr<NodeServer> Start(int users,
                                    std::vector<std::string> extra = {},
                                    int page_size = 200) {
    std::vector<std::string> args = {"--count", absl::StrCat(users)};
    args.insert(args.end(), extra.begin(), extra.end());
    auto server = StartServer(kScript, args);
    if (server != nullptr) {
      config_ = {{"base_url", server->url() + "/scim/v2"},
                 {"page_size", page_size}};
      auth_ = {{"type", "bearer"}, {"token", kToken}};
    }
    return server;
  }
  int UserRequests(NodeServer& server) {
    return Stats(server)["requests_by_path"].value("/scim/v2/Users", 0);
  }
};

TEST_F(ScimSyncTest, FullSyncLandsTheDirectoryAndAgainChangesNothing) {
  auto server = Start(kUsers);
  ASSERT_NE(server, nullptr);
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.rejected, 0);
  ExpectFullDirectory(kUsers);
  // The enterprise extension and the account.
  EXPECT_EQ(Query("SELECT count(*) FROM accounts WHERE external_id='u000011' "
                  "AND identity_external_id='u000011' AND username='user11' "
                  "AND email='user11@example.com' AND status='active'"),
            1);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE "
                  "attributes LIKE '%E11%' AND external_id='u000011'"),
            1);
  EXPECT_EQ(Query("SELECT count(*) FROM entitlements WHERE "
                  "external_id='g0001' AND name='Group 1'"),
            1);
  // The walk ends on the first empty page: 50 user pages of 200, plus one.
  EXPECT_EQ(UserRequests(*server), kUsers / 200 + 1);

  const RunRow again = Sync();
  EXPECT_EQ(again.status, RunStatus::kSucceeded) << again.error;
  EXPECT_EQ(again.created + again.updated + again.deleted, 0);
}

TEST_F(ScimSyncTest, IncrementalFiltersOnLastModified) {
  auto server = Start(kUsers);
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync().status, RunStatus::kSucceeded);
  EXPECT_EQ(Query("SELECT count(*) FROM connectors WHERE "
                  "sync_token='2024-01-07T22:39:00.000Z'"),
            1)
      << "the watermark is the newest meta.lastModified (user 9999)";
  ASSERT_TRUE(
      server->Control("POST", "/__control/modify", R"({"count":100})").ok());
  ASSERT_TRUE(testing::ExecSql(db_, kWriteCounter).ok());
  ASSERT_TRUE(server->Control("POST", "/__control/reset_stats").ok());

  SyncOptions incremental;
  incremental.incremental = true;
  const RunRow run = Sync(incremental);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(Query("SELECT count(*) FROM write_log WHERE kind='identity'"), 100);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE department='Changed' "
                  "AND first_name LIKE 'Changed%'"),
            100);
  EXPECT_EQ(run.processed, 2 * 100) << "the 100 users and their accounts";
  EXPECT_EQ(UserRequests(*server), 2);
}

TEST_F(ScimSyncTest, WithoutFilterSupportIncrementalReadsEverything) {
  auto server = Start(2000, {"--no-filter"});
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync().status, RunStatus::kSucceeded);
  ASSERT_TRUE(
      server->Control("POST", "/__control/modify", R"({"count":30})").ok());
  ASSERT_TRUE(testing::ExecSql(db_, kWriteCounter).ok());
  SyncOptions incremental;
  incremental.incremental = true;
  const RunRow run = Sync(incremental);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(Query("SELECT count(*) FROM write_log WHERE kind='identity'"), 30);
  EXPECT_EQ(Stats(*server)["status_counts"].value("400", 0), 0)
      << "no filter may be sent to a server that does not support it";
}

TEST_F(ScimSyncTest, DeletedUsersAreRemovedByTheNextFullSync) {
  auto server = Start(kUsers);
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync().status, RunStatus::kSucceeded);
  ASSERT_TRUE(
      server->Control("POST", "/__control/delete", R"({"count":50})").ok());
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(Active("identities"), kUsers - 50);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NOT "
                  "NULL AND external_id >= 'u009950'"),
            50);
  EXPECT_EQ(Query("SELECT count(*) FROM grants WHERE deleted_at IS NULL AND "
                  "account_external_id >= 'u009950'"),
            0);
}

TEST_F(ScimSyncTest, RateLimitsAndUnavailabilityAreWaitedOut) {
  auto server = Start(1000, {"--faults", "rate429:2,http503:2"});
  ASSERT_NE(server, nullptr);
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  ExpectFullDirectory(1000);
  const nlohmann::json stats = Stats(*server);
  EXPECT_EQ(stats["rate_limited"], 2);
  EXPECT_EQ(stats["status_counts"].value("503", 0), 2);
}

// Fewer resources than asked (the server caps count at 200) and a
// totalResults that moves on every page: nothing may be missed, or the full
// sync would delete what it did not read.
TEST_F(ScimSyncTest, ShortPagesAndMovingTotalsLoseNothing) {
  auto server = Start(1003, {"--faults", "shrink_total"}, /*page_size=*/500);
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync().status, RunStatus::kSucceeded);
  ExpectFullDirectory(1003);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE "
                  "external_id='u001002'"),
            1);
}

TEST_F(ScimSyncTest, WrongTokenFailsClearlyAndChangesNothing) {
  auto server = Start(300);
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync().status, RunStatus::kSucceeded);
  const auto before = testing::SignStore(db_);
  ASSERT_TRUE(before.ok());
  auth_["token"] = "Wr0ng-Scim-Token";
  const RunRow run = Sync();
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("HTTP 401"));
  EXPECT_THAT(run.error, HasSubstr("rejected the credentials"));
  EXPECT_THAT(run.error, Not(HasSubstr("Wr0ng-Scim-Token")));
  const auto after = testing::SignStore(db_);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(*after, *before);
}

// A run resumed from any chunk's token reads exactly what followed it,
// including a chunk boundary inside a large group (g0000 has 211 members).
TEST_F(ScimSyncTest, ResumeTokenContinuesRightAfterItsChunk) {
  auto server = Start(1500, {}, /*page_size=*/70);
  ASSERT_NE(server, nullptr);
  ConnectorSpec spec;
  spec.config = ToStruct(config_);
  spec.auth_config = ToStruct(auth_);
  auto connector = CreateScimConnector(spec);
  ASSERT_TRUE(connector.ok()) << connector.status();
  idsync::v1::SyncRequest request;
  request.set_chunk_size(101);
  CollectingSink full;
  ASSERT_TRUE((*connector)->Sync(request, full).ok());
  ASSERT_GT(full.chunks.size(), 40u);
  for (size_t k : {size_t{3}, size_t{29}, full.chunks.size() - 12,
                   full.chunks.size() - 2}) {
    request.set_resume_token(full.tokens[k]);
    CollectingSink resumed;
    ASSERT_TRUE((*connector)->Sync(request, resumed).ok());
    std::vector<std::string> want, got;
    for (size_t i = k + 1; i < full.chunks.size(); ++i) {
      want.insert(want.end(), full.chunks[i].begin(), full.chunks[i].end());
    }
    for (const auto& c : resumed.chunks) {
      got.insert(got.end(), c.begin(), c.end());
    }
    // Chunks list records by kind, so compare contents, not order. Nothing
    // is sent twice, also from a boundary inside a group.
    std::multiset<std::string> extra(got.begin(), got.end());
    for (const std::string& r : want) {
      auto it = extra.find(r);
      ASSERT_NE(it, extra.end())
          << "resumed after chunk " << k << " lost: " << r;
      extra.erase(it);
    }
    std::set<std::string> before;
    for (size_t i = 0; i <= k; ++i) {
      before.insert(full.chunks[i].begin(), full.chunks[i].end());
    }
    for (const std::string& r : extra) {
      EXPECT_TRUE(before.count(r))
          << "resumed after chunk " << k << " invented: " << r;
    }
    EXPECT_TRUE(extra.empty()) << "resumed after chunk " << k << " sent "
                               << extra.size() << " records again";
  }
}

TEST_F(ScimSyncTest, CliSyncsFromAScimServer) {
  auto server = Start(500);
  ASSERT_NE(server, nullptr);
  const std::string config = tmp_->File("scim.json");
  const std::string auth = tmp_->File("scim.auth.json");
  std::ofstream(config) << config_.dump();
  std::ofstream(auth) << auth_.dump();
  auto r = testing::RunProcess({IDSYNC_BIN, "sync", "--type", "scim",
                                "--config", config, "--auth-config", auth,
                                "--db", tmp_->File("cli.db"), "--json"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->out << r->err;
  const nlohmann::json summary = nlohmann::json::parse(r->out);
  EXPECT_EQ(summary["status"], "succeeded");
  EXPECT_EQ(summary["created"], 500 * 2 + Groups(500) + Memberships(500));
  EXPECT_THAT(r->out + r->err, Not(HasSubstr(kToken)));
}

}  // namespace
}  // namespace idsync
