#include "dispatcher/store/migrations.h"

#include <algorithm>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connector/status_macros.h"
#include "dispatcher/store/sqlite_util.h"

namespace idsync {
namespace {

// Times are INTEGER unix microseconds. Record tables share one shape: the
// source's fields, attributes as a JSON object and a soft-delete mark, in
// rowid order (inserts append). Each has a narrow key table, WITHOUT ROWID:
// the key is unique per (tenant, connector) and maps to the row id, content
// hash and deletion flag, so change detection reads only this small B-tree.
// A migration is SQL, or code for what SQL alone cannot say.
struct Migration {
  const char* sql = nullptr;
  absl::Status (*run)(sqlite3* db) = nullptr;
  Migration(const char* text) : sql(text) {}  // NOLINT: the common case.
  Migration(absl::Status (*code)(sqlite3*)) : run(code) {}  // NOLINT
};

// Ids are never reused: a deleted webhook's id must not later name another
// tenant's (an audit entry, a receiver's records). The control-plane tables
// get AUTOINCREMENT, by SQLite's table rebuild (its stored CREATE statement
// with the keyword added, rows copied, indexes recreated). The record tables
// are too hot for it (a sqlite_sequence write per insert): their deletions
// record a floor in id_floors instead, which the next insert starts above.
absl::Status NeverReuseIds(sqlite3* db) {
  for (const char* table : {"tenants", "connectors", "sync_runs", "tokens",
                            "audit_events", "webhooks", "agents"}) {
    IDSYNC_ASSIGN_OR_RETURN(
        Statement schema,
        Statement::Prepare(db,
                           "SELECT type, sql FROM sqlite_master WHERE "
                           "tbl_name=? AND sql IS NOT NULL ORDER BY type "
                           "DESC"));  // The table first, then its indexes.
    schema.Bind(1, table);
    std::string create;
    std::vector<std::string> indexes;
    while (true) {
      IDSYNC_ASSIGN_OR_RETURN(bool row, schema.Step());
      if (!row) break;
      if (schema.Text(0) == "table") {
        create = schema.Text(1);
      } else {
        indexes.push_back(schema.Text(1));
      }
    }
    const std::string head = absl::StrCat("CREATE TABLE ", table, " (");
    const std::string key = "id INTEGER PRIMARY KEY,";
    const size_t at = create.find(key);
    if (create.rfind(head, 0) != 0 || at == std::string::npos) {
      return absl::InternalError(
          absl::StrCat("unexpected schema of table ", table));
    }
    create.replace(at, key.size(), "id INTEGER PRIMARY KEY AUTOINCREMENT,");
    create.replace(0, head.size(),
                   absl::StrCat("CREATE TABLE ", table, "_rebuilt ("));
    IDSYNC_RETURN_IF_ERROR(Exec(db, create.c_str()));
    IDSYNC_RETURN_IF_ERROR(
        Exec(db, absl::StrCat("INSERT INTO ", table, "_rebuilt SELECT * FROM ",
                              table, "; DROP TABLE ", table, "; ALTER TABLE ",
                              table, "_rebuilt RENAME TO ", table, ";")
                     .c_str()));
    for (const std::string& index : indexes) {
      IDSYNC_RETURN_IF_ERROR(Exec(db, index.c_str()));
    }
  }
  return Exec(db,
              "CREATE TABLE id_floors (\n"
              "  tbl TEXT PRIMARY KEY,\n"
              "  floor INTEGER NOT NULL  -- The largest id ever used.\n"
              ") WITHOUT ROWID;");
}

const std::vector<Migration>& Migrations() {
  static const auto* migrations = new std::vector<Migration>{
      // 1: tenants, connectors, runs and the four record kinds.
      R"sql(
CREATE TABLE tenants (
  id INTEGER PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  created_at INTEGER NOT NULL
);
CREATE TABLE connectors (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL REFERENCES tenants(id),
  business_id TEXT NOT NULL,
  type TEXT NOT NULL,
  mode TEXT NOT NULL DEFAULT 'hosted',
  config TEXT NOT NULL DEFAULT '{}',
  deletion_threshold REAL NOT NULL DEFAULT 0.2,
  sync_token TEXT NOT NULL DEFAULT '',
  last_sync_at INTEGER,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  UNIQUE (tenant_id, business_id)
);
CREATE TABLE sync_runs (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL REFERENCES tenants(id),
  connector_id INTEGER NOT NULL REFERENCES connectors(id),
  status TEXT NOT NULL,
  phase TEXT NOT NULL,
  incremental INTEGER NOT NULL,
  chunk_size INTEGER NOT NULL,
  max_records INTEGER,
  deletion_threshold REAL NOT NULL,
  callback_url TEXT NOT NULL DEFAULT '',
  owner TEXT NOT NULL DEFAULT '',
  chunks INTEGER NOT NULL DEFAULT 0,
  resume_token TEXT NOT NULL DEFAULT '',
  processed INTEGER NOT NULL DEFAULT 0,
  created INTEGER NOT NULL DEFAULT 0,
  updated INTEGER NOT NULL DEFAULT 0,
  unchanged INTEGER NOT NULL DEFAULT 0,
  deleted INTEGER NOT NULL DEFAULT 0,
  rejected INTEGER NOT NULL DEFAULT 0,
  source_done INTEGER NOT NULL DEFAULT 0,
  source_total INTEGER NOT NULL DEFAULT 0,
  resumes INTEGER NOT NULL DEFAULT 0,
  cut INTEGER NOT NULL DEFAULT 0,
  deletion_note TEXT NOT NULL DEFAULT '',
  error TEXT NOT NULL DEFAULT '',
  next_sync_token TEXT NOT NULL DEFAULT '',
  started_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  finished_at INTEGER
);
CREATE INDEX sync_runs_by_connector ON sync_runs(tenant_id, connector_id, id);
-- One active run per connector, enforced by the store itself.
CREATE UNIQUE INDEX sync_runs_one_active ON sync_runs(connector_id)
  WHERE status = 'running';
-- Row ids a running run has seen, one encoded list per commit group and kind,
-- so deletion detection survives a crash without a write per record.
CREATE TABLE run_seen (
  run_id INTEGER NOT NULL REFERENCES sync_runs(id) ON DELETE CASCADE,
  seq INTEGER NOT NULL,
  kind INTEGER NOT NULL,
  ids BLOB NOT NULL,
  PRIMARY KEY (run_id, seq, kind)
) WITHOUT ROWID;
CREATE TABLE sync_rejects (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL,
  run_id INTEGER NOT NULL REFERENCES sync_runs(id) ON DELETE CASCADE,
  kind INTEGER NOT NULL,
  external_id TEXT NOT NULL,
  location TEXT NOT NULL,
  reason TEXT NOT NULL
);
CREATE INDEX sync_rejects_by_run ON sync_rejects(run_id, id);
CREATE TABLE identities (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL,
  connector_id INTEGER NOT NULL REFERENCES connectors(id),
  external_id TEXT NOT NULL,
  email TEXT NOT NULL,
  first_name TEXT NOT NULL,
  last_name TEXT NOT NULL,
  display_name TEXT NOT NULL,
  department TEXT NOT NULL,
  job_title TEXT NOT NULL,
  manager_external_id TEXT NOT NULL,
  status TEXT NOT NULL,
  attributes TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  deleted_at INTEGER,
  last_run_id INTEGER
);
CREATE TABLE identity_keys (
  tenant_id INTEGER NOT NULL,
  connector_id INTEGER NOT NULL,
  external_id TEXT NOT NULL,
  id INTEGER NOT NULL,
  content_hash INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, connector_id, external_id)
) WITHOUT ROWID;
CREATE TABLE accounts (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL,
  connector_id INTEGER NOT NULL REFERENCES connectors(id),
  external_id TEXT NOT NULL,
  identity_external_id TEXT NOT NULL,
  username TEXT NOT NULL,
  email TEXT NOT NULL,
  display_name TEXT NOT NULL,
  status TEXT NOT NULL,
  attributes TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  deleted_at INTEGER,
  last_run_id INTEGER
);
CREATE TABLE account_keys (
  tenant_id INTEGER NOT NULL,
  connector_id INTEGER NOT NULL,
  external_id TEXT NOT NULL,
  id INTEGER NOT NULL,
  content_hash INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, connector_id, external_id)
) WITHOUT ROWID;
CREATE TABLE entitlements (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL,
  connector_id INTEGER NOT NULL REFERENCES connectors(id),
  external_id TEXT NOT NULL,
  name TEXT NOT NULL,
  description TEXT NOT NULL,
  type TEXT NOT NULL,
  attributes TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  deleted_at INTEGER,
  last_run_id INTEGER
);
CREATE TABLE entitlement_keys (
  tenant_id INTEGER NOT NULL,
  connector_id INTEGER NOT NULL,
  external_id TEXT NOT NULL,
  id INTEGER NOT NULL,
  content_hash INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, connector_id, external_id)
) WITHOUT ROWID;
CREATE TABLE grants (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL,
  connector_id INTEGER NOT NULL REFERENCES connectors(id),
  account_external_id TEXT NOT NULL,
  entitlement_external_id TEXT NOT NULL,
  attributes TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  deleted_at INTEGER,
  last_run_id INTEGER
);
CREATE TABLE grant_keys (
  tenant_id INTEGER NOT NULL,
  connector_id INTEGER NOT NULL,
  account_external_id TEXT NOT NULL,
  entitlement_external_id TEXT NOT NULL,
  id INTEGER NOT NULL,
  content_hash INTEGER NOT NULL,
  deleted INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (tenant_id, connector_id, account_external_id,
               entitlement_external_id)
) WITHOUT ROWID;
)sql",
      // 2: the control plane: tokens, audit, idempotency, sealed secrets.
      R"sql(
ALTER TABLE connectors ADD COLUMN auth_config BLOB;
-- Only the SHA-256 of a token is stored.
CREATE TABLE tokens (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  kind TEXT NOT NULL,
  role TEXT NOT NULL,
  hash BLOB NOT NULL UNIQUE,
  prefix TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER
);
CREATE INDEX tokens_by_tenant ON tokens(tenant_id, id);
CREATE TABLE audit_events (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL REFERENCES tenants(id),
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  action TEXT NOT NULL,
  resource_type TEXT NOT NULL,
  resource_id TEXT NOT NULL,
  request_id TEXT NOT NULL,
  details TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_by_tenant ON audit_events(tenant_id, id);
CREATE TABLE idempotency_keys (
  tenant_id INTEGER NOT NULL,
  key TEXT NOT NULL,
  request_hash BLOB NOT NULL,
  state TEXT NOT NULL,
  status INTEGER NOT NULL DEFAULT 0,
  response BLOB,
  created_at INTEGER NOT NULL,
  PRIMARY KEY (tenant_id, key)
) WITHOUT ROWID;
)sql",
      // 3: list records of a tenant in id order, active ones first-class.
      R"sql(
CREATE INDEX identities_list ON identities(tenant_id, deleted_at, id);
CREATE INDEX accounts_list ON accounts(tenant_id, deleted_at, id);
CREATE INDEX entitlements_list ON entitlements(tenant_id, deleted_at, id);
CREATE INDEX grants_list ON grants(tenant_id, deleted_at, id);
)sql",
      // 4: webhooks, the outbox of events and their deliveries.
      R"sql(
ALTER TABLE tenants ADD COLUMN callback_secret BLOB;
CREATE TABLE webhooks (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL REFERENCES tenants(id),
  url TEXT NOT NULL,
  event_types TEXT NOT NULL,  -- JSON array of patterns: "identity.created", "identity.*", "*"
  secret BLOB,                -- Sealed, context "webhook:<id>".
  enabled INTEGER NOT NULL DEFAULT 1,
  disabled_reason TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE INDEX webhooks_by_tenant ON webhooks(tenant_id, id);
-- An event, written in the transaction of the change that caused it, only
-- when some endpoint wants it.
CREATE TABLE outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant_id INTEGER NOT NULL,
  type TEXT NOT NULL,
  data TEXT NOT NULL,  -- JSON object
  created_at INTEGER NOT NULL
);
-- One event to one endpoint: a webhook, or a run's callback URL.
CREATE TABLE deliveries (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  tenant_id INTEGER NOT NULL,
  outbox_id INTEGER NOT NULL,
  webhook_id INTEGER,              -- NULL for a callback.
  url TEXT NOT NULL DEFAULT '',    -- A callback's URL.
  endpoint TEXT NOT NULL,          -- "webhook:<id>" or "callback:<url>": order is per endpoint.
  state TEXT NOT NULL,             -- pending, delivered, dead
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_status INTEGER NOT NULL DEFAULT 0,
  last_error TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  delivered_at INTEGER
);
CREATE INDEX deliveries_pending ON deliveries(state, endpoint, id);
CREATE INDEX deliveries_by_webhook ON deliveries(webhook_id, id);
)sql",
      // 5: agents, and the binding of agent-mode connectors to them.
      R"sql(
CREATE TABLE agents (
  id INTEGER PRIMARY KEY,
  tenant_id INTEGER NOT NULL REFERENCES tenants(id),
  name TEXT NOT NULL,
  agent_group TEXT NOT NULL DEFAULT '',
  token_id INTEGER NOT NULL UNIQUE,  -- Its agent token (tokens.id).
  version TEXT NOT NULL DEFAULT '',
  connector_types TEXT NOT NULL DEFAULT '[]',
  online INTEGER NOT NULL DEFAULT 0,
  last_seen_at INTEGER,
  created_at INTEGER NOT NULL
);
CREATE INDEX agents_by_tenant ON agents(tenant_id, id);
-- An agent-mode connector runs on the online agent with this name or group.
ALTER TABLE connectors ADD COLUMN agent TEXT NOT NULL DEFAULT '';
-- A registration token's agent group (registration tokens only).
ALTER TABLE tokens ADD COLUMN agent_group TEXT NOT NULL DEFAULT '';
)sql",
      // 6: connector schedules. *_handled_at: the last due time the
      // scheduler acted on (started or skipped); the next due time derives
      // from it, so a restart neither forgets nor repeats a run.
      R"sql(
ALTER TABLE connectors ADD COLUMN incremental_minutes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE connectors ADD COLUMN full_cron TEXT NOT NULL DEFAULT '';
ALTER TABLE connectors ADD COLUMN schedule_tz TEXT NOT NULL DEFAULT '';
ALTER TABLE connectors ADD COLUMN incremental_handled_at INTEGER;
ALTER TABLE connectors ADD COLUMN full_handled_at INTEGER;
)sql",
      // 7: ids are never reused.
      NeverReuseIds,
  };
  return *migrations;
}

}  // namespace

absl::Status Migrate(sqlite3* db, int64_t up_to) {
  IDSYNC_ASSIGN_OR_RETURN(Statement version,
                          Statement::Prepare(db, "PRAGMA user_version"));
  IDSYNC_ASSIGN_OR_RETURN(bool has_row, version.Step());
  const int64_t applied = has_row ? version.Int(0) : 0;
  version.Reset();
  const int64_t all = static_cast<int64_t>(Migrations().size());
  const int64_t known = up_to < 0 ? all : std::min(up_to, all);
  if (applied > all) {
    return absl::FailedPreconditionError(
        absl::StrCat("store schema version ", applied,
                     " is newer than this idsync understands (", all, ")"));
  }
  // Table rebuilds drop tables others refer to; SQLite's procedure for
  // them runs with foreign keys off (a PRAGMA that only works outside a
  // transaction), and checks them after.
  if (applied < known)
    IDSYNC_RETURN_IF_ERROR(Exec(db, "PRAGMA foreign_keys=OFF"));
  for (int64_t i = applied; i < known; ++i) {
    IDSYNC_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
    const Migration& m = Migrations()[i];
    absl::Status s = m.sql != nullptr ? Exec(db, m.sql) : m.run(db);
    if (s.ok()) {
      IDSYNC_ASSIGN_OR_RETURN(
          Statement check, Statement::Prepare(db, "PRAGMA foreign_key_check"));
      IDSYNC_ASSIGN_OR_RETURN(bool broken, check.Step());
      if (broken) s = absl::DataLossError("foreign keys broken");
    }
    if (s.ok()) {
      s = Exec(db, absl::StrCat("PRAGMA user_version=", i + 1).c_str());
    }
    if (s.ok()) s = Exec(db, "COMMIT");
    if (!s.ok()) {
      Exec(db, "ROLLBACK").IgnoreError();
      Exec(db, "PRAGMA foreign_keys=ON").IgnoreError();
      return absl::Status(s.code(),
                          absl::StrCat("migration ", i + 1, ": ", s.message()));
    }
  }
  return Exec(db, "PRAGMA foreign_keys=ON");
}

}  // namespace idsync
