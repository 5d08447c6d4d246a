#include "dispatcher/sync_engine.h"

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "dispatcher/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/faulty_store.h"
#include "tests/testing/scripted_connector.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::idsync::testing::Chunked;
using ::idsync::testing::People;
using ::idsync::testing::ScriptedConnector;
using ::testing::HasSubstr;

// Counts every write to the identities table (1) and its key table (2),
// independently of the engine.
constexpr char kWriteCounter[] = R"sql(
CREATE TABLE IF NOT EXISTS write_log (n INTEGER);
CREATE TRIGGER IF NOT EXISTS log_insert AFTER INSERT ON identities
  BEGIN INSERT INTO write_log VALUES (1); END;
CREATE TRIGGER IF NOT EXISTS log_update AFTER UPDATE ON identities
  BEGIN INSERT INTO write_log VALUES (1); END;
CREATE TRIGGER IF NOT EXISTS log_delete AFTER DELETE ON identities
  BEGIN INSERT INTO write_log VALUES (1); END;
CREATE TRIGGER IF NOT EXISTS log_key_write AFTER UPDATE ON identity_keys
  BEGIN INSERT INTO write_log VALUES (2); END;
)sql";

class SyncEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<testing::ScopedTestDir>("engine");
    db_ = dir_->File("store.db");
    auto store = SqliteStore::Open({db_});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto tenant = store_->EnsureTenant("acme");
    ASSERT_TRUE(tenant.ok());
    ConnectorRow row;
    row.tenant_id = *tenant;
    row.business_id = "hr";
    row.type = "scripted";
    auto saved = store_->UpsertConnector(row);
    ASSERT_TRUE(saved.ok()) << saved.status();
    row_ = *saved;
  }
  void TearDown() override {
    store_.reset();
    dir_.reset();
  }

  // Runs a sync of `chunks` and returns the finished run.
  RunRow Sync(std::vector<idsync::v1::SyncChunk> chunks,
              SyncOptions options = {}, Store* store = nullptr) {
    ScriptedConnector connector(std::move(chunks));
    return SyncWith(connector, options, store);
  }
  RunRow SyncWith(ScriptedConnector& connector, SyncOptions options = {},
                  Store* store = nullptr) {
    SyncEngine engine(store != nullptr ? *store : *store_, clock_,
                      engine_options_);
    auto connector_row = store_->GetConnector(row_.tenant_id, row_.id);
    EXPECT_TRUE(connector_row.ok());
    auto run = engine.Run(connector, *connector_row, options);
    EXPECT_TRUE(run.ok()) << run.status();
    return run.ok() ? *run : RunRow{};
  }
  testing::StoreSignature Signature() {
    auto sig = testing::SignStore(db_);
    EXPECT_TRUE(sig.ok()) << sig.status();
    return sig.ok() ? *sig : testing::StoreSignature{};
  }
  int64_t Query(const std::string& sql) {
    auto v = testing::QueryInt(db_, sql);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : -1;
  }

  std::unique_ptr<testing::ScopedTestDir> dir_;
  std::string db_;
  std::unique_ptr<SqliteStore> store_;
  ConnectorRow row_;
  testing::FakeClock clock_;
  SyncEngineOptions engine_options_;
};

TEST_F(SyncEngineTest, FullSyncCreatesEveryRecordInChunks) {
  RunRow run = Sync(Chunked(People(0, 250), 50));
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.processed, 250);
  EXPECT_EQ(run.created, 250);
  EXPECT_EQ(run.chunks, 5);
  EXPECT_EQ(run.deleted, 0);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL"),
            250);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE attributes = "
                  "'{\"location\":\"Berlin\"}'"),
            250);
  EXPECT_EQ(Query("SELECT count(*) FROM run_seen"), 0) << "dropped at the end";
}

// A connector that throws (e.g. a JSON library meeting a value of the wrong
// type) fails its run, deletes nothing and leaves the process standing.
TEST_F(SyncEngineTest, ConnectorThatThrowsFailsTheRunOnly) {
  ASSERT_EQ(Sync(Chunked(People(0, 250), 50)).status, RunStatus::kSucceeded);
  ScriptedConnector connector(Chunked(People(0, 100), 50));
  connector.set_before_chunk([](int index) {
    if (index == 1) throw std::runtime_error("type_error: not a boolean");
  });
  RunRow run = SyncWith(connector);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, ::testing::HasSubstr("not a boolean"));
  EXPECT_EQ(run.deleted, 0);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL"),
            250);
}

TEST_F(SyncEngineTest, UnchangedResyncWritesNoRow) {
  Sync(Chunked(People(0, 250), 50));
  ASSERT_TRUE(testing::ExecSql(db_, kWriteCounter).ok());
  RunRow run = Sync(Chunked(People(0, 250), 50));
  EXPECT_EQ(run.status, RunStatus::kSucceeded);
  EXPECT_EQ(run.unchanged, 250);
  EXPECT_EQ(run.created + run.updated + run.deleted, 0);
  EXPECT_EQ(Query("SELECT count(*) FROM write_log"), 0);
}

TEST_F(SyncEngineTest, ChangedRecordsAreUpdatedAndOnlyThey) {
  Sync(Chunked(People(0, 250), 50));
  ASSERT_TRUE(testing::ExecSql(db_, kWriteCounter).ok());
  std::vector<idsync::v1::RemoteIdentity> people = People(0, 250);
  for (int i = 0; i < 10; ++i) people[i * 7].set_department("Legal");
  (*people[200].mutable_attributes())["location"] = "Lisbon";
  RunRow run = Sync(Chunked(people, 50));
  EXPECT_EQ(run.updated, 11);
  EXPECT_EQ(run.unchanged, 239);
  EXPECT_EQ(Query("SELECT count(*) FROM write_log WHERE n=1"), 11);
  EXPECT_EQ(Query("SELECT count(*) FROM write_log WHERE n=2"), 11);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE department='Legal'"),
            10);
}

TEST_F(SyncEngineTest, FullSyncMarksUnseenRecordsDeletedWithinThreshold) {
  Sync(Chunked(People(0, 250), 50));
  RunRow run = Sync(Chunked(People(10, 250), 50));  // 10 of 250 gone: 4%.
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.deleted, 10);
  EXPECT_EQ(
      Query("SELECT count(*) FROM identities WHERE deleted_at IS NOT NULL "
            "AND external_id IN ('P0','P9')"),
      2);
  // A record that comes back is restored.
  RunRow again = Sync(Chunked(People(0, 250), 50));
  EXPECT_EQ(again.updated, 10);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL"),
            250);
}

TEST_F(SyncEngineTest, RemovalAboveThresholdIsRefusedAndChangesNothing) {
  Sync(Chunked(People(0, 250), 50));
  testing::StoreSignature before = Signature();
  RunRow run = Sync(Chunked(People(0, 100), 50));  // Would remove 60%.
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("deletion threshold"));
  EXPECT_THAT(run.deletion_note, HasSubstr("150 of 250"));
  EXPECT_EQ(run.deleted, 0);
  EXPECT_EQ(Signature(), before);
}

TEST_F(SyncEngineTest, ThresholdOverrideLetsOperatorConfirmRemoval) {
  Sync(Chunked(People(0, 250), 50));
  SyncOptions options;
  options.deletion_threshold = 0.7;
  RunRow run = Sync(Chunked(People(0, 100), 50), options);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.deleted, 150);
}

TEST_F(SyncEngineTest, EmptySourceNeverWipesTheStore) {
  Sync(Chunked(People(0, 50), 50));
  RunRow run = Sync({});
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_EQ(run.deleted, 0);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL"),
            50);
}

TEST_F(SyncEngineTest, MaxRecordsCutsTheRunAndSkipsDeletions) {
  Sync(Chunked(People(0, 250), 50));
  SyncOptions options;
  options.max_records = 120;
  RunRow run = Sync(Chunked(People(0, 250, "Ops"), 50), options);
  EXPECT_EQ(run.status, RunStatus::kSucceeded);
  EXPECT_EQ(run.processed, 120);
  EXPECT_EQ(run.updated, 120);
  EXPECT_EQ(run.deleted, 0);
  EXPECT_THAT(run.deletion_note, HasSubstr("max_records"));
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE department='Ops'"),
            120);
}

TEST_F(SyncEngineTest,
       SourceFailureDiscardsTheUncommittedGroupAndDeletesNothing) {
  Sync(Chunked(People(0, 100), 50));
  testing::StoreSignature before = Signature();
  engine_options_.commit_interval = absl::InfiniteDuration();
  ScriptedConnector connector(Chunked(People(0, 300, "Ops"), 50));
  connector.FailAfter(3, absl::InvalidArgumentError("line 151: bad quote"));
  RunRow run = SyncWith(connector);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("line 151: bad quote"));
  EXPECT_EQ(run.processed, 0) << "counters match what was committed";
  EXPECT_EQ(Signature(), before);
}

TEST_F(SyncEngineTest, GroupsCommittedBeforeAFailureStay) {
  engine_options_.max_group_records = 50;  // One chunk per commit.
  ScriptedConnector connector(Chunked(People(0, 300), 50));
  connector.FailAfter(3, absl::UnavailableError("source went away"));
  RunRow run = SyncWith(connector);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_EQ(run.created, 150);
  EXPECT_EQ(run.resume_token, "3");
  EXPECT_EQ(Query("SELECT count(*) FROM identities"), 150);
}

TEST_F(SyncEngineTest, IncrementalAppliesUpsertsAndDeletionsAndStoresToken) {
  Sync(Chunked(People(0, 100), 50));
  std::vector<idsync::v1::SyncChunk> chunks = Chunked(People(100, 105), 50);
  idsync::v1::Deletion* gone = chunks[0].add_deletions();
  gone->set_kind(idsync::v1::RECORD_KIND_IDENTITY);
  gone->set_external_id("P3");
  chunks[0].add_deletions()->set_external_id("never-existed");
  ScriptedConnector connector(chunks);
  connector.set_next_sync_token("watermark-2");
  SyncOptions options;
  options.incremental = true;
  RunRow run = SyncWith(connector, options);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.created, 5);
  EXPECT_EQ(run.deleted, 1);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL"),
            104);
  auto saved = store_->GetConnector(row_.tenant_id, row_.id);
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->sync_token, "watermark-2");
  EXPECT_TRUE(saved->last_sync_at.has_value());

  // The next incremental run is handed the stored watermark.
  ScriptedConnector next({});
  SyncWith(next, options);
  EXPECT_EQ(next.last_request().sync_token(), "watermark-2");
  EXPECT_TRUE(next.last_request().incremental());
}

TEST_F(SyncEngineTest, FailedIncrementalRunKeepsTheOldToken) {
  ScriptedConnector first({});
  first.set_next_sync_token("w1");
  SyncOptions options;
  options.incremental = true;
  SyncWith(first, options);
  ScriptedConnector failing(Chunked(People(0, 10), 5));
  failing.set_next_sync_token("w2");
  failing.FailAfter(1, absl::UnavailableError("timeout"));
  RunRow run = SyncWith(failing, options);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  auto saved = store_->GetConnector(row_.tenant_id, row_.id);
  ASSERT_TRUE(saved.ok());
  EXPECT_EQ(saved->sync_token, "w1");
}

TEST_F(SyncEngineTest, RejectsAndDuplicatesAreRecordedWithReasons) {
  std::vector<idsync::v1::RemoteIdentity> people = People(0, 100);
  people.push_back(people[5]);  // Duplicate key in the same run.
  people.emplace_back();        // No external id.
  std::vector<idsync::v1::SyncChunk> chunks = Chunked(people, 40);
  idsync::v1::Reject* bad = chunks[0].add_rejects();
  bad->set_kind(idsync::v1::RECORD_KIND_IDENTITY);
  bad->set_location("line 7");
  bad->set_reason("wrong column count");
  RunRow run = Sync(chunks);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.created, 100);
  EXPECT_EQ(run.rejected, 3);
  EXPECT_EQ(run.processed, 103);
  // A first sync inserts before it looks up: the duplicate's row was undone.
  EXPECT_EQ(Query("SELECT count(*) FROM identities"), 100);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE external_id='" +
                  people[5].external_id() + "'"),
            1);
  auto rejects = store_->ListRejects(row_.tenant_id, run.id, 10);
  ASSERT_TRUE(rejects.ok());
  std::vector<std::string> reasons;
  for (const auto& r : *rejects) reasons.push_back(r.reason());
  EXPECT_THAT(reasons, ::testing::UnorderedElementsAre("wrong column count",
                                                       HasSubstr("duplicate"),
                                                       "missing external_id"));
}

TEST_F(SyncEngineTest, OversizedKeysAndRecordsAreRejected) {
  std::vector<idsync::v1::RemoteIdentity> people = People(0, 30);
  people[3].set_external_id(std::string(2000, 'k'));
  (*people[4].mutable_attributes())["blob"] = std::string(2 << 20, 'x');
  RunRow run = Sync(Chunked(people, 10));
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.created, 28);
  EXPECT_EQ(run.rejected, 2);
  auto rejects = store_->ListRejects(row_.tenant_id, run.id, 10);
  ASSERT_TRUE(rejects.ok());
  std::vector<std::string> reasons;
  for (const auto& r : *rejects) reasons.push_back(r.reason());
  EXPECT_THAT(reasons,
              ::testing::ElementsAre("key longer than 1024 bytes",
                                     "record larger than 1048576 bytes"));
}

TEST_F(SyncEngineTest, ARejectedRowDoesNotDeleteItsRecord) {
  Sync(Chunked(People(0, 100), 50));
  std::vector<idsync::v1::SyncChunk> chunks = Chunked(People(1, 100), 50);
  idsync::v1::Reject* bad = chunks[0].add_rejects();
  bad->set_kind(idsync::v1::RECORD_KIND_IDENTITY);
  bad->set_external_id("P0");
  bad->set_reason("not valid UTF-8");
  RunRow run = Sync(chunks);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.deleted, 0);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL"),
            100);
}

TEST_F(SyncEngineTest, TooManyRejectsFailTheRun) {
  Sync(Chunked(People(0, 100), 50));
  idsync::v1::SyncChunk chunk;
  for (int i = 0; i < 30; ++i) {
    idsync::v1::Reject* r = chunk.add_rejects();
    r->set_location(absl::StrCat("line ", i + 2));
    r->set_reason("wrong column count");
  }
  RunRow run = Sync({chunk});
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("30 of 30 records were rejected"));
  EXPECT_EQ(run.deleted, 0);
}

TEST_F(SyncEngineTest, AllRecordKindsAreStoredAndReconciled) {
  idsync::v1::SyncChunk chunk;
  *chunk.add_identities() = People(0, 1)[0];
  auto* account = chunk.add_accounts();
  account->set_external_id("uid=p0");
  account->set_identity_external_id("P0");
  account->set_username("p0");
  for (const char* name : {"admins", "staff"}) {
    auto* group = chunk.add_entitlements();
    group->set_external_id(absl::StrCat("cn=", name));
    group->set_name(name);
    group->set_type("group");
    auto* grant = chunk.add_grants();
    grant->set_account_external_id("uid=p0");
    grant->set_entitlement_external_id(absl::StrCat("cn=", name));
  }
  RunRow run = Sync({chunk});
  EXPECT_EQ(run.created, 6);
  EXPECT_EQ(Query("SELECT count(*) FROM grants"), 2);
  EXPECT_EQ(
      Query("SELECT count(*) FROM accounts WHERE identity_external_id='P0'"),
      1);

  chunk.mutable_grants()->RemoveLast();  // The staff grant is revoked.
  SyncOptions options;
  options.deletion_threshold = 0.5;
  RunRow second = Sync({chunk}, options);
  EXPECT_EQ(second.status, RunStatus::kSucceeded) << second.error;
  EXPECT_EQ(second.deleted, 1);
  EXPECT_EQ(
      Query("SELECT count(*) FROM grants WHERE deleted_at IS NOT NULL AND "
            "entitlement_external_id='cn=staff'"),
      1);
}

TEST_F(SyncEngineTest, SecondRunOfALiveConnectorIsRefused) {
  ScriptedConnector blocking(Chunked(People(0, 10), 5));
  std::string refusal;
  blocking.set_before_chunk([&](int index) {
    if (index != 1) return;
    // The first run is active now: a second one must be refused.
    SyncEngine engine(*store_, clock_);
    ScriptedConnector other({});
    auto second = engine.Run(other, row_, {});
    refusal = second.ok() ? "started" : std::string(second.status().message());
  });
  RunRow run = SyncWith(blocking);
  EXPECT_EQ(run.status, RunStatus::kSucceeded);
  EXPECT_THAT(refusal, HasSubstr("already has an active run"));
}

TEST_F(SyncEngineTest, InvalidOptionsAreRejectedBeforeAnyRun) {
  SyncEngine engine(*store_, clock_);
  ScriptedConnector connector({});
  std::vector<SyncOptions> bad(4);
  bad[0].chunk_size = 0;
  bad[1].chunk_size = 10001;
  bad[2].max_records = 0;
  bad[3].deletion_threshold = 1.5;
  for (const SyncOptions& options : bad) {
    auto run = engine.Run(connector, row_, options);
    EXPECT_TRUE(absl::IsInvalidArgument(run.status())) << run.status();
  }
  EXPECT_EQ(connector.syncs(), 0);
  EXPECT_EQ(Query("SELECT count(*) FROM sync_runs"), 0);
}

TEST_F(SyncEngineTest, ConnectorNeverRunsFarAheadOfTheStore) {
  engine_options_.queue_chunks = 2;
  int produced = 0, applied = 0, max_ahead = 0;
  ScriptedConnector connector(Chunked(People(0, 400), 10));
  connector.set_before_chunk([&](int index) {
    produced = index + 1;
    max_ahead = std::max(max_ahead, produced - applied);
  });
  SyncEngine engine(*store_, clock_, engine_options_);
  auto run = engine.Run(connector, row_, {}, [&](const RunRow& r) {
    applied = static_cast<int>(r.chunks);
  });
  ASSERT_TRUE(run.ok());
  // Queue of 2, one being applied, one being produced.
  EXPECT_LE(max_ahead, 4);
}

TEST_F(SyncEngineTest, ThresholdHoldsAtExactlyItsPercentage) {
  Sync(Chunked(People(0, 100), 50));
  SyncOptions options;
  options.deletion_threshold = 0.29;  // 100 * 0.29 is 28.999... in doubles.
  RunRow run = Sync(Chunked(People(29, 100), 50), options);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.deleted, 29);
}

TEST_F(SyncEngineTest, NewRecordsDoNotDiluteTheThreshold) {
  Sync(Chunked(People(0, 100), 50));
  // The source swapped every key: 100 new records, all 100 old ones gone.
  SyncOptions options;
  options.deletion_threshold = 0.5;
  RunRow run = Sync(Chunked(People(100, 200), 50), options);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.deletion_note, HasSubstr("remove 100 of 100 records"));
  EXPECT_EQ(run.deleted, 0);
}

TEST_F(SyncEngineTest, CutRunDoesNotAdvanceTheWatermark) {
  ScriptedConnector connector(Chunked(People(0, 50), 10));
  connector.set_next_sync_token("w1");
  SyncOptions options;
  options.max_records = 20;
  RunRow run = SyncWith(connector, options);
  EXPECT_EQ(run.status, RunStatus::kSucceeded);
  EXPECT_TRUE(run.cut);
  auto saved = store_->GetConnector(row_.tenant_id, row_.id);
  ASSERT_TRUE(saved.ok());
  EXPECT_FALSE(saved->last_sync_at.has_value());
  EXPECT_EQ(saved->sync_token, "");
}

TEST_F(SyncEngineTest, AFailedCommitLeavesCountersAsCommitted) {
  engine_options_.max_group_records = 50;
  testing::FaultyStore faulty(*store_);
  faulty.FailOneCommitAfter(2);
  RunRow run = Sync(Chunked(People(0, 300), 50), {}, &faulty);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("simulated full disk"));
  EXPECT_EQ(run.created, 100);
  EXPECT_EQ(run.chunks, 2);
  EXPECT_EQ(Query("SELECT count(*) FROM identities"), 100);
  EXPECT_EQ(Query("SELECT created FROM sync_runs"), 100);
}

TEST_F(SyncEngineTest, InvalidEngineOptionsAreRejected) {
  engine_options_.max_group_records = 0;
  SyncEngine engine(*store_, clock_, engine_options_);
  ScriptedConnector connector(Chunked(People(0, 10), 5));
  auto run = engine.Run(connector, row_, {});
  EXPECT_TRUE(absl::IsInvalidArgument(run.status())) << run.status();
  EXPECT_EQ(connector.syncs(), 0);
}

TEST_F(SyncEngineTest,
       DeletionWithoutAKnownKindIsARejectNotAnIdentityDeletion) {
  Sync(Chunked(People(0, 10), 10));
  idsync::v1::SyncChunk chunk;
  chunk.add_deletions()->set_external_id("P1");  // No kind.
  SyncOptions options;
  options.incremental = true;
  RunRow run = Sync({chunk}, options);
  EXPECT_EQ(run.deleted, 0);
  EXPECT_EQ(run.rejected, 1);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL"),
            10);
}

TEST_F(SyncEngineTest, ARejectedGrantDoesNotDeleteItsGrant) {
  idsync::v1::SyncChunk chunk;
  for (const char* group : {"cn=a", "cn=b"}) {
    auto* grant = chunk.add_grants();
    grant->set_account_external_id("uid=p0");
    grant->set_entitlement_external_id(group);
  }
  Sync({chunk});
  chunk.mutable_grants()->RemoveLast();
  auto* reject = chunk.add_rejects();
  reject->set_kind(idsync::v1::RECORD_KIND_GRANT);
  reject->set_account_external_id("uid=p0");
  reject->set_entitlement_external_id("cn=b");
  reject->set_reason("bad attribute");
  SyncOptions options;
  options.deletion_threshold = 1;
  RunRow run = Sync({chunk}, options);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.deleted, 0);
}

TEST_F(SyncEngineTest, CancelledRunStopsAndDeletesNothing) {
  Sync(Chunked(People(0, 100), 10));
  SyncOptions options;
  options.cancel = std::make_shared<std::atomic<bool>>(false);
  ScriptedConnector connector(Chunked(People(0, 50, "Ops"), 10));
  connector.set_before_chunk([&](int index) {
    if (index == 2) *options.cancel = true;
  });
  RunRow run = SyncWith(connector, options);
  EXPECT_EQ(run.status, RunStatus::kCancelled);
  EXPECT_EQ(run.error, "cancelled");
  EXPECT_EQ(run.deleted, 0);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL"),
            100);
  EXPECT_EQ(Query("SELECT count(*) FROM sync_runs WHERE status='running'"), 0);
}

TEST_F(SyncEngineTest, AuthConfigReachesTheConnectorAndIsNotStored) {
  SyncOptions options;
  (*options.auth_config.mutable_fields())["password"].set_string_value(
      "s3cret-Pa55");
  ScriptedConnector connector(Chunked(People(0, 5), 5));
  RunRow run = SyncWith(connector, options);
  EXPECT_EQ(run.status, RunStatus::kSucceeded);
  EXPECT_EQ(connector.last_request()
                .auth_config()
                .fields()
                .at("password")
                .string_value(),
            "s3cret-Pa55");
  EXPECT_EQ(Query("SELECT count(*) FROM sync_runs WHERE callback_url LIKE "
                  "'%s3cret%' OR error LIKE '%s3cret%'"),
            0);
}

TEST_F(SyncEngineTest, ExecutesARunTheCallerCreatedAndReserved) {
  SyncEngine engine(*store_, clock_, engine_options_);
  RunRow created;
  std::optional<SyncEngine::Reservation> reservation(SyncEngine::Reserve());
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) -> absl::Status {
                    RunRow run;
                    run.tenant_id = row_.tenant_id;
                    run.connector_id = row_.id;
                    run.chunk_size = 10;
                    run.owner = reservation->owner();
                    run.started_at = txn.now();
                    auto inserted = txn.InsertRun(run);
                    if (!inserted.ok()) return inserted.status();
                    created = *inserted;
                    return absl::OkStatus();
                  })
                  .ok());
  // Reserved: another sync of the connector is refused, not a resume.
  ScriptedConnector other({});
  auto refused = engine.Run(other, row_, {});
  EXPECT_TRUE(absl::IsFailedPrecondition(refused.status())) << refused.status();

  ScriptedConnector connector(Chunked(People(0, 20), 10));
  auto run = engine.Execute(connector, row_, created, {});
  reservation.reset();
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->id, created.id);
  EXPECT_EQ(run->status, RunStatus::kSucceeded);
  EXPECT_EQ(run->created, 20);
}

TEST_F(SyncEngineTest, AnApiWriteIsNotBlockedByARunWaitingOnItsSource) {
  // Commits only when something asks for it: the group stays open.
  engine_options_.commit_interval = absl::InfiniteDuration();
  absl::Notification applied_first, release_source;
  ScriptedConnector connector(Chunked(People(0, 30), 10));
  connector.set_before_chunk([&](int index) {
    if (index == 1) release_source.WaitForNotification();  // A slow source.
  });
  std::thread run([&] {
    SyncEngine engine(*store_, clock_, engine_options_);
    auto result = engine.Run(connector, row_, {}, [&](const RunRow& r) {
      if (r.chunks == 1) applied_first.Notify();
    });
    ASSERT_TRUE(result.ok()) << result.status();
    EXPECT_EQ(result->status, RunStatus::kSucceeded) << result->error;
    EXPECT_EQ(result->created, 30);
  });
  applied_first.WaitForNotification();
  // The run holds an open group and waits on its source; an API write (the
  // HR joiner) goes through all the same.
  absl::Notification wrote;
  std::thread writer([&] {
    EXPECT_TRUE(store_
                    ->Write([&](WriteTxn& txn) {
                      AuditEntry e;
                      e.tenant_id = row_.tenant_id;
                      e.action = "identity.create";
                      return txn.Audit(e);
                    })
                    .ok());
    wrote.Notify();
  });
  EXPECT_TRUE(wrote.WaitForNotificationWithTimeout(absl::Seconds(5)))
      << "the API write waited for the sync's source";
  release_source.Notify();
  writer.join();
  run.join();
}

// Simulates a crash after `commits` commits, then resumes in a new engine
// with the owner marked dead, and returns the resumed run.
class SyncEngineCrashTest : public SyncEngineTest {
 protected:
  RunRow CrashThenResume(std::vector<idsync::v1::SyncChunk> chunks, int commits,
                         SyncOptions options = {}) {
    testing::FaultyStore faulty(*store_);
    faulty.CrashAfterCommits(commits);
    {
      ScriptedConnector connector(chunks);
      SyncEngine engine(faulty, clock_, engine_options_);
      auto crashed = engine.Run(connector, row_, options);
      EXPECT_FALSE(crashed.ok()) << "the crash must stop the run";
      EXPECT_TRUE(faulty.crashed());
    }
    EXPECT_EQ(Query("SELECT count(*) FROM sync_runs WHERE status='running'"),
              1);
    // The crashed process is gone: its pid no longer names it.
    EXPECT_TRUE(testing::ExecSql(db_,
                                 "UPDATE sync_runs SET owner='1:0' WHERE "
                                 "status='running'")
                    .ok());
    ScriptedConnector connector(chunks);
    RunRow resumed = SyncWith(connector, options);
    last_resume_token_ = connector.last_request().resume_token();
    resumed_connector_syncs_ = connector.syncs();
    return resumed;
  }
  std::string last_resume_token_;
  int resumed_connector_syncs_ = 0;
};

TEST_F(SyncEngineCrashTest, ResumesFromTheLastCheckpointWithExactCounters) {
  engine_options_.max_group_records = 50;  // Commit every chunk.
  RunRow run = CrashThenResume(Chunked(People(0, 500), 50), 4);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.resumes, 1);
  EXPECT_EQ(last_resume_token_, "4");
  EXPECT_EQ(run.created, 500);
  EXPECT_EQ(run.processed, 500);
  EXPECT_EQ(run.chunks, 10);
  EXPECT_EQ(Query("SELECT count(*) FROM sync_runs"), 1) << "same run resumed";

  // Same content as a run that was never interrupted.
  testing::StoreSignature crashed = Signature();
  TearDown();
  SetUp();
  Sync(Chunked(People(0, 500), 50));
  EXPECT_EQ(Signature(), crashed) << testing::DebugString(crashed);
}

TEST_F(SyncEngineCrashTest, DeletionDetectionSurvivesACrash) {
  engine_options_.max_group_records = 50;
  Sync(Chunked(People(0, 500), 50));
  // The second run sees 490 records; it crashes half-way, then resumes: the
  // records seen before the crash must not be deleted.
  RunRow run = CrashThenResume(Chunked(People(10, 500, "Ops"), 50), 5);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.deleted, 10);
  EXPECT_EQ(run.updated, 490);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL"),
            490);
}

TEST_F(SyncEngineCrashTest, CrashInsideTheDeletionPassResumesIt) {
  engine_options_.max_group_records = 10;  // Deletions commit every 10.
  Sync(Chunked(People(0, 200), 10));
  // 30 removed (15%): 17 record commits, the phase commit, then one of three
  // deletion batches before the crash.
  RunRow run = CrashThenResume(Chunked(People(30, 200), 10), 19);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.resumes, 1);
  EXPECT_EQ(run.deleted, 30);
  EXPECT_EQ(
      Query("SELECT count(*) FROM identities WHERE deleted_at IS NOT NULL"),
      30);
}

TEST_F(SyncEngineCrashTest, RejectedResumeTokenStartsANewRun) {
  engine_options_.max_group_records = 50;
  testing::FaultyStore faulty(*store_);
  faulty.CrashAfterCommits(2);
  {
    ScriptedConnector connector(Chunked(People(0, 300), 50));
    SyncEngine engine(faulty, clock_, engine_options_);
    EXPECT_FALSE(engine.Run(connector, row_, {}).ok());
  }
  ASSERT_TRUE(testing::ExecSql(db_, "UPDATE sync_runs SET owner='1:0'").ok());
  // The source changed since: it refuses the old position.
  class Refusing : public Connector {
   public:
    absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override {
      return idsync::v1::ConnectorInfo();
    }
    absl::Status TestConnection() override { return absl::OkStatus(); }
    absl::Status Sync(const idsync::v1::SyncRequest& request,
                      RecordSink& sink) override {
      if (!request.resume_token().empty()) {
        return absl::FailedPreconditionError("the file changed");
      }
      for (auto& chunk : Chunked(People(0, 300), 50)) {
        if (auto s = sink.Write(chunk); !s.ok()) return s;
      }
      return absl::OkStatus();
    }
  } refusing;
  SyncEngine engine(*store_, clock_, engine_options_);
  auto run = engine.Run(refusing, row_, {});
  ASSERT_TRUE(run.ok()) << run.status();
  EXPECT_EQ(run->status, RunStatus::kSucceeded) << run->error;
  EXPECT_EQ(run->created, 200);  // 100 were committed by the first run.
  EXPECT_EQ(run->unchanged, 100);
  auto old = store_->GetRun(row_.tenant_id, run->id - 1);
  ASSERT_TRUE(old.ok());
  EXPECT_EQ(old->status, RunStatus::kFailed);
  EXPECT_THAT(old->error, HasSubstr("could not resume"));
  EXPECT_THAT(old->error, HasSubstr("the file changed"));
}

TEST_F(SyncEngineCrashTest, CutRunResumedAfterACrashDeletesNothing) {
  Sync(Chunked(People(0, 110), 110));
  SyncOptions options;
  options.max_records = 100;
  // The cut happens inside the only chunk; the crash comes right after the
  // run's last commit, before it is finished.
  RunRow run = CrashThenResume(Chunked(People(0, 110, "Ops"), 110), 1, options);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_TRUE(run.cut);
  EXPECT_EQ(run.deleted, 0);
  EXPECT_EQ(run.processed, 100);
  EXPECT_EQ(resumed_connector_syncs_, 0) << "nothing left to read";
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL"),
            110);
}

TEST_F(SyncEngineCrashTest, RefusedDeletionAfterAResumeIsReportedAsSuch) {
  engine_options_.max_group_records = 50;
  Sync(Chunked(People(0, 100), 50));
  // Half the records are gone; the crash comes after the last record commit.
  RunRow run = CrashThenResume(Chunked(People(0, 50), 50), 1);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, ::testing::StartsWith("deletions refused"));
  EXPECT_EQ(Query("SELECT count(*) FROM sync_runs"), 2) << "no extra run";
  EXPECT_EQ(run.deleted, 0);
}

TEST_F(SyncEngineCrashTest, RunAbandonedByThisProcessIsResumed) {
  engine_options_.max_group_records = 50;
  testing::FaultyStore faulty(*store_);
  faulty.CrashAfterCommits(2);  // FinishRun fails too: the run stays running.
  {
    ScriptedConnector connector(Chunked(People(0, 200), 50));
    SyncEngine engine(faulty, clock_, engine_options_);
    EXPECT_FALSE(engine.Run(connector, row_, {}).ok());
  }
  // Same process, owner unchanged: the run is not executing, so it resumes.
  RunRow run = Sync(Chunked(People(0, 200), 50));
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.resumes, 1);
  EXPECT_EQ(run.created, 200);
}

// A source that cannot resume inside its walk (like LDAP paged results):
// every chunk has an empty resume token, and every Sync starts at the top.
class RestartingConnector final : public Connector {
 public:
  explicit RestartingConnector(std::vector<idsync::v1::SyncChunk> chunks)
      : chunks_(std::move(chunks)) {}
  absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override {
    return idsync::v1::ConnectorInfo();
  }
  absl::Status TestConnection() override { return absl::OkStatus(); }
  absl::Status Sync(const idsync::v1::SyncRequest& request,
                    RecordSink& sink) override {
    resume_tokens_.push_back(request.resume_token());
    for (const auto& chunk : chunks_) {
      if (auto s = sink.Write(chunk); !s.ok()) return s;
    }
    return absl::OkStatus();
  }
  std::vector<std::string> resume_tokens_;

 private:
  std::vector<idsync::v1::SyncChunk> chunks_;
};

class SyncEngineRestartTest : public SyncEngineCrashTest {
 protected:
  // Crashes a run of `chunks` after `commits` commits, then resumes it.
  RunRow CrashThenRestart(const std::vector<idsync::v1::SyncChunk>& chunks,
                          int commits) {
    testing::FaultyStore faulty(*store_);
    faulty.CrashAfterCommits(commits);
    {
      RestartingConnector connector(chunks);
      SyncEngine engine(faulty, clock_, engine_options_);
      EXPECT_FALSE(engine.Run(connector, row_, {}).ok());
      EXPECT_TRUE(faulty.crashed());
    }
    EXPECT_TRUE(testing::ExecSql(db_,
                                 "UPDATE sync_runs SET owner='1:0' WHERE "
                                 "status='running'")
                    .ok());
    RestartingConnector connector(chunks);
    SyncEngine engine(*store_, clock_, engine_options_);
    auto run = engine.Run(connector, row_, {});
    EXPECT_TRUE(run.ok()) << run.status();
    EXPECT_EQ(connector.resume_tokens_, std::vector<std::string>{""});
    return run.ok() ? *run : RunRow{};
  }
};

TEST_F(SyncEngineRestartTest, RestartedWalkIsNotRejectedAsDuplicates) {
  engine_options_.max_group_records = 50;  // Commit every chunk.
  RunRow run = CrashThenRestart(Chunked(People(0, 500), 50), 4);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.resumes, 1);
  EXPECT_EQ(run.rejected, 0);
  // Counted once each, as by an uninterrupted run.
  EXPECT_EQ(run.created, 500);
  EXPECT_EQ(run.processed, 500);
  EXPECT_EQ(run.unchanged, 0);
  EXPECT_EQ(Query("SELECT count(*) FROM sync_runs"), 1) << "same run resumed";

  testing::StoreSignature restarted = Signature();
  TearDown();
  SetUp();
  Sync(Chunked(People(0, 500), 50));
  EXPECT_EQ(Signature(), restarted) << testing::DebugString(restarted);
}

TEST_F(SyncEngineRestartTest, RestartedWalkStillDetectsDeletionsAndChanges) {
  engine_options_.max_group_records = 50;
  Sync(Chunked(People(0, 500), 50));
  // 10 records gone, the rest changed; the crash comes half-way.
  RunRow run = CrashThenRestart(Chunked(People(10, 500, "Ops"), 50), 5);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.rejected, 0);
  EXPECT_EQ(run.updated, 490);
  EXPECT_EQ(run.processed, 490);
  EXPECT_EQ(run.deleted, 10);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NULL "
                  "AND department='Ops'"),
            490);
}

TEST_F(SyncEngineRestartTest, DuplicateInsideTheRestartedWalkIsRejected) {
  engine_options_.max_group_records = 50;
  std::vector<idsync::v1::RemoteIdentity> people = People(0, 300);
  people.push_back(people[20]);  // Twice in one walk of the source.
  RunRow run = CrashThenRestart(Chunked(people, 50), 2);
  EXPECT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.rejected, 1);
  EXPECT_EQ(run.created, 300);
}

}  // namespace
}  // namespace idsync
