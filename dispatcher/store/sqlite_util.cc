#include "dispatcher/store/sqlite_util.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"

namespace idsync {

absl::Status SqliteStatus(sqlite3* db, int rc, absl::string_view what) {
  if (rc == SQLITE_OK || rc == SQLITE_DONE || rc == SQLITE_ROW) {
    return absl::OkStatus();
  }
  std::string message =
      absl::StrCat("store: ", what, ": ",
                   db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
  // "disk I/O error" does not say why; the system's error does (e.g. no
  // space left for SQLite's shared-memory index).
  const int primary = rc & 0xff;
  const int system_errno = db != nullptr ? sqlite3_system_errno(db) : 0;
  if (primary == SQLITE_IOERR && system_errno != 0) {
    absl::StrAppend(&message, " (", std::strerror(system_errno), ")");
    if (system_errno == ENOSPC) return absl::UnavailableError(message);
  }
  switch (primary) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    // A full disk is the server's state, not the caller's quota: unavailable
    // (HTTP 503) until space is freed, not resource-exhausted (HTTP 429, a
    // rate limit, which tells the client its request rate is the problem).
    case SQLITE_FULL:
      return absl::UnavailableError(message);
    case SQLITE_NOMEM:
      return absl::ResourceExhaustedError(message);
    case SQLITE_READONLY:
    case SQLITE_CONSTRAINT:
      return absl::FailedPreconditionError(message);
    case SQLITE_CANTOPEN:
    case SQLITE_NOTADB:
    case SQLITE_CORRUPT:
      return absl::FailedPreconditionError(message);
    default:
      return absl::InternalError(message);
  }
}

namespace {

// The store holds every tenant's records and sealed secrets: owner only.
// A new store is created 0600 (SQLite gives its -wal and -shm files the
// database file's mode); an existing one, and its -wal/-shm, lose any group
// and other permissions.
void RestrictStoreFiles(const std::string& path) {
  const int fd =
      open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd >= 0) {
    close(fd);
    return;
  }
  for (const std::string& file : {path, path + "-wal", path + "-shm"}) {
    struct stat st;
    if (stat(file.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      chmod(file.c_str(), st.st_mode & 0700);
    }
  }
}

}  // namespace

absl::StatusOr<SqliteDb> OpenSqlite(const std::string& path, bool read_only) {
  if (!read_only && path != ":memory:") RestrictStoreFiles(path);
  sqlite3* raw = nullptr;
  int flags = read_only ? SQLITE_OPEN_READONLY
                        : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
  int rc =
      sqlite3_open_v2(path.c_str(), &raw, flags | SQLITE_OPEN_NOMUTEX, nullptr);
  SqliteDb db(raw);
  if (rc != SQLITE_OK) {
    // A store that does not exist yet: the reason is the directory's (a
    // read-only file system, no such directory), which SQLite does not say.
    std::string dir = std::filesystem::path(path).parent_path().string();
    if (dir.empty()) dir = ".";
    if (!read_only && access(path.c_str(), F_OK) != 0 &&
        access(dir.c_str(), W_OK) != 0) {
      return absl::FailedPreconditionError(
          absl::StrCat("store: cannot create '", path, "': directory '", dir,
                       "': ", std::strerror(errno)));
    }
    return SqliteStatus(db.get(), rc, absl::StrCat("cannot open '", path, "'"));
  }
  sqlite3_extended_result_codes(db.get(), 1);
  // SQLite falls back to read-only when it cannot open the file for writing
  // (permissions, an immutable file, a read-only mount); say so now, with
  // the path, rather than fail at the first write.
  if (!read_only && sqlite3_db_readonly(db.get(), "main") == 1) {
    return absl::FailedPreconditionError(absl::StrCat(
        "store: '", path,
        "' is read-only: writes to it are denied (file permissions, an "
        "immutable file or a read-only file system)"));
  }
  sqlite3_busy_timeout(db.get(), 10000);
  // synchronous=NORMAL in WAL mode: a commit survives a process crash; only
  // an OS crash can lose the last commits, never corrupt the file.
  absl::Status s = Exec(db.get(),
                        "PRAGMA foreign_keys=ON;"
                        "PRAGMA synchronous=NORMAL;"
                        "PRAGMA cache_size=-32768;"
                        "PRAGMA temp_store=MEMORY;");
  // 16 KiB pages for a new store (an existing one keeps its size): b-trees
  // one level shallower and a quarter of the WAL frames. A 1M-record full
  // sync took 6.2 s instead of 7.9 s; 32 KiB and up slowed updates of
  // scattered rows, each of which rewrites a whole page (docs/benchmarks.md).
  if (s.ok() && !read_only) {
    s = Exec(db.get(), "PRAGMA page_size=16384; PRAGMA journal_mode=WAL;");
  }
  if (!s.ok()) {
    return SqliteStatus(db.get(), sqlite3_errcode(db.get()),
                        absl::StrCat("cannot open '", path, "'"));
  }
  return db;
}

absl::Status Exec(sqlite3* db, const char* sql) {
  char* err = nullptr;
  int rc = sqlite3_exec(db, sql, nullptr, nullptr, &err);
  sqlite3_free(err);  // sqlite3_errmsg still holds the message.
  return SqliteStatus(db, rc, "exec");
}

absl::StatusOr<Statement> Statement::Prepare(sqlite3* db,
                                             absl::string_view sql) {
  sqlite3_stmt* raw = nullptr;
  int rc = sqlite3_prepare_v3(db, sql.data(), static_cast<int>(sql.size()),
                              SQLITE_PREPARE_PERSISTENT, &raw, nullptr);
  if (rc != SQLITE_OK) {
    sqlite3_finalize(raw);
    return SqliteStatus(db, rc, "prepare");
  }
  Statement s;
  s.db_ = db;
  s.stmt_.reset(raw);
  return s;
}

Statement& Statement::Bind(int index, int64_t value) {
  sqlite3_bind_int64(stmt_.get(), index, value);
  return *this;
}
Statement& Statement::Bind(int index, double value) {
  sqlite3_bind_double(stmt_.get(), index, value);
  return *this;
}
Statement& Statement::Bind(int index, absl::string_view text) {
  sqlite3_bind_text(stmt_.get(), index, text.data(),
                    static_cast<int>(text.size()), SQLITE_STATIC);
  return *this;
}
Statement& Statement::BindBlob(int index, absl::string_view bytes) {
  sqlite3_bind_blob(stmt_.get(), index, bytes.data(),
                    static_cast<int>(bytes.size()), SQLITE_STATIC);
  return *this;
}
Statement& Statement::BindNull(int index) {
  sqlite3_bind_null(stmt_.get(), index);
  return *this;
}

absl::StatusOr<bool> Statement::Step() {
  int rc = sqlite3_step(stmt_.get());
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  absl::Status s = SqliteStatus(db_, rc, "step");
  sqlite3_reset(stmt_.get());
  return s;
}

absl::Status Statement::Run() {
  int rc = sqlite3_step(stmt_.get());
  absl::Status s = rc == SQLITE_DONE || rc == SQLITE_ROW
                       ? absl::OkStatus()
                       : SqliteStatus(db_, rc, "step");
  Reset();
  return s;
}

void Statement::Reset() {
  sqlite3_reset(stmt_.get());
  sqlite3_clear_bindings(stmt_.get());
}

int64_t Statement::Int(int column) const {
  return sqlite3_column_int64(stmt_.get(), column);
}
double Statement::Double(int column) const {
  return sqlite3_column_double(stmt_.get(), column);
}
std::string Statement::Text(int column) const {
  const unsigned char* text = sqlite3_column_text(stmt_.get(), column);
  if (text == nullptr) return "";
  return std::string(reinterpret_cast<const char*>(text),
                     sqlite3_column_bytes(stmt_.get(), column));
}
std::string Statement::Blob(int column) const {
  const void* data = sqlite3_column_blob(stmt_.get(), column);
  if (data == nullptr) return "";
  return std::string(static_cast<const char*>(data),
                     sqlite3_column_bytes(stmt_.get(), column));
}
bool Statement::IsNull(int column) const {
  return sqlite3_column_type(stmt_.get(), column) == SQLITE_NULL;
}

}  // namespace idsync
