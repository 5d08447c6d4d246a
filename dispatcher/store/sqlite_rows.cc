#include "dispatcher/store/sqlite_rows.h"

#include "connector/status_macros.h"

namespace idsync {

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

const char kRunColumns[] =
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

const char kUpdateRunSql[] =
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
  BindTime(s, i++, run.finished_at);
  s.Bind(i++, run.id);
  s.Bind(i++, run.tenant_id);
}

void BindTime(Statement& s, int index, const std::optional<absl::Time>& t) {
  if (t.has_value()) {
    s.Bind(index, Micros(*t));
  } else {
    s.BindNull(index);
  }
}

const char kConnectorColumns[] =
    "id, tenant_id, business_id, type, mode, config, deletion_threshold, "
    "sync_token, last_sync_at, auth_config IS NOT NULL, created_at, "
    "updated_at, agent, incremental_minutes, full_cron, schedule_tz, "
    "incremental_handled_at, full_handled_at";

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
  c.has_auth = s.Int(9) != 0;
  c.created_at = FromMicros(s.Int(10));
  c.updated_at = FromMicros(s.Int(11));
  c.agent = s.Text(12);
  c.schedule.incremental_minutes = static_cast<int>(s.Int(13));
  c.schedule.full_cron = s.Text(14);
  c.schedule.time_zone = s.Text(15);
  if (!s.IsNull(16)) c.schedule.incremental_handled_at = FromMicros(s.Int(16));
  if (!s.IsNull(17)) c.schedule.full_handled_at = FromMicros(s.Int(17));
  return c;
}

absl::StatusOr<int64_t> InsertRunRow(sqlite3* db, const RunRow& run) {
  IDSYNC_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(
          db,
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
  IDSYNC_RETURN_IF_ERROR(s.Run());
  return sqlite3_last_insert_rowid(db);
}

}  // namespace idsync
