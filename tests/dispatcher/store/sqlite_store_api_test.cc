// The API half of SqliteStore: list queries, WriteTxn and idempotency keys,
// on a real store in a temporary file.
#include <algorithm>
#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/barrier.h"
#include "absl/time/clock.h"
#include "connector/status_macros.h"
#include "dispatcher/store/sqlite_store.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::google::protobuf::util::TimeUtil;
using ::idsync::v1::RECORD_KIND_ACCOUNT;
using ::idsync::v1::RECORD_KIND_ENTITLEMENT;
using ::idsync::v1::RECORD_KIND_GRANT;
using ::idsync::v1::RECORD_KIND_IDENTITY;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

int64_t Us(absl::Time t) { return absl::ToUnixMicros(t); }
int64_t Us(const google::protobuf::Timestamp& t) {
  return TimeUtil::TimestampToMicroseconds(t);
}

v1::RemoteIdentity Person(absl::string_view external_id,
                          absl::string_view status = "active") {
  v1::RemoteIdentity r;
  r.set_external_id(std::string(external_id));
  r.set_email(absl::StrCat(external_id, "@example.com"));
  r.set_first_name("First");
  r.set_last_name("Last");
  r.set_display_name(absl::StrCat("Person ", external_id));
  r.set_department("Eng");
  r.set_job_title("Engineer");
  r.set_manager_external_id("boss");
  r.set_status(std::string(status));
  return r;
}

v1::RemoteAccount AccountOf(absl::string_view external_id,
                            absl::string_view identity) {
  v1::RemoteAccount r;
  r.set_external_id(std::string(external_id));
  r.set_identity_external_id(std::string(identity));
  r.set_username(absl::StrCat("u_", external_id));
  r.set_email(absl::StrCat(external_id, "@corp"));
  r.set_display_name(absl::StrCat("Account ", external_id));
  r.set_status("enabled");
  return r;
}

v1::RemoteEntitlement Group(absl::string_view external_id) {
  v1::RemoteEntitlement r;
  r.set_external_id(std::string(external_id));
  r.set_name(absl::StrCat("group ", external_id));
  r.set_description("a group");
  r.set_type("group");
  return r;
}

v1::RemoteGrant GrantOf(absl::string_view account,
                        absl::string_view entitlement) {
  v1::RemoteGrant r;
  r.set_account_external_id(std::string(account));
  r.set_entitlement_external_id(std::string(entitlement));
  return r;
}

std::vector<std::string> ExternalIds(const std::vector<v1::Identity>& items) {
  std::vector<std::string> out;
  for (const auto& i : items) out.push_back(i.external_id());
  return out;
}

class SqliteStoreApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<testing::ScopedTestDir>("store_api");
    path_ = dir_->File("s.db");
    auto store = SqliteStore::Open({path_});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    tenant_ = *store_->EnsureTenant("acme");
    other_tenant_ = *store_->EnsureTenant("globex");
  }
  void TearDown() override {
    store_.reset();
    dir_.reset();
  }

  // A single integer from SQL on the store file; -1 on error.
  int64_t Query(const std::string& sql) {
    absl::StatusOr<int64_t> v = testing::QueryInt(path_, sql);
    EXPECT_TRUE(v.ok()) << v.status() << " for " << sql;
    return v.ok() ? *v : -1;
  }
  void Exec(const std::string& sql) {
    absl::Status s = testing::ExecSql(path_, sql);
    ASSERT_TRUE(s.ok()) << s << " for " << sql;
  }

  int64_t ApiConnector(int64_t tenant) {
    int64_t id = 0;
    absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
      IDSYNC_ASSIGN_OR_RETURN(id, txn.ApiConnector(tenant));
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
    return id;
  }

  int64_t NewConnector(int64_t tenant, absl::string_view business_id) {
    ConnectorRow row;
    row.tenant_id = tenant;
    row.business_id = std::string(business_id);
    row.type = "csv";
    int64_t id = 0;
    absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
      IDSYNC_ASSIGN_OR_RETURN(id, txn.InsertConnector(row));
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
    return id;
  }

  // Inserts one record in its own transaction; returns its id (0 on error).
  int64_t Insert(int64_t tenant, int64_t connector, v1::RecordKind kind,
                 const google::protobuf::Message& record, uint64_t hash = 1,
                 absl::Time* now = nullptr) {
    int64_t id = 0;
    absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
      if (now != nullptr) *now = txn.now();
      IDSYNC_ASSIGN_OR_RETURN(
          id, txn.InsertRecord(tenant, connector, kind, record, hash));
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
    return id;
  }
  int64_t InsertPerson(int64_t tenant, int64_t connector,
                       absl::string_view external_id,
                       absl::string_view status = "active") {
    return Insert(tenant, connector, RECORD_KIND_IDENTITY,
                  Person(external_id, status));
  }

  void Deactivate(v1::RecordKind kind, int64_t id) {
    absl::Status s = store_->Write(
        [&](WriteTxn& txn) { return txn.DeactivateRecord(kind, id); });
    ASSERT_TRUE(s.ok()) << s;
  }

  std::vector<v1::Identity> Identities(const ListQuery& q,
                                       int64_t* total = nullptr) {
    std::vector<v1::Identity> items;
    absl::StatusOr<int64_t> n = store_->ListIdentities(q, &items);
    EXPECT_TRUE(n.ok()) << n.status();
    if (total != nullptr) *total = n.ok() ? *n : -1;
    return items;
  }

  ListQuery InTenant(int64_t tenant) {
    ListQuery q;
    q.tenant_id = tenant;
    return q;
  }

  RunRow CreateRun(int64_t tenant, int64_t connector) {
    RunRow run;
    run.tenant_id = tenant;
    run.connector_id = connector;
    run.chunk_size = 10;
    run.owner = "me";
    run.started_at = absl::FromUnixSeconds(1700000000);
    absl::StatusOr<RunRow> created = store_->CreateRun(run);
    EXPECT_TRUE(created.ok()) << created.status();
    return created.ok() ? *created : run;
  }

  absl::StatusOr<IdempotencyState> Begin(
      int64_t tenant, absl::string_view key, absl::string_view hash,
      absl::Duration stale_after = absl::Hours(1)) {
    return store_->BeginIdempotent(tenant, key, hash, stale_after);
  }
  void Complete(int64_t tenant, absl::string_view key, int status,
                absl::string_view response) {
    absl::Status s = store_->Write([&](WriteTxn& txn) {
      return txn.CompleteIdempotent(tenant, key, status, response);
    });
    ASSERT_TRUE(s.ok()) << s;
  }

  std::unique_ptr<testing::ScopedTestDir> dir_;
  std::string path_;
  std::unique_ptr<SqliteStore> store_;
  int64_t tenant_ = 0;
  int64_t other_tenant_ = 0;
};

// --- Write
// --------------------------------------------------------------------

TEST_F(SqliteStoreApiTest, WriteCommitsEverythingTheBodyDid) {
  absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_ASSIGN_OR_RETURN(int64_t api, txn.ApiConnector(tenant_));
    IDSYNC_RETURN_IF_ERROR(
        txn.InsertRecord(tenant_, api, RECORD_KIND_IDENTITY, Person("E1"), 1)
            .status());
    TokenRow token;
    token.tenant_id = tenant_;
    token.name = "ci";
    token.kind = "service";
    token.role = "admin";
    token.prefix = "idsync_svc_ab";
    IDSYNC_RETURN_IF_ERROR(txn.InsertToken(token, "hash-1").status());
    AuditEntry audit;
    audit.tenant_id = tenant_;
    audit.action = "identity.create";
    return txn.Audit(audit);
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Query("SELECT count(*) FROM connectors WHERE type='api'"), 1);
  EXPECT_EQ(Query("SELECT count(*) FROM identities"), 1);
  EXPECT_EQ(Query("SELECT count(*) FROM identity_keys"), 1);
  EXPECT_EQ(Query("SELECT count(*) FROM tokens"), 1);
  EXPECT_EQ(Query("SELECT count(*) FROM audit_events"), 1);
}

TEST_F(SqliteStoreApiTest, WriteWhoseBodyFailsCommitsNothing) {
  absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_ASSIGN_OR_RETURN(int64_t api, txn.ApiConnector(tenant_));
    IDSYNC_RETURN_IF_ERROR(
        txn.InsertRecord(tenant_, api, RECORD_KIND_IDENTITY, Person("E1"), 1)
            .status());
    AuditEntry audit;
    audit.tenant_id = tenant_;
    audit.action = "identity.create";
    IDSYNC_RETURN_IF_ERROR(txn.Audit(audit));
    return absl::AbortedError("client went away");
  });
  EXPECT_TRUE(absl::IsAborted(s)) << s;
  EXPECT_EQ(Query("SELECT count(*) FROM connectors"), 0);
  EXPECT_EQ(Query("SELECT count(*) FROM identities"), 0);
  EXPECT_EQ(Query("SELECT count(*) FROM identity_keys"), 0);
  EXPECT_EQ(Query("SELECT count(*) FROM audit_events"), 0);

  // The connection is usable afterwards: the next body commits.
  EXPECT_GT(InsertPerson(tenant_, ApiConnector(tenant_), "E1"), 0);
  EXPECT_EQ(Query("SELECT count(*) FROM identities"), 1);
}

TEST_F(SqliteStoreApiTest, DuplicateRecordKeyFailsAndLeavesNoHalfWrittenRow) {
  const int64_t api = ApiConnector(tenant_);
  InsertPerson(tenant_, api, "E1");
  absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(
        txn.InsertRecord(tenant_, api, RECORD_KIND_IDENTITY, Person("E2"), 1)
            .status());
    return txn.InsertRecord(tenant_, api, RECORD_KIND_IDENTITY, Person("E1"), 1)
        .status();
  });
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_EQ(Query("SELECT count(*) FROM identities"), 1);
  EXPECT_EQ(Query("SELECT count(*) FROM identity_keys"), 1);
}

// --- Records
// ------------------------------------------------------------------

TEST_F(SqliteStoreApiTest, ApiConnectorIsCreatedOnceAndHiddenFromConnectors) {
  const int64_t api = ApiConnector(tenant_);
  EXPECT_GT(api, 0);
  EXPECT_EQ(ApiConnector(tenant_), api);
  const int64_t other = ApiConnector(other_tenant_);
  EXPECT_NE(other, api) << "one per tenant";
  EXPECT_EQ(Query(absl::StrCat("SELECT count(*) FROM connectors WHERE "
                               "business_id='api' AND tenant_id=",
                               tenant_)),
            1);

  const int64_t hr = NewConnector(tenant_, "hr");
  std::vector<ConnectorRow> connectors;
  absl::StatusOr<int64_t> total =
      store_->ListConnectors(InTenant(tenant_), &connectors);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, 1);
  ASSERT_EQ(connectors.size(), 1u);
  EXPECT_EQ(connectors[0].id, hr);
}

TEST_F(SqliteStoreApiTest, RecordWritesKeepTheKeyTableInStep) {
  const int64_t api = ApiConnector(tenant_);
  const uint64_t kHash1 = 0xfedcba9876543210u, kHash2 = 42;
  absl::Time created;
  const int64_t id = Insert(tenant_, api, RECORD_KIND_IDENTITY, Person("E1"),
                            kHash1, &created);
  ASSERT_GT(id, 0);
  const std::string row = absl::StrCat(" FROM identities WHERE id=", id);
  const std::string key = absl::StrCat(
      " FROM identity_keys WHERE external_id='E1' AND tenant_id=", tenant_,
      " AND connector_id=", api);
  EXPECT_EQ(Query("SELECT id" + key), id);
  EXPECT_EQ(Query("SELECT content_hash" + key), static_cast<int64_t>(kHash1));
  EXPECT_EQ(Query("SELECT deleted" + key), 0);
  EXPECT_EQ(Query("SELECT created_at" + row), Us(created));
  EXPECT_EQ(Query("SELECT updated_at" + row), Us(created));
  EXPECT_EQ(Query("SELECT deleted_at IS NULL" + row), 1);
  EXPECT_EQ(Query("SELECT last_run_id IS NULL" + row), 1);

  // A sync wrote it last; an API update takes it over.
  Exec(absl::StrCat("UPDATE identities SET last_run_id=7 WHERE id=", id));
  v1::RemoteIdentity changed = Person("E1");
  changed.set_email("new@example.com");
  absl::Time updated;
  absl::Status s = store_->Write([&](WriteTxn& txn) {
    updated = txn.now();
    return txn.UpdateRecord(tenant_, api, RECORD_KIND_IDENTITY, id, changed,
                            kHash2);
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Query("SELECT content_hash" + key), static_cast<int64_t>(kHash2));
  EXPECT_EQ(Query("SELECT email='new@example.com'" + row), 1);
  EXPECT_EQ(Query("SELECT created_at" + row), Us(created));
  EXPECT_EQ(Query("SELECT updated_at" + row), Us(updated));
  EXPECT_EQ(Query("SELECT last_run_id IS NULL" + row), 1);

  absl::Time deactivated;
  s = store_->Write([&](WriteTxn& txn) {
    deactivated = txn.now();
    return txn.DeactivateRecord(RECORD_KIND_IDENTITY, id);
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Query("SELECT deleted" + key), 1);
  EXPECT_EQ(Query("SELECT content_hash" + key), static_cast<int64_t>(kHash2));
  EXPECT_EQ(Query("SELECT deleted_at" + row), Us(deactivated));
  EXPECT_EQ(Query("SELECT updated_at" + row), Us(deactivated));

  // Deactivating again keeps the first time.
  Exec(
      absl::StrCat("UPDATE identities SET deleted_at=5, updated_at=5 WHERE "
                   "id=",
                   id));
  Deactivate(RECORD_KIND_IDENTITY, id);
  EXPECT_EQ(Query("SELECT deleted_at" + row), 5);
  EXPECT_EQ(Query("SELECT deleted" + key), 1);

  // An update clears the deletion mark in both tables.
  s = store_->Write([&](WriteTxn& txn) {
    return txn.UpdateRecord(tenant_, api, RECORD_KIND_IDENTITY, id, changed,
                            kHash1);
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(Query("SELECT deleted_at IS NULL" + row), 1);
  EXPECT_EQ(Query("SELECT deleted" + key), 0);
  EXPECT_EQ(Query("SELECT content_hash" + key), static_cast<int64_t>(kHash1));
  EXPECT_EQ(Query("SELECT count(*) FROM identities"), 1);
  EXPECT_EQ(Query("SELECT count(*) FROM identity_keys"), 1);
}

TEST_F(SqliteStoreApiTest, ListIdentitiesPagesByOffset) {
  const int64_t api = ApiConnector(tenant_);
  for (int i = 1; i <= 5; ++i) InsertPerson(tenant_, api, absl::StrCat("E", i));
  ListQuery q = InTenant(tenant_);
  q.limit = 2;
  int64_t total = 0;
  EXPECT_THAT(ExternalIds(Identities(q, &total)), ElementsAre("E1", "E2"));
  EXPECT_EQ(total, 5);
  q.offset = 2;
  EXPECT_THAT(ExternalIds(Identities(q, &total)), ElementsAre("E3", "E4"));
  EXPECT_EQ(total, 5);
  q.offset = 4;
  EXPECT_THAT(ExternalIds(Identities(q, &total)), ElementsAre("E5"));
  q.offset = 10;
  EXPECT_TRUE(Identities(q, &total).empty());
  EXPECT_EQ(total, 5);
}

TEST_F(SqliteStoreApiTest, KeysetPagingSeesEveryRowOnceWhileRowsAreAdded) {
  const int64_t api = ApiConnector(tenant_);
  for (int i = 1; i <= 5; ++i) InsertPerson(tenant_, api, absl::StrCat("E", i));
  ListQuery q = InTenant(tenant_);
  q.limit = 2;
  q.after_id = 0;
  q.offset = 3;  // Ignored with a cursor.
  std::vector<int64_t> ids;
  std::vector<std::string> seen;
  int64_t total = 0;
  int pages = 0;
  while (true) {
    std::vector<v1::Identity> page = Identities(q, &total);
    if (page.empty()) break;
    ASSERT_LT(++pages, 20);
    for (const auto& i : page) {
      ids.push_back(i.id());
      seen.push_back(i.external_id());
    }
    q.after_id = page.back().id();
    if (pages == 1) {
      // Added mid-walk: new rows get larger ids, so they come later.
      for (int i = 6; i <= 8; ++i) {
        InsertPerson(tenant_, api, absl::StrCat("E", i));
      }
    }
  }
  EXPECT_THAT(seen,
              ElementsAre("E1", "E2", "E3", "E4", "E5", "E6", "E7", "E8"));
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<int64_t>(ids.begin(), ids.end()).size(), ids.size());
  EXPECT_EQ(total, 8) << "the total follows the new rows";
}

TEST_F(SqliteStoreApiTest, DeactivatedRowsAreHiddenUnlessAskedFor) {
  const int64_t api = ApiConnector(tenant_);
  std::vector<int64_t> ids;
  for (int i = 1; i <= 5; ++i) {
    ids.push_back(InsertPerson(tenant_, api, absl::StrCat("E", i)));
  }
  int64_t total = 0;
  EXPECT_EQ(Identities(InTenant(tenant_), &total).size(), 5u);
  EXPECT_EQ(total, 5);
  Deactivate(RECORD_KIND_IDENTITY, ids[1]);
  Deactivate(RECORD_KIND_IDENTITY, ids[3]);

  EXPECT_THAT(ExternalIds(Identities(InTenant(tenant_), &total)),
              ElementsAre("E1", "E3", "E5"));
  EXPECT_EQ(total, 3) << "the total agrees with the filter";

  ListQuery all = InTenant(tenant_);
  all.include_inactive = true;
  std::vector<v1::Identity> items = Identities(all, &total);
  EXPECT_EQ(total, 5);
  ASSERT_EQ(items.size(), 5u);
  for (const v1::Identity& i : items) {
    const bool gone = i.id() == ids[1] || i.id() == ids[3];
    EXPECT_EQ(i.active(), !gone) << i.external_id();
    EXPECT_EQ(i.has_deactivated_at(), gone) << i.external_id();
    if (gone) {
      EXPECT_EQ(Us(i.deactivated_at()), Us(i.updated_at()));
    }
  }
}

TEST_F(SqliteStoreApiTest, ListIdentitiesFiltersByColumnConnectorAndSource) {
  const int64_t api = ApiConnector(tenant_);
  const int64_t hr = NewConnector(tenant_, "hr");
  InsertPerson(tenant_, api, "A1", "active");
  InsertPerson(tenant_, api, "A2", "leave");
  InsertPerson(tenant_, hr, "H1", "leave");
  InsertPerson(tenant_, hr, "H2", "active");
  InsertPerson(tenant_, hr, "H3", "leave");

  int64_t total = 0;
  ListQuery q = InTenant(tenant_);
  q.equals = {{"status", "leave"}};
  EXPECT_THAT(ExternalIds(Identities(q, &total)),
              ElementsAre("A2", "H1", "H3"));
  EXPECT_EQ(total, 3);

  q.connector_id = hr;
  EXPECT_THAT(ExternalIds(Identities(q, &total)), ElementsAre("H1", "H3"));
  EXPECT_EQ(total, 2);

  ListQuery by_source = InTenant(tenant_);
  by_source.source = "api";
  EXPECT_THAT(ExternalIds(Identities(by_source, &total)),
              ElementsAre("A1", "A2"));
  EXPECT_EQ(total, 2);
  by_source.source = "hr";
  by_source.equals = {{"status", "active"}, {"external_id", "H2"}};
  EXPECT_THAT(ExternalIds(Identities(by_source, &total)), ElementsAre("H2"));
  EXPECT_EQ(total, 1);
  by_source.source = "nope";
  EXPECT_TRUE(Identities(by_source, &total).empty());
  EXPECT_EQ(total, 0);
}

TEST_F(SqliteStoreApiTest, ListsAreScopedByTenant) {
  const int64_t ours = ApiConnector(tenant_);
  const int64_t theirs = ApiConnector(other_tenant_);
  InsertPerson(tenant_, ours, "ours");
  InsertPerson(other_tenant_, theirs, "theirs1");
  InsertPerson(other_tenant_, theirs, "theirs2");

  int64_t total = 0;
  EXPECT_THAT(ExternalIds(Identities(InTenant(tenant_), &total)),
              ElementsAre("ours"));
  EXPECT_EQ(total, 1);
  EXPECT_THAT(ExternalIds(Identities(InTenant(other_tenant_), &total)),
              ElementsAre("theirs1", "theirs2"));
  EXPECT_EQ(total, 2);

  // Naming the other tenant's connector does not reach across.
  ListQuery q = InTenant(tenant_);
  q.connector_id = theirs;
  EXPECT_TRUE(Identities(q, &total).empty());
  EXPECT_EQ(total, 0);
}

TEST_F(SqliteStoreApiTest, ListedIdentityCarriesAllFieldsAndAttributes) {
  const int64_t hr = NewConnector(tenant_, "hr");
  v1::RemoteIdentity person = Person("E1", "leave");
  auto& attributes = *person.mutable_attributes();
  attributes["quote"] = "say \"hi\" \\ back";
  attributes["lines"] = "one\ntwo\r\nthree\tfour";
  attributes["unicode"] = "Zoë – 日本語 – 😀";
  attributes["control"] = std::string("a\x01z");
  attributes["key \"with\" quotes"] = "";
  absl::Time created;
  const int64_t id =
      Insert(tenant_, hr, RECORD_KIND_IDENTITY, person, 3, &created);
  InsertPerson(tenant_, hr, "E2");  // No attributes at all.

  std::vector<v1::Identity> items = Identities(InTenant(tenant_));
  ASSERT_EQ(items.size(), 2u);
  const v1::Identity& got = items[0];
  EXPECT_EQ(got.id(), id);
  EXPECT_EQ(got.external_id(), "E1");
  EXPECT_EQ(got.source(), "hr");
  EXPECT_EQ(got.connector_id(), hr);
  EXPECT_EQ(got.email(), person.email());
  EXPECT_EQ(got.first_name(), person.first_name());
  EXPECT_EQ(got.last_name(), person.last_name());
  EXPECT_EQ(got.display_name(), person.display_name());
  EXPECT_EQ(got.department(), person.department());
  EXPECT_EQ(got.job_title(), person.job_title());
  EXPECT_EQ(got.manager_external_id(), person.manager_external_id());
  EXPECT_EQ(got.status(), "leave");
  EXPECT_TRUE(got.active());
  EXPECT_EQ(Us(got.created_at()), Us(created));
  EXPECT_EQ(Us(got.updated_at()), Us(created));
  EXPECT_FALSE(got.has_deactivated_at());
  ASSERT_EQ(got.attributes().size(), attributes.size());
  for (const auto& [k, v] : attributes) {
    ASSERT_EQ(got.attributes().count(k), 1u) << k;
    EXPECT_EQ(got.attributes().at(k), v) << k;
  }
  EXPECT_TRUE(items[1].attributes().empty());
}

TEST_F(SqliteStoreApiTest, GrantsOfAnIdentityComeFromItsAccountsOnly) {
  const int64_t hr = NewConnector(tenant_, "hr");
  const int64_t ad = NewConnector(tenant_, "ad");
  // In "hr" alice owns acc1, bob owns acc2; in "ad" acc1 belongs to bob.
  Insert(tenant_, hr, RECORD_KIND_ACCOUNT, AccountOf("acc1", "alice"));
  Insert(tenant_, hr, RECORD_KIND_ACCOUNT, AccountOf("acc2", "bob"));
  Insert(tenant_, ad, RECORD_KIND_ACCOUNT, AccountOf("acc1", "bob"));
  const int64_t g1 =
      Insert(tenant_, hr, RECORD_KIND_GRANT, GrantOf("acc1", "admins"));
  const int64_t g2 =
      Insert(tenant_, hr, RECORD_KIND_GRANT, GrantOf("acc1", "users"));
  Insert(tenant_, hr, RECORD_KIND_GRANT, GrantOf("acc2", "users"));
  Insert(tenant_, ad, RECORD_KIND_GRANT, GrantOf("acc1", "domain-admins"));

  ListQuery q = InTenant(tenant_);
  q.grants_of_identity = "alice";
  std::vector<v1::Grant> grants;
  absl::StatusOr<int64_t> total = store_->ListGrants(q, &grants);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, 2);
  ASSERT_EQ(grants.size(), 2u);
  EXPECT_EQ(grants[0].id(), g1);
  EXPECT_EQ(grants[0].account_external_id(), "acc1");
  EXPECT_EQ(grants[0].entitlement_external_id(), "admins");
  EXPECT_EQ(grants[0].source(), "hr");
  EXPECT_EQ(grants[1].id(), g2);

  q.grants_of_identity = "bob";
  grants.clear();
  total = store_->ListGrants(q, &grants);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, 2);
  std::vector<std::string> names;
  for (const auto& g : grants) {
    names.push_back(absl::StrCat(g.source(), ":", g.entitlement_external_id()));
  }
  EXPECT_THAT(names, UnorderedElementsAre("hr:users", "ad:domain-admins"));

  q.grants_of_identity = "nobody";
  grants.clear();
  EXPECT_EQ(*store_->ListGrants(q, &grants), 0);
  EXPECT_TRUE(grants.empty());
}

TEST_F(SqliteStoreApiTest, ListsAccountsAndEntitlements) {
  const int64_t hr = NewConnector(tenant_, "hr");
  v1::RemoteAccount acc = AccountOf("acc1", "alice");
  (*acc.mutable_attributes())["shell"] = "/bin/zsh";
  Insert(tenant_, hr, RECORD_KIND_ACCOUNT, acc);
  Insert(tenant_, hr, RECORD_KIND_ACCOUNT, AccountOf("acc2", "bob"));
  Insert(tenant_, hr, RECORD_KIND_ENTITLEMENT, Group("admins"));

  std::vector<v1::Account> accounts;
  absl::StatusOr<int64_t> total =
      store_->ListAccounts(InTenant(tenant_), &accounts);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, 2);
  ASSERT_EQ(accounts.size(), 2u);
  EXPECT_EQ(accounts[0].external_id(), "acc1");
  EXPECT_EQ(accounts[0].identity_external_id(), "alice");
  EXPECT_EQ(accounts[0].username(), "u_acc1");
  EXPECT_EQ(accounts[0].email(), "acc1@corp");
  EXPECT_EQ(accounts[0].display_name(), "Account acc1");
  EXPECT_EQ(accounts[0].status(), "enabled");
  EXPECT_EQ(accounts[0].source(), "hr");
  EXPECT_EQ(accounts[0].attributes().at("shell"), "/bin/zsh");
  EXPECT_TRUE(accounts[0].active());
  EXPECT_EQ(accounts[1].external_id(), "acc2");

  std::vector<v1::Entitlement> entitlements;
  total = store_->ListEntitlements(InTenant(tenant_), &entitlements);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, 1);
  ASSERT_EQ(entitlements.size(), 1u);
  EXPECT_EQ(entitlements[0].external_id(), "admins");
  EXPECT_EQ(entitlements[0].name(), "group admins");
  EXPECT_EQ(entitlements[0].description(), "a group");
  EXPECT_EQ(entitlements[0].type(), "group");
  EXPECT_EQ(entitlements[0].connector_id(), hr);

  entitlements.clear();
  EXPECT_EQ(*store_->ListEntitlements(InTenant(other_tenant_), &entitlements),
            0);
  EXPECT_TRUE(entitlements.empty());
}

// --- Connectors
// ---------------------------------------------------------------

TEST_F(SqliteStoreApiTest, DuplicateBusinessIdIsRefusedWithinATenantOnly) {
  ConnectorRow row;
  row.tenant_id = tenant_;
  row.business_id = "hr";
  row.type = "csv";
  row.config_json = R"({"path":"a.csv"})";
  row.deletion_threshold = 0.5;
  int64_t first = 0;
  absl::Time now;
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) -> absl::Status {
                    now = txn.now();
                    IDSYNC_ASSIGN_OR_RETURN(first, txn.InsertConnector(row));
                    return absl::OkStatus();
                  })
                  .ok());
  absl::StatusOr<ConnectorRow> stored = store_->GetConnector(tenant_, first);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_EQ(stored->business_id, "hr");
  EXPECT_EQ(stored->type, "csv");
  EXPECT_EQ(stored->mode, "hosted");
  EXPECT_EQ(stored->config_json, R"({"path":"a.csv"})");
  EXPECT_DOUBLE_EQ(stored->deletion_threshold, 0.5);
  EXPECT_FALSE(stored->has_auth);
  EXPECT_EQ(Us(stored->created_at), Us(now));

  row.type = "ldap";
  absl::Status again = store_->Write(
      [&](WriteTxn& txn) { return txn.InsertConnector(row).status(); });
  EXPECT_TRUE(absl::IsAlreadyExists(again)) << again;
  EXPECT_THAT(std::string(again.message()), HasSubstr("hr"));
  EXPECT_EQ(store_->GetConnector(tenant_, first)->type, "csv");

  row.tenant_id = other_tenant_;
  int64_t other = 0;
  absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_ASSIGN_OR_RETURN(other, txn.InsertConnector(row));
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_NE(other, first);
}

TEST_F(SqliteStoreApiTest, UpdateConnectorChangesModeConfigAndThreshold) {
  const int64_t id = NewConnector(tenant_, "hr");
  ConnectorRow row = *store_->GetConnector(tenant_, id);
  row.mode = "agent";
  row.config_json = R"({"path":"b.csv"})";
  row.deletion_threshold = 0.75;
  row.business_id = "renamed";  // Not an updatable column.
  absl::Time now;
  absl::Status s = store_->Write([&](WriteTxn& txn) {
    now = txn.now();
    return txn.UpdateConnector(row);
  });
  ASSERT_TRUE(s.ok()) << s;
  ConnectorRow got = *store_->GetConnector(tenant_, id);
  EXPECT_EQ(got.mode, "agent");
  EXPECT_EQ(got.config_json, R"({"path":"b.csv"})");
  EXPECT_DOUBLE_EQ(got.deletion_threshold, 0.75);
  EXPECT_EQ(got.business_id, "hr");
  EXPECT_EQ(Us(got.updated_at), Us(now));

  // Another tenant's update does not touch it.
  row.tenant_id = other_tenant_;
  row.mode = "hosted";
  ASSERT_TRUE(
      store_->Write([&](WriteTxn& txn) { return txn.UpdateConnector(row); })
          .ok());
  EXPECT_EQ(store_->GetConnector(tenant_, id)->mode, "agent");
}

TEST_F(SqliteStoreApiTest, ConnectorAuthIsStoredAsABlobAndCanBeCleared) {
  const int64_t id = NewConnector(tenant_, "hr");
  absl::StatusOr<std::string> auth = store_->ConnectorAuth(tenant_, id);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(*auth, "");

  const std::string sealed("\x00\x01sealed\xff\x00", 10);
  auto set = [&](absl::string_view blob) {
    absl::Status s = store_->Write(
        [&](WriteTxn& txn) { return txn.SetConnectorAuth(tenant_, id, blob); });
    ASSERT_TRUE(s.ok()) << s;
  };
  set(sealed);
  auth = store_->ConnectorAuth(tenant_, id);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(*auth, sealed);
  EXPECT_TRUE(store_->GetConnector(tenant_, id)->has_auth);
  EXPECT_TRUE(
      absl::IsNotFound(store_->ConnectorAuth(other_tenant_, id).status()));
  EXPECT_TRUE(
      absl::IsNotFound(store_->ConnectorAuth(tenant_, id + 100).status()));

  set("");
  auth = store_->ConnectorAuth(tenant_, id);
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(*auth, "");
  EXPECT_FALSE(store_->GetConnector(tenant_, id)->has_auth);
  EXPECT_EQ(Query("SELECT count(*) FROM connectors WHERE auth_config IS NULL"),
            1);
}

TEST_F(SqliteStoreApiTest, ListConnectorsPagesByOffsetAndCursor) {
  ApiConnector(tenant_);
  std::vector<int64_t> ids;
  for (int i = 1; i <= 5; ++i) {
    ids.push_back(NewConnector(tenant_, absl::StrCat("c", i)));
  }
  NewConnector(other_tenant_, "theirs");

  ListQuery q = InTenant(tenant_);
  q.limit = 2;
  q.offset = 2;
  std::vector<ConnectorRow> page;
  absl::StatusOr<int64_t> total = store_->ListConnectors(q, &page);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, 5);
  ASSERT_EQ(page.size(), 2u);
  EXPECT_EQ(page[0].business_id, "c3");
  EXPECT_EQ(page[1].business_id, "c4");

  q.offset = 0;
  q.after_id = ids[3];
  page.clear();
  total = store_->ListConnectors(q, &page);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, 5);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].id, ids[4]);

  ListQuery one = InTenant(tenant_);
  one.connector_id = ids[1];
  page.clear();
  EXPECT_EQ(*store_->ListConnectors(one, &page), 1);
  ASSERT_EQ(page.size(), 1u);
  EXPECT_EQ(page[0].business_id, "c2");
}

TEST_F(SqliteStoreApiTest, DeleteConnectorRemovesItsDataAndNothingElse) {
  const int64_t doomed = NewConnector(tenant_, "doomed");
  const int64_t kept = NewConnector(tenant_, "kept");
  for (int64_t c : {doomed, kept}) {
    Insert(tenant_, c, RECORD_KIND_IDENTITY, Person("E1"));
    Insert(tenant_, c, RECORD_KIND_ACCOUNT, AccountOf("acc1", "E1"));
    Insert(tenant_, c, RECORD_KIND_ENTITLEMENT, Group("admins"));
    Insert(tenant_, c, RECORD_KIND_GRANT, GrantOf("acc1", "admins"));
    // A run with a reject and seen ids, as a sync leaves them.
    RunRow run = CreateRun(tenant_, c);
    auto writer = store_->OpenRunWriter(run);
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Begin(absl::FromUnixSeconds(1700000001)).ok());
    ASSERT_TRUE(
        (*writer)->InsertIfNew(RECORD_KIND_IDENTITY, Person("E2"), 2).ok());
    v1::Reject reject;
    reject.set_kind(RECORD_KIND_IDENTITY);
    reject.set_external_id("bad");
    reject.set_reason("no email");
    ASSERT_TRUE((*writer)->AddReject(reject).ok());
    run.chunks = 1;
    ASSERT_TRUE((*writer)
                    ->Commit(run, {{RECORD_KIND_IDENTITY, std::string("\x01")}})
                    .ok());
  }
  const std::vector<std::string> tables = {
      "identities",   "identity_keys", "accounts",
      "account_keys", "entitlements",  "entitlement_keys",
      "grants",       "grant_keys",    "sync_runs"};
  auto count = [&](const std::string& table, int64_t connector) {
    return Query(absl::StrCat("SELECT count(*) FROM ", table,
                              " WHERE connector_id=", connector));
  };
  for (const std::string& t : tables) ASSERT_GT(count(t, doomed), 0) << t;
  ASSERT_EQ(Query("SELECT count(*) FROM sync_rejects"), 2);
  ASSERT_EQ(Query("SELECT count(*) FROM run_seen"), 2);

  // Naming it from another tenant deletes nothing.
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) {
                    return txn.DeleteConnector(other_tenant_, doomed);
                  })
                  .ok());
  EXPECT_TRUE(store_->GetConnector(tenant_, doomed).ok());
  EXPECT_GT(count("identities", doomed), 0);

  absl::Status s = store_->Write(
      [&](WriteTxn& txn) { return txn.DeleteConnector(tenant_, doomed); });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_TRUE(absl::IsNotFound(store_->GetConnector(tenant_, doomed).status()));
  for (const std::string& t : tables) {
    EXPECT_EQ(count(t, doomed), 0) << t;
    EXPECT_GT(count(t, kept), 0) << t;
  }
  const int64_t kept_run =
      Query(absl::StrCat("SELECT id FROM sync_runs WHERE connector_id=", kept));
  EXPECT_EQ(Query("SELECT count(*) FROM sync_rejects"), 1);
  EXPECT_EQ(Query(absl::StrCat("SELECT count(*) FROM sync_rejects WHERE "
                               "run_id=",
                               kept_run)),
            1);
  EXPECT_EQ(Query("SELECT count(*) FROM run_seen"), 1);
  EXPECT_EQ(Query(absl::StrCat("SELECT count(*) FROM run_seen WHERE run_id=",
                               kept_run)),
            1);
  EXPECT_EQ(Identities(InTenant(tenant_)).size(), 2u);
}

// --- Runs
// ---------------------------------------------------------------------

TEST_F(SqliteStoreApiTest, InsertRunRefusesASecondRunningRun) {
  const int64_t hr = NewConnector(tenant_, "hr");
  RunRow run;
  run.tenant_id = tenant_;
  run.connector_id = hr;
  run.chunk_size = 25;
  run.max_records = 100;
  run.incremental = true;
  run.callback_url = "https://example.com/cb";
  run.owner = "worker-1";
  run.started_at = absl::FromUnixSeconds(1700000000);
  RunRow first;
  absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_ASSIGN_OR_RETURN(first, txn.InsertRun(run));
    return absl::OkStatus();
  });
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GT(first.id, 0);
  EXPECT_EQ(first.status, RunStatus::kRunning);
  EXPECT_EQ(first.phase, RunPhase::kRecords);
  EXPECT_EQ(first.chunk_size, 25);
  EXPECT_EQ(first.max_records, 100);
  EXPECT_TRUE(first.incremental);
  EXPECT_EQ(first.callback_url, "https://example.com/cb");
  EXPECT_EQ(first.owner, "worker-1");
  EXPECT_EQ(first.started_at, run.started_at);

  s = store_->Write([&](WriteTxn& txn) { return txn.InsertRun(run).status(); });
  EXPECT_TRUE(absl::IsFailedPrecondition(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr("active run"));
  EXPECT_EQ(Query("SELECT count(*) FROM sync_runs"), 1);

  first.status = RunStatus::kSucceeded;
  ASSERT_TRUE(store_->FinishRun(first).ok());
  s = store_->Write([&](WriteTxn& txn) { return txn.InsertRun(run).status(); });
  EXPECT_TRUE(s.ok()) << "a finished run frees the slot: " << s;
}

// The one-active-run index and the connector reference both fail as a
// constraint; only the first is "already has an active run".
TEST_F(SqliteStoreApiTest, InsertRunForAMissingConnectorIsNotReportedAsActive) {
  RunRow run;
  run.tenant_id = tenant_;
  run.connector_id = 999;
  absl::Status s =
      store_->Write([&](WriteTxn& txn) { return txn.InsertRun(run).status(); });
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), Not(HasSubstr("active run")));
  EXPECT_EQ(Query("SELECT count(*) FROM sync_runs"), 0);
}

TEST_F(SqliteStoreApiTest, RunningRunsListsRunningRunsOfEveryTenant) {
  const int64_t a = NewConnector(tenant_, "a");
  const int64_t b = NewConnector(tenant_, "b");
  const int64_t c = NewConnector(other_tenant_, "c");
  RunRow ra = CreateRun(tenant_, a);
  RunRow rb = CreateRun(tenant_, b);
  RunRow rc = CreateRun(other_tenant_, c);
  rb.status = RunStatus::kFailed;
  ASSERT_TRUE(store_->FinishRun(rb).ok());

  absl::StatusOr<std::vector<RunRow>> running = store_->RunningRuns();
  ASSERT_TRUE(running.ok()) << running.status();
  ASSERT_EQ(running->size(), 2u);
  EXPECT_EQ((*running)[0].id, ra.id);
  EXPECT_EQ((*running)[0].tenant_id, tenant_);
  EXPECT_EQ((*running)[1].id, rc.id);
  EXPECT_EQ((*running)[1].tenant_id, other_tenant_);
  EXPECT_EQ((*running)[1].owner, "me");
}

// --- Tokens
// -------------------------------------------------------------------

TEST_F(SqliteStoreApiTest, TokensAreFoundByHashAndRevokedOnce) {
  TokenRow row;
  row.tenant_id = tenant_;
  row.name = "ci";
  row.kind = "service";
  row.role = "admin";
  row.prefix = "idsync_svc_Ab";
  const std::string hash("\x00\xffhash-of-ci\x00", 13);
  int64_t id = 0;
  absl::Time created;
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) -> absl::Status {
                    created = txn.now();
                    IDSYNC_ASSIGN_OR_RETURN(id, txn.InsertToken(row, hash));
                    return absl::OkStatus();
                  })
                  .ok());
  absl::StatusOr<TokenRow> found = store_->FindToken(hash);
  ASSERT_TRUE(found.ok()) << found.status();
  EXPECT_EQ(found->id, id);
  EXPECT_EQ(found->tenant_id, tenant_);
  EXPECT_EQ(found->name, "ci");
  EXPECT_EQ(found->kind, "service");
  EXPECT_EQ(found->role, "admin");
  EXPECT_EQ(found->prefix, "idsync_svc_Ab");
  EXPECT_EQ(Us(found->created_at), Us(created));
  EXPECT_FALSE(found->revoked_at.has_value());
  EXPECT_TRUE(absl::IsNotFound(store_->FindToken("other-hash").status()));
  EXPECT_TRUE(absl::IsNotFound(store_->FindToken(hash.substr(0, 12)).status()));

  // The same hash twice is refused.
  absl::Status dup = store_->Write(
      [&](WriteTxn& txn) { return txn.InsertToken(row, hash).status(); });
  EXPECT_FALSE(dup.ok());

  // Another tenant cannot revoke it.
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) {
                    return txn.RevokeToken(other_tenant_, id);
                  })
                  .ok());
  EXPECT_FALSE(store_->FindToken(hash)->revoked_at.has_value());

  absl::Time revoked;
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) {
                    revoked = txn.now();
                    return txn.RevokeToken(tenant_, id);
                  })
                  .ok());
  found = store_->FindToken(hash);
  ASSERT_TRUE(found.ok()) << "a revoked token is still found";
  ASSERT_TRUE(found->revoked_at.has_value());
  EXPECT_EQ(Us(*found->revoked_at), Us(revoked));

  // A second revoke keeps the first time.
  Exec(absl::StrCat("UPDATE tokens SET revoked_at=1000 WHERE id=", id));
  ASSERT_TRUE(
      store_->Write([&](WriteTxn& txn) { return txn.RevokeToken(tenant_, id); })
          .ok());
  EXPECT_EQ(Us(*store_->FindToken(hash)->revoked_at), 1000);
}

TEST_F(SqliteStoreApiTest, ListTokensIsScopedByTenant) {
  auto add = [&](int64_t tenant, const std::string& name) {
    TokenRow row;
    row.tenant_id = tenant;
    row.name = name;
    row.kind = "service";
    row.role = "auditor";
    row.prefix = "p";
    ASSERT_TRUE(store_
                    ->Write([&](WriteTxn& txn) {
                      return txn.InsertToken(row, "hash-" + name).status();
                    })
                    .ok());
  };
  add(tenant_, "a");
  add(other_tenant_, "x");
  add(tenant_, "b");
  std::vector<TokenRow> tokens;
  absl::StatusOr<int64_t> total =
      store_->ListTokens(InTenant(tenant_), &tokens);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, 2);
  ASSERT_EQ(tokens.size(), 2u);
  EXPECT_EQ(tokens[0].name, "a");
  EXPECT_EQ(tokens[1].name, "b");
  tokens.clear();
  EXPECT_EQ(*store_->ListTokens(InTenant(other_tenant_), &tokens), 1);
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0].name, "x");
}

// --- Audit
// --------------------------------------------------------------------

TEST_F(SqliteStoreApiTest, AuditEventsAreListedInOrderWithFiltersAndDetails) {
  auto audit = [&](int64_t tenant, const std::string& action,
                   const std::string& type, const std::string& details,
                   absl::Time* at = nullptr) {
    AuditEntry e;
    e.tenant_id = tenant;
    e.actor = "ci (token 4)";
    e.action = action;
    e.resource_type = type;
    e.resource_id = "17";
    e.request_id = "req-1";
    e.details_json = details;
    ASSERT_TRUE(store_
                    ->Write([&](WriteTxn& txn) {
                      if (at != nullptr) *at = txn.now();
                      return txn.Audit(e);
                    })
                    .ok());
  };
  absl::Time first_at;
  audit(tenant_, "identity.create", "identity",
        R"({"external_id":"E1","n":3,"fields":["email","status"]})", &first_at);
  audit(tenant_, "connector.create", "connector", "{}");
  audit(other_tenant_, "identity.create", "identity", "{}");
  audit(tenant_, "identity.deactivate", "identity", "{}");

  std::vector<v1::AuditEvent> events;
  absl::StatusOr<int64_t> total = store_->ListAudit(InTenant(tenant_), &events);
  ASSERT_TRUE(total.ok()) << total.status();
  EXPECT_EQ(*total, 3);
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[0].action(), "identity.create");
  EXPECT_EQ(events[1].action(), "connector.create");
  EXPECT_EQ(events[2].action(), "identity.deactivate");
  EXPECT_LT(events[0].id(), events[1].id()) << "oldest first";
  EXPECT_LT(events[1].id(), events[2].id());

  const v1::AuditEvent& e = events[0];
  EXPECT_EQ(Us(e.at()), Us(first_at));
  EXPECT_EQ(e.actor(), "ci (token 4)");
  EXPECT_EQ(e.resource_type(), "identity");
  EXPECT_EQ(e.resource_id(), "17");
  EXPECT_EQ(e.request_id(), "req-1");
  const auto& fields = e.details().fields();
  ASSERT_EQ(fields.count("external_id"), 1u);
  EXPECT_EQ(fields.at("external_id").string_value(), "E1");
  EXPECT_DOUBLE_EQ(fields.at("n").number_value(), 3);
  ASSERT_EQ(fields.at("fields").list_value().values_size(), 2);
  EXPECT_EQ(fields.at("fields").list_value().values(1).string_value(),
            "status");

  ListQuery q = InTenant(tenant_);
  q.equals = {{"resource_type", "identity"}};
  events.clear();
  EXPECT_EQ(*store_->ListAudit(q, &events), 2);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[1].action(), "identity.deactivate");
  q.equals = {{"action", "connector.create"}};
  events.clear();
  EXPECT_EQ(*store_->ListAudit(q, &events), 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].resource_type(), "connector");
}

// --- Idempotency keys
// ---------------------------------------------------------

TEST_F(SqliteStoreApiTest, NewIdempotencyKeyIsClaimedInFlight) {
  absl::StatusOr<IdempotencyState> state = Begin(tenant_, "k1", "h1");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->kind, IdempotencyState::kNew);
  EXPECT_EQ(Query("SELECT count(*) FROM idempotency_keys WHERE key='k1' AND "
                  "state='in_flight'"),
            1);
  EXPECT_EQ(Begin(tenant_, "k1", "h1")->kind, IdempotencyState::kInFlight);
  EXPECT_EQ(Begin(tenant_, "k1", "h2")->kind, IdempotencyState::kInFlight);
}

TEST_F(SqliteStoreApiTest, CompletedKeyReplaysOnlyForTheSameRequest) {
  ASSERT_EQ(Begin(tenant_, "k1", "h1")->kind, IdempotencyState::kNew);
  const std::string response("{\"id\":1}\x00", 9);
  Complete(tenant_, "k1", 201, response);

  absl::StatusOr<IdempotencyState> same = Begin(tenant_, "k1", "h1");
  ASSERT_TRUE(same.ok()) << same.status();
  EXPECT_EQ(same->kind, IdempotencyState::kDone);
  EXPECT_EQ(same->status, 201);
  EXPECT_EQ(same->response, response);

  absl::StatusOr<IdempotencyState> other = Begin(tenant_, "k1", "h2");
  ASSERT_TRUE(other.ok()) << other.status();
  EXPECT_EQ(other->kind, IdempotencyState::kMismatch);
  EXPECT_EQ(Begin(tenant_, "k1", "h1")->kind, IdempotencyState::kDone)
      << "a mismatch does not replace the stored response";
}

TEST_F(SqliteStoreApiTest, AbandonDropsAnInFlightClaimButNotADoneOne) {
  ASSERT_EQ(Begin(tenant_, "k1", "h1")->kind, IdempotencyState::kNew);
  ASSERT_TRUE(store_->AbandonIdempotent(tenant_, "k1").ok());
  EXPECT_EQ(Query("SELECT count(*) FROM idempotency_keys"), 0);
  EXPECT_EQ(Begin(tenant_, "k1", "h2")->kind, IdempotencyState::kNew);

  Complete(tenant_, "k1", 200, "ok");
  ASSERT_TRUE(store_->AbandonIdempotent(tenant_, "k1").ok());
  absl::StatusOr<IdempotencyState> state = Begin(tenant_, "k1", "h2");
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->kind, IdempotencyState::kDone);
  EXPECT_EQ(state->response, "ok");
}

TEST_F(SqliteStoreApiTest, StaleInFlightClaimIsTakenOver) {
  ASSERT_EQ(Begin(tenant_, "k1", "h1")->kind, IdempotencyState::kNew);
  EXPECT_EQ(Begin(tenant_, "k1", "h1", absl::Hours(1))->kind,
            IdempotencyState::kInFlight);
  // Claimed two hours ago: older than stale_after.
  const int64_t old = Us(absl::Now() - absl::Hours(2));
  Exec(absl::StrCat("UPDATE idempotency_keys SET created_at=", old));
  absl::StatusOr<IdempotencyState> state =
      Begin(tenant_, "k1", "h2", absl::Hours(1));
  ASSERT_TRUE(state.ok()) << state.status();
  EXPECT_EQ(state->kind, IdempotencyState::kNew);
  EXPECT_GT(Query("SELECT created_at FROM idempotency_keys"), old)
      << "the new claim is fresh";
  EXPECT_EQ(Query("SELECT count(*) FROM idempotency_keys"), 1);
  EXPECT_EQ(Begin(tenant_, "k1", "h2", absl::Hours(1))->kind,
            IdempotencyState::kInFlight);

  // A negative stale_after makes any claim stale.
  EXPECT_EQ(Begin(tenant_, "k1", "h2", -absl::Seconds(1))->kind,
            IdempotencyState::kNew);

  // A done key is never taken over, however old.
  Complete(tenant_, "k1", 200, "ok");
  Exec(absl::StrCat("UPDATE idempotency_keys SET created_at=", old));
  EXPECT_EQ(Begin(tenant_, "k1", "h2", absl::Hours(1))->kind,
            IdempotencyState::kDone);
}

TEST_F(SqliteStoreApiTest, IdempotencyKeysArePerTenant) {
  EXPECT_EQ(Begin(tenant_, "k1", "h1")->kind, IdempotencyState::kNew);
  EXPECT_EQ(Begin(other_tenant_, "k1", "h1")->kind, IdempotencyState::kNew);
  Complete(tenant_, "k1", 201, "ours");
  EXPECT_EQ(Begin(other_tenant_, "k1", "h1")->kind,
            IdempotencyState::kInFlight);
  ASSERT_TRUE(store_->AbandonIdempotent(other_tenant_, "k1").ok());
  absl::StatusOr<IdempotencyState> ours = Begin(tenant_, "k1", "h1");
  ASSERT_TRUE(ours.ok()) << ours.status();
  EXPECT_EQ(ours->kind, IdempotencyState::kDone);
  EXPECT_EQ(ours->response, "ours");
  EXPECT_EQ(Begin(other_tenant_, "k1", "h1")->kind, IdempotencyState::kNew);
}

TEST_F(SqliteStoreApiTest, ExpireIdempotentDeletesKeysOlderThanTheAge) {
  ASSERT_EQ(Begin(tenant_, "old", "h")->kind, IdempotencyState::kNew);
  Complete(tenant_, "old", 200, "a");
  ASSERT_EQ(Begin(tenant_, "fresh", "h")->kind, IdempotencyState::kNew);
  Complete(tenant_, "fresh", 200, "b");
  Exec(absl::StrCat("UPDATE idempotency_keys SET created_at=",
                    Us(absl::Now() - absl::Hours(25)), " WHERE key='old'"));

  ASSERT_TRUE(store_->ExpireIdempotent(absl::Hours(24)).ok());
  EXPECT_EQ(Query("SELECT count(*) FROM idempotency_keys"), 1);
  EXPECT_EQ(Begin(tenant_, "old", "h")->kind, IdempotencyState::kNew);
  EXPECT_EQ(Begin(tenant_, "fresh", "h")->kind, IdempotencyState::kDone);

  // Age zero: everything created before now goes.
  Exec(absl::StrCat("UPDATE idempotency_keys SET created_at=",
                    Us(absl::Now() - absl::Seconds(1))));
  ASSERT_TRUE(store_->ExpireIdempotent(absl::ZeroDuration()).ok());
  EXPECT_EQ(Query("SELECT count(*) FROM idempotency_keys"), 0);
}

TEST_F(SqliteStoreApiTest, ConcurrentClaimsOfOneKeyHaveOneWinner) {
  constexpr int kThreads = 8;
  absl::Barrier* start = new absl::Barrier(kThreads);
  std::atomic<int> fresh{0}, in_flight{0}, failed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      if (start->Block()) delete start;
      absl::StatusOr<IdempotencyState> state =
          store_->BeginIdempotent(tenant_, "k1", "h1", absl::Hours(1));
      if (!state.ok()) {
        ++failed;
      } else if (state->kind == IdempotencyState::kNew) {
        ++fresh;
      } else if (state->kind == IdempotencyState::kInFlight) {
        ++in_flight;
      }
    });
  }
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_EQ(fresh.load(), 1);
  EXPECT_EQ(in_flight.load(), kThreads - 1);
  EXPECT_EQ(Query("SELECT count(*) FROM idempotency_keys"), 1);
}

}  // namespace
}  // namespace idsync
