// Thin RAII helpers over the SQLite C API and the one place that turns
// SQLite result codes into absl::Status codes:
//   BUSY/LOCKED/FULL -> kUnavailable (retry later),
//   NOMEM -> kResourceExhausted, READONLY/CONSTRAINT/CANTOPEN ->
//   kFailedPrecondition, others -> kInternal.
// Not thread-safe: a connection and its statements belong to one thread at
// a time.
#ifndef IDSYNC_DISPATCHER_STORE_SQLITE_UTIL_H_
#define IDSYNC_DISPATCHER_STORE_SQLITE_UTIL_H_

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace idsync {

struct SqliteCloser {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
using SqliteDb = std::unique_ptr<sqlite3, SqliteCloser>;

absl::Status SqliteStatus(sqlite3* db, int rc, absl::string_view what);

// Opens (creating if needed) `path` with the pragmas every connection uses:
// WAL, synchronous=NORMAL, foreign keys, busy timeout, a large page cache.
absl::StatusOr<SqliteDb> OpenSqlite(const std::string& path, bool read_only);

// Runs one or more statements that return no rows.
absl::Status Exec(sqlite3* db, const char* sql);

// A prepared statement. Text is bound without copying: bound strings must
// stay alive until the statement is stepped and reset.
class Statement {
 public:
  static absl::StatusOr<Statement> Prepare(sqlite3* db, absl::string_view sql);
  Statement() = default;

  Statement& Bind(int index, int64_t value);
  Statement& Bind(int index, double value);
  Statement& Bind(int index, absl::string_view text);
  Statement& BindBlob(int index, absl::string_view bytes);
  Statement& BindNull(int index);

  // Steps once: true when a row is available, false when done.
  absl::StatusOr<bool> Step();
  // Steps to completion and resets; for statements that return no rows.
  absl::Status Run();
  void Reset();

  int64_t Int(int column) const;
  double Double(int column) const;
  std::string Text(int column) const;
  std::string Blob(int column) const;
  bool IsNull(int column) const;

 private:
  struct Finalizer {
    void operator()(sqlite3_stmt* stmt) const { sqlite3_finalize(stmt); }
  };
  sqlite3* db_ = nullptr;
  std::unique_ptr<sqlite3_stmt, Finalizer> stmt_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_SQLITE_UTIL_H_
