#include "dispatcher/store/record_writer.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "connector/status_macros.h"

namespace idsync {
namespace {

using idsync::v1::RecordKind;

std::string Placeholders(size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) absl::StrAppend(&out, i == 0 ? "?" : ",?");
  return out;
}

}  // namespace

absl::StatusOr<RecordWriter::KindStatements> RecordWriter::PrepareKind(
    sqlite3* db, const KindSchema& k) {
  KindStatements s;
  std::vector<const char*> keys(k.columns.begin(),
                                k.columns.begin() + k.key_columns);
  std::vector<std::string> key_terms = {"tenant_id=?", "connector_id=?"};
  for (const char* c : keys) key_terms.push_back(absl::StrCat(c, "=?"));
  const std::string where_key = absl::StrJoin(key_terms, " AND ");
  std::vector<std::string> sets;
  for (const char* c : k.columns) sets.push_back(absl::StrCat(c, "=?"));
  auto prepare = [db](Statement* out, const std::string& sql) {
    IDSYNC_ASSIGN_OR_RETURN(*out, Statement::Prepare(db, sql));
    return absl::OkStatus();
  };
  IDSYNC_RETURN_IF_ERROR(
      prepare(&s.lookup, absl::StrCat("SELECT id, content_hash, deleted FROM ",
                                      k.key_table, " WHERE ", where_key)));
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.insert_row,
      absl::StrCat("INSERT INTO ", k.table, "(tenant_id, connector_id, ",
                   absl::StrJoin(k.columns, ", "),
                   ", attributes, created_at, updated_at, last_run_id, id) "
                   "VALUES(",
                   Placeholders(k.columns.size() + 7), ")")));
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.floor,
      absl::StrCat("SELECT floor FROM id_floors WHERE tbl='", k.table, "'")));
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.insert_key,
      absl::StrCat("INSERT INTO ", k.key_table, "(tenant_id, connector_id, ",
                   absl::StrJoin(keys, ", "), ", id, content_hash) VALUES(",
                   Placeholders(keys.size() + 4), ") ON CONFLICT DO NOTHING")));
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.drop_row, absl::StrCat("DELETE FROM ", k.table, " WHERE id=?")));
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.update_row,
      absl::StrCat("UPDATE ", k.table, " SET ", absl::StrJoin(sets, ", "),
                   ", attributes=?, updated_at=?, last_run_id=? WHERE id=?")));
  // Apart, so that updating an active row leaves the (tenant_id,
  // deleted_at, id) list index alone: SQLite rewrites an index entry for
  // every indexed column a SET names, even with the same value.
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.undelete_row,
      absl::StrCat("UPDATE ", k.table,
                   " SET deleted_at=NULL WHERE id=? AND deleted_at IS NOT "
                   "NULL")));
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.update_key,
      absl::StrCat("UPDATE ", k.key_table,
                   " SET content_hash=?, deleted=0 WHERE ", where_key)));
  IDSYNC_RETURN_IF_ERROR(
      prepare(&s.delete_row,
              absl::StrCat("UPDATE ", k.table,
                           " SET deleted_at=?, updated_at=?, last_run_id=? "
                           "WHERE id=? AND deleted_at IS NULL")));
  const std::string key_list =
      absl::StrCat("tenant_id, connector_id, ", absl::StrJoin(keys, ", "));
  IDSYNC_RETURN_IF_ERROR(
      prepare(&s.delete_key,
              absl::StrCat("UPDATE ", k.key_table, " SET deleted=1 WHERE (",
                           key_list, ") = (SELECT ", key_list, " FROM ",
                           k.table, " WHERE id=?)")));
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.max_id, absl::StrCat("SELECT coalesce(max(id), 0) FROM ", k.table)));
  IDSYNC_RETURN_IF_ERROR(
      prepare(&s.any_key,
              absl::StrCat("SELECT 1 FROM ", k.key_table,
                           " WHERE tenant_id=? AND connector_id=? LIMIT 1")));
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.list_active,
      absl::StrCat("SELECT id FROM ", k.key_table,
                   " WHERE tenant_id=? AND connector_id=? AND deleted=0")));
  return s;
}

absl::StatusOr<RecordWriter> RecordWriter::Prepare(sqlite3* db) {
  RecordWriter w;
  w.db_ = db;
  for (const KindSchema& k : AllKinds()) {
    IDSYNC_ASSIGN_OR_RETURN(w.kinds_[k.kind - 1], PrepareKind(db, k));
  }
  return w;
}

void RecordWriter::BindRun(Statement& s, int index, const RecordScope& scope) {
  if (scope.run_id > 0) {
    s.Bind(index, scope.run_id);
  } else {
    s.BindNull(index);
  }
}

int RecordWriter::BindValues(Statement& s, int first, RecordKind kind,
                             const google::protobuf::Message& record) {
  ColumnValues(kind, record, &values_);
  int i = first;
  for (absl::string_view v : values_) s.Bind(i++, v);
  attributes_json_ = AttributesJson(Attributes(kind, record));
  if (attributes_json_.empty()) {
    s.BindNull(i++);
  } else {
    s.Bind(i++, absl::string_view(attributes_json_));
  }
  return i;
}

int RecordWriter::BindKey(Statement& s, int first, const RecordScope& scope,
                          RecordKind kind) {
  int i = first;
  s.Bind(i++, scope.tenant_id);
  s.Bind(i++, scope.connector_id);
  for (int c = 0; c < SchemaFor(kind).key_columns; ++c) s.Bind(i++, values_[c]);
  return i;
}

absl::StatusOr<std::optional<ExistingRecord>> RecordWriter::Lookup(
    const RecordScope& scope, RecordKind kind, RecordKey key) {
  Statement& s = kinds_[kind - 1].lookup;
  s.Bind(1, scope.tenant_id).Bind(2, scope.connector_id).Bind(3, key.first);
  if (SchemaFor(kind).key_columns == 2) s.Bind(4, key.second);
  absl::StatusOr<bool> row = s.Step();
  std::optional<ExistingRecord> found;
  if (row.ok() && *row) {
    found = ExistingRecord{s.Int(0), static_cast<uint64_t>(s.Int(1)),
                           s.Int(2) != 0};
  }
  s.Reset();
  if (!row.ok()) return row.status();
  return found;
}

absl::StatusOr<int64_t> RecordWriter::Insert(
    const RecordScope& scope, RecordKind kind,
    const google::protobuf::Message& record, uint64_t content_hash) {
  IDSYNC_ASSIGN_OR_RETURN(std::optional<int64_t> id,
                          InsertIfNew(scope, kind, record, content_hash));
  if (!id.has_value()) {
    // As SQLite's own constraint errors map (SqliteStatus).
    return absl::FailedPreconditionError(absl::StrCat(
        SchemaFor(kind).singular, " with this key exists already"));
  }
  return *id;
}

// The row goes first for its id; the key's insert then finds a conflict in
// the same B-tree descent a lookup would make. A conflict (rare where this
// is used: new records) costs removing the row again.
absl::StatusOr<std::optional<int64_t>> RecordWriter::InsertIfNew(
    const RecordScope& scope, RecordKind kind,
    const google::protobuf::Message& record, uint64_t content_hash) {
  KindStatements& k = kinds_[kind - 1];
  k.insert_row.Bind(1, scope.tenant_id).Bind(2, scope.connector_id);
  int i = BindValues(k.insert_row, 3, kind, record);
  k.insert_row.Bind(i++, scope.now_us);
  k.insert_row.Bind(i++, scope.now_us);
  BindRun(k.insert_row, i++, scope);
  IDSYNC_ASSIGN_OR_RETURN(const int64_t next, NextId(kind));
  if (next > 0) {
    k.insert_row.Bind(i++, next);
  } else {
    k.insert_row.BindNull(i++);  // SQLite's: the largest id + 1.
  }
  IDSYNC_RETURN_IF_ERROR(k.insert_row.Run());
  const int64_t id = sqlite3_last_insert_rowid(db_);
  i = BindKey(k.insert_key, 1, scope, kind);
  k.insert_key.Bind(i++, id);
  k.insert_key.Bind(i++, static_cast<int64_t>(content_hash));
  IDSYNC_RETURN_IF_ERROR(k.insert_key.Run());
  if (sqlite3_changes(db_) == 1) return id;
  k.drop_row.Bind(1, id);
  IDSYNC_RETURN_IF_ERROR(k.drop_row.Run());
  floors_[kind - 1] = kUnknown;  // The row may have been the one above it.
  return std::nullopt;
}

absl::Status RecordWriter::Update(const RecordScope& scope, RecordKind kind,
                                  int64_t id,
                                  const google::protobuf::Message& record,
                                  uint64_t content_hash) {
  KindStatements& k = kinds_[kind - 1];
  int i = BindValues(k.update_row, 1, kind, record);
  k.update_row.Bind(i++, scope.now_us);
  BindRun(k.update_row, i++, scope);
  k.update_row.Bind(i++, id);
  IDSYNC_RETURN_IF_ERROR(k.update_row.Run());
  k.undelete_row.Bind(1, id);
  IDSYNC_RETURN_IF_ERROR(k.undelete_row.Run());
  k.update_key.Bind(1, static_cast<int64_t>(content_hash));
  BindKey(k.update_key, 2, scope, kind);
  return k.update_key.Run();
}

absl::Status RecordWriter::MarkDeleted(const RecordScope& scope,
                                       RecordKind kind, int64_t id) {
  KindStatements& k = kinds_[kind - 1];
  k.delete_row.Bind(1, scope.now_us).Bind(2, scope.now_us);
  BindRun(k.delete_row, 3, scope);
  k.delete_row.Bind(4, id);
  IDSYNC_RETURN_IF_ERROR(k.delete_row.Run());
  k.delete_key.Bind(1, id);
  return k.delete_key.Run();
}

absl::StatusOr<int64_t> RecordWriter::NextId(RecordKind kind) {
  int64_t& next = floors_[kind - 1];
  if (next == kUnknown) {
    Statement& f = kinds_[kind - 1].floor;
    absl::StatusOr<bool> row = f.Step();
    const int64_t floor = row.ok() && *row ? f.Int(0) : 0;
    f.Reset();
    if (!row.ok()) return row.status();
    IDSYNC_ASSIGN_OR_RETURN(const int64_t max, MaxId(kind));
    // Above the floor once one row is: SQLite's choice from then on.
    next = 0;
    return floor > max ? floor + 1 : 0;
  }
  return 0;
}

absl::Status RecordWriter::RaiseFloor(sqlite3* db, RecordKind kind) {
  const KindSchema& k = SchemaFor(kind);
  const std::string sql =
      absl::StrCat("INSERT INTO id_floors(tbl, floor) SELECT '", k.table,
                   "', coalesce(max(id), 0) FROM ", k.table,
                   " WHERE true ON CONFLICT(tbl) DO UPDATE SET "
                   "floor=max(floor, excluded.floor)");
  return Exec(db, sql.c_str());
}

absl::StatusOr<int64_t> RecordWriter::MaxId(RecordKind kind) {
  Statement& s = kinds_[kind - 1].max_id;
  absl::StatusOr<bool> row = s.Step();
  int64_t n = row.ok() && *row ? s.Int(0) : 0;
  s.Reset();
  if (!row.ok()) return row.status();
  return n;
}

absl::StatusOr<bool> RecordWriter::HasRecords(const RecordScope& scope,
                                              RecordKind kind) {
  Statement& s = kinds_[kind - 1].any_key;
  s.Bind(1, scope.tenant_id).Bind(2, scope.connector_id);
  absl::StatusOr<bool> row = s.Step();
  s.Reset();
  return row;
}

absl::Status RecordWriter::ForEachActive(
    const RecordScope& scope, RecordKind kind,
    const std::function<void(int64_t)>& visit) {
  Statement& s = kinds_[kind - 1].list_active;
  s.Bind(1, scope.tenant_id).Bind(2, scope.connector_id);
  while (true) {
    absl::StatusOr<bool> row = s.Step();
    if (!row.ok()) return row.status();
    if (!*row) break;
    visit(s.Int(0));
  }
  s.Reset();
  return absl::OkStatus();
}

}  // namespace idsync
