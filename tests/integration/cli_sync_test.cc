// End to end: the real `idsync` binary generating HR files and syncing them
// into a real SQLite store, including a SIGKILL in the middle of a sync and
// hostile input files.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/store_signature.h"
#include "tests/testing/subprocess.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;
using testing::ProcessResult;

constexpr int kCount = 50000;

class CliSyncTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ =
        new std::filesystem::path(std::filesystem::path(::testing::TempDir()) /
                                  absl::StrCat("cli_sync_", getpid()));
    std::filesystem::remove_all(*dir_);
    std::filesystem::create_directories(*dir_);
    // The base file and a copy with 1% modified and 1% removed employees.
    Gen({"--count", std::to_string(kCount), "--seed", "7", "--out",
         Path("base.csv")});
    Gen({"--count", std::to_string(kCount), "--seed", "7", "--modify-percent",
         "1", "--remove-percent", "1", "--out", Path("changed.csv")});
    Gen({"--count", std::to_string(kCount), "--seed", "7", "--remove-percent",
         "50", "--out", Path("half.csv")});
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*dir_);
    delete dir_;
  }

  static std::string Path(const std::string& name) {
    return (*dir_ / name).string();
  }

  static void Gen(std::vector<std::string> args) {
    args.insert(args.begin(), {IDSYNC_BIN, "gen-hr"});
    auto r = testing::RunProcess(args);
    ASSERT_TRUE(r.ok() && r->exit_code == 0)
        << (r.ok() ? r->err : "no process");
  }

  // Runs `idsync sync --json` and returns its result.
  static ProcessResult Sync(const std::string& file, const std::string& db,
                            std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {IDSYNC_BIN, "sync",   "--type",
                                     "csv",      "--file", file,
                                     "--db",     db,       "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto r = testing::RunProcess(args);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{};
  }
  static nlohmann::json Summary(const ProcessResult& r) {
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << "stdout: " << r.out << "\nstderr: " << r.err;
    return j;
  }
  static testing::StoreSignature Sign(const std::string& db) {
    auto sig = testing::SignStore(db);
    EXPECT_TRUE(sig.ok()) << sig.status();
    return sig.ok() ? *sig : testing::StoreSignature{};
  }

  static std::filesystem::path* dir_;
};

std::filesystem::path* CliSyncTest::dir_ = nullptr;

// Counts every write to the identities table, independently of idsync.
constexpr char kWriteCounter[] = R"sql(
CREATE TABLE write_log (n INTEGER);
CREATE TRIGGER log_insert AFTER INSERT ON identities BEGIN INSERT INTO write_log VALUES (1); END;
CREATE TRIGGER log_update AFTER UPDATE ON identities BEGIN INSERT INTO write_log VALUES (1); END;
CREATE TRIGGER log_delete AFTER DELETE ON identities BEGIN INSERT INTO write_log VALUES (1); END;
CREATE TRIGGER log_key_insert AFTER INSERT ON identity_keys BEGIN INSERT INTO write_log VALUES (2); END;
CREATE TRIGGER log_key_update AFTER UPDATE ON identity_keys BEGIN INSERT INTO write_log VALUES (2); END;
)sql";

TEST_F(CliSyncTest, FullResyncAndChangedResyncGiveExactCounts) {
  const std::string db = Path("main.db");
  ProcessResult first = Sync(Path("base.csv"), db);
  ASSERT_EQ(first.exit_code, 0) << first.err;
  nlohmann::json s1 = Summary(first);
  EXPECT_EQ(s1["status"], "succeeded");
  EXPECT_EQ(s1["created"], kCount);
  EXPECT_EQ(s1["processed"], kCount);
  EXPECT_EQ(s1["rejected"], 0);
  EXPECT_EQ(*testing::QueryInt(db, "SELECT count(*) FROM identities"), kCount);

  // Unchanged: nothing is written, checked by triggers idsync knows nothing of.
  ASSERT_TRUE(testing::ExecSql(db, kWriteCounter).ok());
  nlohmann::json s2 = Summary(Sync(Path("base.csv"), db));
  EXPECT_EQ(s2["status"], "succeeded");
  EXPECT_EQ(s2["unchanged"], kCount);
  EXPECT_EQ(s2["created"], 0);
  EXPECT_EQ(s2["updated"], 0);
  EXPECT_EQ(s2["deleted"], 0);
  EXPECT_EQ(*testing::QueryInt(db, "SELECT count(*) FROM write_log"), 0);

  // 1% modified, 1% removed: exactly those are written.
  nlohmann::json s3 = Summary(Sync(Path("changed.csv"), db));
  EXPECT_EQ(s3["status"], "succeeded");
  EXPECT_EQ(s3["processed"], kCount - kCount / 100);
  EXPECT_EQ(s3["updated"], kCount / 100);
  EXPECT_EQ(s3["deleted"], kCount / 100);
  EXPECT_EQ(s3["unchanged"], kCount - 2 * (kCount / 100));
  EXPECT_EQ(s3["created"], 0);
  // One row write and one key write per changed or removed employee.
  EXPECT_EQ(*testing::QueryInt(db, "SELECT count(*) FROM write_log WHERE n=1"),
            2 * (kCount / 100));
  EXPECT_EQ(*testing::QueryInt(db, "SELECT count(*) FROM write_log WHERE n=2"),
            2 * (kCount / 100));
  EXPECT_EQ(
      *testing::QueryInt(
          db, "SELECT count(*) FROM identities WHERE deleted_at IS NOT NULL"),
      kCount / 100);
}

TEST_F(CliSyncTest, HalfTheFileMissingIsRefusedAndChangesNothing) {
  const std::string db = Path("half.db");
  ASSERT_EQ(Sync(Path("base.csv"), db).exit_code, 0);
  testing::StoreSignature before = Sign(db);
  ProcessResult r = Sync(Path("half.csv"), db);
  EXPECT_EQ(r.exit_code, 1);
  nlohmann::json s = Summary(r);
  EXPECT_EQ(s["status"], "failed");
  EXPECT_EQ(s["deleted"], 0);
  EXPECT_THAT(s["error"].get<std::string>(), HasSubstr("deletion threshold"));
  EXPECT_THAT(r.err, HasSubstr("25000 of 50000"));
  EXPECT_EQ(Sign(db), before);

  // The operator confirms the removal with a per-run threshold.
  nlohmann::json confirmed =
      Summary(Sync(Path("half.csv"), db, {"--deletion-threshold", "60"}));
  EXPECT_EQ(confirmed["status"], "succeeded");
  EXPECT_EQ(confirmed["deleted"], kCount / 2);
}

TEST_F(CliSyncTest, KilledSyncResumesToTheSameContent) {
  const std::string reference = Path("reference.db");
  ASSERT_EQ(Sync(Path("base.csv"), reference).exit_code, 0);

  const std::string db = Path("killed.db");
  const std::vector<std::string> args = {
      IDSYNC_BIN, "sync",         "--file", Path("base.csv"),   "--db", db,
      "--json",   "--chunk-size", "100",    "--commit-records", "500"};
  int kills = 0;
  for (int64_t kill_at : {8000, 24000, 40000}) {
    auto child = testing::ChildProcess::Start(args, dir_->string());
    ASSERT_TRUE(child.ok());
    // Kill once the run has committed past `kill_at` records.
    while (!child->Exited()) {
      auto processed = testing::QueryInt(
          db,
          "SELECT coalesce(max(processed), 0) FROM sync_runs WHERE "
          "status='running'");
      if (processed.ok() && *processed >= kill_at) {
        child->Kill(SIGKILL);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    ProcessResult r = child->Wait();
    if (r.exit_code == 128 + SIGKILL) ++kills;
  }
  ASSERT_GE(kills, 2) << "the sync finished before it could be killed";
  EXPECT_EQ(*testing::QueryInt(db,
                               "SELECT count(*) FROM sync_runs WHERE "
                               "status='running'"),
            1);

  ProcessResult last = testing::RunProcess(args).value();
  ASSERT_EQ(last.exit_code, 0) << last.err;
  nlohmann::json s = Summary(last);
  EXPECT_EQ(s["resumed"], true);
  EXPECT_EQ(s["created"], kCount) << "no record counted twice or lost";
  EXPECT_EQ(s["processed"], kCount);
  EXPECT_EQ(*testing::QueryInt(db, "SELECT count(*) FROM sync_runs"), 1);
  EXPECT_EQ(*testing::QueryInt(db, "SELECT resumes FROM sync_runs"), kills);
  EXPECT_EQ(Sign(db), Sign(reference));
}

// Hostile files, each synced into a store that already holds the same
// employees: a clear error or a reject, and the store does not change.
class HostileCsvTest : public CliSyncTest {
 protected:
  void SetUp() override {
    db_ = Path(absl::StrCat(
        ::testing::UnitTest::GetInstance()->current_test_info()->name(),
        ".db"));
    Write("good.csv", Good());
    ASSERT_EQ(Sync(Path("good.csv"), db_).exit_code, 0);
    before_ = Sign(db_);
  }
  static std::string Header() {
    return "employee_id,first_name,last_name,email,department,title\n";
  }
  static std::string Row(int i, const std::string& title = "Engineer") {
    return absl::StrCat("E", i, ",Ann,Lee", i, ",ann", i, "@example.com,IT,",
                        title, "\n");
  }
  static std::string Good() {
    std::string csv = Header();
    for (int i = 1; i <= 100; ++i) csv += Row(i);
    return csv;
  }
  static void Write(const std::string& name, const std::string& content) {
    std::ofstream(Path(name), std::ios::binary) << content;
  }
  void ExpectUnchanged() { EXPECT_EQ(Sign(db_), before_); }

  std::string db_;
  testing::StoreSignature before_;
};

TEST_F(HostileCsvTest, TruncatedQuoteFailsTheRunClearly) {
  std::string csv = Good();
  csv += "E101,\"Bob,Never closes the quote\n";
  for (int i = 102; i < 150; ++i) csv += Row(i);
  Write("truncated.csv", csv);
  ProcessResult r = Sync(Path("truncated.csv"), db_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("line 102: unterminated quoted field"));
  ExpectUnchanged();
}

TEST_F(HostileCsvTest, TenMegabyteFieldIsARejectNotACrash) {
  std::string csv = Header();
  for (int i = 1; i <= 100; ++i) {
    csv += i == 50
               ? Row(i, absl::StrCat("\"", std::string(10 << 20, 'x'), "\""))
               : Row(i);
  }
  Write("big.csv", csv);
  ProcessResult r = Sync(Path("big.csv"), db_);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  nlohmann::json s = Summary(r);
  EXPECT_EQ(s["rejected"], 1);
  EXPECT_EQ(s["deleted"], 0) << "the rejected employee is not deleted";
  EXPECT_THAT(s["rejects_sample"][0]["reason"].get<std::string>(),
              HasSubstr("over max_field_bytes"));
  EXPECT_EQ(s["rejects_sample"][0]["location"], "line 51");
  ExpectUnchanged();
}

TEST_F(HostileCsvTest, BinaryGarbageIsRefused) {
  std::mt19937 rng(42);
  std::string garbage(64 << 10, '\0');
  for (char& c : garbage) c = static_cast<char>(rng());
  Write("garbage.csv", garbage);
  ProcessResult r = Sync(Path("garbage.csv"), db_);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(r.exit_code, 128) << "no crash";
  EXPECT_THAT(r.err,
              ::testing::AnyOf(HasSubstr("header"), HasSubstr("external_id"),
                               HasSubstr("rejected")));
  ExpectUnchanged();
}

TEST_F(HostileCsvTest, EmptyFileIsRefused) {
  Write("empty.csv", "");
  ProcessResult r = Sync(Path("empty.csv"), db_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("empty"));
  ExpectUnchanged();
}

TEST_F(HostileCsvTest, HeaderOnlyDeletesNothing) {
  Write("header.csv", Header());
  ProcessResult r = Sync(Path("header.csv"), db_);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("would remove 100 of 100"));
  ExpectUnchanged();
}

TEST_F(HostileCsvTest, MissingFileAndBadFlagsAreClearErrors) {
  ProcessResult missing = Sync(Path("nope.csv"), db_);
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("cannot open CSV file"));
  ProcessResult bad = Sync(Path("good.csv"), db_, {"--chunk-size", "0"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("chunk-size"));
  ExpectUnchanged();
}

TEST_F(CliSyncTest, EveryCommandHasHelp) {
  for (std::vector<std::string> args :
       {std::vector<std::string>{IDSYNC_BIN, "--help"},
        {IDSYNC_BIN, "sync", "--help"},
        {IDSYNC_BIN, "gen-hr", "--help"}}) {
    ProcessResult r = testing::RunProcess(args).value();
    EXPECT_EQ(r.exit_code, 0);
    EXPECT_THAT(r.out, HasSubstr("Usage"));
  }
}

}  // namespace
}  // namespace idsync
