#include "dispatcher/store/sqlite_store.h"

#include <array>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "connector/status_macros.h"
#include "dispatcher/store/migrations.h"
#include "dispatcher/store/outbox.h"
#include "dispatcher/store/record_schema.h"
#include "dispatcher/store/record_writer.h"
#include "dispatcher/store/sqlite_rows.h"
#include "dispatcher/store/write_gate.h"

namespace idsync {
namespace {

using idsync::v1::RecordKind;

class SqliteRunWriter final : public RunWriter {
 public:
  // "*gate" must outlive the writer.
  static absl::StatusOr<std::unique_ptr<SqliteRunWriter>> Open(
      const std::string& path, const RunRow& run, WriteGate* gate) {
    IDSYNC_ASSIGN_OR_RETURN(SqliteDb db, OpenSqlite(path, /*read_only=*/false));
    std::unique_ptr<SqliteRunWriter> w(
        new SqliteRunWriter(run, std::move(db), gate));
    sqlite3* raw = w->db_.get();
    IDSYNC_ASSIGN_OR_RETURN(w->records_, RecordWriter::Prepare(raw));
    IDSYNC_ASSIGN_OR_RETURN(w->outbox_,
                            Outbox::Prepare(raw, Outbox::Detail::kKeys));
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

  // The gate is held from a successful Begin to Commit or Rollback, across
  // calls, which -Wthread-safety cannot follow.
  absl::Status Begin(absl::Time now) override ABSL_NO_THREAD_SAFETY_ANALYSIS {
    scope_.now_us = Micros(now);
    gate_.LockBackground();
    gate_held_ = true;
    absl::Status s = Exec(db_.get(), "BEGIN IMMEDIATE");
    if (!s.ok()) {
      Rollback();
      return s;
    }
    records_.StartTransaction();
    // Subscriptions are read in each group's transaction: a webhook created
    // during a run gets the events of the groups committed after it.
    s = outbox_->Load(scope_.tenant_id);
    if (!s.ok()) Rollback();
    return s;
  }

  bool ShouldYield() override { return gate_.PriorityWaiting(); }

  ~SqliteRunWriter() override { Rollback(); }  // Never leaves the gate held.

  absl::StatusOr<std::optional<ExistingRecord>> Lookup(RecordKind kind,
                                                       RecordKey key) override {
    return records_.Lookup(scope_, kind, key);
  }

  absl::StatusOr<std::optional<int64_t>> InsertIfNew(
      RecordKind kind, const google::protobuf::Message& record,
      uint64_t content_hash) override {
    IDSYNC_ASSIGN_OR_RETURN(
        std::optional<int64_t> id,
        records_.InsertIfNew(scope_, kind, record, content_hash));
    if (id.has_value()) {
      IDSYNC_RETURN_IF_ERROR(
          outbox_->QueueRecord(kind, RecordChange::kCreated, *id, &record));
    }
    return id;
  }

  absl::Status Update(RecordKind kind, int64_t id,
                      const google::protobuf::Message& record,
                      uint64_t content_hash) override {
    IDSYNC_RETURN_IF_ERROR(
        records_.Update(scope_, kind, id, record, content_hash));
    return outbox_->QueueRecord(kind, RecordChange::kUpdated, id, &record);
  }

  absl::Status MarkDeleted(RecordKind kind, int64_t id) override {
    IDSYNC_RETURN_IF_ERROR(records_.MarkDeleted(scope_, kind, id));
    return outbox_->QueueRecord(kind, RecordChange::kDeactivated, id, nullptr);
  }

  absl::Status AddReject(const idsync::v1::Reject& reject) override {
    insert_reject_.Bind(1, scope_.tenant_id).Bind(2, scope_.run_id);
    insert_reject_.Bind(3, static_cast<int64_t>(reject.kind()));
    insert_reject_.Bind(4, reject.external_id());
    insert_reject_.Bind(5, reject.location()).Bind(6, reject.reason());
    return insert_reject_.Run();
  }

  absl::Status Commit(const RunRow& run, const std::vector<SeenDelta>& seen)
      override ABSL_NO_THREAD_SAFETY_ANALYSIS {
    absl::Status s = outbox_->Flush(
        absl::StrCat("\"source\":\"sync\",\"connector_id\":",
                     scope_.connector_id, ",\"run_id\":", scope_.run_id),
        FromMicros(scope_.now_us));
    for (const SeenDelta& delta : seen) {
      if (!s.ok()) break;
      if (delta.encoded.empty()) continue;
      insert_seen_.Bind(1, scope_.run_id).Bind(2, ++seen_seq_);
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
    if (!s.ok()) {
      Rollback();
      return s;
    }
    gate_held_ = false;
    gate_.Unlock();
    return s;
  }

  void Rollback() override ABSL_NO_THREAD_SAFETY_ANALYSIS {
    if (outbox_ != nullptr) outbox_->Clear();
    if (!sqlite3_get_autocommit(db_.get())) {
      Exec(db_.get(), "ROLLBACK").IgnoreError();
    }
    // Not tied to the open transaction: on SQLITE_FULL, SQLITE_IOERR and
    // the like SQLite may have rolled it back already, and the gate must
    // still be released (else the next write of this process waits forever).
    if (gate_held_) {
      gate_held_ = false;
      gate_.Unlock();
    }
  }

  absl::StatusOr<int64_t> MaxId(RecordKind kind) override {
    return records_.MaxId(kind);
  }

  absl::StatusOr<bool> HasRecords(RecordKind kind) override {
    return records_.HasRecords(scope_, kind);
  }

  absl::Status ForEachActive(
      RecordKind kind, const std::function<void(int64_t)>& visit) override {
    return records_.ForEachActive(scope_, kind, visit);
  }

 private:
  SqliteRunWriter(const RunRow& run, SqliteDb db, WriteGate* gate)
      : db_(std::move(db)), gate_(*gate) {
    scope_.tenant_id = run.tenant_id;
    scope_.connector_id = run.connector_id;
    scope_.run_id = run.id;
  }

  SqliteDb db_;
  WriteGate& gate_;  // Held from Begin to Commit or Rollback.
  bool gate_held_ = false;
  RecordScope scope_;  // now_us is set by Begin.
  RecordWriter records_;
  std::unique_ptr<Outbox> outbox_;
  Statement update_run_, insert_reject_, insert_seen_;
  int64_t seen_seq_ = 0;
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
      new SqliteStore(options.path, *options.clock, std::move(db)));
}

absl::StatusOr<int64_t> SqliteStore::EnsureTenant(absl::string_view name) {
  PriorityWrite gate(gate_);
  absl::MutexLock lock(&mu_);
  IDSYNC_ASSIGN_OR_RETURN(
      Statement insert,
      Statement::Prepare(db_.get(),
                         "INSERT INTO tenants(name, created_at) VALUES(?, ?) "
                         "ON CONFLICT(name) DO NOTHING"));
  insert.Bind(1, name).Bind(2, Micros(clock_.Now()));
  IDSYNC_RETURN_IF_ERROR(insert.Run());
  IDSYNC_ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_.get(), "SELECT id FROM tenants WHERE name=?"));
  select.Bind(1, name);
  IDSYNC_ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) return absl::InternalError("store: tenant vanished after insert");
  return select.Int(0);
}

absl::StatusOr<std::string> SqliteStore::TenantName(int64_t tenant_id) {
  absl::MutexLock lock(&mu_);
  IDSYNC_ASSIGN_OR_RETURN(
      Statement select,
      Statement::Prepare(db_.get(), "SELECT name FROM tenants WHERE id=?"));
  select.Bind(1, tenant_id);
  IDSYNC_ASSIGN_OR_RETURN(bool row, select.Step());
  if (!row) {
    return absl::NotFoundError(
        absl::StrCat("tenant ", tenant_id, " not found"));
  }
  return select.Text(0);
}

absl::StatusOr<ConnectorRow> SqliteStore::UpsertConnector(
    const ConnectorRow& connector) {
  int64_t id = 0;
  {
    PriorityWrite gate(gate_);
    absl::MutexLock lock(&mu_);
    IDSYNC_ASSIGN_OR_RETURN(
        Statement upsert,
        Statement::Prepare(
            db_.get(),
            "INSERT INTO connectors(tenant_id, business_id, type, mode, "
            "config, deletion_threshold, created_at, updated_at, agent) "
            "VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(tenant_id, business_id) DO "
            "UPDATE SET type=excluded.type, mode=excluded.mode, "
            "config=excluded.config, updated_at=excluded.updated_at, "
            "agent=excluded.agent RETURNING id"));
    const int64_t now = Micros(clock_.Now());
    upsert.Bind(1, connector.tenant_id).Bind(2, connector.business_id);
    upsert.Bind(3, connector.type).Bind(4, connector.mode);
    upsert.Bind(5, connector.config_json).Bind(6, connector.deletion_threshold);
    upsert.Bind(7, now).Bind(8, now).Bind(9, connector.agent);
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
    PriorityWrite gate(gate_);
    absl::MutexLock lock(&mu_);
    sqlite3* db = db_.get();
    IDSYNC_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
    absl::StatusOr<int64_t> inserted = InsertRunRow(db, run);
    if (inserted.ok()) {
      RunRow started = run;
      started.id = *inserted;
      absl::Status s = PublishRunEvent(db, started, clock_.Now());
      if (s.ok()) s = Exec(db, "COMMIT");
      if (!s.ok()) inserted = s;
    }
    if (!inserted.ok()) Exec(db, "ROLLBACK").IgnoreError();
    if (absl::IsFailedPrecondition(inserted.status())) {
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
    IDSYNC_ASSIGN_OR_RETURN(id, std::move(inserted));
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
  PriorityWrite gate(gate_);
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
  PriorityWrite gate(gate_);
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
    IDSYNC_RETURN_IF_ERROR(PublishRunEvent(db, run, clock_.Now()));
    return Exec(db, "COMMIT");
  };
  absl::Status s = body();
  if (!s.ok()) Exec(db, "ROLLBACK").IgnoreError();
  return s;
}

absl::StatusOr<std::unique_ptr<RunWriter>> SqliteStore::OpenRunWriter(
    const RunRow& run) {
  IDSYNC_ASSIGN_OR_RETURN(auto writer,
                          SqliteRunWriter::Open(path_, run, &gate_));
  return std::unique_ptr<RunWriter>(std::move(writer));
}

}  // namespace idsync
