// The ldap connector against a real OpenLDAP slapd, through the real
// SyncEngine into a real SqliteStore: full, unchanged, incremental and
// deleting syncs of a generated 10k-user directory, paging under server size
// limits, TLS, and the failures that must change nothing.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connector/ldap/ldap_connector.h"
#include "dispatcher/store/sqlite_store.h"
#include "dispatcher/sync_engine.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/ldap_directory.h"
#include "tests/testing/faulty_store.h"
#include "tests/testing/slapd_server.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::idsync::testing::GenerateDirectory;
using ::idsync::testing::LdapDirectory;
using ::idsync::testing::SlapdConfig;
using ::idsync::testing::SlapdServer;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kUsers = 10000;
constexpr int kGroups = 200;
constexpr char kWrongPassword[] = "Wr0ng-Pa55word-XYZ";

// Counts writes to the identity and account tables, independently of idsync.
constexpr char kWriteCounter[] = R"sql(
CREATE TABLE write_log (kind TEXT);
CREATE TRIGGER li AFTER INSERT ON identities BEGIN INSERT INTO write_log VALUES ('identity'); END;
CREATE TRIGGER lu AFTER UPDATE ON identities BEGIN INSERT INTO write_log VALUES ('identity'); END;
CREATE TRIGGER ai AFTER INSERT ON accounts BEGIN INSERT INTO write_log VALUES ('account'); END;
CREATE TRIGGER au AFTER UPDATE ON accounts BEGIN INSERT INTO write_log VALUES ('account'); END;
CREATE TRIGGER ei AFTER INSERT ON entitlements BEGIN INSERT INTO write_log VALUES ('entitlement'); END;
CREATE TRIGGER eu AFTER UPDATE ON entitlements BEGIN INSERT INTO write_log VALUES ('entitlement'); END;
CREATE TRIGGER gi AFTER INSERT ON grants BEGIN INSERT INTO write_log VALUES ('grant'); END;
CREATE TRIGGER gu AFTER UPDATE ON grants BEGIN INSERT INTO write_log VALUES ('grant'); END;
)sql";

// Receives chunks from a direct Connector::Sync call, keeping counts only.
class CountingSink final : public RecordSink {
 public:
  absl::Status Write(idsync::v1::SyncChunk chunk) override {
    ++chunks;
    identities += chunk.identities_size();
    accounts += chunk.accounts_size();
    entitlements += chunk.entitlements_size();
    grants += chunk.grants_size();
    rejects += chunk.rejects_size();
    if (!chunk.resume_token().empty()) resume_tokens_empty = false;
    return absl::OkStatus();
  }
  void SetNextSyncToken(std::string token) override { next_token = token; }

  int64_t chunks = 0, identities = 0, accounts = 0, entitlements = 0,
          grants = 0, rejects = 0;
  bool resume_tokens_empty = true;
  std::string next_token;
};

class LdapSyncTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    auto hash = SlapdServer::HashPassword(testing::kServicePassword);
    ASSERT_TRUE(hash.ok()) << hash.status();
    hash_ = new std::string(*hash);
    directory_ = new LdapDirectory(GenerateDirectory(kUsers, kGroups, *hash));
  }
  static void TearDownTestSuite() {
    delete directory_;
    delete hash_;
  }

  void SetUp() override {
    tmp_ = std::make_unique<testing::ScopedTestDir>("ldap");
    db_ = tmp_->File("store.db");
    password_file_ = tmp_->File("bind.pw");
    std::ofstream(password_file_) << testing::kServicePassword << "\n";
    auto store = SqliteStore::Open({db_});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  void TearDown() override {
    store_.reset();
    tmp_.reset();
  }

  std::unique_ptr<SlapdServer> StartServer(SlapdConfig config = {},
                                           const std::string& name = "slapd") {
    if (config.ldif.empty()) config.ldif = directory_->ldif;
    const std::string dir = tmp_->File(name);
    std::filesystem::create_directories(dir);
    auto server = SlapdServer::Start(dir, config);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  nlohmann::json Config(const SlapdServer& server) {
    return {{"url", server.url()},
            {"bind_dn", testing::kServiceDn},
            {"bind_password_file", password_file_},
            {"user_base", testing::kPeopleBase},
            {"group_base", testing::kGroupBase},
            {"timeout_seconds", 10},
            {"incremental_overlap_seconds", 0}};
  }

  static absl::StatusOr<std::unique_ptr<Connector>> MakeConnector(
      const nlohmann::json& config,
      const google::protobuf::Struct& auth_config = {}) {
    ConnectorSpec spec;
    spec.business_id = "directory";
    spec.auth_config = auth_config;
    auto parsed = google::protobuf::util::JsonStringToMessage(config.dump(),
                                                              &spec.config);
    if (!parsed.ok()) return absl::InvalidArgumentError("bad test config");
    return CreateLdapConnector(spec);
  }

  // Runs one sync of the connector `config` describes into `store`.
  absl::StatusOr<RunRow> RunSync(const nlohmann::json& config,
                                 SyncOptions options, Store* store,
                                 const ProgressFn& progress,
                                 SyncEngineOptions engine_options) {
    Store& target = store != nullptr ? *store : *store_;
    auto tenant = target.EnsureTenant("acme");
    EXPECT_TRUE(tenant.ok());
    ConnectorRow row;
    row.tenant_id = tenant.ok() ? *tenant : 0;
    row.business_id = "directory";
    row.type = "ldap";
    row.config_json = config.dump();
    auto saved = target.UpsertConnector(row);
    EXPECT_TRUE(saved.ok()) << saved.status();
    auto connector = MakeConnector(config);
    EXPECT_TRUE(connector.ok()) << connector.status();
    if (!saved.ok() || !connector.ok()) return absl::InternalError("setup");
    SyncEngine engine(target, Clock::Real(), engine_options);
    return engine.Run(**connector, *saved, options, progress);
  }
  RunRow Sync(const nlohmann::json& config, SyncOptions options = {},
              Store* store = nullptr, const ProgressFn& progress = nullptr,
              SyncEngineOptions engine_options = {}) {
    auto run = RunSync(config, options, store, progress, engine_options);
    EXPECT_TRUE(run.ok()) << run.status();
    return run.ok() ? *run : RunRow{};
  }

  int64_t Query(const std::string& sql, const std::string& db = "") {
    auto v = testing::QueryInt(db.empty() ? db_ : db, sql);
    EXPECT_TRUE(v.ok()) << v.status() << ": " << sql;
    return v.ok() ? *v : -1;
  }
  int64_t Active(const std::string& table) {
    return Query(absl::StrCat("SELECT count(*) FROM ", table,
                              " WHERE deleted_at IS NULL"));
  }
  testing::StoreSignature Sign(const std::string& db = "") {
    auto sig = testing::SignStore(db.empty() ? db_ : db);
    EXPECT_TRUE(sig.ok()) << sig.status();
    return sig.ok() ? *sig : testing::StoreSignature{};
  }
  static int64_t Total() { return 2 * kUsers + kGroups + directory_->grants; }
  void ExpectFullDirectory() {
    EXPECT_EQ(Active("identities"), kUsers);
    EXPECT_EQ(Active("accounts"), kUsers);
    EXPECT_EQ(Active("entitlements"), kGroups);
    EXPECT_EQ(Active("grants"), directory_->grants);
  }

  static std::string* hash_;
  static LdapDirectory* directory_;
  std::unique_ptr<testing::ScopedTestDir> tmp_;
  std::string db_;
  std::string password_file_;
  std::unique_ptr<SqliteStore> store_;
};

std::string* LdapSyncTest::hash_ = nullptr;
LdapDirectory* LdapSyncTest::directory_ = nullptr;

TEST_F(LdapSyncTest,
       FullSyncLandsTheDirectoryAndAnUnchangedResyncWritesNothing) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  RunRow run = Sync(Config(*server));
  ASSERT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.created, Total());
  EXPECT_EQ(run.processed, Total());
  EXPECT_EQ(run.rejected, 0);
  ExpectFullDirectory();

  // Fields, the manager link, DN keys and the account -> identity link.
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE external_id='user17' "
                  "AND manager_external_id='user2' AND department='D17' AND "
                  "email='user17@example.com' AND first_name='First17' AND "
                  "last_name='Last17' AND job_title='Engineer 3' AND "
                  "status='active' AND display_name='First17 Last17' AND "
                  "attributes LIKE '%E100017%'"),
            1);
  EXPECT_EQ(Query("SELECT count(*) FROM accounts WHERE external_id="
                  "'uid=user19,ou=contractors,ou=people,dc=example,dc=com' AND "
                  "identity_external_id='user19' AND username='user19'"),
            1);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE "
                  "manager_external_id <> ''"),
            kUsers - 8);
  // posixGroup memberUid resolved to accounts; the nested group is no grant.
  EXPECT_EQ(Query("SELECT count(*) FROM grants WHERE entitlement_external_id="
                  "'cn=group2,ou=groups,dc=example,dc=com'"),
            3000);
  EXPECT_EQ(Query("SELECT count(*) FROM grants WHERE entitlement_external_id="
                  "'cn=group0,ou=groups,dc=example,dc=com'"),
            5000);
  EXPECT_EQ(Query("SELECT count(*) FROM grants WHERE account_external_id LIKE "
                  "'cn=group%'"),
            0);
  EXPECT_EQ(Query("SELECT count(*) FROM entitlements WHERE external_id="
                  "'cn=group3,ou=groups,dc=example,dc=com' AND attributes LIKE "
                  "'%member_groups%cn=group4,ou=groups%'"),
            1);
  // The watermark: the newest modifyTimestamp (group 199) plus one second.
  EXPECT_EQ(Query("SELECT count(*) FROM connectors WHERE sync_token="
                  "'ldap1:20230630000320Z'"),
            1);

  ASSERT_TRUE(testing::ExecSql(db_, kWriteCounter).ok());
  RunRow again = Sync(Config(*server));
  ASSERT_EQ(again.status, RunStatus::kSucceeded) << again.error;
  EXPECT_EQ(again.unchanged, Total());
  EXPECT_EQ(again.created + again.updated + again.deleted + again.rejected, 0);
  EXPECT_EQ(Query("SELECT count(*) FROM write_log"), 0);
}

TEST_F(LdapSyncTest, AUserWithoutItsIdIsARejectAndItsNeighboursAreIntact) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  // Three users lose the attribute the mapping takes their id from.
  std::string ldif;
  for (int i : {10, 11, 500}) {
    absl::StrAppend(&ldif, "dn: ", LdapDirectory::UserDn(i),
                    "\nchangetype: modify\ndelete: employeeNumber\n\n");
  }
  ASSERT_TRUE(server->Modify(ldif).ok());
  nlohmann::json config = Config(*server);
  config["mapping"] = {{"external_id", {"employeeNumber"}}};
  RunRow run = Sync(config);
  ASSERT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.rejected, 3);
  EXPECT_EQ(run.created, Total() - 3);
  EXPECT_EQ(Active("identities"), kUsers - 3);
  EXPECT_EQ(Active("accounts"), kUsers) << "their accounts still sync";
  EXPECT_EQ(Query("SELECT count(*) FROM sync_rejects WHERE reason LIKE "
                  "'%no employeeNumber attribute%'"),
            3);
  // The records mapped right after a rejected one (into the same chunk
  // slot) carry their own values, nothing of the reject's.
  for (int i : {12, 501}) {
    EXPECT_EQ(
        Query(absl::StrCat("SELECT count(*) FROM identities WHERE "
                           "external_id='E",
                           100000 + i, "' AND email='user", i,
                           "@example.com' AND first_name='First", i, "'")),
        1)
        << i;
  }
}

TEST_F(LdapSyncTest, IncrementalPicksUpExactlyTheModifiedEntries) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync(Config(*server)).status, RunStatus::kSucceeded);
  std::string ldif;
  for (int i = 0; i < 100; ++i) {
    absl::StrAppend(
        &ldif, "dn: ", LdapDirectory::UserDn(i * 97),
        "\nchangetype: modify\nreplace: title\ntitle: Director\n\n");
  }
  ASSERT_TRUE(server->Modify(ldif).ok());
  ASSERT_TRUE(testing::ExecSql(db_, kWriteCounter).ok());
  SyncOptions incremental;
  incremental.incremental = true;
  RunRow run = Sync(Config(*server), incremental);
  ASSERT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  // 100 entries read: each an identity (changed) and an account (not).
  EXPECT_EQ(run.processed, 200);
  EXPECT_EQ(run.updated, 100);
  EXPECT_EQ(run.unchanged, 100);
  EXPECT_EQ(run.created + run.deleted + run.rejected, 0);
  EXPECT_EQ(Query("SELECT count(*) FROM write_log"), 100);
  EXPECT_EQ(Query("SELECT count(*) FROM write_log WHERE kind='identity'"), 100);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE job_title='Director'"),
            100);
  ExpectFullDirectory();
}

TEST_F(LdapSyncTest, DeletedEntriesAreRemovedByTheNextFullSync) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync(Config(*server)).status, RunStatus::kSucceeded);
  // Delete 50 users and their memberships (what slapd's refint overlay does).
  std::set<int> gone;
  for (int i = 0; i < 50; ++i) gone.insert(9000 + i * 7);
  std::string ldif;
  int64_t gone_grants = 0;
  for (int g = 0; g < kGroups; ++g) {
    const int size = LdapDirectory::GroupSize(g);
    const int offset = (g * 131) % kUsers;
    std::string changes;
    for (int m = 0; m < size; ++m) {
      const int u = (offset + m) % kUsers;
      if (!gone.count(u)) continue;
      ++gone_grants;
      const char* attribute = g % 3 == 0   ? "member"
                              : g % 3 == 1 ? "uniqueMember"
                                           : "memberUid";
      absl::StrAppend(
          &changes, "delete: ", attribute, "\n", attribute, ": ",
          g % 3 == 2 ? absl::StrCat("user", u) : LdapDirectory::UserDn(u),
          "\n-\n");
    }
    if (!changes.empty()) {
      absl::StrAppend(&ldif, "dn: ", LdapDirectory::GroupDn(g),
                      "\nchangetype: modify\n", changes, "\n");
    }
  }
  for (int u : gone) {
    absl::StrAppend(&ldif, "dn: ", LdapDirectory::UserDn(u),
                    "\nchangetype: delete\n\n");
  }
  ASSERT_GT(gone_grants, 0);
  ASSERT_TRUE(server->Modify(ldif).ok());

  RunRow run = Sync(Config(*server));
  ASSERT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.deleted, 50 + 50 + gone_grants);
  EXPECT_EQ(run.created + run.updated + run.rejected, 0);
  EXPECT_EQ(Active("identities"), kUsers - 50);
  EXPECT_EQ(Active("accounts"), kUsers - 50);
  EXPECT_EQ(Active("grants"), directory_->grants - gone_grants);
  EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NOT "
                  "NULL AND external_id='user9007'"),
            1);
}

TEST_F(LdapSyncTest, PagingReadsPastTheServerSizeLimit) {
  SlapdConfig config;
  config.limits = "sizelimit size.soft=500 size.hard=unlimited";
  auto server = StartServer(config);
  ASSERT_NE(server, nullptr);
  // Without paging the server stops at 500 entries.
  auto plain = testing::RunProcess(
      {"/usr/bin/ldapsearch", "-x", "-H", server->url(), "-D",
       testing::kServiceDn, "-w", testing::kServicePassword, "-b",
       testing::kPeopleBase, "(objectClass=inetOrgPerson)", "1.1"});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(plain->exit_code, 4) << "sizeLimitExceeded";
  nlohmann::json cfg = Config(*server);
  cfg["page_size"] = 300;
  RunRow run = Sync(cfg);
  ASSERT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(run.created, Total());
  ExpectFullDirectory();
}

TEST_F(LdapSyncTest, ServerSizeLimitFailsTheRunAndDeletesNothing) {
  {
    auto server = StartServer({}, "full");
    ASSERT_NE(server, nullptr);
    ASSERT_EQ(Sync(Config(*server)).status, RunStatus::kSucceeded);
  }
  const testing::StoreSignature before = Sign();
  int servers = 0;
  for (const char* limits :
       {"sizelimit size.soft=500 size.hard=500",  // Paged total capped.
        "sizelimit size.soft=500 size.hard=500 size.prtotal=disabled"}) {
    SlapdConfig config;
    config.limits = limits;
    auto server = StartServer(config, absl::StrCat("limited", ++servers));
    ASSERT_NE(server, nullptr);
    RunRow run = Sync(Config(*server));
    EXPECT_EQ(run.status, RunStatus::kFailed) << limits;
    EXPECT_THAT(run.error, HasSubstr("limit")) << limits;
    EXPECT_THAT(run.error, HasSubstr("user_base")) << limits;
    EXPECT_EQ(run.deleted, 0);
    EXPECT_EQ(Sign(), before) << limits;
  }
}

TEST_F(LdapSyncTest, WrongPasswordIsRefusedClearlyAndChangesNothing) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync(Config(*server)).status, RunStatus::kSucceeded);
  const testing::StoreSignature before = Sign();
  std::ofstream(password_file_) << kWrongPassword << "\n";
  RunRow run = Sync(Config(*server));
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("Invalid credentials"));
  EXPECT_THAT(run.error, HasSubstr(testing::kServiceDn));
  EXPECT_THAT(run.error, Not(HasSubstr(kWrongPassword)));
  EXPECT_EQ(run.deleted, 0);
  EXPECT_EQ(Sign(), before);

  // The same through auth_config, called directly: kUnauthenticated.
  nlohmann::json cfg = Config(*server);
  cfg.erase("bind_password_file");
  google::protobuf::Struct auth;
  (*auth.mutable_fields())["password"].set_string_value(kWrongPassword);
  auto connector = MakeConnector(cfg, auth);
  ASSERT_TRUE(connector.ok());
  absl::Status test = (*connector)->TestConnection();
  EXPECT_TRUE(absl::IsUnauthenticated(test)) << test;
  EXPECT_THAT(std::string(test.message()), Not(HasSubstr(kWrongPassword)));
  idsync::v1::SyncRequest request;
  *request.mutable_auth_config() = auth;
  CountingSink sink;
  absl::Status sync = (*connector)->Sync(request, sink);
  EXPECT_TRUE(absl::IsUnauthenticated(sync)) << sync;
  EXPECT_EQ(sink.chunks, 0);
}

TEST_F(LdapSyncTest, AuthConfigPasswordStreamsChunksWithoutResumeTokens) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  nlohmann::json cfg = Config(*server);
  cfg.erase("bind_password_file");
  auto connector = MakeConnector(cfg);
  ASSERT_TRUE(connector.ok());
  absl::Status no_password = (*connector)->TestConnection();
  EXPECT_TRUE(absl::IsInvalidArgument(no_password)) << no_password;
  EXPECT_THAT(std::string(no_password.message()), HasSubstr("no password"));

  google::protobuf::Struct auth;
  (*auth.mutable_fields())["password"].set_string_value(
      testing::kServicePassword);
  idsync::v1::SyncRequest request;
  *request.mutable_auth_config() = auth;
  request.set_chunk_size(700);
  CountingSink sink;
  ASSERT_TRUE((*connector)->Sync(request, sink).ok());
  EXPECT_EQ(sink.identities, kUsers);
  EXPECT_EQ(sink.accounts, kUsers);
  EXPECT_EQ(sink.entitlements, kGroups);
  EXPECT_EQ(sink.grants, directory_->grants);
  EXPECT_EQ(sink.rejects, 0);
  EXPECT_GE(sink.chunks, Total() / 700);
  EXPECT_TRUE(sink.resume_tokens_empty);
  EXPECT_EQ(sink.next_token, "ldap1:20230630000320Z");

  auto with_auth = MakeConnector(cfg, auth);
  ASSERT_TRUE(with_auth.ok());
  EXPECT_TRUE((*with_auth)->TestConnection().ok());
}

TEST_F(LdapSyncTest, UnreachableServerAndBadBaseNameWhatIsWrong) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync(Config(*server)).status, RunStatus::kSucceeded);
  const testing::StoreSignature before = Sign();

  nlohmann::json bad_base = Config(*server);
  bad_base["user_base"] = "ou=nobody,dc=example,dc=com";
  RunRow run = Sync(bad_base);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("user_base 'ou=nobody,dc=example,dc=com' "
                                   "does not exist"));
  EXPECT_THAT(run.error, Not(HasSubstr(testing::kServicePassword)));
  EXPECT_EQ(Sign(), before);
  auto connector = MakeConnector(bad_base);
  ASSERT_TRUE(connector.ok());
  absl::Status test = (*connector)->TestConnection();
  EXPECT_TRUE(absl::IsInvalidArgument(test)) << test;

  const std::string url = server->url();
  server->Kill();
  RunRow down = Sync(Config(*server));
  EXPECT_EQ(down.status, RunStatus::kFailed);
  EXPECT_THAT(down.error, HasSubstr(url));
  EXPECT_THAT(down.error, HasSubstr("Can't contact LDAP server"));
  EXPECT_EQ(down.deleted, 0);
  EXPECT_EQ(Sign(), before);
  auto unreachable = MakeConnector(Config(*server));
  ASSERT_TRUE(unreachable.ok());
  EXPECT_TRUE(absl::IsUnavailable((*unreachable)->TestConnection()));
}

TEST_F(LdapSyncTest, ASilentServerTimesOutClearly) {
  // Accepts connections (the kernel's backlog) and never answers.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 4), 0);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string url =
      absl::StrCat("ldap://127.0.0.1:", ntohs(addr.sin_port));
  nlohmann::json cfg = {{"url", url},
                        {"bind_dn", testing::kServiceDn},
                        {"bind_password_file", password_file_},
                        {"user_base", testing::kPeopleBase},
                        {"timeout_seconds", 1}};
  auto connector = MakeConnector(cfg);
  ASSERT_TRUE(connector.ok());
  absl::Status s = (*connector)->TestConnection();
  close(fd);
  EXPECT_TRUE(absl::IsDeadlineExceeded(s)) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(url));
  EXPECT_THAT(std::string(s.message()),
              Not(HasSubstr(testing::kServicePassword)));
}

TEST_F(LdapSyncTest, AReferralInsideTheBaseFailsTheRunAndDeletesNothing) {
  SlapdConfig config;
  config.ldif = GenerateDirectory(100, 6, *hash_).ldif;
  auto server = StartServer(config);
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync(Config(*server)).status, RunStatus::kSucceeded);
  const testing::StoreSignature before = Sign();
  // Part of ou=people now lives on another server.
  ASSERT_TRUE(
      server
          ->Modify(absl::StrCat("dn: ou=remote,", testing::kPeopleBase,
                                "\nchangetype: add\nobjectClass: referral\n"
                                "objectClass: extensibleObject\nou: remote\n"
                                "ref: ldap://other.example.com/ou=remote,",
                                testing::kPeopleBase, "\n\n"))
          .ok());
  RunRow run = Sync(Config(*server));
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("referral to ldap://other.example.com"));
  EXPECT_THAT(run.error, HasSubstr("does not follow referrals"));
  EXPECT_EQ(run.deleted, 0);
  EXPECT_EQ(Sign(), before);
}

TEST_F(LdapSyncTest, ServerKilledMidWalkFailsTheRunWithoutDeletions) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  ASSERT_EQ(Sync(Config(*server)).status, RunStatus::kSucceeded);
  const testing::StoreSignature before = Sign();
  const nlohmann::json config = Config(*server);
  ProgressFn kill = [&](const RunRow& run) {
    if (run.processed >= 3000) server->Kill();
  };
  RunRow run = Sync(config, {}, nullptr, kill);
  EXPECT_EQ(run.status, RunStatus::kFailed);
  EXPECT_THAT(run.error, HasSubstr("lost the connection"));
  EXPECT_EQ(run.deleted, 0);
  EXPECT_LT(run.processed, Total());
  EXPECT_EQ(Sign(), before)
      << "an unchanged source read in part changes nothing";
}

TEST_F(LdapSyncTest, CrashedRunResumesByWalkingAgainToTheSameStore) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  SyncEngineOptions small_groups;
  small_groups.max_group_records = 5000;
  {
    testing::FaultyStore faulty(*store_);
    faulty.CrashAfterCommits(4);
    auto crashed = RunSync(Config(*server), {}, &faulty, nullptr, small_groups);
    EXPECT_FALSE(crashed.ok()) << "the crash stops the run";
    EXPECT_TRUE(faulty.crashed());
    EXPECT_EQ(Query("SELECT count(*) FROM sync_runs WHERE status='running'"),
              1);
    EXPECT_GT(Query("SELECT processed FROM sync_runs"), 0);
  }
  // The crashed process is gone.
  ASSERT_TRUE(testing::ExecSql(db_, "UPDATE sync_runs SET owner='1:0'").ok());
  RunRow resumed = Sync(Config(*server), {}, nullptr, nullptr, small_groups);
  ASSERT_EQ(resumed.status, RunStatus::kSucceeded) << resumed.error;
  EXPECT_EQ(resumed.resumes, 1);
  EXPECT_EQ(resumed.rejected, 0) << "re-read records are not duplicates";
  EXPECT_EQ(resumed.created, Total());
  EXPECT_EQ(resumed.processed, Total());
  EXPECT_EQ(Query("SELECT count(*) FROM sync_runs"), 1);

  const std::string reference = tmp_->File("reference.db");
  {
    auto store = SqliteStore::Open({reference});
    ASSERT_TRUE(store.ok());
    ASSERT_EQ(Sync(Config(*server), {}, store->get()).status,
              RunStatus::kSucceeded);
  }
  EXPECT_EQ(Sign(), Sign(reference));
}

TEST_F(LdapSyncTest, StartTlsAndLdapsCheckTheServerCertificate) {
  SlapdConfig config;
  config.tls = true;
  config.ldif = GenerateDirectory(50, 6, *hash_).ldif;
  auto server = StartServer(config);
  ASSERT_NE(server, nullptr);
  nlohmann::json start_tls = Config(*server);
  start_tls["start_tls"] = true;
  start_tls["ca_file"] = server->ca_file();
  RunRow run = Sync(start_tls);
  ASSERT_EQ(run.status, RunStatus::kSucceeded) << run.error;
  EXPECT_EQ(Active("identities"), 50);

  nlohmann::json ldaps = Config(*server);
  ldaps["url"] = server->tls_url();
  ldaps["ca_file"] = server->ca_file();
  auto good = MakeConnector(ldaps);
  ASSERT_TRUE(good.ok());
  EXPECT_TRUE((*good)->TestConnection().ok());

  ldaps.erase("ca_file");  // The system's trust store does not know it.
  auto untrusted = MakeConnector(ldaps);
  ASSERT_TRUE(untrusted.ok());
  absl::Status s = (*untrusted)->TestConnection();
  EXPECT_FALSE(s.ok());
  EXPECT_THAT(std::string(s.message()), HasSubstr(server->tls_url()));
}

}  // namespace
}  // namespace idsync
