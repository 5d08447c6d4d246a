// ReadConnection: a pooled read-only connection with what it caches: its
// prepared statements (API queries repeat), and list totals, valid while
// nothing has committed to the database since (PRAGMA data_version).
// Not thread-safe: a connection is leased to one request at a time.
#ifndef IDSYNC_DISPATCHER_STORE_READ_CONNECTION_H_
#define IDSYNC_DISPATCHER_STORE_READ_CONNECTION_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "dispatcher/store/sqlite_util.h"

namespace idsync {

class ReadConnection {
 public:
  static absl::StatusOr<std::unique_ptr<ReadConnection>> Open(
      const std::string& path);

  sqlite3* db() const { return db_.get(); }
  // The statement for `sql`, prepared once, reset and unbound.
  absl::StatusOr<Statement*> Prepare(const std::string& sql);
  // The total stored under `key`, unless the database changed since.
  absl::StatusOr<std::optional<int64_t>> CachedTotal(const std::string& key);
  void StoreTotal(const std::string& key, int64_t total);

 private:
  explicit ReadConnection(SqliteDb db) : db_(std::move(db)) {}
  absl::Status Refresh();  // Drops totals if the database changed.

  SqliteDb db_;
  absl::flat_hash_map<std::string, std::unique_ptr<Statement>> statements_;
  absl::flat_hash_map<std::string, int64_t> totals_;
  int64_t data_version_ = -1;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_READ_CONNECTION_H_
