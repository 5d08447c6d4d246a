// End to end: the real `idsync sync --type ldap --config FILE` against a
// private slapd, into a real store.
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/ldap_directory.h"
#include "tests/testing/slapd_server.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr int kUsers = 2000;
constexpr int kGroups = 30;

class LdapCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<testing::ScopedTestDir>("ldap_cli");
    auto hash = testing::SlapdServer::HashPassword(testing::kServicePassword);
    ASSERT_TRUE(hash.ok());
    directory_ = testing::GenerateDirectory(kUsers, kGroups, *hash);
    testing::SlapdConfig config;
    config.ldif = directory_.ldif;
    std::filesystem::create_directories(tmp_->File("slapd"));
    auto server = testing::SlapdServer::Start(tmp_->File("slapd"), config);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    WriteConfig(testing::kServicePassword);
  }

  void WriteConfig(const std::string& password) {
    std::ofstream(tmp_->File("bind.pw")) << password << "\n";
    nlohmann::json config = {{"url", server_->url()},
                             {"bind_dn", testing::kServiceDn},
                             {"bind_password_file", tmp_->File("bind.pw")},
                             {"user_base", testing::kPeopleBase},
                             {"group_base", testing::kGroupBase}};
    std::ofstream(tmp_->File("ldap.json")) << config.dump(2);
  }

  testing::ProcessResult Sync(std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {
        IDSYNC_BIN, "sync",     "--type",
        "ldap",     "--config", tmp_->File("ldap.json"),
        "--db",     db(),       "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = testing::RunProcess(args);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : testing::ProcessResult{};
  }
  static nlohmann::json Summary(const testing::ProcessResult& r) {
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << "stdout: " << r.out << "\nstderr: " << r.err;
    return j;
  }
  std::string db() const { return tmp_->File("store.db"); }

  std::unique_ptr<testing::ScopedTestDir> tmp_;
  testing::LdapDirectory directory_;
  std::unique_ptr<testing::SlapdServer> server_;
};

TEST_F(LdapCliTest, SyncsFullThenIncrementalFromTheCommandLine) {
  const int64_t total = 2 * kUsers + kGroups + directory_.grants;
  testing::ProcessResult first = Sync();
  ASSERT_EQ(first.exit_code, 0) << first.err;
  nlohmann::json s1 = Summary(first);
  EXPECT_EQ(s1["status"], "succeeded");
  EXPECT_EQ(s1["created"], total);
  EXPECT_EQ(s1["rejected"], 0);
  EXPECT_EQ(*testing::QueryInt(db(),
                               "SELECT count(*) FROM connectors WHERE "
                               "type='ldap' AND business_id='ldap'"),
            1);

  nlohmann::json s2 = Summary(Sync({"--incremental"}));
  EXPECT_EQ(s2["status"], "succeeded");
  EXPECT_EQ(s2["processed"], 0) << "nothing changed since the watermark";

  nlohmann::json s3 = Summary(Sync());
  EXPECT_EQ(s3["unchanged"], total);
}

TEST_F(LdapCliTest, WrongPasswordFailsWithExitOneAndNeverPrintsIt) {
  ASSERT_EQ(Sync().exit_code, 0);
  const auto before = testing::SignStore(db());
  ASSERT_TRUE(before.ok());
  WriteConfig("Not-The-Pa55word");
  testing::ProcessResult r = Sync();
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("Invalid credentials"));
  EXPECT_THAT(r.err + r.out, Not(HasSubstr("Not-The-Pa55word")));
  EXPECT_EQ(*testing::SignStore(db()), *before);
}

TEST_F(LdapCliTest, LdapNeedsAConfigAndTakesNoFile) {
  auto no_config =
      testing::RunProcess({IDSYNC_BIN, "sync", "--type", "ldap", "--db", db()});
  ASSERT_TRUE(no_config.ok());
  EXPECT_EQ(no_config->exit_code, 2);
  EXPECT_THAT(no_config->err, HasSubstr("--config"));
  auto with_file = testing::RunProcess({IDSYNC_BIN, "sync", "--type", "ldap",
                                        "--config", tmp_->File("ldap.json"),
                                        "--file", "x.csv", "--db", db()});
  ASSERT_TRUE(with_file.ok());
  EXPECT_EQ(with_file->exit_code, 2);
  std::ofstream(tmp_->File("typo.json"))
      << R"({"url": "ldap://127.0.0.1:1", "user_base": "dc=x", "pasword": "x"})";
  auto typo =
      testing::RunProcess({IDSYNC_BIN, "sync", "--type", "ldap", "--config",
                           tmp_->File("typo.json"), "--db", db()});
  ASSERT_TRUE(typo.ok());
  EXPECT_EQ(typo->exit_code, 2);
  EXPECT_THAT(typo->err, HasSubstr("unknown key 'pasword'"));
}

}  // namespace
}  // namespace idsync
