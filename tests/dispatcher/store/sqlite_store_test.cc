#include "dispatcher/store/sqlite_store.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "connector/status_macros.h"
#include "dispatcher/store/migrations.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

namespace v1 = idsync::v1;
using ::testing::HasSubstr;

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<testing::ScopedTestDir>("store");
    path_ = dir_->File("s.db");
    auto store = SqliteStore::Open({path_});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    tenant_ = *store_->EnsureTenant("acme");
    ConnectorRow c;
    c.tenant_id = tenant_;
    c.business_id = "hr";
    c.type = "csv";
    connector_ = *store_->UpsertConnector(c);
  }
  void TearDown() override {
    store_.reset();
    dir_.reset();
  }
  RunRow NewRun() {
    RunRow run;
    run.tenant_id = tenant_;
    run.connector_id = connector_.id;
    run.chunk_size = 100;
    run.owner = "me";
    run.started_at = absl::FromUnixSeconds(1700000000);
    auto created = store_->CreateRun(run);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : run;
  }

  std::unique_ptr<testing::ScopedTestDir> dir_;
  std::string path_;
  std::unique_ptr<SqliteStore> store_;
  int64_t tenant_ = 0;
  ConnectorRow connector_;
};

TEST_F(SqliteStoreTest, ReopeningAppliesNoMigrationTwice) {
  store_.reset();
  auto again = SqliteStore::Open({path_});
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(*testing::QueryInt(path_, "PRAGMA user_version"), 7);
  EXPECT_EQ(*(*again)->EnsureTenant("acme"), tenant_);
}

TEST_F(SqliteStoreTest, NewStoresUse16KiBPagesAndOldOnesKeepTheirs) {
  EXPECT_EQ(*testing::QueryInt(path_, "PRAGMA page_size"), 16384);
  // A store created before (4 KiB pages) opens, migrates and works as is.
  const std::string old = dir_->File("old.db");
  sqlite3* raw = nullptr;
  ASSERT_EQ(sqlite3_open(old.c_str(), &raw), SQLITE_OK);
  EXPECT_EQ(sqlite3_exec(raw,
                         "PRAGMA page_size=4096; PRAGMA journal_mode=WAL; "
                         "CREATE TABLE t(x);",
                         nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(raw);
  auto store = SqliteStore::Open({old});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_TRUE((*store)->EnsureTenant("acme").ok());
  EXPECT_EQ(*testing::QueryInt(old, "PRAGMA page_size"), 4096);
}

// The store holds every tenant's records and sealed secrets.
TEST_F(SqliteStoreTest, TheStoreAndItsWalAreOwnerOnly) {
  for (const std::string& file : {path_, path_ + "-wal"}) {
    struct stat st;
    ASSERT_EQ(stat(file.c_str(), &st), 0) << file;
    EXPECT_EQ(st.st_mode & 0777, 0600u) << file;
  }
  // An existing store someone made world-readable is tightened at open.
  store_.reset();
  ASSERT_EQ(chmod(path_.c_str(), 0644), 0);
  auto again = SqliteStore::Open({path_});
  ASSERT_TRUE(again.ok()) << again.status();
  struct stat st;
  ASSERT_EQ(stat(path_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// A deleted webhook's, connector's or record's id never names another row
// later (an audit entry's resource_id, a receiver's records).
TEST_F(SqliteStoreTest, IdsAreNeverReusedAfterADelete) {
  const int64_t other = *store_->EnsureTenant("globex");
  auto insert_webhook = [&](int64_t tenant) {
    int64_t id = 0;
    EXPECT_TRUE(store_
                    ->Write([&](WriteTxn& txn) -> absl::Status {
                      WebhookRow w;
                      w.tenant_id = tenant;
                      w.url = "https://hooks.example.com/x";
                      w.event_types = {"*"};
                      IDSYNC_ASSIGN_OR_RETURN(id, txn.InsertWebhook(w));
                      return absl::OkStatus();
                    })
                    .ok());
    return id;
  };
  const int64_t first = insert_webhook(tenant_);
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) {
                    return txn.DeleteWebhook(tenant_, first);
                  })
                  .ok());
  EXPECT_GT(insert_webhook(other), first);

  // Records: the deleted connector's identity was the newest row.
  auto insert_identity = [&](int64_t connector, const std::string& key) {
    int64_t id = 0;
    EXPECT_TRUE(store_
                    ->Write([&](WriteTxn& txn) -> absl::Status {
                      v1::RemoteIdentity r;
                      r.set_external_id(key);
                      IDSYNC_ASSIGN_OR_RETURN(
                          id, txn.InsertRecord(tenant_, connector,
                                               v1::RECORD_KIND_IDENTITY, r, 1));
                      return absl::OkStatus();
                    })
                    .ok());
    return id;
  };
  ConnectorRow gone;
  gone.tenant_id = tenant_;
  gone.business_id = "gone";
  gone.type = "csv";
  gone = *store_->UpsertConnector(gone);
  insert_identity(connector_.id, "E1");
  const int64_t top = insert_identity(gone.id, "E2");
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) {
                    return txn.DeleteConnector(tenant_, gone.id);
                  })
                  .ok());
  const int64_t next = insert_identity(connector_.id, "E3");
  EXPECT_GT(next, top);
  // And the sync engine's writer, on its own connection, likewise.
  ConnectorRow later;
  later.tenant_id = tenant_;
  later.business_id = "later";
  later.type = "csv";
  later = *store_->UpsertConnector(later);
  const int64_t top2 = insert_identity(later.id, "E4");
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) {
                    return txn.DeleteConnector(tenant_, later.id);
                  })
                  .ok());
  RunRow run = NewRun();
  auto writer = store_->OpenRunWriter(run);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Begin(absl::Now()).ok());
  v1::RemoteIdentity e5;
  e5.set_external_id("E5");
  auto inserted = (*writer)->InsertIfNew(v1::RECORD_KIND_IDENTITY, e5, 5);
  ASSERT_TRUE(inserted.ok() && inserted->has_value()) << inserted.status();
  EXPECT_GT(**inserted, top2);
  ASSERT_TRUE((*writer)->Commit(run, {}).ok());
  EXPECT_GT(*testing::QueryInt(path_, "SELECT max(id) FROM identities"), top2);
}

// Migration 7 rebuilds tables others refer to: rows, indexes and
// references survive it.
TEST_F(SqliteStoreTest, MigrationSevenKeepsEveryRow) {
  const std::string old = dir_->File("v6.db");
  {
    sqlite3* raw = nullptr;
    ASSERT_EQ(sqlite3_open(old.c_str(), &raw), SQLITE_OK);
    ASSERT_TRUE(Migrate(raw, 6).ok());
    ASSERT_EQ(sqlite3_exec(raw,
                           "INSERT INTO tenants(id, name, created_at) "
                           "VALUES(1, 'acme', 1), (2, 'globex', 1);"
                           "INSERT INTO connectors(id, tenant_id, business_id, "
                           "type, created_at, updated_at) VALUES(5, 2, 'hr', "
                           "'csv', 1, 1);"
                           "INSERT INTO webhooks(id, tenant_id, url, "
                           "event_types, created_at, updated_at) VALUES(9, 1, "
                           "'https://h', '[\"*\"]', 1, 1);",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(raw);
  }
  auto store = SqliteStore::Open({old});
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_EQ(*testing::QueryInt(old, "PRAGMA user_version"), 7);
  EXPECT_EQ(*testing::QueryInt(old, "SELECT count(*) FROM tenants"), 2);
  EXPECT_EQ(*testing::QueryInt(old, "SELECT tenant_id FROM connectors"), 2);
  EXPECT_EQ(*testing::QueryInt(old, "SELECT id FROM webhooks"), 9);
  EXPECT_EQ(*testing::QueryInt(old,
                               "SELECT count(*) FROM sqlite_master WHERE "
                               "name='webhooks_by_tenant'"),
            1);
  EXPECT_EQ(*testing::QueryInt(old,
                               "SELECT count(*) FROM sqlite_master WHERE sql "
                               "LIKE '%AUTOINCREMENT%'"),
            9);  // 7 rebuilt, outbox and deliveries.
  EXPECT_EQ(*(*store)->TenantName(2), "globex");
}

TEST_F(SqliteStoreTest, StoreFromANewerVersionIsRefused) {
  store_.reset();
  ASSERT_TRUE(testing::ExecSql(path_, "PRAGMA user_version=99").ok());
  auto store = SqliteStore::Open({path_});
  EXPECT_TRUE(absl::IsFailedPrecondition(store.status())) << store.status();
  EXPECT_THAT(store.status().message(), HasSubstr("newer"));
}

TEST_F(SqliteStoreTest, AFileThatIsNotADatabaseGivesAClearError) {
  const std::string junk = dir_->File("junk.db");
  std::ofstream(junk) << std::string(8192, 'x');
  auto store = SqliteStore::Open({junk});
  EXPECT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr("not a database"));
  EXPECT_FALSE(SqliteStore::Open({""}).ok());
}

TEST_F(SqliteStoreTest, TenantsAreCreatedOnce) {
  EXPECT_EQ(*store_->EnsureTenant("acme"), tenant_);
  EXPECT_NE(*store_->EnsureTenant("globex"), tenant_);
}

TEST_F(SqliteStoreTest, UpsertConnectorKeepsThresholdAndToken) {
  ASSERT_TRUE(testing::ExecSql(path_,
                               "UPDATE connectors SET "
                               "deletion_threshold=0.5, sync_token='w'")
                  .ok());
  ConnectorRow c = connector_;
  c.config_json = R"({"path":"b.csv"})";
  c.deletion_threshold = 0.2;
  auto updated = store_->UpsertConnector(c);
  ASSERT_TRUE(updated.ok());
  EXPECT_EQ(updated->id, connector_.id);
  EXPECT_EQ(updated->config_json, R"({"path":"b.csv"})");
  EXPECT_DOUBLE_EQ(updated->deletion_threshold, 0.5);
  EXPECT_EQ(updated->sync_token, "w");
}

TEST_F(SqliteStoreTest, ConnectorsAreScopedByTenant) {
  int64_t other = *store_->EnsureTenant("globex");
  EXPECT_TRUE(
      absl::IsNotFound(store_->GetConnector(other, connector_.id).status()));
}

TEST_F(SqliteStoreTest, OnlyOneActiveRunPerConnector) {
  RunRow first = NewRun();
  RunRow again;
  again.tenant_id = tenant_;
  again.connector_id = connector_.id;
  auto second = store_->CreateRun(again);
  EXPECT_TRUE(absl::IsFailedPrecondition(second.status())) << second.status();
  auto active = store_->ActiveRun(tenant_, connector_.id);
  ASSERT_TRUE(active.ok() && active->has_value());
  EXPECT_EQ((*active)->id, first.id);

  first.status = RunStatus::kSucceeded;
  ASSERT_TRUE(store_->FinishRun(first).ok());
  EXPECT_TRUE(store_->CreateRun(again).ok()) << "a finished run frees the slot";
}

TEST_F(SqliteStoreTest, RunForAMissingConnectorIsNotReportedAsActive) {
  RunRow run;
  run.tenant_id = tenant_;
  run.connector_id = 999;
  auto created = store_->CreateRun(run);
  EXPECT_FALSE(created.ok());
  EXPECT_THAT(created.status().message(), HasSubstr("FOREIGN KEY"));
}

TEST_F(SqliteStoreTest, ClaimRunIsACompareAndSwapOnTheOwner) {
  RunRow run = NewRun();
  EXPECT_TRUE(store_->ClaimRun(tenant_, run.id, "me", "you").ok());
  EXPECT_TRUE(absl::IsAborted(store_->ClaimRun(tenant_, run.id, "me", "them")));
  RunRow claimed = *store_->GetRun(tenant_, run.id);
  EXPECT_EQ(claimed.owner, "you");
  EXPECT_EQ(claimed.resumes, 1);
}

TEST_F(SqliteStoreTest, RecordsAndCheckpointCommitTogether) {
  RunRow run = NewRun();
  auto writer = store_->OpenRunWriter(run);
  ASSERT_TRUE(writer.ok());
  idsync::v1::RemoteIdentity person;
  person.set_external_id("E1");
  (*person.mutable_attributes())["note"] = "quote \" and \\ and \n";

  // Rolled back: neither the record nor the checkpoint is stored.
  ASSERT_TRUE((*writer)->Begin(absl::Now()).ok());
  ASSERT_TRUE(
      (*writer)->InsertIfNew(idsync::v1::RECORD_KIND_IDENTITY, person, 7).ok());
  (*writer)->Rollback();
  EXPECT_EQ(*testing::QueryInt(path_, "SELECT count(*) FROM identities"), 0);
  EXPECT_EQ(store_->GetRun(tenant_, run.id)->chunks, 0);

  // Committed: both are.
  ASSERT_TRUE((*writer)->Begin(absl::Now()).ok());
  auto id = (*writer)->InsertIfNew(idsync::v1::RECORD_KIND_IDENTITY, person, 7);
  ASSERT_TRUE(id.ok() && id->has_value());
  run.chunks = 1;
  run.resume_token = "csv1:100:2:0:0";
  run.created = 1;
  ASSERT_TRUE((*writer)
                  ->Commit(run, {{idsync::v1::RECORD_KIND_IDENTITY, "\x01"}})
                  .ok());
  RunRow saved = *store_->GetRun(tenant_, run.id);
  EXPECT_EQ(saved.resume_token, "csv1:100:2:0:0");
  EXPECT_EQ(saved.created, 1);
  EXPECT_EQ(store_->LoadSeen(run.id)->size(), 1u);
  auto found = (*writer)->Lookup(idsync::v1::RECORD_KIND_IDENTITY, {"E1", {}});
  ASSERT_TRUE(found.ok() && found->has_value());
  EXPECT_EQ((*found)->id, **id);
  EXPECT_EQ((*found)->content_hash, 7u);
  EXPECT_EQ(
      *testing::QueryInt(path_,
                         "SELECT json_extract(attributes, '$.note') = "
                         "'quote \" and \\ and ' || char(10) FROM identities"),
      1)
      << "attributes are valid JSON";
}

TEST_F(SqliteStoreTest, InsertIfNewWritesNothingForAnExistingKey) {
  RunRow run = NewRun();
  auto writer = store_->OpenRunWriter(run);
  ASSERT_TRUE(writer.ok());
  EXPECT_FALSE(*(*writer)->HasRecords(idsync::v1::RECORD_KIND_IDENTITY));
  idsync::v1::RemoteIdentity person;
  person.set_external_id("E1");
  person.set_email("first@example.com");
  ASSERT_TRUE((*writer)->Begin(absl::Now()).ok());
  auto first =
      (*writer)->InsertIfNew(idsync::v1::RECORD_KIND_IDENTITY, person, 7);
  ASSERT_TRUE(first.ok() && first->has_value());
  person.set_email("second@example.com");
  auto second =
      (*writer)->InsertIfNew(idsync::v1::RECORD_KIND_IDENTITY, person, 8);
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->has_value());
  // The next new key still gets the next id: the undone row left no gap.
  person.set_external_id("E2");
  auto third =
      (*writer)->InsertIfNew(idsync::v1::RECORD_KIND_IDENTITY, person, 9);
  ASSERT_TRUE(third.ok() && third->has_value());
  EXPECT_EQ(**third, **first + 1);
  ASSERT_TRUE((*writer)->Commit(run, {}).ok());
  EXPECT_TRUE(*(*writer)->HasRecords(idsync::v1::RECORD_KIND_IDENTITY));
  EXPECT_FALSE(*(*writer)->HasRecords(idsync::v1::RECORD_KIND_ACCOUNT));
  EXPECT_EQ(*testing::QueryInt(path_, "SELECT count(*) FROM identities"), 2);
  EXPECT_EQ(*testing::QueryInt(path_,
                               "SELECT count(*) FROM identities WHERE "
                               "email='first@example.com'"),
            1);
  EXPECT_EQ(*testing::QueryInt(path_, "SELECT count(*) FROM identity_keys"), 2);
}

TEST_F(SqliteStoreTest, FinishRunStoresTheTokenOnlyOnSuccess) {
  RunRow failed = NewRun();
  failed.status = RunStatus::kFailed;
  failed.next_sync_token = "w1";
  ASSERT_TRUE(store_->FinishRun(failed).ok());
  EXPECT_EQ(store_->GetConnector(tenant_, connector_.id)->sync_token, "");

  RunRow ok = NewRun();
  ok.status = RunStatus::kSucceeded;
  ok.next_sync_token = "w2";
  ok.finished_at = absl::FromUnixSeconds(1700000100);
  ASSERT_TRUE(store_->FinishRun(ok).ok());
  ConnectorRow c = *store_->GetConnector(tenant_, connector_.id);
  EXPECT_EQ(c.sync_token, "w2");
  EXPECT_EQ(c.last_sync_at, absl::FromUnixSeconds(1700000100));
  EXPECT_EQ(*testing::QueryInt(path_, "SELECT count(*) FROM run_seen"), 0);
}

}  // namespace
}  // namespace idsync
