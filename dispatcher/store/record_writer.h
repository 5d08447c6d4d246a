// RecordWriter: inserts, updates, deactivates and looks up records of every
// kind on one SQLite connection, keeping each record table and its key table
// in step. Used by sync runs and by API writes alike. Statements are
// prepared once; the caller owns the transaction. Not thread-safe.
#ifndef IDSYNC_DISPATCHER_STORE_RECORD_WRITER_H_
#define IDSYNC_DISPATCHER_STORE_RECORD_WRITER_H_

#include <array>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "dispatcher/store/record_schema.h"
#include "dispatcher/store/sqlite_util.h"
#include "dispatcher/store/store.h"

namespace idsync {

// Who writes: the tenant and connector the records belong to, the run that
// writes them (0 for the API) and the time to stamp.
struct RecordScope {
  int64_t tenant_id = 0;
  int64_t connector_id = 0;
  int64_t run_id = 0;
  int64_t now_us = 0;
};

class RecordWriter {
 public:
  // "*db" must outlive the writer.
  static absl::StatusOr<RecordWriter> Prepare(sqlite3* db);

  absl::StatusOr<std::optional<ExistingRecord>> Lookup(
      const RecordScope& scope, idsync::v1::RecordKind kind, RecordKey key);
  // Inserts the record unless its key exists: then nothing is written and
  // the result is nullopt, at the cost of one lookup (no separate Lookup).
  absl::StatusOr<std::optional<int64_t>> InsertIfNew(
      const RecordScope& scope, idsync::v1::RecordKind kind,
      const google::protobuf::Message& record, uint64_t content_hash);
  // Like InsertIfNew, but an existing key is a FailedPrecondition error.
  absl::StatusOr<int64_t> Insert(const RecordScope& scope,
                                 idsync::v1::RecordKind kind,
                                 const google::protobuf::Message& record,
                                 uint64_t content_hash);
  // Overwrites the row and clears a deletion mark. The record's key must be
  // the stored row's key (keys never change; a new key is a new record).
  absl::Status Update(const RecordScope& scope, idsync::v1::RecordKind kind,
                      int64_t id, const google::protobuf::Message& record,
                      uint64_t content_hash);
  absl::Status MarkDeleted(const RecordScope& scope,
                           idsync::v1::RecordKind kind, int64_t id);
  absl::StatusOr<int64_t> MaxId(idsync::v1::RecordKind kind);
  // Call at the start of each write transaction of the writer's connection:
  // ids deleted since (id_floors) are then never handed out again.
  void StartTransaction() { floors_.fill(kUnknown); }
  // In the caller's transaction: no record of `kind` ever gets an id up to
  // the largest one the table has now (call before deleting rows).
  static absl::Status RaiseFloor(sqlite3* db, idsync::v1::RecordKind kind);
  // Whether the scope's connector has any record of `kind`, deleted or not.
  absl::StatusOr<bool> HasRecords(const RecordScope& scope,
                                  idsync::v1::RecordKind kind);
  absl::Status ForEachActive(const RecordScope& scope,
                             idsync::v1::RecordKind kind,
                             const std::function<void(int64_t)>& visit);

 private:
  struct KindStatements {
    Statement lookup, insert_row, insert_key, drop_row, update_row,
        undelete_row, update_key, delete_row, delete_key, max_id, any_key,
        list_active, floor;
  };
  // floors_[kind - 1]: kUnknown until read in this transaction, then the id
  // the next insert must take (above a floor), or 0 for SQLite's own.
  static constexpr int64_t kUnknown = -1;
  absl::StatusOr<int64_t> NextId(idsync::v1::RecordKind kind);
  static absl::StatusOr<KindStatements> PrepareKind(sqlite3* db,
                                                    const KindSchema& k);
  int BindValues(Statement& s, int first, idsync::v1::RecordKind kind,
                 const google::protobuf::Message& record);
  int BindKey(Statement& s, int first, const RecordScope& scope,
              idsync::v1::RecordKind kind);
  void BindRun(Statement& s, int index, const RecordScope& scope);

  sqlite3* db_ = nullptr;
  std::array<KindStatements, 4> kinds_;
  std::array<int64_t, 4> floors_{kUnknown, kUnknown, kUnknown, kUnknown};
  // Bound views point here until the statement runs.
  std::vector<absl::string_view> values_;
  std::string attributes_json_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_RECORD_WRITER_H_
