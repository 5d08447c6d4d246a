// Crash signature tests (issue 10): the real idsync-dispatcher is killed with
// SIGKILL at chosen points of a sync (IDSYNC_CRASH_AT, see
// dispatcher/crash_point.h) and at random moments, and an agent is killed
// under its runs; whatever died is restarted, the interrupted run resumes,
// and the store must end exactly as after the same syncs uninterrupted:
// same signature (tests/testing/store_signature.h, which also runs PRAGMA
// integrity_check), the same deletions, and every record event in the outbox
// exactly once.
//
// The scenario: a full sync of an HR export (version A), then a full sync of
// version B, in which 1% of the employees changed and 10% are gone, under the
// connector's deletion threshold of 15%, so the deletion pass is real. With
// 60,000 employees, B (54,000) is larger than the engine's commit group of
// 50,000 records, so both syncs commit at least twice in their records phase
// however fast the machine is, and a kill after the first commit of B lands
// where the seen ids must survive the crash.
//
// Sizes come from the environment, for scripts/crash-test (the long mode):
//   IDSYNC_CRASH_RECORDS  employees in version A (default 60000)
//   IDSYNC_CRASH_KILLS    kills in the multi-kill scenarios (default 4)
// Each scenario prints a "crash-test:" line with its kills and whether the
// signature matched.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "cli/hr_generator.h"
#include "dispatcher/sync_engine.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/dispatcher_fixture.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/subprocess.h"

namespace idsync {
namespace {

using ::idsync::testing::ChildProcess;
using ::idsync::testing::ProcessResult;
using Json = nlohmann::json;

int64_t EnvInt(const char* name, int64_t fallback) {
  const char* v = std::getenv(name);
  int64_t n = 0;
  return v != nullptr && absl::SimpleAtoi(v, &n) && n > 0 ? n : fallback;
}

// Employees in version A; version B keeps 90% of them, 1% changed.
int64_t Records() {
  static const int64_t n = EnvInt("IDSYNC_CRASH_RECORDS", 60000);
  return n;
}
int64_t Removed() { return Records() / 10; }
int64_t Modified() { return Records() / 100; }
// A deletion_pass kill point: mid-batch, and past the first batch commit
// when there are more than 50,000 deletions.
std::string MidDeletion() {
  return absl::StrCat("deletion_pass:", Removed() * 3 / 4);
}
int Kills() {
  static const int n = static_cast<int>(EnvInt("IDSYNC_CRASH_KILLS", 4));
  return n;
}

constexpr int kChunkSize = 1000;
constexpr double kDeletionThreshold = 0.15;
// The engine's commit group bound in records, as the dispatcher runs it
// (groups also end after 500 ms): a crash loses at most this much work.
const int64_t kGroupRecords = SyncEngineOptions().max_group_records;
constexpr int kKilled = 128 + SIGKILL;  // ProcessResult::exit_code.

// Follows GET /api/v1/sync-runs/{id}/events (Server-Sent Events), which
// carries the run's live counters after each chunk, ahead of the store inside
// a commit group, until the stream ends (the run ended or the dispatcher
// died). So, after a kill, "live - committed" is the work the crash lost.
class RunWatcher {
 public:
  RunWatcher(int port, const std::string& token, int64_t run_id) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ < 0 ||
        connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ended_ = true;
      return;
    }
    const std::string request = absl::StrCat(
        "GET /api/v1/sync-runs/", run_id,
        "/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ", token,
        "\r\nConnection: close\r\n\r\n");
    if (send(fd_, request.data(), request.size(), MSG_NOSIGNAL) < 0) {
      ended_ = true;
      return;
    }
    thread_ = std::thread([this] { Read(); });
  }
  ~RunWatcher() {
    if (fd_ >= 0) shutdown(fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }
  // Waits (briefly) for the stream to end, e.g. after the dispatcher died.
  void Drain() {
    for (int i = 0; i < 200 && !ended_; ++i)
      absl::SleepFor(absl::Milliseconds(5));
  }
  int64_t max_processed() const { return max_processed_; }

 private:
  void Read() {
    std::string buffer;
    char data[8192];
    while (true) {
      const ssize_t n = recv(fd_, data, sizeof(data), 0);
      if (n <= 0) break;
      buffer.append(data, static_cast<size_t>(n));
      size_t end;
      while ((end = buffer.find('\n')) != std::string::npos) {
        const std::string line = buffer.substr(0, end);
        buffer.erase(0, end + 1);
        if (!absl::StartsWith(line, "data: ")) continue;
        Json run = Json::parse(line.substr(6), nullptr, false);
        if (run.is_object() && run["processed"].is_number()) {
          max_processed_ = std::max<int64_t>(max_processed_,
                                             run["processed"].get<int64_t>());
        }
      }
    }
    ended_ = true;
  }

  int fd_ = -1;
  std::thread thread_;
  std::atomic<int64_t> max_processed_{0};
  std::atomic<bool> ended_{false};
};

// One death of the dispatcher and what the store held right after it.
struct Kill {
  std::string armed;  // IDSYNC_CRASH_AT of the process; "" if the test killed.
  int exit_code = 0;
  bool said_crash_point = false;  // Its stderr names the crash point.
  int64_t run_id = 0;             // The run left running; 0 if none.
  char sync = '?';                // 'A' or 'B': the sync in progress.
  std::string phase;              // Committed phase of that run.
  int64_t committed_processed = 0, committed_deleted = 0;
  int64_t live_processed = -1;  // From the event stream; -1 if unknown.
  int64_t Lost() const {
    return live_processed < 0
               ? 0
               : std::max<int64_t>(0, live_processed - committed_processed);
  }
  std::string ToString() const {
    return absl::StrCat(
        armed.empty() ? "killed by the test" : armed, " -> ",
        run_id == 0
            ? std::string("no run running")
            : absl::StrCat("sync ", std::string(1, sync), " in phase ", phase),
        ", committed ", committed_processed, " processed, ", committed_deleted,
        " deleted; lost ", Lost(), " applied records");
  }
};

// What an uninterrupted scenario leaves, and what every crashed one must.
struct Outcome {
  testing::StoreSignature signature;
  std::vector<Json> runs;  // Sync A, sync B: their final rows.
  int64_t deleted_identities = 0;
  std::map<std::string, int64_t> event_items;  // Event type -> items.
};

class CrashSignatureTest : public testing::DispatcherTest {
 protected:
  static void SetUpTestSuite() {
    files_ =
        new std::filesystem::path(std::filesystem::path(::testing::TempDir()) /
                                  absl::StrCat("crash_signature_", getpid()));
    std::filesystem::remove_all(*files_);
    std::filesystem::create_directories(*files_);
    const absl::Time start = absl::Now();
    HrGeneratorOptions a;
    a.count = Records();
    a.seed = 7;
    auto written = WriteHrCsvFile(a, File('A'));
    ASSERT_TRUE(written.ok()) << written.status();
    HrGeneratorOptions b = a;
    b.modify_percent = 1;
    b.remove_percent = 10;
    written = WriteHrCsvFile(b, File('B'));
    ASSERT_TRUE(written.ok()) << written.status();
    ASSERT_EQ(written->removed, Removed());
    ASSERT_EQ(written->modified, Modified());
    std::cout << "crash-test: generated " << Records() << " + "
              << written->written << " employees in "
              << absl::FormatDuration(absl::Now() - start) << std::endl;
  }
  static void TearDownTestSuite() {
    std::filesystem::remove_all(*files_);
    delete files_;
    files_ = nullptr;
  }
  static std::string File(char version) {
    return (*files_ / absl::StrCat("hr_", std::string(1, version), ".csv"))
        .string();
  }

  void SetUp() override {
    dispatcher_args_ = {"--allow-private-callbacks", "--agent-timeout", "120"};
    DispatcherTest::SetUp();
  }
  void TearDown() override {
    watcher_.reset();
    DispatcherTest::TearDown();
  }

  // --- The dispatcher, armed or not -------------------------------------

  // (Re)starts the dispatcher; with `crash_at`, armed: IDSYNC_CRASH_AT is set
  // for that process only.
  void Start(const std::string& crash_at) {
    if (!crash_at.empty()) setenv("IDSYNC_CRASH_AT", crash_at.c_str(), 1);
    StartDispatcher();
    unsetenv("IDSYNC_CRASH_AT");
    armed_ = crash_at;
  }
  // Between syncs only: no run is running, so the kill loses nothing (and
  // is quicker than SIGTERM, whose gRPC shutdown waits for idle streams).
  void Restart(const std::string& crash_at) {
    if (dispatcher_.has_value()) StopDispatcher(SIGKILL);
    Start(crash_at);
  }
  // A fresh store (new tenant, token and key) and an unarmed dispatcher.
  void ResetStore() {
    watcher_.reset();
    StopDispatcher(SIGKILL);
    for (const char* suffix : {"", "-wal", "-shm", ".key"}) {
      std::filesystem::remove(db_ + suffix);
    }
    auto boot = testing::RunProcess(
        {IDSYNC_DISPATCHER_BIN, "bootstrap", "--tenant", "acme", "--db", db_});
    ASSERT_TRUE(boot.ok() && boot->exit_code == 0);
    token_ = std::string(absl::StripAsciiWhitespace(boot->out));
    Start("");
  }

  // If the dispatcher died: records the kill and restarts it, armed with
  // next_arm_() (unarmed when that is empty or unset). True if it had died.
  bool Recover() {
    if (!dispatcher_.has_value() || !dispatcher_->Exited()) return false;
    if (watcher_ != nullptr) watcher_->Drain();
    ProcessResult r = dispatcher_->Wait();
    dispatcher_.reset();
    Kill k;
    k.armed = armed_;
    k.exit_code = r.exit_code;
    k.said_crash_point =
        absl::StrContains(r.err, absl::StrCat("crash point ", armed_));
    k.run_id = Query(
        "SELECT coalesce(max(id), 0) FROM sync_runs WHERE status='running'");
    k.sync = current_sync_;
    if (k.run_id != 0) {
      const std::string where =
          absl::StrCat(" FROM sync_runs WHERE id=", k.run_id);
      k.phase = Query(absl::StrCat("SELECT phase='deletions'", where)) == 1
                    ? "deletions"
                    : "records";
      k.committed_processed = Query(absl::StrCat("SELECT processed", where));
      k.committed_deleted = Query(absl::StrCat("SELECT deleted", where));
      if (watcher_ != nullptr) k.live_processed = watcher_->max_processed();
    }
    watcher_.reset();
    if (HasFailure() || k.exit_code != kKilled) std::cerr << r.err;
    kills_.push_back(k);
    Start(next_arm_ ? next_arm_() : "");
    // The run the dispatcher resumes at start-up, followed live.
    if (k.run_id != 0) Watch(k.run_id);
    return true;
  }
  // Kills the dispatcher now (a "random" kill) and recovers.
  void KillDispatcher() {
    dispatcher_->Kill(SIGKILL);
    while (!dispatcher_->Exited()) absl::SleepFor(absl::Milliseconds(1));
    Recover();
  }

  void Watch(int64_t run_id) {
    if (!watch_) return;
    watcher_.reset();
    watcher_ = std::make_unique<RunWatcher>(http_port_, token_, run_id);
  }

  int64_t Query(const std::string& sql) {
    absl::StatusOr<int64_t> v = testing::QueryInt(db_, sql);
    EXPECT_TRUE(v.ok()) << sql << ": " << v.status();
    return v.ok() ? *v : -1;
  }

  // --- The scenario -----------------------------------------------------

  // The HR file the connector reads: version A or B, swapped in atomically.
  std::string SourcePath() const { return ImportPath("hr.csv"); }
  void Install(char version) {
    const std::string staged = ImportPath("hr.csv.new");
    std::filesystem::remove(staged);
    std::error_code linked;
    std::filesystem::create_hard_link(File(version), staged, linked);
    if (linked) std::filesystem::copy_file(File(version), staged);
    std::filesystem::rename(staged, SourcePath());
  }

  // A webhook that wants every event, so syncs write their record events to
  // the outbox (its endpoint refuses connections: they stay undelivered),
  // and the connector. Returns the connector's id.
  int64_t CreateConnector(const Json& extra = Json::object()) {
    absl::StatusOr<int> closed = testing::FreeLoopbackPort();
    EXPECT_TRUE(closed.ok());
    Ok("POST", "/api/v1/webhooks",
       {{"url", absl::StrCat("http://127.0.0.1:", *closed, "/events")},
        {"event_types", {"*"}}});
    Json body = {{"business_id", "hr"},
                 {"type", "csv"},
                 {"config", {{"path", SourcePath()}}},
                 {"deletion_threshold", kDeletionThreshold}};
    body.update(extra);
    Json c = Ok("POST", "/api/v1/connectors", body);
    return c["id"].get<int64_t>();
  }

  // Called every ~20 ms while a sync runs, e.g. to kill something.
  using Tick = std::function<void(absl::Duration elapsed)>;

  // A Tick that calls `kill` half of KILLS times in `sync` (while it runs),
  // each a random share (7-35%) of the uninterrupted sync's duration after
  // the previous kill or the start (restarts included), so that most land
  // mid-run even when this sync is faster than the reference was. Draws
  // from `rng`, which must outlive the Tick.
  Tick RandomKills(char sync, std::mt19937& rng, std::function<void()> kill) {
    struct State {
      int left;
      absl::Duration span, since, next;
    };
    std::uniform_real_distribution<double> share(0.07, 0.35);
    const absl::Duration span = reference_durations_[sync - 'A'];
    auto state = std::make_shared<State>(
        State{(Kills() + (sync == 'A' ? 1 : 0)) / 2, span, absl::ZeroDuration(),
              span * share(rng)});
    return [state, &rng, share, kill](absl::Duration elapsed) mutable {
      if (state->left == 0 || elapsed - state->since < state->next) return;
      kill();
      --state->left;
      state->since = elapsed;
      state->next = state->span * share(rng);
    };
  }

  // Runs a full sync of `version` to its end, recovering the dispatcher
  // whenever it dies; returns the run's final row.
  Json Sync(int64_t connector, char version, const Tick& tick = nullptr) {
    Recover();  // A kill at the end of the previous sync belongs to it.
    current_sync_ = version;
    Install(version);
    int64_t run_id = 0;
    for (int attempt = 0; run_id == 0 && attempt < 100; ++attempt) {
      Recover();
      absl::StatusOr<HttpResponse> r =
          Call("POST", absl::StrCat("/api/v1/connectors/", connector, "/sync"),
               {{"chunk_size", kChunkSize}});
      if (r.ok() && r->status == 202) {
        run_id = Json::parse(r->body)["id"].get<int64_t>();
      } else {
        absl::SleepFor(absl::Milliseconds(50));
      }
    }
    EXPECT_NE(run_id, 0) << "the sync did not start";
    if (run_id == 0) return Json();
    Watch(run_id);
    const absl::Time start = absl::Now();
    // Generous for the long mode; a dispatcher that is gone ends it at once.
    const absl::Time deadline = start + absl::Minutes(10);
    Json run;
    while (absl::Now() < deadline) {
      if (Recover()) continue;
      if (!dispatcher_.has_value()) {
        ADD_FAILURE() << "no dispatcher is running (it did not restart)";
        break;
      }
      absl::StatusOr<HttpResponse> r =
          Call("GET", absl::StrCat("/api/v1/sync-runs/", run_id));
      if (r.ok() && r->status == 200) {
        run = Json::parse(r->body, nullptr, false);
        if (run["status"] != "running") break;
      }
      if (tick) tick(absl::Now() - start);
      absl::SleepFor(absl::Milliseconds(20));
    }
    EXPECT_EQ(run["status"], "succeeded") << run.dump();
    // A kill right after the run's end (after_run_finish) may still come.
    absl::SleepFor(absl::Milliseconds(30));
    Recover();
    watcher_.reset();
    return run;
  }

  // What the store holds now, for comparing with the reference.
  Outcome Observe(const std::vector<Json>& runs) {
    Outcome o;
    absl::StatusOr<testing::StoreSignature> sig = testing::SignStore(db_);
    EXPECT_TRUE(sig.ok()) << sig.status();  // Also PRAGMA integrity_check.
    if (sig.ok()) o.signature = *sig;
    o.runs = runs;
    o.deleted_identities =
        Query("SELECT count(*) FROM identities WHERE deleted_at IS NOT NULL");
    // Record events carry up to 500 items each, one event per type per
    // commit: their items, not their number, must match.
    for (const char* type :
         {"identity.created", "identity.updated", "identity.deactivated"}) {
      o.event_items[type] = Query(absl::StrCat(
          "SELECT count(*) FROM outbox o, json_each(o.data, '$.items') WHERE "
          "o.type='",
          type, "'"));
    }
    for (const char* type : {"sync.started", "sync.completed", "sync.failed"}) {
      o.event_items[type] = Query(
          absl::StrCat("SELECT count(*) FROM outbox WHERE type='", type, "'"));
    }
    return o;
  }

  // The uninterrupted scenario, run once per process in a store of its own
  // (this test's store is then reset).
  const Outcome& Reference() {
    if (reference_ == nullptr) {
      const absl::Time start = absl::Now();
      const int64_t connector = CreateConnector();
      std::vector<Json> runs;
      runs.push_back(Sync(connector, 'A'));
      reference_durations_[0] = absl::Now() - start;
      const absl::Time b = absl::Now();
      runs.push_back(Sync(connector, 'B'));
      reference_durations_[1] = absl::Now() - b;
      EXPECT_TRUE(kills_.empty());
      reference_ = new Outcome(Observe(runs));
      std::cout << "crash-test: reference: sync A "
                << absl::FormatDuration(reference_durations_[0]) << ", sync B "
                << absl::FormatDuration(reference_durations_[1]) << "\n"
                << testing::DebugString(reference_->signature) << std::flush;
      ResetStore();
    }
    return *reference_;
  }

  // Compares the store with the reference: the signature, deletions, every
  // record event exactly once, and the runs' final counters.
  void ExpectReference(const Outcome& got, const std::string& scenario) {
    const Outcome& want = Reference();
    const bool match = got.signature == want.signature;
    EXPECT_TRUE(match) << "got:\n"
                       << testing::DebugString(got.signature) << "want:\n"
                       << testing::DebugString(want.signature);
    EXPECT_EQ(got.deleted_identities, want.deleted_identities)
        << "a false or a missed deletion";
    EXPECT_EQ(got.event_items, want.event_items);
    // Deactivation events name each deleted identity once, and only those.
    EXPECT_EQ(Query("SELECT count(DISTINCT json_extract(j.value, "
                    "'$.external_id')) FROM outbox o, json_each(o.data, "
                    "'$.items') j WHERE o.type='identity.deactivated'"),
              want.deleted_identities);
    EXPECT_EQ(Query("SELECT count(*) FROM identities WHERE deleted_at IS NOT "
                    "NULL AND external_id NOT IN (SELECT json_extract(j.value, "
                    "'$.external_id') FROM outbox o, json_each(o.data, "
                    "'$.items') j WHERE o.type='identity.deactivated')"),
              0);
    ASSERT_EQ(got.runs.size(), want.runs.size());
    for (size_t i = 0; i < got.runs.size(); ++i) {
      for (const char* counter :
           {"status", "chunks", "processed", "created", "updated", "unchanged",
            "deleted", "rejected"}) {
        EXPECT_EQ(got.runs[i][counter], want.runs[i][counter])
            << counter << " of sync "
            << "AB"[i] << ": no record counted "
            << "twice or lost";
      }
    }
    EXPECT_EQ(Query("SELECT count(*) FROM sync_runs"), 2) << "no extra runs";
    // A crash loses at most the commit group in flight.
    int64_t lost = 0;
    for (const Kill& k : kills_) {
      EXPECT_EQ(k.exit_code, kKilled) << k.ToString();
      EXPECT_LE(k.Lost(), kGroupRecords) << k.ToString();
      lost = std::max(lost, k.Lost());
    }
    std::vector<std::string> lines;
    for (const Kill& k : kills_) lines.push_back(k.ToString());
    std::cout << "crash-test: " << scenario << ": kills survived "
              << kills_.size() + agent_kills_ << ", most work lost " << lost
              << " records, signature " << (match ? "matched" : "MISMATCHED")
              << "\n  " << absl::StrJoin(lines, "\n  ") << std::endl;
  }

  // Runs the scenario with the dispatcher armed with `crash_at` for `sync`
  // (restarted armed before sync B), expects exactly that one kill, and the
  // reference store.
  void KillAt(char sync, const std::string& crash_at) {
    Reference();
    const int64_t connector = CreateConnector();
    if (sync == 'A') Restart(crash_at);
    std::vector<Json> runs;
    runs.push_back(Sync(connector, 'A'));
    if (sync == 'B') Restart(crash_at);
    runs.push_back(Sync(connector, 'B'));
    ASSERT_EQ(kills_.size(), 1u) << "the crash point was not reached";
    const Kill& k = kills_[0];
    EXPECT_TRUE(k.said_crash_point) << k.ToString();
    EXPECT_EQ(k.sync, sync) << k.ToString();
    const bool finished = absl::StartsWith(crash_at, "after_run_finish");
    EXPECT_EQ(k.run_id != 0, !finished) << k.ToString();
    if (absl::StartsWith(crash_at, "deletion")) {
      EXPECT_EQ(k.phase, "deletions") << k.ToString();
    }
    if (crash_at == "before_commit:1" || crash_at == "after_commit:1") {
      // The first group of a sync larger than one group: records phase.
      EXPECT_EQ(k.phase, "records") << k.ToString();
    }
    EXPECT_EQ(runs[sync - 'A']["resumes"], finished ? 0 : 1);
    ExpectReference(Observe(runs), absl::StrCat("sync ", std::string(1, sync),
                                                " killed at ", crash_at));
  }

  static std::filesystem::path* files_;
  static Outcome* reference_;
  static absl::Duration reference_durations_[2];

  std::string armed_;
  std::function<std::string()> next_arm_;  // Arms each restart.
  bool watch_ = true;
  std::unique_ptr<RunWatcher> watcher_;
  std::vector<Kill> kills_;  // Of the dispatcher.
  int agent_kills_ = 0;
  char current_sync_ = '?';
};

std::filesystem::path* CrashSignatureTest::files_ = nullptr;
Outcome* CrashSignatureTest::reference_ = nullptr;
absl::Duration CrashSignatureTest::reference_durations_[2];

TEST_F(CrashSignatureTest, UninterruptedScenarioGivesTheReference) {
  const Outcome& ref = Reference();
  ASSERT_EQ(ref.runs.size(), 2u);
  EXPECT_EQ(ref.runs[0]["created"], Records());
  EXPECT_EQ(ref.runs[1]["updated"], Modified());
  EXPECT_EQ(ref.runs[1]["deleted"], Removed());
  EXPECT_EQ(ref.runs[1]["unchanged"], Records() - Removed() - Modified());
  EXPECT_EQ(ref.deleted_identities, Removed());
  EXPECT_EQ(ref.event_items.at("identity.created"), Records());
  EXPECT_EQ(ref.event_items.at("identity.updated"), Modified());
  EXPECT_EQ(ref.event_items.at("identity.deactivated"), Removed());
  EXPECT_EQ(ref.event_items.at("sync.completed"), 2);
  EXPECT_EQ(ref.event_items.at("sync.failed"), 0);
}

// One kill point per test, each on a fresh store.

TEST_F(CrashSignatureTest, KilledBeforeTheFirstCommitOfTheInitialLoad) {
  KillAt('A', "before_commit:1");
}

TEST_F(CrashSignatureTest, KilledRightAfterACommitOfTheInitialLoad) {
  KillAt('A', "after_commit:1");
}

TEST_F(CrashSignatureTest, KilledRightAfterTheInitialLoadFinished) {
  KillAt('A', "after_run_finish:1");
}

TEST_F(CrashSignatureTest, KilledBeforeTheFirstCommitOfTheChangedSync) {
  KillAt('B', "before_commit:1");
}

// Resumes with seen ids from before the crash: the deletion pass must not
// delete what the first session saw.
TEST_F(CrashSignatureTest, KilledRightAfterACommitOfTheChangedSync) {
  KillAt('B', "after_commit:1");
}

TEST_F(CrashSignatureTest, KilledMidBatchInTheDeletionPass) {
  KillAt('B', MidDeletion());
}

TEST_F(CrashSignatureTest, KilledRightAfterADeletionBatchCommitted) {
  KillAt('B', "deletion_commit:1");
}

// A chain of kill points in one scenario: each restarted dispatcher is armed
// with the next one, so the same runs are killed and resumed again and
// again, in the records phase, mid-deletion and after the end.
TEST_F(CrashSignatureTest, ChainOfKillPointsEndsWithTheReferenceStore) {
  Reference();
  std::vector<std::string> chain;
  for (int i = 0; i + 3 < Kills(); ++i) {
    // Each pair commits one group more: a kill before the first commit of
    // a resumed session makes no progress at all.
    chain.push_back(i % 2 == 0 ? "after_commit:1" : "before_commit:1");
  }
  for (const std::string& last :
       {MidDeletion(), std::string("deletion_commit:1"),
        std::string("after_run_finish:1")}) {
    if (static_cast<int>(chain.size()) < Kills()) chain.push_back(last);
  }
  size_t next = 0;
  next_arm_ = [&] { return next < chain.size() ? chain[next++] : ""; };
  const int64_t connector = CreateConnector();
  Restart(next_arm_());
  std::vector<Json> runs;
  runs.push_back(Sync(connector, 'A'));
  runs.push_back(Sync(connector, 'B'));
  for (const Kill& k : kills_) EXPECT_TRUE(k.said_crash_point) << k.ToString();
  // In the default sizes every point is reached; the long mode may end the
  // scenario before the last ones.
  EXPECT_GE(kills_.size(), std::min<size_t>(chain.size(), 4))
      << "too few crash points were reached";
  ExpectReference(Observe(runs),
                  absl::StrCat("chain of ", chain.size(), " kill points (",
                               absl::StrJoin(chain, ", "), ")"));
}

// The dispatcher killed by the test after random delays (fixed seed), a few
// times in each sync.
TEST_F(CrashSignatureTest, KilledAtRandomMomentsEndsWithTheReferenceStore) {
  Reference();
  std::mt19937 rng(20240611);
  const int64_t connector = CreateConnector();
  std::vector<Json> runs;
  for (char sync : {'A', 'B'}) {
    runs.push_back(Sync(connector, sync,
                        RandomKills(sync, rng, [&] { KillDispatcher(); })));
  }
  int mid_run = 0;
  for (const Kill& k : kills_) mid_run += k.run_id != 0 ? 1 : 0;
  EXPECT_GE(mid_run, std::min(Kills(), 2)) << "the kills came too late";
  ExpectReference(Observe(runs), "random kills");
}

// Agent mode: the connector runs on a real idsync-agent, which streams the
// chunks over the spine. (agent_e2e_test.cc covers one kill of the agent and
// of the dispatcher during one initial load; these add many kills over the
// whole scenario, the deletion pass, and the signature of the hosted
// reference.)
class AgentCrashSignatureTest : public CrashSignatureTest {
 protected:
  void TearDown() override {
    Reap(agent_);
    CrashSignatureTest::TearDown();
  }

  // A registered, running agent and an agent-mode connector bound to it
  // (its local config names the CSV file). Returns the connector's id.
  int64_t SetUpAgent() {
    const std::string token_file = tmp_->File("agent.token");
    const std::string registration =
        Ok("POST", "/api/v1/agents/registration-tokens",
           {{"name", "onprem-1"}})["token"]
            .get<std::string>();
    auto r = testing::RunProcess({IDSYNC_AGENT_BIN, "register", "--dispatcher",
                                  Spine(), "--registration-token", registration,
                                  "--name", "onprem-1", "--token-file",
                                  token_file, "--insecure"});
    EXPECT_TRUE(r.ok() && r->exit_code == 0)
        << (r.ok() ? r->out + r->err : r.status().ToString());
    std::ofstream(tmp_->File("agent-config.json")) << Json{
        {"connectors",
         {{"hr",
           {{"type", "csv"},
            {"config", {{"path", SourcePath()}}}}}}}}.dump();
    StartAgent();
    WaitOnline("onprem-1");
    return CreateConnector(
        {{"mode", "agent"}, {"agent", "onprem-1"}, {"config", Json::object()}});
  }
  void StartAgent() {
    auto child = ChildProcess::Start(
        {IDSYNC_AGENT_BIN, "run", "--dispatcher", Spine(), "--token-file",
         tmp_->File("agent.token"), "--state-dir", dir_, "--config",
         tmp_->File("agent-config.json"), "--insecure"},
        dir_);
    ASSERT_TRUE(child.ok()) << child.status();
    agent_ = *std::move(child);
  }
  // Waits until the agent named `name` is online (or 15 s pass).
  bool WaitOnline(const std::string& name) {
    Json agents;
    for (int i = 0; i < 300; ++i) {
      agents = Ok("GET", "/api/v1/agents");
      for (const Json& a : agents["items"]) {
        if (a["name"] == name && a["online"] == true) return true;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    ADD_FAILURE() << "agent " << name << " not online: " << agents.dump();
    return false;
  }
  // Kills the agent; true if it was streaming a run then (its log shows a
  // run started and not done).
  bool KillAgent() {
    agent_->Kill(SIGKILL);
    ProcessResult r = agent_->Wait();
    agent_.reset();
    EXPECT_EQ(r.exit_code, kKilled) << r.err;
    ++agent_kills_;
    const std::string log = r.out + r.err;
    auto count = [&](const std::string& what) {
      int n = 0;
      for (size_t at = log.find(what); at != std::string::npos;
           at = log.find(what, at + 1)) {
        ++n;
      }
      return n;
    };
    return count("starting csv connector") > count("): done");
  }

  std::optional<ChildProcess> agent_;
};

TEST_F(AgentCrashSignatureTest, AgentKilledAtRandomMomentsEndsLikeHosted) {
  Reference();
  const int64_t connector = SetUpAgent();
  std::mt19937 rng(7);
  std::vector<Json> runs;
  int mid_run = 0;
  for (char sync : {'A', 'B'}) {
    runs.push_back(Sync(connector, sync, RandomKills(sync, rng, [&] {
                          mid_run += KillAgent() ? 1 : 0;
                          StartAgent();
                        })));
  }
  EXPECT_GE(mid_run, 1) << "no kill cut the agent mid-stream";
  std::cout << "crash-test: agent killed " << agent_kills_ << " times, "
            << mid_run << " of them while it streamed a run" << std::endl;
  ExpectReference(Observe(runs), "agent killed at random moments");
}

// The dispatcher killed at crash points under agent runs: the spine stream
// is cut, the agent reconnects to the restarted dispatcher, and the run
// resumes from its checkpoint.
TEST_F(AgentCrashSignatureTest, DispatcherKilledUnderAgentRunsEndsLikeHosted) {
  Reference();
  // Armed before the agent connects, and re-armed by the restart after the
  // first kill, so the agent's stream is cut only by the two kills.
  std::vector<std::string> chain = {"after_commit:1", MidDeletion()};
  size_t next = 0;
  next_arm_ = [&] { return next < chain.size() ? chain[next++] : ""; };
  Restart(next_arm_());
  const int64_t connector = SetUpAgent();
  std::vector<Json> runs;
  runs.push_back(Sync(connector, 'A'));
  runs.push_back(Sync(connector, 'B'));
  ASSERT_EQ(kills_.size(), 2u) << "a crash point was not reached";
  EXPECT_EQ(kills_[0].sync, 'A');
  EXPECT_EQ(kills_[0].phase, "records");
  EXPECT_EQ(kills_[1].sync, 'B');
  EXPECT_EQ(kills_[1].phase, "deletions");
  for (const Kill& k : kills_) EXPECT_TRUE(k.said_crash_point) << k.ToString();
  ExpectReference(Observe(runs), "dispatcher killed under agent runs");
}

}  // namespace
}  // namespace idsync
