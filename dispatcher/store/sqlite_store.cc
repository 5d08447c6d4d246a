#include "dispatcher/store/sqlite_store.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "connector/status_macros.h"
#include "dispatcher/store/migrations.h"
#include "dispatcher/store/record_schema.h"

namespace idsync {
namespace {

using idsync::v1::RecordKind;

int64_t Micros(absl::Time t) { return absl::ToUnixMicros(t); }
absl::Time FromMicros(int64_t us) { return absl::FromUnixMicros(us); }

RunStatus ParseStatus(absl::string_view s) {
  if (s == "succeeded") return RunStatus::kSucceeded;
  if (s == "failed") return RunStatus::kFailed;
  if (s == "cancelled") return RunStatus::kCancelled;
  return RunStatus::kRunning;
}

absl::string_view PhaseName(RunPhase phase) {
  switch (phase) {
    case RunPhase::kDeletions:
      return "deletions";
    case RunPhase::kDone:
      return "done";
    default:
      return "records";
  }
}

RunPhase ParsePhase(absl::string_view s) {
  if (s == "deletions") return RunPhase::kDeletions;
  if (s == "done") return RunPhase::kDone;
  return RunPhase::kRecords;
}

constexpr char kRunColumns[] =
    "id, tenant_id, connector_id, status, phase, incremental, chunk_size, "
    "max_records, deletion_threshold, callback_url, owner, chunks, "
    "resume_token, processed, created, updated, unchanged, deleted, rejected, "
    "source_done, source_total, resumes, cut, deletion_note, error, "
    "next_sync_token, started_at, updated_at, finished_at";

RunRow ReadRun(const Statement& s) {
  RunRow r;
  int c = 0;
  r.id = s.Int(c++);
  r.tenant_id = s.Int(c++);
  r.connector_id = s.Int(c++);
  r.status = ParseStatus(s.Text(c++));
  r.phase = ParsePhase(s.Text(c++));
  r.incremental = s.Int(c++) != 0;
  r.chunk_size = static_cast<int32_t>(s.Int(c++));
  if (!s.IsNull(c)) r.max_records = s.Int(c);
  ++c;
  r.deletion_threshold = s.Double(c++);
  r.callback_url = s.Text(c++);
  r.owner = s.Text(c++);
  r.chunks = s.Int(c++);
  r.resume_token = s.Text(c++);
  for (int64_t* counter :
       {&r.processed, &r.created, &r.updated, &r.unchanged, &r.deleted,
        &r.rejected, &r.source_done, &r.source_total, &r.resumes}) {
    *counter = s.Int(c++);
  }
  r.cut = s.Int(c++) != 0;
  r.deletion_note = s.Text(c++);
  r.error = s.Text(c++);
  r.next_sync_token = s.Text(c++);
  r.started_at = FromMicros(s.Int(c++));
  r.updated_at = FromMicros(s.Int(c++));
  if (!s.IsNull(c)) r.finished_at = FromMicros(s.Int(c));
  return r;
}

constexpr char kUpdateRunSql[] =
    "UPDATE sync_runs SET status=?, phase=?, owner=?, chunks=?, "
    "resume_token=?, processed=?, created=?, updated=?, unchanged=?, "
    "deleted=?, rejected=?, source_done=?, source_total=?, resumes=?, cut=?, "
    "deletion_note=?, error=?, next_sync_token=?, updated_at=?, finished_at=? "
    "WHERE id=? AND tenant_id=?";

// Binds kUpdateRunSql. `run` must outlive the statement's next Run().
void BindRunUpdate(Statement& s, const RunRow& run) {
  int i = 1;
  s.Bind(i++, RunStatusName(run.status));
  s.Bind(i++, PhaseName(run.phase));
  s.Bind(i++, absl::string_view(run.owner));
  s.Bind(i++, run.chunks);
  s.Bind(i++, absl::string_view(run.resume_token));
  for (int64_t counter :
       {run.processed, run.created, run.updated, run.unchanged, run.deleted,
        run.rejected, run.source_done, run.source_total, run.resumes}) {
    s.Bind(i++, counter);
  }
  s.Bind(i++, static_cast<int64_t>(run.cut));
  s.Bind(i++, absl::string_view(run.deletion_note));
  s.Bind(i++, absl::string_view(run.error));
  s.Bind(i++, absl::string_view(run.next_sync_token));
  s.Bind(i++, Micros(run.updated_at));
  if (run.finished_at.has_value()) {
    s.Bind(i++, Micros(*run.finished_at));
  } else {
    s.BindNull(i++);
  }
  s.Bind(i++, run.id);
  s.Bind(i++, run.tenant_id);
}

// Statements for one record kind, prepared once per run. Rows live in the
// record table; the key table maps the key to (id, content_hash, deleted).
struct KindStatements {
  Statement lookup, insert_row, insert_key, update_row, update_key, delete_row,
      delete_key, max_id, list_active;
};

std::string Placeholders(size_t n) {
  std::string out;
  for (size_t i = 0; i < n; ++i) absl::StrAppend(&out, i == 0 ? "?" : ",?");
  return out;
}

absl::StatusOr<KindStatements> PrepareKind(sqlite3* db, const KindSchema& k) {
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
                   ", attributes, created_at, updated_at, last_run_id) VALUES(",
                   Placeholders(k.columns.size() + 6), ")")));
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.insert_key,
      absl::StrCat("INSERT INTO ", k.key_table, "(tenant_id, connector_id, ",
                   absl::StrJoin(keys, ", "), ", id, content_hash) VALUES(",
                   Placeholders(keys.size() + 4), ")")));
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.update_row,
      absl::StrCat("UPDATE ", k.table, " SET ", absl::StrJoin(sets, ", "),
                   ", attributes=?, updated_at=?, last_run_id=?, "
                   "deleted_at=NULL WHERE id=?")));
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
  IDSYNC_RETURN_IF_ERROR(prepare(
      &s.list_active,
      absl::StrCat("SELECT id FROM ", k.key_table,
                   " WHERE tenant_id=? AND connector_id=? AND deleted=0")));
  return s;
}

class SqliteRunWriter final : public RunWriter {
 public:
  static absl::StatusOr<std::unique_ptr<SqliteRunWriter>> Open(
      const std::string& path, const RunRow& run) {
    IDSYNC_ASSIGN_OR_RETURN(SqliteDb db, OpenSqlite(path, /*read_only=*/false));
    std::unique_ptr<SqliteRunWriter> w(new SqliteRunWriter(run, std::move(db)));
    sqlite3* raw = w->db_.get();
    for (const KindSchema& k : AllKinds()) {
      IDSYNC_ASSIGN_OR_RETURN(w->kinds_[k.kind - 1], PrepareKind(raw, k));
    }
    IDSYNC_ASSIGN_OR_RETURN(w->update_run_,
                            Statement::Prepare(raw, kUpdateRunSql));
    IDSYNC_ASSIGN_OR_RETURN(
        w->insert_reject_,
        Statement::Prepare(
            raw,
            "INSERT INTO sync_rejects(tenant_id, run_id, kind, "
            "external_id, location, reason) VALUES(?,?,?,?,?,?)"));
    IDSYNC_ASSIGN_OR_RETURN(
        w->insert_seen_,
        Statement::Prepare(
            raw,
            "INSERT INTO run_seen(run_id, seq, kind, ids) VALUES(?,?,?,?)"));
    IDSYNC_ASSIGN_OR_RETURN(
        Statement max_seq,
        Statement::Prepare(raw,
                           "SELECT coalesce(max(seq), 0) FROM run_seen WHERE "
                           "run_id=?"));
    max_seq.Bind(1, run.id);
    IDSYNC_ASSIGN_OR_RETURN(bool row, max_seq.Step());
    w->seen_seq_ = row ? max_seq.Int(0) : 0;
    return w;
  }

  absl::Status Begin(absl::Time now) override {
    now_us_ = Micros(now);
    return Exec(db_.get(), "BEGIN IMMEDIATE");
  }

  absl::StatusOr<std::optional<ExistingRecord>> Lookup(RecordKind kind,
                                                       RecordKey key) override {
    Statement& s = kinds_[kind - 1].lookup;
    s.Bind(1, tenant_id_).Bind(2, connector_id_).Bind(3, key.first);
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

  absl::StatusOr<int64_t> Insert(RecordKind kind,
                                 const google::protobuf::Message& record,
                                 uint64_t content_hash) override {
    KindStatements& k = kinds_[kind - 1];
    k.insert_row.Bind(1, tenant_id_).Bind(2, connector_id_);
    int i = BindValues(k.insert_row, 3, kind, record);
    k.insert_row.Bind(i++, now_us_);
    k.insert_row.Bind(i++, now_us_);
    k.insert_row.Bind(i++, run_id_);
    IDSYNC_RETURN_IF_ERROR(k.insert_row.Run());
    const int64_t id = sqlite3_last_insert_rowid(db_.get());
    i = BindKey(k.insert_key, 1, kind);
    k.insert_key.Bind(i++, id);
    k.insert_key.Bind(i++, static_cast<int64_t>(content_hash));
    IDSYNC_RETURN_IF_ERROR(k.insert_key.Run());
    return id;
  }

  absl::Status Update(RecordKind kind, int64_t id,
                      const google::protobuf::Message& record,
                      uint64_t content_hash) override {
    KindStatements& k = kinds_[kind - 1];
    int i = BindValues(k.update_row, 1, kind, record);
    k.update_row.Bind(i++, now_us_);
    k.update_row.Bind(i++, run_id_);
    k.update_row.Bind(i++, id);
    IDSYNC_RETURN_IF_ERROR(k.update_row.Run());
    k.update_key.Bind(1, static_cast<int64_t>(content_hash));
    BindKey(k.update_key, 2, kind);
    return k.update_key.Run();
  }

  absl::Status MarkDeleted(RecordKind kind, int64_t id) override {
    KindStatements& k = kinds_[kind - 1];
    k.delete_row.Bind(1, now_us_).Bind(2, now_us_).Bind(3, run_id_).Bind(4, id);
    IDSYNC_RETURN_IF_ERROR(k.delete_row.Run());
    k.delete_key.Bind(1, id);
    return k.delete_key.Run();
  }

  absl::Status AddReject(const idsync::v1::Reject& reject) override {
    insert_reject_.Bind(1, tenant_id_).Bind(2, run_id_);
    insert_reject_.Bind(3, static_cast<int64_t>(reject.kind()));
    insert_reject_.Bind(4, reject.external_id());
    insert_reject_.Bind(5, reject.location()).Bind(6, reject.reason());
    return insert_reject_.Run();
  }

  absl::Status Commit(const RunRow& run,
                      const std::vector<SeenDelta>& seen) override {
    absl::Status s;
    for (const SeenDelta& delta : seen) {
      if (delta.encoded.empty()) continue;
      insert_seen_.Bind(1, run_id_).Bind(2, ++seen_seq_);
      insert_seen_.Bind(3, static_cast<int64_t>(delta.kind));
      insert_seen_.BindBlob(4, delta.encoded);
      s = insert_seen_.Run();
      if (!s.ok()) break;
    }
    if (s.ok()) {
      BindRunUpdate(update_run_, run);
      s = update_run_.Run();
    }
    if (s.ok()) s = Exec(db_.get(), "COMMIT");
    if (!s.ok()) Rollback();
    return s;
  }

  void Rollback() override {
    if (!sqlite3_get_autocommit(db_.get())) {
      Exec(db_.get(), "ROLLBACK").IgnoreError();
    }
  }

  absl::StatusOr<int64_t> MaxId(RecordKind kind) override {
    Statement& s = kinds_[kind - 1].max_id;
    absl::StatusOr<bool> row = s.Step();
    int64_t n = row.ok() && *row ? s.Int(0) : 0;
    s.Reset();
    if (!row.ok()) return row.status();
    return n;
  }

  absl::Status ForEachActive(
      RecordKind kind, const std::function<void(int64_t)>& visit) override {
    Statement& s = kinds_[kind - 1].list_active;
    s.Bind(1, tenant_id_).Bind(2, connector_id_);
    while (true) {
      absl::StatusOr<bool> row = s.Step();
      if (!row.ok()) return row.status();
      if (!*row) break;
      visit(s.Int(0));
    }
    s.Reset();
    return absl::OkStatus();
  }

 private:
  SqliteRunWriter(const RunRow& run, SqliteDb db)
      : tenant_id_(run.tenant_id),
        connector_id_(run.connector_id),
        run_id_(run.id),
        db_(std::move(db)) {}

  // Binds the record's columns and attributes from `first`; returns the next
  // free index. Bound text points into `record` and attributes_json_.
  int BindValues(Statement& s, int first, RecordKind kind,
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

  // Binds tenant, connector and the key columns of the record last passed
  // to BindValues, from `first`; returns the next free index.
  int BindKey(Statement& s, int first, RecordKind kind) {
    int i = first;
    s.Bind(i++, tenant_id_);
    s.Bind(i++, connector_id_);
    for (int c = 0; c < SchemaFor(kind).key_columns; ++c)
      s.Bind(i++, values_[c]);
    return i;
  }

  // Constant after construction.
  const int64_t tenant_id_;
  const int64_t connector_id_;
  const int64_t run_id_;
  SqliteDb db_;

  std::array<KindStatements, 4> kinds_;
  Statement update_run_, insert_reject_, insert_seen_;
  int64_t seen_seq_ = 0;
  int64_t now_us_ = 0;
  std::vector<absl::string_view> values_;
  std::string attributes_json_;
};

}  // namespace

absl::string_view RunStatusName(RunStatus status) {
  switch (status) {
    case RunStatus::kSucceeded:
      return "succeeded";
    case RunStatus::kFailed:
      return "failed";
    case RunStatus::kCancelled:
      return "cancelled";
    default:
      return "running";
  }
}

absl::StatusOr<std::unique_ptr<SqliteStore>> SqliteStore::Open(
    const StoreOptions& options) {
  if (options.path.empty()) {
    return absl::InvalidArgumentError("store: no database path given");
  }
  IDSYNC_ASSIGN_OR_RETURN(SqliteDb db, OpenSqlite(options.path, false));
  IDSYNC_RETURN_IF_ERROR(Migrate(db.get()));
  return std::unique_ptr<SqliteStore>(
      new SqliteStore(options.path, std::move(db)));
}

absl::StatusOr<int64_t> SqliteStore::EnsureTenant(absl::string_view name) {
  absl::MutexLock lock(&mu_);
  IDSYNC_ASSIGN_OR_RETURN(
      Statement insert,
      Statement::Prepare(db_.get(),
                         "INSERT INTO tenants(name, created_at) VALUES(?, ?) "
                         "ON CONFLICT(name) DO NOTHING"));
  insert.Bind(1, name).Bind(2, Micros(absl::Now()));
  IDSYNC_RETURN_IF_ERROR(insert.Run());
  IDSYNC_ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_.get(), "SELECT id FROM tenants WHERE name=?"));
  select.Bind(1, name);
  IDSYNC_ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return absl::InternalError("store: tenant vanished after insert");
  return select.Int(0);
}

namespace {

constexpr char kConnectorColumns[] =
    "id, tenant_id, business_id, type, mode, config, deletion_threshold, "
    "sync_token, last_sync_at";

ConnectorRow ReadConnector(const Statement& s) {
  ConnectorRow c;
  c.id = s.Int(0);
  c.tenant_id = s.Int(1);
  c.business_id = s.Text(2);
  c.type = s.Text(3);
  c.mode = s.Text(4);
  c.config_json = s.Text(5);
  c.deletion_threshold = s.Double(6);
  c.sync_token = s.Text(7);
  if (!s.IsNull(8)) c.last_sync_at = FromMicros(s.Int(8));
  return c;
}

}  // namespace

absl::StatusOr<ConnectorRow> SqliteStore::UpsertConnector(
    const ConnectorRow& connector) {
  int64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    IDSYNC_ASSIGN_OR_RETURN(
        Statement upsert,
        Statement::Prepare(
            db_.get(),
            "INSERT INTO connectors(tenant_id, business_id, type, mode, "
            "config, deletion_threshold, created_at, updated_at) "
            "VALUES(?,?,?,?,?,?,?,?) ON CONFLICT(tenant_id, business_id) DO "
            "UPDATE SET type=excluded.type, mode=excluded.mode, "
            "config=excluded.config, updated_at=excluded.updated_at "
            "RETURNING id"));
    const int64_t now = Micros(absl::Now());
    upsert.Bind(1, connector.tenant_id).Bind(2, connector.business_id);
    upsert.Bind(3, connector.type).Bind(4, connector.mode);
    upsert.Bind(5, connector.config_json).Bind(6, connector.deletion_threshold);
    upsert.Bind(7, now).Bind(8, now);
    IDSYNC_ASSIGN_OR_RETURN(bool row, upsert.Step());
    if (!row)
      return absl::InternalError("store: connector upsert returned no id");
    id = upsert.Int(0);
    upsert.Reset();
  }
  return GetConnector(connector.tenant_id, id);
}

absl::StatusOr<ConnectorRow> SqliteStore::GetConnector(int64_t tenant_id,
                                                       int64_t id) {
  absl::MutexLock lock(&mu_);
  IDSYNC_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(db_.get(),
                         absl::StrCat("SELECT ", kConnectorColumns,
                                      " FROM connectors WHERE id=? AND "
                                      "tenant_id=?")));
  s.Bind(1, id).Bind(2, tenant_id);
  IDSYNC_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row)
    return absl::NotFoundError(absl::StrCat("connector ", id, " not found"));
  return ReadConnector(s);
}

absl::StatusOr<RunRow> SqliteStore::CreateRun(const RunRow& run) {
  int64_t id = 0;
  {
    absl::MutexLock lock(&mu_);
    IDSYNC_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(
            db_.get(),
            "INSERT INTO sync_runs(tenant_id, connector_id, status, phase, "
            "incremental, chunk_size, max_records, deletion_threshold, "
            "callback_url, owner, started_at, updated_at) "
            "VALUES(?,?,'running','records',?,?,?,?,?,?,?,?)"));
    s.Bind(1, run.tenant_id).Bind(2, run.connector_id);
    s.Bind(3, static_cast<int64_t>(run.incremental));
    s.Bind(4, static_cast<int64_t>(run.chunk_size));
    if (run.max_records.has_value()) {
      s.Bind(5, *run.max_records);
    } else {
      s.BindNull(5);
    }
    s.Bind(6, run.deletion_threshold).Bind(7, run.callback_url);
    s.Bind(8, run.owner).Bind(9, Micros(run.started_at));
    s.Bind(10, Micros(run.started_at));
    absl::Status st = s.Run();
    if (absl::IsFailedPrecondition(st)) {
      // A constraint failed: the one-active-run index, or a bad reference.
      IDSYNC_ASSIGN_OR_RETURN(
          std::optional<RunRow> active,
          QueryRun("tenant_id=? AND connector_id=? AND status='running'",
                   run.tenant_id, run.connector_id));
      if (active.has_value()) {
        return absl::FailedPreconditionError(
            absl::StrCat("connector ", run.connector_id,
                         " already has an active run (", active->id, ")"));
      }
    }
    IDSYNC_RETURN_IF_ERROR(st);
    id = sqlite3_last_insert_rowid(db_.get());
  }
  return GetRun(run.tenant_id, id);
}

absl::StatusOr<std::optional<RunRow>> SqliteStore::QueryRun(
    absl::string_view where, int64_t a, int64_t b) {
  IDSYNC_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(db_.get(),
                         absl::StrCat("SELECT ", kRunColumns,
                                      " FROM sync_runs WHERE ", where)));
  s.Bind(1, a).Bind(2, b);
  IDSYNC_ASSIGN_OR_RETURN(bool row, s.Step());
  if (!row) return std::nullopt;
  return ReadRun(s);
}

absl::StatusOr<RunRow> SqliteStore::GetRun(int64_t tenant_id, int64_t id) {
  absl::MutexLock lock(&mu_);
  IDSYNC_ASSIGN_OR_RETURN(std::optional<RunRow> run,
                          QueryRun("tenant_id=? AND id=?", tenant_id, id));
  if (!run.has_value()) {
    return absl::NotFoundError(absl::StrCat("sync run ", id, " not found"));
  }
  return *std::move(run);
}

absl::StatusOr<std::optional<RunRow>> SqliteStore::ActiveRun(
    int64_t tenant_id, int64_t connector_id) {
  absl::MutexLock lock(&mu_);
  return QueryRun("tenant_id=? AND connector_id=? AND status='running'",
                  tenant_id, connector_id);
}

absl::Status SqliteStore::ClaimRun(int64_t tenant_id, int64_t run_id,
                                   absl::string_view expected_owner,
                                   absl::string_view new_owner) {
  absl::MutexLock lock(&mu_);
  IDSYNC_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(db_.get(),
                         "UPDATE sync_runs SET owner=?, resumes=resumes+1 "
                         "WHERE tenant_id=? AND id=? AND owner=? AND "
                         "status='running'"));
  s.Bind(1, new_owner).Bind(2, tenant_id).Bind(3, run_id);
  s.Bind(4, expected_owner);
  IDSYNC_RETURN_IF_ERROR(s.Run());
  if (sqlite3_changes(db_.get()) != 1) {
    return absl::AbortedError(absl::StrCat(
        "sync run ", run_id, " was taken over by another process"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<SeenDelta>> SqliteStore::LoadSeen(int64_t run_id) {
  absl::MutexLock lock(&mu_);
  IDSYNC_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(db_.get(),
                         "SELECT kind, ids FROM run_seen WHERE run_id=? "
                         "ORDER BY seq"));
  s.Bind(1, run_id);
  std::vector<SeenDelta> out;
  while (true) {
    IDSYNC_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    out.push_back({static_cast<RecordKind>(s.Int(0)), s.Text(1)});
  }
  return out;
}

absl::StatusOr<std::vector<idsync::v1::Reject>> SqliteStore::ListRejects(
    int64_t tenant_id, int64_t run_id, int limit) {
  absl::MutexLock lock(&mu_);
  IDSYNC_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(db_.get(),
                         "SELECT kind, external_id, location, reason FROM "
                         "sync_rejects WHERE tenant_id=? AND run_id=? ORDER BY "
                         "id LIMIT ?"));
  s.Bind(1, tenant_id).Bind(2, run_id).Bind(3, static_cast<int64_t>(limit));
  std::vector<idsync::v1::Reject> out;
  while (true) {
    IDSYNC_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    idsync::v1::Reject& r = out.emplace_back();
    r.set_kind(static_cast<RecordKind>(s.Int(0)));
    r.set_external_id(s.Text(1));
    r.set_location(s.Text(2));
    r.set_reason(s.Text(3));
  }
  return out;
}

absl::Status SqliteStore::FinishRun(const RunRow& run) {
  absl::MutexLock lock(&mu_);
  sqlite3* db = db_.get();
  IDSYNC_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  auto body = [&]() -> absl::Status {
    IDSYNC_ASSIGN_OR_RETURN(Statement update,
                            Statement::Prepare(db, kUpdateRunSql));
    BindRunUpdate(update, run);
    IDSYNC_RETURN_IF_ERROR(update.Run());
    IDSYNC_ASSIGN_OR_RETURN(
        Statement drop,
        Statement::Prepare(db, "DELETE FROM run_seen WHERE run_id=?"));
    drop.Bind(1, run.id);
    IDSYNC_RETURN_IF_ERROR(drop.Run());
    if (run.status == RunStatus::kSucceeded && !run.cut) {
      IDSYNC_ASSIGN_OR_RETURN(
          Statement token,
          Statement::Prepare(
              db,
              "UPDATE connectors SET last_sync_at=?, sync_token=CASE WHEN ?='' "
              "THEN sync_token ELSE ? END WHERE id=? AND tenant_id=?"));
      token.Bind(1, Micros(run.finished_at.value_or(run.updated_at)));
      token.Bind(2, run.next_sync_token).Bind(3, run.next_sync_token);
      token.Bind(4, run.connector_id).Bind(5, run.tenant_id);
      IDSYNC_RETURN_IF_ERROR(token.Run());
    }
    return Exec(db, "COMMIT");
  };
  absl::Status s = body();
  if (!s.ok()) Exec(db, "ROLLBACK").IgnoreError();
  return s;
}

absl::StatusOr<std::unique_ptr<RunWriter>> SqliteStore::OpenRunWriter(
    const RunRow& run) {
  IDSYNC_ASSIGN_OR_RETURN(auto writer, SqliteRunWriter::Open(path_, run));
  return std::unique_ptr<RunWriter>(std::move(writer));
}

}  // namespace idsync
