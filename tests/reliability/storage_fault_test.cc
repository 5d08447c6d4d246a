// Real storage faults under the real `idsync` CLI and dispatcher: a full
// filesystem, another process holding SQLite's write lock, a store file that
// denies writes even to root. Each run fails (or waits) with a reason that
// names the problem, leaves nothing half-applied (integrity_check ok, the
// records equal what the last checkpoint counted or the state before), and a
// later run with the fault removed ends with the store of an uninterrupted
// run.
//
// How the faults are made (all real, none simulated):
// - full: a tmpfs of a few MiB mounted in a private mount namespace of this
//   test process (unshare(CLONE_NEWNS)), so nothing leaks to the host even
//   if the test dies; space comes back by remounting it larger.
// - busy: a sqlite3 connection in the test holding BEGIN IMMEDIATE.
// - read-only: the immutable attribute (chattr +i, honoured for root too),
//   and a read-only bind mount of the store's directory.
// Mounting needs CAP_SYS_ADMIN, chattr CAP_LINUX_IMMUTABLE and a filesystem
// that has the attribute (CI runs the tests as root); without them those
// cases skip and say why.
#include <fcntl.h>
#include <linux/fs.h>
#include <sched.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/dispatcher_fixture.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::testing::AnyOf;
using ::testing::HasSubstr;
using testing::ProcessResult;
using testing::ScopedTestDir;

constexpr int kCount = 20000;

absl::Status ErrnoStatus(absl::string_view what) {
  return absl::FailedPreconditionError(
      absl::StrCat(what, ": ", std::strerror(errno)));
}

// Moves this thread (the one gtest runs tests on, and so every process it
// starts) into a mount namespace of its own whose mounts do not propagate
// back: tmpfs and bind mounts made here vanish with the test process.
absl::Status EnterPrivateMountNamespace() {
  static const absl::Status* status = [] {
    if (unshare(CLONE_NEWNS) != 0) {
      return new absl::Status(ErrnoStatus("unshare(CLONE_NEWNS)"));
    }
    if (mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
      return new absl::Status(ErrnoStatus("making / a private mount"));
    }
    return new absl::Status();
  }();
  return *status;
}

// A tmpfs of a given size mounted on an (empty) directory; unmounted when
// the object goes away.
class Tmpfs {
 public:
  static absl::StatusOr<std::unique_ptr<Tmpfs>> Mount(const std::string& dir,
                                                      int64_t bytes) {
    if (absl::Status s = EnterPrivateMountNamespace(); !s.ok()) return s;
    std::filesystem::create_directories(dir);
    const std::string options = absl::StrCat("size=", bytes, ",mode=0755");
    if (mount("tmpfs", dir.c_str(), "tmpfs", 0, options.c_str()) != 0) {
      return ErrnoStatus(absl::StrCat("mount -t tmpfs ", dir));
    }
    return std::unique_ptr<Tmpfs>(new Tmpfs(dir));
  }
  ~Tmpfs() { umount2(dir_.c_str(), MNT_DETACH); }
  Tmpfs(const Tmpfs&) = delete;
  Tmpfs& operator=(const Tmpfs&) = delete;

  // A new size; at least what is in use.
  absl::Status Resize(int64_t bytes) {
    const std::string options = absl::StrCat("size=", bytes);
    if (mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT, options.c_str()) !=
        0) {
      return ErrnoStatus(absl::StrCat("remount ", dir_));
    }
    return absl::OkStatus();
  }
  int64_t UsedBytes() const {
    struct statvfs s {};
    if (statvfs(dir_.c_str(), &s) != 0) return -1;
    return static_cast<int64_t>(s.f_blocks - s.f_bfree) * s.f_frsize;
  }
  // Shrinks the filesystem to leave `free_bytes` free.
  absl::Status LeaveFree(int64_t free_bytes) {
    return Resize(UsedBytes() + free_bytes);
  }
  std::string File(absl::string_view name) const {
    return absl::StrCat(dir_, "/", name);
  }

 private:
  explicit Tmpfs(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

// `dir` bind-mounted read-only onto itself; unmounted when it goes away.
class ReadOnlyBind {
 public:
  static absl::StatusOr<std::unique_ptr<ReadOnlyBind>> Mount(
      const std::string& dir) {
    if (absl::Status s = EnterPrivateMountNamespace(); !s.ok()) return s;
    if (mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return ErrnoStatus(absl::StrCat("bind mount ", dir));
    }
    std::unique_ptr<ReadOnlyBind> bind(new ReadOnlyBind(dir));
    if (mount(nullptr, dir.c_str(), nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY,
              nullptr) != 0) {
      return ErrnoStatus(absl::StrCat("remount read-only ", dir));
    }
    return bind;
  }
  ~ReadOnlyBind() { umount2(dir_.c_str(), MNT_DETACH); }
  ReadOnlyBind(const ReadOnlyBind&) = delete;
  ReadOnlyBind& operator=(const ReadOnlyBind&) = delete;

 private:
  explicit ReadOnlyBind(std::string dir) : dir_(std::move(dir)) {}
  std::string dir_;
};

// Sets or clears the immutable attribute (chattr +i / -i): no process, root
// included, may then open the file for writing.
absl::Status SetImmutable(const std::string& path, bool on) {
  const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus(absl::StrCat("open ", path));
  int flags = 0;
  absl::Status s;
  if (ioctl(fd, FS_IOC_GETFLAGS, &flags) != 0) {
    s = ErrnoStatus("FS_IOC_GETFLAGS");
  } else {
    flags = on ? (flags | FS_IMMUTABLE_FL) : (flags & ~FS_IMMUTABLE_FL);
    if (ioctl(fd, FS_IOC_SETFLAGS, &flags) != 0) {
      s = ErrnoStatus("FS_IOC_SETFLAGS (chattr)");
    }
  }
  close(fd);
  return s;
}

bool Writable(const std::string& path) {
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd >= 0) close(fd);
  return fd >= 0;
}

// Another process's write transaction: BEGIN IMMEDIATE on its own
// connection, held until Release().
class WriteLockHolder {
 public:
  static absl::StatusOr<std::unique_ptr<WriteLockHolder>> Take(
      const std::string& db_path) {
    std::unique_ptr<WriteLockHolder> h(new WriteLockHolder());
    if (sqlite3_open_v2(db_path.c_str(), &h->db_, SQLITE_OPEN_READWRITE,
                        nullptr) != SQLITE_OK ||
        sqlite3_exec(h->db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) !=
            SQLITE_OK) {
      return absl::InternalError(
          absl::StrCat("taking the write lock: ", sqlite3_errmsg(h->db_)));
    }
    return h;
  }
  ~WriteLockHolder() {
    Release();
    sqlite3_close_v2(db_);
  }
  void Release() {
    if (!sqlite3_get_autocommit(db_)) {
      sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    }
  }

 private:
  WriteLockHolder() = default;
  sqlite3* db_ = nullptr;
};

class StorageFaultTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new ScopedTestDir("storage_fault");
    Gen({"--count", std::to_string(kCount), "--seed", "7", "--out",
         Path("base.csv")});
    Gen({"--count", std::to_string(kCount), "--seed", "7", "--modify-percent",
         "1", "--out", Path("changed.csv")});
    // Uninterrupted runs, for comparison.
    for (const auto& [db, files] :
         std::vector<std::pair<std::string, std::vector<std::string>>>{
             {"clean.db", {"base.csv"}},
             {"clean_changed.db", {"base.csv", "changed.csv"}}}) {
      for (const std::string& file : files) {
        ProcessResult r = Sync(Path(file), Path(db));
        ASSERT_EQ(r.exit_code, 0) << r.err;
      }
    }
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::string Path(absl::string_view name) { return dir_->File(name); }

  static void Gen(std::vector<std::string> args) {
    args.insert(args.begin(), {IDSYNC_BIN, "gen-hr"});
    auto r = testing::RunProcess(args);
    ASSERT_TRUE(r.ok() && r->exit_code == 0)
        << (r.ok() ? r->err : r.status().ToString());
  }

  static std::vector<std::string> SyncArgs(const std::string& file,
                                           const std::string& db) {
    // Groups of 2,000 records: a fault midway finds committed groups.
    return {IDSYNC_BIN, "sync",         "--type", "csv",
            "--file",   file,           "--db",   db,
            "--json",   "--chunk-size", "500",    "--commit-records",
            "2000"};
  }
  static ProcessResult Sync(const std::string& file, const std::string& db) {
    auto r = testing::RunProcess(SyncArgs(file, db));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : ProcessResult{};
  }
  static nlohmann::json Summary(const ProcessResult& r) {
    auto j = nlohmann::json::parse(r.out, nullptr, false);
    EXPECT_TRUE(j.is_object()) << "stdout: " << r.out << "\nstderr: " << r.err;
    return j.is_object() ? j : nlohmann::json::object();
  }
  static testing::StoreSignature Sign(const std::string& db) {
    auto sig = testing::SignStore(db);
    EXPECT_TRUE(sig.ok()) << sig.status();
    return sig.ok() ? *sig : testing::StoreSignature{};
  }
  static int64_t Int(const std::string& db, const std::string& sql) {
    auto v = testing::QueryInt(db, sql);
    EXPECT_TRUE(v.ok()) << sql << ": " << v.status();
    return v.ok() ? *v : -1;
  }

  // A run that failed on a fault exits with a code, never a signal or a
  // hang, and says why on stderr.
  static void ExpectCleanFailure(const ProcessResult& r) {
    EXPECT_THAT(r.exit_code, AnyOf(1, 2))
        << "killed by a signal or wrong exit code; stderr: " << r.err;
    EXPECT_THAT(r.err, HasSubstr("idsync sync: "));
  }

  static ScopedTestDir* dir_;
};

ScopedTestDir* StorageFaultTest::dir_ = nullptr;

TEST_F(StorageFaultTest, FullDiskFailsTheRunClearlyAndARetryCompletesIt) {
  ScopedTestDir tmp("full");
  const std::string mount_dir = tmp.File("fs");
  // The 20k-record store needs about 4.7 MB; 2 MiB runs out midway.
  auto fs = Tmpfs::Mount(mount_dir, 2 << 20);
  if (!fs.ok()) GTEST_SKIP() << "no tmpfs to fill: " << fs.status();
  const std::string db = (*fs)->File("store.db");

  ProcessResult failed = Sync(Path("base.csv"), db);
  ExpectCleanFailure(failed);
  EXPECT_THAT(failed.err, HasSubstr("database or disk is full"));
  // Either the run was recorded as failed, with the reason, or recording it
  // failed too (exit 2) and it stays `running`, to be resumed.
  const int64_t runs = Int(db, "SELECT count(*) FROM sync_runs");
  ASSERT_EQ(runs, 1);
  if (failed.exit_code == 1) {
    nlohmann::json s = Summary(failed);
    EXPECT_EQ(s["status"], "failed");
    EXPECT_THAT(s.value("error", ""), HasSubstr("database or disk is full"));
    EXPECT_EQ(Int(db,
                  "SELECT count(*) FROM sync_runs WHERE status='failed' "
                  "AND error LIKE '%disk is full%'"),
              1);
  }
  // Nothing half-applied: integrity ok, and the store holds exactly the
  // records of the committed groups, as their checkpoint counted them.
  const testing::StoreSignature after_fault = Sign(db);
  const int64_t committed = Int(db, "SELECT created FROM sync_runs");
  EXPECT_GT(committed, 0) << "the disk filled before the first commit";
  EXPECT_LT(committed, kCount) << "the disk never filled";
  EXPECT_EQ(after_fault.at("identities").rows, committed);
  EXPECT_EQ(after_fault.at("identity_keys").rows, committed);
  EXPECT_EQ(Int(db, "SELECT processed FROM sync_runs"), committed);

  // Space back: the next run completes, and the store is a clean run's.
  ASSERT_TRUE((*fs)->Resize(64 << 20).ok());
  ProcessResult retry = Sync(Path("base.csv"), db);
  ASSERT_EQ(retry.exit_code, 0) << retry.err;
  nlohmann::json s = Summary(retry);
  EXPECT_EQ(s["status"], "succeeded");
  EXPECT_EQ(
      s["created"].get<int64_t>() + (s["resumed"] == true ? 0 : committed),
      kCount);
  EXPECT_EQ(Sign(db), Sign(Path("clean.db")));
}

TEST_F(StorageFaultTest, FullDiskOnAResyncChangesNothingAndARetryCompletesIt) {
  // A store with data, then a re-sync on a disk with no room left (it fails
  // opening the store, as SQLite's shared-memory index cannot grow, or at its
  // first write), then with room to open it but not for one commit group: each
  // fails saying the disk is full and leaves the store as it was; the retry
  // ends like an uninterrupted re-sync.
  ScopedTestDir tmp("full_resync");
  auto fs = Tmpfs::Mount(tmp.File("fs"), 64 << 20);
  if (!fs.ok()) GTEST_SKIP() << "no tmpfs to fill: " << fs.status();
  const std::string db = (*fs)->File("store.db");
  ASSERT_EQ(Sync(Path("base.csv"), db).exit_code, 0);
  const testing::StoreSignature before = Sign(db);

  ASSERT_TRUE((*fs)->LeaveFree(0).ok());
  ProcessResult no_room = Sync(Path("changed.csv"), db);
  ExpectCleanFailure(no_room);
  EXPECT_EQ(no_room.exit_code, 2) << "fails before a run starts";
  EXPECT_THAT(no_room.err, AnyOf(HasSubstr("No space left on device"),
                                 HasSubstr("database or disk is full")));

  ASSERT_TRUE((*fs)->Resize(64 << 20).ok());
  EXPECT_EQ(Sign(db), before);
  // Room for SQLite's index (32 KiB) and a few pages, not for 200 updates.
  ASSERT_TRUE((*fs)->LeaveFree(64 << 10).ok());
  ProcessResult failed = Sync(Path("changed.csv"), db);
  ExpectCleanFailure(failed);
  EXPECT_THAT(failed.err, HasSubstr("database or disk is full"));
  ASSERT_TRUE((*fs)->Resize(64 << 20).ok());
  EXPECT_EQ(Sign(db), before);

  ProcessResult retry = Sync(Path("changed.csv"), db);
  ASSERT_EQ(retry.exit_code, 0) << retry.err;
  EXPECT_EQ(Summary(retry)["updated"], kCount / 100);
  EXPECT_EQ(Sign(db), Sign(Path("clean_changed.db")));
}

TEST_F(StorageFaultTest, WriterReleasingTheLockWithinTheTimeoutIsWaitedFor) {
  ScopedTestDir tmp("busy_short");
  const std::string db = tmp.File("store.db");
  ASSERT_EQ(Sync(Path("base.csv"), db).exit_code, 0);
  const testing::StoreSignature before = Sign(db);

  auto lock = WriteLockHolder::Take(db);
  ASSERT_TRUE(lock.ok()) << lock.status();
  const auto start = std::chrono::steady_clock::now();
  auto child = testing::ChildProcess::Start(SyncArgs(Path("changed.csv"), db),
                                            tmp.path().string());
  ASSERT_TRUE(child.ok()) << child.status();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  EXPECT_FALSE(child->Exited()) << "the sync did not wait for the lock";
  EXPECT_EQ(Sign(db), before) << "the sync wrote while another held the lock";
  (*lock)->Release();

  ProcessResult r = child->Wait();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
  nlohmann::json s = Summary(r);
  EXPECT_EQ(s["status"], "succeeded");
  EXPECT_EQ(s["updated"], kCount / 100);
  EXPECT_EQ(Sign(db), Sign(Path("clean_changed.db")));
}

// Slow by nature: the busy timeout is a fixed 10 s (sqlite_util.cc), not an
// option.
TEST_F(StorageFaultTest,
       WriterHoldingTheLockPastTheTimeoutFailsTheSyncAsLocked) {
  ScopedTestDir tmp("busy_long");
  const std::string db = tmp.File("store.db");
  ASSERT_EQ(Sync(Path("base.csv"), db).exit_code, 0);
  const testing::StoreSignature before = Sign(db);
  const int64_t runs = Int(db, "SELECT count(*) FROM sync_runs");

  auto lock = WriteLockHolder::Take(db);
  ASSERT_TRUE(lock.ok()) << lock.status();
  const auto start = std::chrono::steady_clock::now();
  ProcessResult r = Sync(Path("changed.csv"), db);
  const auto waited = std::chrono::steady_clock::now() - start;
  ExpectCleanFailure(r);
  EXPECT_THAT(r.err, HasSubstr("database is locked"));
  EXPECT_GE(waited, std::chrono::seconds(9)) << "gave up before the timeout";
  (*lock)->Release();
  lock->reset();

  EXPECT_EQ(Sign(db), before);
  EXPECT_EQ(Int(db, "SELECT count(*) FROM sync_runs WHERE status='running'"),
            0);
  EXPECT_EQ(Int(db, "SELECT count(*) FROM sync_runs"), runs)
      << "no run may be started while the store is locked";

  ProcessResult retry = Sync(Path("changed.csv"), db);
  ASSERT_EQ(retry.exit_code, 0) << retry.err;
  EXPECT_EQ(Sign(db), Sign(Path("clean_changed.db")));
}

TEST_F(StorageFaultTest, ImmutableStoreFileIsRefusedAtStartNamingTheFile) {
  ScopedTestDir tmp("immutable");
  const std::string db = tmp.File("store.db");
  ASSERT_EQ(Sync(Path("base.csv"), db).exit_code, 0);
  const testing::StoreSignature before = Sign(db);
  if (absl::Status s = SetImmutable(db, true); !s.ok()) {
    GTEST_SKIP() << "cannot make the store immutable on this filesystem: " << s;
  }
  struct Undo {
    std::string path;
    ~Undo() { SetImmutable(path, false).IgnoreError(); }
  } undo{db};
  ASSERT_FALSE(Writable(db)) << "the immutable file is still writable";

  ProcessResult r = Sync(Path("changed.csv"), db);
  EXPECT_EQ(r.exit_code, 2) << r.err;  // Not started.
  EXPECT_THAT(r.err, HasSubstr(db));
  EXPECT_THAT(r.err, HasSubstr("read-only"));
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(Sign(db), before);

  ASSERT_TRUE(SetImmutable(db, false).ok());
  ProcessResult retry = Sync(Path("changed.csv"), db);
  ASSERT_EQ(retry.exit_code, 0) << retry.err;
  EXPECT_EQ(Sign(db), Sign(Path("clean_changed.db")));
}

TEST_F(StorageFaultTest, StoreOnReadOnlyMountIsRefusedAtStartNamingTheFile) {
  ScopedTestDir tmp("ro_mount");
  const std::string dir = tmp.File("store");
  std::filesystem::create_directories(dir);
  const std::string db = dir + "/store.db";
  ASSERT_EQ(Sync(Path("base.csv"), db).exit_code, 0);
  const testing::StoreSignature before = Sign(db);
  {
    auto ro = ReadOnlyBind::Mount(dir);
    if (!ro.ok()) GTEST_SKIP() << "no read-only bind mount: " << ro.status();
    ASSERT_FALSE(Writable(db)) << "the read-only mount is writable";

    ProcessResult r = Sync(Path("changed.csv"), db);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_THAT(r.err, HasSubstr(db));
    EXPECT_THAT(r.err, HasSubstr("read-only"));
    EXPECT_EQ(r.out, "");
    // A store that does not exist yet cannot be created there either.
    ProcessResult fresh = Sync(Path("changed.csv"), dir + "/new.db");
    EXPECT_EQ(fresh.exit_code, 2) << fresh.err;
    EXPECT_THAT(fresh.err, HasSubstr(dir + "/new.db"));
    EXPECT_THAT(fresh.err, HasSubstr("Read-only file system"));
  }
  EXPECT_EQ(Sign(db), before);
  ProcessResult retry = Sync(Path("changed.csv"), db);
  ASSERT_EQ(retry.exit_code, 0) << retry.err;
  EXPECT_EQ(Sign(db), Sign(Path("clean_changed.db")));
}

// A proto int64 in JSON (a string), 0 when left out.
int64_t JsonInt(const nlohmann::json& j, const std::string& key) {
  if (!j.contains(key)) return 0;
  if (j[key].is_string()) return std::stoll(j[key].get<std::string>());
  return j[key].get<int64_t>();
}

// The dispatcher with its store on a filesystem that fills up: API writes
// answer a clear 5xx, a sync fails with the reason, the process stays
// healthy, and both work again once there is space.
class DispatcherStorageFaultTest : public testing::DispatcherTest {
 protected:
  // Moves the store onto a tmpfs and restarts the dispatcher on it.
  void MoveStoreToTmpfs() {
    StopDispatcher(SIGKILL);  // The copy takes the WAL along.
    auto fs = Tmpfs::Mount(tmp_->File("fs"), 64 << 20);
    if (!fs.ok()) GTEST_SKIP() << "no tmpfs to fill: " << fs.status();
    fs_ = *std::move(fs);
    for (const char* suffix : {"", "-wal"}) {
      const std::string from = db_ + suffix;
      if (std::filesystem::exists(from)) {
        std::filesystem::copy_file(from, fs_->File("dispatcher.db") + suffix);
      }
    }
    db_ = fs_->File("dispatcher.db");
    StartDispatcher();
  }
  // Fills the filesystem to the last byte.
  void Fill() {
    std::ofstream filler(fs_->File("filler"), std::ios::binary);
    const std::string block(1 << 16, 'x');
    while (filler.write(block.data(), block.size())) {
    }
  }
  void Unfill() { std::filesystem::remove(fs_->File("filler")); }

  ~DispatcherStorageFaultTest() override {
    // The dispatcher must be gone before its filesystem is unmounted.
    Reap(dispatcher_);
  }

  std::unique_ptr<Tmpfs> fs_;
};

TEST_F(DispatcherStorageFaultTest, FullStoreAnswers5xxAndTheDispatcherStays) {
  MoveStoreToTmpfs();
  if (IsSkipped()) return;
  const std::string csv = ImportPath("hr.csv");
  auto gen = testing::RunProcess({IDSYNC_BIN, "gen-hr", "--count",
                                  std::to_string(kCount), "--seed", "7",
                                  "--out", csv});
  ASSERT_TRUE(gen.ok() && gen->exit_code == 0);
  const int64_t connector = Ok("POST", "/api/v1/connectors",
                               {{"business_id", "hr"},
                                {"type", "csv"},
                                {"config", {{"path", csv}}}})["id"]
                                .get<int64_t>();

  // An API write on a full disk.
  Fill();
  auto write = Call("POST", "/api/v1/identities",
                    {{"external_id", "api-1"}, {"department", "Sales"}});
  ASSERT_TRUE(write.ok()) << write.status();
  EXPECT_EQ(write->status, 503) << write->body;
  EXPECT_THAT(write->body, HasSubstr("disk is full"));
  auto health = Call("GET", "/health");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
  EXPECT_EQ(Ok("GET", "/api/v1/connectors")["items"].size(), 1u)
      << "reads work on a full disk";
  Unfill();
  Ok("POST", "/api/v1/identities",
     {{"external_id", "api-1"}, {"department", "Sales"}});

  // A sync that runs out of space midway.
  ASSERT_TRUE(fs_->LeaveFree(2 << 20).ok());
  auto run_to_end = [&]() {
    const int64_t run =
        Ok("POST", absl::StrCat("/api/v1/connectors/", connector, "/sync"),
           Json::object())["id"]
            .get<int64_t>();
    Json row;
    for (int i = 0; i < 500; ++i) {
      row = Ok("GET", absl::StrCat("/api/v1/sync-runs/", run));
      if (row.value("status", "") != "running") break;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return row;
  };
  Json failed = run_to_end();
  EXPECT_EQ(failed.value("status", ""), "failed") << failed.dump();
  EXPECT_THAT(failed.value("error", ""), HasSubstr("disk is full"))
      << failed.dump();
  health = Call("GET", "/health");
  ASSERT_TRUE(health.ok());
  EXPECT_EQ(health->status, 200);
  auto sig = testing::SignStore(db_);
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_EQ(sig->at("identities").rows, 1 + JsonInt(failed, "created"))
      << "the records are those the run's checkpoint counted";
  // The dispatcher commits groups of up to 50,000 records or 500 ms, so the
  // run may fail in its first group and leave the store as it was.
  EXPECT_LT(JsonInt(failed, "created"), kCount) << "the disk never filled";

  ASSERT_TRUE(fs_->Resize(64 << 20).ok());
  Json done = run_to_end();
  EXPECT_EQ(done.value("status", ""), "succeeded") << done.dump();
  sig = testing::SignStore(db_);
  ASSERT_TRUE(sig.ok()) << sig.status();
  EXPECT_EQ(sig->at("identities").rows, kCount + 1);
  EXPECT_EQ(sig->at("identities").deleted, 0);
}

}  // namespace
}  // namespace idsync
