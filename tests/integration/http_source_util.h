// Shared by the tests of the HTTP source connectors (rest, scim) against
// the Node servers of tests/integration/{rest,scim}.
#ifndef IDSYNC_TESTS_INTEGRATION_HTTP_SOURCE_UTIL_H_
#define IDSYNC_TESTS_INTEGRATION_HTTP_SOURCE_UTIL_H_

#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connector/connector.h"
#include "connector/http/auth.h"
#include "connector/registry.h"
#include "dispatcher/store/sqlite_store.h"
#include "dispatcher/sync_engine.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/node_server.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/test_dir.h"

namespace idsync::testing {

// What the servers generate for `users` (tests/integration/rest/README.md).
inline int64_t Groups(int users) { return (users + 49) / 50; }
inline int64_t Memberships(int users) {
  int64_t n = users;
  for (int i = 0; i < users; i += 7) n += (i % Groups(users)) != 0;
  return n;
}

inline nlohmann::json ReadJson(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return nlohmann::json::parse(text.str());
}

inline google::protobuf::Struct ToStruct(const nlohmann::json& j) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(j.dump(), &s).ok());
  return s;
}

// Writes to the synced tables, counted independently of idsync.
inline constexpr char kWriteCounter[] = R"sql(
CREATE TABLE write_log (kind TEXT);
CREATE TRIGGER li AFTER INSERT ON identities BEGIN INSERT INTO write_log VALUES ('identity'); END;
CREATE TRIGGER lu AFTER UPDATE ON identities BEGIN INSERT INTO write_log VALUES ('identity'); END;
CREATE TRIGGER ai AFTER INSERT ON accounts BEGIN INSERT INTO write_log VALUES ('account'); END;
CREATE TRIGGER au AFTER UPDATE ON accounts BEGIN INSERT INTO write_log VALUES ('account'); END;
)sql";

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

// A store and a connector of one type, synced through the real engine;
// config_ and auth_ are the connector's config and secrets.
class HttpSourceTest : public ::testing::Test {
 protected:
  HttpSourceTest(std::string type, ConnectorFactory factory)
      : type_(std::move(type)), factory_(std::move(factory)) {}

  void SetUp() override {
    ClearOAuth2TokenCache();
    tmp_ = std::make_unique<ScopedTestDir>(type_);
    db_ = tmp_->File("store.db");
    auto store = SqliteStore::Open({db_});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  void TearDown() override {
    store_.reset();
    tmp_.reset();
  }

  std::unique_ptr<NodeServer> StartServer(
      const std::string& script, const std::vector<std::string>& args) {
    auto server = NodeServer::Start(script, args);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  absl::StatusOr<RunRow> RunSync(SyncOptions options = {},
                                 Clock* clock = &Clock::Real()) {
    auto tenant = store_->EnsureTenant("acme");
    if (!tenant.ok()) return tenant.status();
    ConnectorRow row;
    row.tenant_id = *tenant;
    row.business_id = "api";
    row.type = type_;
    row.config_json = config_.dump();
    auto saved = store_->UpsertConnector(row);
    if (!saved.ok()) return saved.status();
    ConnectorSpec spec;
    spec.business_id = "api";
    spec.config = ToStruct(config_);
    spec.clock = clock;
    auto connector = factory_(spec);
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
    auto v = QueryInt(db_, sql);
    EXPECT_TRUE(v.ok()) << v.status() << ": " << sql;
    return v.ok() ? *v : -1;
  }
  int64_t Active(const std::string& table) {
    return Query(absl::StrCat("SELECT count(*) FROM ", table,
                              " WHERE deleted_at IS NULL"));
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
    // Users 0 and 7 are also in group 0 (tests/integration/rest/README.md).
    EXPECT_EQ(Query("SELECT count(*) FROM grants WHERE "
                    "account_external_id='u000007'"),
              2);
  }

  const std::string type_;
  const ConnectorFactory factory_;
  std::unique_ptr<ScopedTestDir> tmp_;
  std::string db_;
  std::unique_ptr<SqliteStore> store_;
  nlohmann::json config_, auth_;
};

// The server's /__control/stats.
inline nlohmann::json Stats(NodeServer& server) {
  auto s = server.Control("GET", "/__control/stats");
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? nlohmann::json::parse(*s) : nlohmann::json::object();
}

// Replaces the server's faults with `spec`.
inline void Fault(NodeServer& server, const std::string& spec) {
  auto r = server.Control("POST", "/__control/faults",
                          nlohmann::json{{"spec", spec}}.dump());
  ASSERT_TRUE(r.ok()) << r.status();
}

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_INTEGRATION_HTTP_SOURCE_UTIL_H_
