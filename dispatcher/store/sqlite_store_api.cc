// SqliteStore: the API's reads (on pooled read connections) and writes (in
// one transaction on the write connection).
#include <utility>
#include <variant>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "connector/status_macros.h"
#include "dispatcher/store/outbox.h"
#include "dispatcher/store/record_schema.h"
#include "dispatcher/store/record_writer.h"
#include "dispatcher/store/sqlite_rows.h"
#include "dispatcher/store/sqlite_store.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

using google::protobuf::util::TimeUtil;
using idsync::v1::RecordKind;

constexpr size_t kMaxPooledReaders = 16;

// One SELECT ... FROM ... WHERE ... page, with its count.
struct ListSql {
  std::string columns;
  std::string from;
  std::string count_from;  // FROM for the count, if it can skip joins.
  std::string id_column;
  std::vector<std::string> where;
  std::vector<std::variant<int64_t, std::string>> binds;

  void Where(std::string condition) { where.push_back(std::move(condition)); }
  template <typename T>
  void Where(std::string condition, T value) {
    where.push_back(std::move(condition));
    binds.emplace_back(std::move(value));
  }
};

// Runs the count (cached until the database changes) and the page; calls
// `row` for each row of the page.
absl::StatusOr<int64_t> RunList(
    ReadConnection& conn, const ListSql& sql, const ListQuery& q,
    const std::function<void(const Statement&)>& row) {
  const std::string where = absl::StrJoin(sql.where, " AND ");
  auto bind_filters = [&](Statement& s) {
    int i = 1;
    for (const auto& b : sql.binds) {
      if (std::holds_alternative<int64_t>(b)) {
        s.Bind(i++, std::get<int64_t>(b));
      } else {
        s.Bind(i++, absl::string_view(std::get<std::string>(b)));
      }
    }
    return i;
  };
  const std::string count_sql = absl::StrCat(
      "SELECT count(*) FROM ",
      sql.count_from.empty() ? sql.from : sql.count_from, " WHERE ", where);
  std::string key = count_sql;
  for (const auto& b : sql.binds) {
    absl::StrAppend(&key, "\x1f",
                    std::holds_alternative<int64_t>(b)
                        ? absl::StrCat(std::get<int64_t>(b))
                        : std::get<std::string>(b));
  }
  IDSYNC_ASSIGN_OR_RETURN(std::optional<int64_t> total, conn.CachedTotal(key));
  if (!total.has_value()) {
    IDSYNC_ASSIGN_OR_RETURN(Statement * count, conn.Prepare(count_sql));
    bind_filters(*count);
    IDSYNC_ASSIGN_OR_RETURN(bool has_count, count->Step());
    total = has_count ? count->Int(0) : 0;
    count->Reset();
    conn.StoreTotal(key, *total);
  }

  std::string page_where = where;
  if (q.after_id.has_value()) {
    absl::StrAppend(&page_where, " AND ", sql.id_column, " > ?");
  }
  IDSYNC_ASSIGN_OR_RETURN(
      Statement * page,
      conn.Prepare(absl::StrCat("SELECT ", sql.columns, " FROM ", sql.from,
                                " WHERE ", page_where, " ORDER BY ",
                                sql.id_column, " LIMIT ? OFFSET ?")));
  int i = bind_filters(*page);
  if (q.after_id.has_value()) page->Bind(i++, *q.after_id);
  page->Bind(i++, static_cast<int64_t>(q.limit));
  page->Bind(i++, q.after_id.has_value() ? int64_t{0} : q.offset);
  while (true) {
    absl::StatusOr<bool> more = page->Step();
    if (!more.ok()) {
      page->Reset();
      return more.status();
    }
    if (!*more) break;
    row(*page);
  }
  page->Reset();
  return *total;
}

google::protobuf::Timestamp Stamp(int64_t us) {
  return TimeUtil::MicrosecondsToTimestamp(us);
}

// Builds one record message from a row selected by RecordSql: the column
// names are the message's field names.
template <typename Msg>
Msg ReadRecord(const KindSchema& kind, const Statement& s) {
  // The message fields of the kind's columns, looked up once per type.
  static const auto* fields = [&kind] {
    auto* v = new std::vector<const google::protobuf::FieldDescriptor*>();
    for (const char* column : kind.columns) {
      v->push_back(Msg::descriptor()->FindFieldByName(column));
    }
    return v;
  }();
  Msg m;
  const google::protobuf::Reflection* r = m.GetReflection();
  int c = 0;
  m.set_id(s.Int(c++));
  m.set_source(s.Text(c++));
  m.set_connector_id(s.Int(c++));
  for (const google::protobuf::FieldDescriptor* field : *fields) {
    r->SetString(&m, field, s.Text(c++));
  }
  if (!s.IsNull(c) && !ParseAttributesJson(s.Text(c), m.mutable_attributes())) {
    m.mutable_attributes()->clear();
    auto attributes = nlohmann::json::parse(s.Text(c), nullptr, false);
    if (attributes.is_object()) {
      for (const auto& [key, value] : attributes.items()) {
        if (value.is_string()) (*m.mutable_attributes())[key] = value;
      }
    }
  }
  ++c;
  m.set_active(s.Int(c++) != 0);
  *m.mutable_created_at() = Stamp(s.Int(c++));
  *m.mutable_updated_at() = Stamp(s.Int(c++));
  if (!s.IsNull(c)) *m.mutable_deactivated_at() = Stamp(s.Int(c));
  return m;
}

ListSql RecordSql(const KindSchema& kind, const ListQuery& q) {
  ListSql sql;
  std::vector<std::string> columns = {"r.id", "c.business_id",
                                      "r.connector_id"};
  for (const char* column : kind.columns)
    columns.push_back(absl::StrCat("r.", column));
  for (const char* column : {"r.attributes", "r.deleted_at IS NULL",
                             "r.created_at", "r.updated_at", "r.deleted_at"}) {
    columns.push_back(column);
  }
  sql.columns = absl::StrJoin(columns, ", ");
  sql.from =
      absl::StrCat(kind.table, " r JOIN connectors c ON c.id = r.connector_id");
  sql.id_column = "r.id";
  // The join only names the source; counting needs it only to filter by it.
  if (q.source.empty()) sql.count_from = absl::StrCat(kind.table, " r");
  sql.Where("r.tenant_id=?", q.tenant_id);
  if (q.connector_id.has_value())
    sql.Where("r.connector_id=?", *q.connector_id);
  if (!q.source.empty()) sql.Where("c.business_id=?", q.source);
  if (!q.include_inactive) sql.Where("r.deleted_at IS NULL");
  for (const auto& [column, value] : q.equals) {
    sql.Where(absl::StrCat("r.", column, "=?"), value);
  }
  if (!q.grants_of_identity.empty()) {
    sql.Where(
        "EXISTS (SELECT 1 FROM accounts a WHERE a.tenant_id = r.tenant_id AND "
        "a.connector_id = r.connector_id AND a.external_id = "
        "r.account_external_id AND a.identity_external_id = ?)",
        q.grants_of_identity);
  }
  return sql;
}

template <typename Msg>
absl::StatusOr<int64_t> ListRecords(ReadConnection& conn, RecordKind kind,
                                    const ListQuery& q,
                                    std::vector<Msg>* items) {
  const KindSchema& schema = SchemaFor(kind);
  return RunList(conn, RecordSql(schema, q), q, [&](const Statement& s) {
    items->push_back(ReadRecord<Msg>(schema, s));
  });
}

constexpr char kTokenColumns[] =
    "id, tenant_id, name, kind, role, prefix, created_at, revoked_at, "
    "agent_group";

TokenRow ReadToken(const Statement& s) {
  TokenRow t;
  t.id = s.Int(0);
  t.tenant_id = s.Int(1);
  t.name = s.Text(2);
  t.kind = s.Text(3);
  t.role = s.Text(4);
  t.prefix = s.Text(5);
  t.created_at = FromMicros(s.Int(6));
  if (!s.IsNull(7)) t.revoked_at = FromMicros(s.Int(7));
  t.agent_group = s.Text(8);
  return t;
}

// Runs one statement that returns nothing, with its bindings applied by
// `bind`.
absl::Status RunSql(sqlite3* db, const char* sql,
                    const std::function<void(Statement&)>& bind) {
  IDSYNC_ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, sql));
  bind(s);
  return s.Run();
}

class SqliteWriteTxn final : public WriteTxn {
 public:
  SqliteWriteTxn(sqlite3* db, absl::Time now) : db_(db), now_(now) {}

  absl::Time now() const override { return now_; }
  sqlite3* db() const { return db_; }

  absl::StatusOr<int64_t> ApiConnector(int64_t tenant_id) override {
    IDSYNC_ASSIGN_OR_RETURN(
        Statement find,
        Statement::Prepare(db_,
                           "SELECT id FROM connectors WHERE tenant_id=? AND "
                           "business_id='api' AND type='api'"));
    find.Bind(1, tenant_id);
    IDSYNC_ASSIGN_OR_RETURN(bool found, find.Step());
    if (found) return find.Int(0);
    ConnectorRow row;
    row.tenant_id = tenant_id;
    row.business_id = "api";
    row.type = "api";
    return InsertConnector(row);
  }

  absl::StatusOr<int64_t> InsertRecord(int64_t tenant_id, int64_t connector_id,
                                       RecordKind kind,
                                       const google::protobuf::Message& record,
                                       uint64_t content_hash) override {
    IDSYNC_RETURN_IF_ERROR(PrepareRecords());
    IDSYNC_ASSIGN_OR_RETURN(
        int64_t id, records_->Insert(Scope(tenant_id, connector_id), kind,
                                     record, content_hash));
    IDSYNC_RETURN_IF_ERROR(Events(tenant_id, connector_id));
    IDSYNC_RETURN_IF_ERROR(
        outbox_->QueueRecord(kind, RecordChange::kCreated, id, &record));
    return id;
  }

  absl::Status UpdateRecord(int64_t tenant_id, int64_t connector_id,
                            RecordKind kind, int64_t id,
                            const google::protobuf::Message& record,
                            uint64_t content_hash) override {
    IDSYNC_RETURN_IF_ERROR(PrepareRecords());
    IDSYNC_RETURN_IF_ERROR(records_->Update(Scope(tenant_id, connector_id),
                                            kind, id, record, content_hash));
    IDSYNC_RETURN_IF_ERROR(Events(tenant_id, connector_id));
    return outbox_->QueueRecord(kind, RecordChange::kUpdated, id, &record);
  }

  absl::Status DeactivateRecord(RecordKind kind, int64_t id) override {
    IDSYNC_RETURN_IF_ERROR(PrepareRecords());
    IDSYNC_RETURN_IF_ERROR(records_->MarkDeleted(Scope(0, 0), kind, id));
    IDSYNC_ASSIGN_OR_RETURN(
        Statement owner,
        Statement::Prepare(db_,
                           absl::StrCat("SELECT tenant_id, connector_id "
                                        "FROM ",
                                        SchemaFor(kind).table, " WHERE id=?")));
    owner.Bind(1, id);
    IDSYNC_ASSIGN_OR_RETURN(bool found, owner.Step());
    if (!found) return absl::OkStatus();
    IDSYNC_RETURN_IF_ERROR(Events(owner.Int(0), owner.Int(1)));
    return outbox_->QueueRecord(kind, RecordChange::kDeactivated, id, nullptr);
  }

  // Writes the record events this transaction queued. Before COMMIT.
  absl::Status FlushEvents() {
    if (outbox_ == nullptr) return absl::OkStatus();
    return outbox_->Flush(
        absl::StrCat("\"source\":\"api\",\"connector_id\":", events_connector_),
        now_);
  }

  absl::StatusOr<int64_t> InsertConnector(const ConnectorRow& row) override {
    IDSYNC_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(
            db_,
            "INSERT INTO connectors(tenant_id, business_id, type, mode, "
            "config, deletion_threshold, created_at, updated_at, agent) "
            "VALUES(?,?,?,?,?,?,?,?,?) ON CONFLICT(tenant_id, business_id) DO "
            "NOTHING"));
    s.Bind(1, row.tenant_id).Bind(2, row.business_id).Bind(3, row.type);
    s.Bind(4, row.mode)
        .Bind(5, row.config_json)
        .Bind(6, row.deletion_threshold);
    s.Bind(7, Micros(now_)).Bind(8, Micros(now_)).Bind(9, row.agent);
    IDSYNC_RETURN_IF_ERROR(s.Run());
    if (sqlite3_changes(db_) == 0) {
      return absl::AlreadyExistsError(absl::StrCat(
          "a connector named '", row.business_id, "' already exists"));
    }
    return sqlite3_last_insert_rowid(db_);
  }

  absl::Status UpdateConnector(const ConnectorRow& row) override {
    return RunSql(db_,
                  "UPDATE connectors SET mode=?, config=?, "
                  "deletion_threshold=?, updated_at=?, agent=? WHERE "
                  "tenant_id=? AND id=?",
                  [&](Statement& s) {
                    s.Bind(1, row.mode).Bind(2, row.config_json);
                    s.Bind(3, row.deletion_threshold).Bind(4, Micros(now_));
                    s.Bind(5, row.agent);
                    s.Bind(6, row.tenant_id).Bind(7, row.id);
                  });
  }

  absl::Status SetConnectorAuth(int64_t tenant_id, int64_t id,
                                absl::string_view sealed) override {
    return RunSql(db_,
                  "UPDATE connectors SET auth_config=?, updated_at=? WHERE "
                  "tenant_id=? AND id=?",
                  [&](Statement& s) {
                    if (sealed.empty()) {
                      s.BindNull(1);
                    } else {
                      s.BindBlob(1, sealed);
                    }
                    s.Bind(2, Micros(now_)).Bind(3, tenant_id).Bind(4, id);
                  });
  }

  absl::Status SetSchedule(int64_t tenant_id, int64_t id,
                           const ConnectorSchedule& schedule) override {
    return RunSql(
        db_,
        "UPDATE connectors SET incremental_minutes=?, full_cron=?, "
        "schedule_tz=?, incremental_handled_at=?, full_handled_at=? WHERE "
        "tenant_id=? AND id=?",
        [&](Statement& s) {
          s.Bind(1, static_cast<int64_t>(schedule.incremental_minutes));
          s.Bind(2, schedule.full_cron).Bind(3, schedule.time_zone);
          BindTime(s, 4, schedule.incremental_handled_at);
          BindTime(s, 5, schedule.full_handled_at);
          s.Bind(6, tenant_id).Bind(7, id);
        });
  }

  absl::Status MarkScheduleHandled(int64_t tenant_id, int64_t id,
                                   std::optional<absl::Time> incremental,
                                   std::optional<absl::Time> full) override {
    return RunSql(db_,
                  "UPDATE connectors SET incremental_handled_at="
                  "coalesce(?, incremental_handled_at), full_handled_at="
                  "coalesce(?, full_handled_at) WHERE tenant_id=? AND id=?",
                  [&](Statement& s) {
                    BindTime(s, 1, incremental);
                    BindTime(s, 2, full);
                    s.Bind(3, tenant_id).Bind(4, id);
                  });
  }

  absl::Status DeleteConnector(int64_t tenant_id, int64_t id) override {
    for (const KindSchema& k : AllKinds()) {
      IDSYNC_RETURN_IF_ERROR(RecordWriter::RaiseFloor(db_, k.kind));
    }
    std::vector<std::string> tables;
    for (const KindSchema& k : AllKinds()) {
      tables.push_back(k.key_table);
      tables.push_back(k.table);
    }
    tables.push_back("sync_runs");  // Rejects and seen ids cascade.
    for (const std::string& table : tables) {
      const std::string sql = absl::StrCat(
          "DELETE FROM ", table, " WHERE tenant_id=? AND connector_id=?");
      IDSYNC_RETURN_IF_ERROR(RunSql(db_, sql.c_str(), [&](Statement& s) {
        s.Bind(1, tenant_id).Bind(2, id);
      }));
    }
    return RunSql(db_, "DELETE FROM connectors WHERE tenant_id=? AND id=?",
                  [&](Statement& s) { s.Bind(1, tenant_id).Bind(2, id); });
  }

  absl::StatusOr<RunRow> InsertRun(const RunRow& run) override {
    absl::StatusOr<int64_t> id = InsertRunRow(db_, run);
    if (absl::IsFailedPrecondition(id.status())) {
      // A constraint failed: the one-active-run index, or a bad reference.
      IDSYNC_ASSIGN_OR_RETURN(
          Statement active,
          Statement::Prepare(db_,
                             "SELECT id FROM sync_runs WHERE connector_id=? "
                             "AND status='running'"));
      active.Bind(1, run.connector_id);
      IDSYNC_ASSIGN_OR_RETURN(bool running, active.Step());
      if (running) {
        return absl::FailedPreconditionError(
            absl::StrCat("connector ", run.connector_id,
                         " already has an active run (", active.Int(0), ")"));
      }
    }
    IDSYNC_RETURN_IF_ERROR(id.status());
    IDSYNC_ASSIGN_OR_RETURN(
        Statement s,
        Statement::Prepare(db_, absl::StrCat("SELECT ", kRunColumns,
                                             " FROM sync_runs WHERE id=?")));
    s.Bind(1, *id);
    IDSYNC_ASSIGN_OR_RETURN(bool found, s.Step());
    if (!found) return absl::InternalError("store: new run vanished");
    RunRow created = ReadRun(s);
    IDSYNC_RETURN_IF_ERROR(PublishRunEvent(db_, created, now_));
    return created;
  }

  absl::StatusOr<int64_t> InsertToken(const TokenRow& row,
                                      absl::string_view hash) override {
    IDSYNC_RETURN_IF_ERROR(
        RunSql(db_,
               "INSERT INTO tokens(tenant_id, name, kind, role, hash, prefix, "
               "created_at, agent_group) VALUES(?,?,?,?,?,?,?,?)",
               [&](Statement& s) {
                 s.Bind(1, row.tenant_id).Bind(2, row.name).Bind(3, row.kind);
                 s.Bind(4, row.role).BindBlob(5, hash).Bind(6, row.prefix);
                 s.Bind(7, Micros(now_)).Bind(8, row.agent_group);
               }));
    return sqlite3_last_insert_rowid(db_);
  }

  absl::Status RevokeToken(int64_t tenant_id, int64_t id) override {
    return RunSql(db_,
                  "UPDATE tokens SET revoked_at=? WHERE tenant_id=? AND id=? "
                  "AND revoked_at IS NULL",
                  [&](Statement& s) {
                    s.Bind(1, Micros(now_)).Bind(2, tenant_id).Bind(3, id);
                  });
  }

  absl::StatusOr<int64_t> InsertWebhook(const WebhookRow& row) override {
    // Bound text is not copied: it must outlive the statement's step.
    const std::string types = nlohmann::json(row.event_types).dump();
    IDSYNC_RETURN_IF_ERROR(
        RunSql(db_,
               "INSERT INTO webhooks(tenant_id, url, event_types, enabled, "
               "created_at, updated_at) VALUES(?,?,?,?,?,?)",
               [&](Statement& st) {
                 st.Bind(1, row.tenant_id).Bind(2, row.url);
                 st.Bind(3, types);
                 st.Bind(4, static_cast<int64_t>(row.enabled));
                 st.Bind(5, Micros(now_)).Bind(6, Micros(now_));
               }));
    return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
  }

  absl::Status SetWebhookSecret(int64_t tenant_id, int64_t id,
                                absl::string_view sealed) override {
    IDSYNC_RETURN_IF_ERROR(
        RunSql(db_, "UPDATE webhooks SET secret=? WHERE id=? AND tenant_id=?",
               [&](Statement& st) {
                 st.BindBlob(1, sealed).Bind(2, id).Bind(3, tenant_id);
               }));
    return Changed("webhook", id);
  }

  absl::Status UpdateWebhook(const WebhookRow& row) override {
    const std::string types = nlohmann::json(row.event_types).dump();
    IDSYNC_RETURN_IF_ERROR(RunSql(
        db_,
        "UPDATE webhooks SET url=?, event_types=?, enabled=?, "
        "disabled_reason=CASE WHEN ?=1 THEN '' ELSE disabled_reason END, "
        "updated_at=? WHERE id=? AND tenant_id=?",
        [&](Statement& st) {
          st.Bind(1, row.url).Bind(2, types);
          st.Bind(3, static_cast<int64_t>(row.enabled));
          st.Bind(4, static_cast<int64_t>(row.enabled)).Bind(5, Micros(now_));
          st.Bind(6, row.id).Bind(7, row.tenant_id);
        }));
    return Changed("webhook", row.id);
  }

  absl::Status DeleteWebhook(int64_t tenant_id, int64_t id) override {
    IDSYNC_RETURN_IF_ERROR(
        RunSql(db_, "DELETE FROM deliveries WHERE webhook_id=? AND tenant_id=?",
               [&](Statement& st) { st.Bind(1, id).Bind(2, tenant_id); }));
    IDSYNC_RETURN_IF_ERROR(
        RunSql(db_, "DELETE FROM webhooks WHERE id=? AND tenant_id=?",
               [&](Statement& st) { st.Bind(1, id).Bind(2, tenant_id); }));
    return Changed("webhook", id);
  }

  absl::Status ReplayDelivery(int64_t tenant_id, int64_t webhook_id,
                              int64_t delivery_id) override {
    IDSYNC_RETURN_IF_ERROR(RunSql(
        db_,
        "UPDATE deliveries SET state='pending', attempts=0, "
        "next_attempt_at=?, last_status=0, last_error='', "
        "delivered_at=NULL, updated_at=? WHERE id=? AND "
        "webhook_id=? AND tenant_id=?",
        [&](Statement& st) {
          st.Bind(1, Micros(now_)).Bind(2, Micros(now_)).Bind(3, delivery_id);
          st.Bind(4, webhook_id).Bind(5, tenant_id);
        }));
    return Changed("delivery", delivery_id);
  }

  absl::StatusOr<bool> SetCallbackSecret(int64_t tenant_id,
                                         absl::string_view sealed) override {
    IDSYNC_RETURN_IF_ERROR(RunSql(
        db_,
        "UPDATE tenants SET callback_secret=? WHERE id=? AND "
        "callback_secret IS NULL",
        [&](Statement& st) { st.BindBlob(1, sealed).Bind(2, tenant_id); }));
    return sqlite3_changes(db_) > 0;
  }

  absl::Status Audit(const AuditEntry& e) override {
    return RunSql(db_,
                  "INSERT INTO audit_events(tenant_id, at, actor, action, "
                  "resource_type, resource_id, request_id, details) "
                  "VALUES(?,?,?,?,?,?,?,?)",
                  [&](Statement& s) {
                    s.Bind(1, e.tenant_id).Bind(2, Micros(now_));
                    s.Bind(3, e.actor).Bind(4, e.action);
                    s.Bind(5, e.resource_type).Bind(6, e.resource_id);
                    s.Bind(7, e.request_id).Bind(8, e.details_json);
                  });
  }

  absl::Status CompleteIdempotent(int64_t tenant_id, absl::string_view key,
                                  int status,
                                  absl::string_view response) override {
    return RunSql(db_,
                  "UPDATE idempotency_keys SET state='done', status=?, "
                  "response=? WHERE tenant_id=? AND key=?",
                  [&](Statement& s) {
                    s.Bind(1, static_cast<int64_t>(status));
                    s.BindBlob(2, response).Bind(3, tenant_id).Bind(4, key);
                  });
  }

 private:
  // kNotFound when the last statement changed no row.
  absl::Status Changed(absl::string_view what, int64_t id) {
    if (sqlite3_changes(db_) > 0) return absl::OkStatus();
    return absl::NotFoundError(absl::StrCat(what, " ", id, " not found"));
  }

  // The outbox, loaded for the tenant the transaction writes records of.
  absl::Status Events(int64_t tenant_id, int64_t connector_id) {
    if (outbox_ == nullptr) {
      IDSYNC_ASSIGN_OR_RETURN(outbox_, Outbox::Prepare(db_));
      IDSYNC_RETURN_IF_ERROR(outbox_->Load(tenant_id));
      events_tenant_ = tenant_id;
    } else if (events_tenant_ != tenant_id) {
      return absl::InternalError("store: one write transaction, two tenants");
    }
    events_connector_ = connector_id;
    return absl::OkStatus();
  }

  std::unique_ptr<Outbox> outbox_;
  int64_t events_tenant_ = 0, events_connector_ = 0;
  absl::Status PrepareRecords() {
    if (records_.has_value()) return absl::OkStatus();
    IDSYNC_ASSIGN_OR_RETURN(records_, RecordWriter::Prepare(db_));
    return absl::OkStatus();
  }
  RecordScope Scope(int64_t tenant_id, int64_t connector_id) const {
    RecordScope scope;
    scope.tenant_id = tenant_id;
    scope.connector_id = connector_id;
    scope.now_us = Micros(now_);
    return scope;
  }

  sqlite3* const db_;
  const absl::Time now_;
  std::optional<RecordWriter> records_;
};

// The connection of a transaction that SqliteStore::Write opened.
sqlite3* Raw(WriteTxn& txn) { return static_cast<SqliteWriteTxn&>(txn).db(); }

// Every row `sql` returns, each read by `read`.
template <typename Read>
auto ReadAll(sqlite3* db, absl::string_view sql, Read read)
    -> absl::StatusOr<std::vector<decltype(read(std::declval<Statement&>()))>> {
  IDSYNC_ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db, sql));
  std::vector<decltype(read(s))> rows;
  while (true) {
    IDSYNC_ASSIGN_OR_RETURN(bool more, s.Step());
    if (!more) break;
    rows.push_back(read(s));
  }
  return rows;
}

}  // namespace

SqliteStore::ReadLease::~ReadLease() {
  if (conn_ == nullptr) return;
  absl::MutexLock lock(&store_.pool_mu_);
  if (store_.readers_.size() < kMaxPooledReaders) {
    store_.readers_.push_back(std::move(conn_));
  }
}

absl::StatusOr<SqliteStore::ReadLease> SqliteStore::Reader() {
  {
    absl::MutexLock lock(&pool_mu_);
    if (!readers_.empty()) {
      std::unique_ptr<ReadConnection> conn = std::move(readers_.back());
      readers_.pop_back();
      return ReadLease(*this, std::move(conn));
    }
  }
  IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<ReadConnection> conn,
                          ReadConnection::Open(path_));
  return ReadLease(*this, std::move(conn));
}

absl::StatusOr<int64_t> SqliteStore::ListIdentities(
    const ListQuery& q, std::vector<idsync::v1::Identity>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  return ListRecords(*db, idsync::v1::RECORD_KIND_IDENTITY, q, items);
}

absl::StatusOr<int64_t> SqliteStore::ListAccounts(
    const ListQuery& q, std::vector<idsync::v1::Account>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  return ListRecords(*db, idsync::v1::RECORD_KIND_ACCOUNT, q, items);
}

absl::StatusOr<int64_t> SqliteStore::ListEntitlements(
    const ListQuery& q, std::vector<idsync::v1::Entitlement>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  return ListRecords(*db, idsync::v1::RECORD_KIND_ENTITLEMENT, q, items);
}

absl::StatusOr<int64_t> SqliteStore::ListGrants(
    const ListQuery& q, std::vector<idsync::v1::Grant>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  return ListRecords(*db, idsync::v1::RECORD_KIND_GRANT, q, items);
}

absl::StatusOr<int64_t> SqliteStore::ListConnectors(
    const ListQuery& q, std::vector<ConnectorRow>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  ListSql sql;
  sql.columns = kConnectorColumns;
  sql.from = "connectors";
  sql.id_column = "id";
  sql.Where("tenant_id=?", q.tenant_id);
  sql.Where("type != 'api'");  // The API's own source is not a connector.
  if (q.connector_id.has_value()) sql.Where("id=?", *q.connector_id);
  return RunList(*db, sql, q, [&](const Statement& s) {
    items->push_back(ReadConnector(s));
  });
}

absl::StatusOr<int64_t> SqliteStore::ListRuns(const ListQuery& q,
                                              std::vector<RunRow>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  ListSql sql;
  sql.columns = kRunColumns;
  sql.from = "sync_runs";
  sql.id_column = "id";
  sql.Where("tenant_id=?", q.tenant_id);
  if (q.connector_id.has_value()) sql.Where("connector_id=?", *q.connector_id);
  for (const auto& [column, value] : q.equals) {
    sql.Where(absl::StrCat(column, "=?"), value);
  }
  return RunList(*db, sql, q,
                 [&](const Statement& s) { items->push_back(ReadRun(s)); });
}

absl::StatusOr<int64_t> SqliteStore::ListTokens(const ListQuery& q,
                                                std::vector<TokenRow>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  ListSql sql;
  sql.columns = kTokenColumns;
  sql.from = "tokens";
  sql.id_column = "id";
  sql.Where("tenant_id=?", q.tenant_id);
  for (const auto& [column, value] : q.equals) {
    sql.Where(absl::StrCat(column, "=?"), value);
  }
  return RunList(*db, sql, q,
                 [&](const Statement& s) { items->push_back(ReadToken(s)); });
}

absl::StatusOr<int64_t> SqliteStore::ListAudit(
    const ListQuery& q, std::vector<idsync::v1::AuditEvent>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  ListSql sql;
  sql.columns =
      "id, at, actor, action, resource_type, resource_id, request_id, details";
  sql.from = "audit_events";
  sql.id_column = "id";
  sql.Where("tenant_id=?", q.tenant_id);
  for (const auto& [column, value] : q.equals) {
    sql.Where(absl::StrCat(column, "=?"), value);
  }
  return RunList(*db, sql, q, [&](const Statement& s) {
    idsync::v1::AuditEvent& e = items->emplace_back();
    e.set_id(s.Int(0));
    *e.mutable_at() = Stamp(s.Int(1));
    e.set_actor(s.Text(2));
    e.set_action(s.Text(3));
    e.set_resource_type(s.Text(4));
    e.set_resource_id(s.Text(5));
    e.set_request_id(s.Text(6));
    // Written by us as a JSON object; a parse failure leaves it empty.
    (void)google::protobuf::util::JsonStringToMessage(s.Text(7),
                                                      e.mutable_details());
  });
}

absl::StatusOr<std::string> SqliteStore::ConnectorAuth(int64_t tenant_id,
                                                       int64_t id) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  IDSYNC_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(db->db(),
                         "SELECT auth_config FROM connectors WHERE "
                         "tenant_id=? AND id=?"));
  s.Bind(1, tenant_id).Bind(2, id);
  IDSYNC_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found)
    return absl::NotFoundError(absl::StrCat("connector ", id, " not found"));
  return s.Blob(0);
}

absl::StatusOr<TokenRow> SqliteStore::FindToken(absl::string_view hash) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  IDSYNC_ASSIGN_OR_RETURN(
      Statement * s, db->Prepare(absl::StrCat("SELECT ", kTokenColumns,
                                              " FROM tokens WHERE hash=?")));
  s->BindBlob(1, hash);
  absl::StatusOr<bool> found = s->Step();
  std::optional<TokenRow> token;
  if (found.ok() && *found) token = ReadToken(*s);
  s->Reset();
  if (!found.ok()) return found.status();
  if (!token.has_value()) return absl::NotFoundError("unknown token");
  return *std::move(token);
}

absl::StatusOr<std::vector<RunRow>> SqliteStore::RunningRuns() {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  return ReadAll(db->db(),
                 absl::StrCat("SELECT ", kRunColumns,
                              " FROM sync_runs WHERE status='running' ORDER BY "
                              "id"),
                 ReadRun);
}

absl::StatusOr<std::vector<ConnectorRow>> SqliteStore::ScheduledConnectors() {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  return ReadAll(db->db(),
                 absl::StrCat("SELECT ", kConnectorColumns,
                              " FROM connectors WHERE incremental_minutes > 0 "
                              "OR full_cron != '' ORDER BY id"),
                 ReadConnector);
}

namespace {

constexpr char kWebhookColumns[] =
    "id, tenant_id, url, event_types, enabled, disabled_reason, created_at, "
    "updated_at";

// Columns of deliveries d joined with outbox o, in ReadDelivery's order.
constexpr char kDeliveryColumns[] =
    "d.id, d.tenant_id, d.outbox_id, coalesce(d.webhook_id, 0), d.url, "
    "o.type, d.state, d.attempts, d.next_attempt_at, d.last_status, "
    "d.last_error, d.created_at, d.updated_at, d.delivered_at";
constexpr int kDeliveryColumnCount = 14;

WebhookRow ReadWebhook(const Statement& s) {
  WebhookRow w;
  w.id = s.Int(0);
  w.tenant_id = s.Int(1);
  w.url = s.Text(2);
  nlohmann::json types = nlohmann::json::parse(s.Text(3), nullptr, false);
  if (types.is_array()) {
    for (const auto& t : types) {
      if (t.is_string()) w.event_types.push_back(t.get<std::string>());
    }
  }
  w.enabled = s.Int(4) != 0;
  w.disabled_reason = s.Text(5);
  w.created_at = FromMicros(s.Int(6));
  w.updated_at = FromMicros(s.Int(7));
  return w;
}

DeliveryRow ReadDelivery(const Statement& s) {
  DeliveryRow d;
  d.id = s.Int(0);
  d.tenant_id = s.Int(1);
  d.event_id = s.Int(2);
  d.webhook_id = s.Int(3);
  d.url = s.Text(4);
  d.event_type = s.Text(5);
  d.state = s.Text(6);
  d.attempts = static_cast<int32_t>(s.Int(7));
  d.next_attempt_at = FromMicros(s.Int(8));
  d.last_status = static_cast<int32_t>(s.Int(9));
  d.last_error = s.Text(10);
  d.created_at = FromMicros(s.Int(11));
  d.updated_at = FromMicros(s.Int(12));
  if (!s.IsNull(13)) d.delivered_at = FromMicros(s.Int(13));
  return d;
}

}  // namespace

absl::StatusOr<int64_t> SqliteStore::ListWebhooks(
    const ListQuery& q, std::vector<WebhookRow>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  ListSql sql;
  sql.columns = kWebhookColumns;
  sql.from = "webhooks";
  sql.id_column = "id";
  sql.Where("tenant_id=?", q.tenant_id);
  return RunList(*db, sql, q,
                 [&](const Statement& s) { items->push_back(ReadWebhook(s)); });
}

absl::StatusOr<WebhookRow> SqliteStore::GetWebhook(int64_t tenant_id,
                                                   int64_t id) {
  ListQuery q;
  q.tenant_id = tenant_id;
  q.limit = 1;
  q.after_id = id - 1;
  std::vector<WebhookRow> rows;
  IDSYNC_RETURN_IF_ERROR(ListWebhooks(q, &rows).status());
  if (rows.empty() || rows.front().id != id) {
    return absl::NotFoundError(absl::StrCat("webhook ", id, " not found"));
  }
  return rows.front();
}

absl::StatusOr<int64_t> SqliteStore::ListDeliveries(
    const ListQuery& q, int64_t webhook_id, std::vector<DeliveryRow>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  ListSql sql;
  sql.columns = kDeliveryColumns;
  sql.from = "deliveries d JOIN outbox o ON o.id=d.outbox_id";
  sql.count_from = "deliveries d";
  sql.id_column = "d.id";
  sql.Where("d.tenant_id=?", q.tenant_id);
  sql.Where("d.webhook_id=?", webhook_id);
  return RunList(*db, sql, q, [&](const Statement& s) {
    items->push_back(ReadDelivery(s));
  });
}

absl::StatusOr<std::string> SqliteStore::CallbackSecret(int64_t tenant_id) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  IDSYNC_ASSIGN_OR_RETURN(
      Statement * s,
      db->Prepare("SELECT coalesce(callback_secret, '') FROM tenants WHERE "
                  "id=?"));
  s->Bind(1, tenant_id);
  absl::StatusOr<bool> found = s->Step();
  std::string sealed = found.ok() && *found ? s->Blob(0) : "";
  s->Reset();
  IDSYNC_RETURN_IF_ERROR(found.status());
  return sealed;
}

absl::StatusOr<std::vector<DueDelivery>> SqliteStore::DueDeliveries(
    absl::Time now, int limit) {
  absl::MutexLock lock(&mu_);
  IDSYNC_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(
          db_.get(),
          absl::StrCat(
              "SELECT ", kDeliveryColumns,
              ", d.endpoint, o.data, o.created_at, coalesce(w.url, ''), "
              "CASE WHEN d.webhook_id IS NULL THEN t.callback_secret ELSE "
              "w.secret END FROM deliveries d JOIN outbox o ON "
              "o.id=d.outbox_id LEFT JOIN webhooks w ON w.id=d.webhook_id "
              "JOIN tenants t ON t.id=d.tenant_id WHERE d.state='pending' AND "
              "d.next_attempt_at<=? AND (d.webhook_id IS NULL OR "
              "w.enabled=1) AND d.id=(SELECT min(e.id) FROM deliveries e "
              "WHERE e.state='pending' AND e.endpoint=d.endpoint) ORDER BY "
              "d.id LIMIT ?")));
  s.Bind(1, Micros(now)).Bind(2, static_cast<int64_t>(limit));
  std::vector<DueDelivery> due;
  while (true) {
    IDSYNC_ASSIGN_OR_RETURN(bool row, s.Step());
    if (!row) break;
    DueDelivery d;
    d.delivery = ReadDelivery(s);
    int c = kDeliveryColumnCount;
    d.endpoint = s.Text(c++);
    d.data = s.Text(c++);
    d.event_time = FromMicros(s.Int(c++));
    std::string webhook_url = s.Text(c++);
    if (d.delivery.webhook_id > 0) d.delivery.url = std::move(webhook_url);
    d.sealed_secret = s.IsNull(c) ? "" : s.Blob(c);
    d.secret_context = d.delivery.webhook_id > 0
                           ? absl::StrCat("webhook:", d.delivery.webhook_id)
                           : absl::StrCat("callback:", d.delivery.tenant_id);
    due.push_back(std::move(d));
  }
  return due;
}

absl::Status SqliteStore::RecordDelivery(const DeliveryOutcome& o) {
  return Write([&](WriteTxn& txn) -> absl::Status {
    sqlite3* db = Raw(txn);
    IDSYNC_RETURN_IF_ERROR(RunSql(
        db,
        "UPDATE deliveries SET state=?, attempts=?, next_attempt_at=?, "
        "last_status=?, last_error=?, updated_at=?, delivered_at=CASE WHEN "
        "?='delivered' THEN ? ELSE delivered_at END WHERE id=?",
        [&](Statement& st) {
          st.Bind(1, o.state).Bind(2, static_cast<int64_t>(o.attempts));
          st.Bind(3, Micros(o.next_attempt_at));
          st.Bind(4, static_cast<int64_t>(o.last_status)).Bind(5, o.last_error);
          st.Bind(6, Micros(txn.now())).Bind(7, o.state);
          st.Bind(8, Micros(txn.now())).Bind(9, o.id);
        }));
    if (o.disable_webhook.empty()) return absl::OkStatus();
    return RunSql(db,
                  "UPDATE webhooks SET enabled=0, disabled_reason=?, "
                  "updated_at=? WHERE id=(SELECT webhook_id FROM deliveries "
                  "WHERE id=?)",
                  [&](Statement& st) {
                    st.Bind(1, o.disable_webhook).Bind(2, Micros(txn.now()));
                    st.Bind(3, o.id);
                  });
  });
}

absl::Status SqliteStore::PruneDeliveries(absl::Time before) {
  return Write([&](WriteTxn& txn) -> absl::Status {
    sqlite3* db = Raw(txn);
    IDSYNC_RETURN_IF_ERROR(RunSql(
        db,
        "DELETE FROM deliveries WHERE state IN ('delivered', 'dead') AND "
        "updated_at<?",
        [&](Statement& st) { st.Bind(1, Micros(before)); }));
    return RunSql(db,
                  "DELETE FROM outbox WHERE created_at<? AND NOT EXISTS "
                  "(SELECT 1 FROM deliveries d WHERE d.outbox_id=outbox.id)",
                  [&](Statement& st) { st.Bind(1, Micros(before)); });
  });
}

namespace {

constexpr char kAgentColumns[] =
    "id, tenant_id, name, agent_group, token_id, version, connector_types, "
    "online, last_seen_at, created_at";

AgentRow ReadAgent(const Statement& s) {
  AgentRow a;
  a.id = s.Int(0);
  a.tenant_id = s.Int(1);
  a.name = s.Text(2);
  a.group = s.Text(3);
  a.token_id = s.Int(4);
  a.version = s.Text(5);
  nlohmann::json types = nlohmann::json::parse(s.Text(6), nullptr, false);
  if (types.is_array()) {
    for (const auto& t : types) {
      if (t.is_string()) a.connector_types.push_back(t.get<std::string>());
    }
  }
  a.online = s.Int(7) != 0;
  if (!s.IsNull(8)) a.last_seen_at = FromMicros(s.Int(8));
  a.created_at = FromMicros(s.Int(9));
  return a;
}

// One agent by a WHERE clause with one integer parameter, on `db`.
absl::StatusOr<AgentRow> QueryAgent(sqlite3* db, absl::string_view where,
                                    int64_t value) {
  IDSYNC_ASSIGN_OR_RETURN(
      Statement s,
      Statement::Prepare(db, absl::StrCat("SELECT ", kAgentColumns,
                                          " FROM agents WHERE ", where)));
  s.Bind(1, value);
  IDSYNC_ASSIGN_OR_RETURN(bool found, s.Step());
  if (!found) return absl::NotFoundError("agent not found");
  return ReadAgent(s);
}

}  // namespace

absl::StatusOr<int64_t> SqliteStore::ListAgents(const ListQuery& q,
                                                std::vector<AgentRow>* items) {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  ListSql sql;
  sql.columns = kAgentColumns;
  sql.from = "agents";
  sql.id_column = "id";
  sql.Where("tenant_id=?", q.tenant_id);
  return RunList(*db, sql, q,
                 [&](const Statement& s) { items->push_back(ReadAgent(s)); });
}

absl::StatusOr<AgentRow> SqliteStore::GetAgent(int64_t tenant_id, int64_t id) {
  absl::MutexLock lock(&mu_);
  absl::StatusOr<AgentRow> a = QueryAgent(db_.get(), "id=?", id);
  if (!a.ok() || a->tenant_id != tenant_id) {
    return absl::NotFoundError(absl::StrCat("agent ", id, " not found"));
  }
  return a;
}

absl::StatusOr<AgentRow> SqliteStore::AgentByToken(int64_t token_id) {
  absl::MutexLock lock(&mu_);
  return QueryAgent(db_.get(), "token_id=?", token_id);
}

absl::StatusOr<AgentRow> SqliteStore::RegisterAgent(
    absl::string_view registration_hash, absl::string_view name,
    absl::string_view agent_token_hash, absl::string_view agent_prefix) {
  AgentRow agent;
  IDSYNC_RETURN_IF_ERROR(Write([&](WriteTxn& txn) -> absl::Status {
    sqlite3* db = Raw(txn);
    IDSYNC_ASSIGN_OR_RETURN(
        Statement find,
        Statement::Prepare(db,
                           "SELECT id, tenant_id, name, agent_group FROM "
                           "tokens WHERE hash=? AND kind='registration' AND "
                           "revoked_at IS NULL"));
    find.BindBlob(1, registration_hash);
    IDSYNC_ASSIGN_OR_RETURN(bool found, find.Step());
    if (!found) {
      return absl::PermissionDeniedError(
          "the registration token is unknown, already used or revoked");
    }
    const int64_t registration_id = find.Int(0);
    agent.tenant_id = find.Int(1);
    agent.name = name.empty() ? find.Text(2) : std::string(name);
    agent.group = find.Text(3);
    const int64_t now = Micros(txn.now());
    IDSYNC_RETURN_IF_ERROR(
        RunSql(db, "UPDATE tokens SET revoked_at=? WHERE id=?",
               [&](Statement& s) { s.Bind(1, now).Bind(2, registration_id); }));
    IDSYNC_RETURN_IF_ERROR(RunSql(
        db,
        "INSERT INTO tokens(tenant_id, name, kind, role, hash, prefix, "
        "created_at) VALUES(?,?,'agent','agent',?,?,?)",
        [&](Statement& s) {
          s.Bind(1, agent.tenant_id).Bind(2, agent.name);
          s.BindBlob(3, agent_token_hash).Bind(4, agent_prefix).Bind(5, now);
        }));
    agent.token_id = sqlite3_last_insert_rowid(db);
    IDSYNC_RETURN_IF_ERROR(RunSql(
        db,
        "INSERT INTO agents(tenant_id, name, agent_group, token_id, "
        "created_at) VALUES(?,?,?,?,?)",
        [&](Statement& s) {
          s.Bind(1, agent.tenant_id).Bind(2, agent.name).Bind(3, agent.group);
          s.Bind(4, agent.token_id).Bind(5, now);
        }));
    agent.id = sqlite3_last_insert_rowid(db);
    agent.created_at = txn.now();
    AuditEntry audit;
    audit.tenant_id = agent.tenant_id;
    audit.actor = absl::StrCat("registration token ", registration_id);
    audit.action = "agent.register";
    audit.resource_type = "agent";
    audit.resource_id = absl::StrCat(agent.id);
    audit.details_json = nlohmann::json{{"name", agent.name}}.dump();
    return txn.Audit(audit);
  }));
  return agent;
}

absl::Status SqliteStore::SetAgentOnline(
    int64_t agent_id, bool online, absl::string_view version,
    const std::vector<std::string>& types) {
  return Write([&](WriteTxn& txn) -> absl::Status {
    sqlite3* db = Raw(txn);
    IDSYNC_ASSIGN_OR_RETURN(AgentRow agent, QueryAgent(db, "id=?", agent_id));
    const std::string types_json =
        types.empty() ? std::string() : nlohmann::json(types).dump();
    IDSYNC_RETURN_IF_ERROR(RunSql(
        db,
        "UPDATE agents SET online=?, last_seen_at=?, version=CASE WHEN ?='' "
        "THEN version ELSE ? END, connector_types=CASE WHEN ?='' THEN "
        "connector_types ELSE ? END WHERE id=?",
        [&](Statement& s) {
          s.Bind(1, static_cast<int64_t>(online)).Bind(2, Micros(txn.now()));
          s.Bind(3, version).Bind(4, version);
          s.Bind(5, types_json).Bind(6, types_json).Bind(7, agent_id);
        }));
    if (agent.online == online) return absl::OkStatus();
    IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<Outbox> outbox,
                            Outbox::Prepare(db));
    IDSYNC_RETURN_IF_ERROR(outbox->Load(agent.tenant_id));
    const std::string data =
        nlohmann::json{
            {"agent_id", agent.id},
            {"name", agent.name},
            {"group", agent.group},
            {"version", version.empty() ? agent.version : std::string(version)}}
            .dump();
    return outbox->Publish(online ? "agent.online" : "agent.offline", data,
                           txn.now());
  });
}

absl::Status SqliteStore::TouchAgent(int64_t agent_id) {
  return Write([&](WriteTxn& txn) {
    return RunSql(
        Raw(txn), "UPDATE agents SET last_seen_at=? WHERE id=?",
        [&](Statement& s) { s.Bind(1, Micros(txn.now())).Bind(2, agent_id); });
  });
}

absl::StatusOr<std::vector<int64_t>> SqliteStore::OnlineAgents() {
  IDSYNC_ASSIGN_OR_RETURN(ReadLease db, Reader());
  return ReadAll(db->db(), "SELECT id FROM agents WHERE online=1",
                 [](const Statement& s) { return s.Int(0); });
}

absl::Status SqliteStore::Write(const WriteBody& body) {
  PriorityWrite gate(gate_);
  absl::MutexLock lock(&mu_);
  sqlite3* db = db_.get();
  IDSYNC_RETURN_IF_ERROR(Exec(db, "BEGIN IMMEDIATE"));
  absl::Status s;
  {
    SqliteWriteTxn txn(db, clock_.Now());
    s = body(txn);
    if (s.ok()) s = txn.FlushEvents();
  }  // Statements are finalized before the transaction ends.
  if (s.ok()) s = Exec(db, "COMMIT");
  if (!s.ok()) Exec(db, "ROLLBACK").IgnoreError();
  return s;
}

absl::StatusOr<IdempotencyState> SqliteStore::BeginIdempotent(
    int64_t tenant_id, absl::string_view key, absl::string_view request_hash,
    absl::Duration stale_after) {
  IdempotencyState state;
  IDSYNC_RETURN_IF_ERROR(Write([&](WriteTxn& txn) -> absl::Status {
    sqlite3* db = Raw(txn);
    IDSYNC_ASSIGN_OR_RETURN(
        Statement find,
        Statement::Prepare(db,
                           "SELECT request_hash, state, status, response, "
                           "created_at FROM idempotency_keys WHERE "
                           "tenant_id=? AND key=?"));
    find.Bind(1, tenant_id).Bind(2, key);
    IDSYNC_ASSIGN_OR_RETURN(bool found, find.Step());
    const int64_t now = Micros(txn.now());
    if (found) {
      const bool same = find.Blob(0) == request_hash;
      const std::string current = find.Text(1);
      const bool stale = current == "in_flight" &&
                         FromMicros(find.Int(4)) + stale_after <= txn.now();
      if (current == "done") {
        state.kind =
            same ? IdempotencyState::kDone : IdempotencyState::kMismatch;
        state.status = static_cast<int>(find.Int(2));
        state.response = find.Blob(3);
        return absl::OkStatus();
      }
      if (!stale) {
        state.kind = IdempotencyState::kInFlight;
        return absl::OkStatus();
      }
    }
    find.Reset();
    state.kind = IdempotencyState::kNew;
    return RunSql(
        db,
        "INSERT OR REPLACE INTO idempotency_keys(tenant_id, key, "
        "request_hash, state, created_at) VALUES(?,?,?,'in_flight',?)",
        [&](Statement& s) {
          s.Bind(1, tenant_id).Bind(2, key).BindBlob(3, request_hash);
          s.Bind(4, now);
        });
  }));
  return state;
}

absl::Status SqliteStore::AbandonIdempotent(int64_t tenant_id,
                                            absl::string_view key) {
  return Write([&](WriteTxn& txn) {
    return RunSql(Raw(txn),
                  "DELETE FROM idempotency_keys WHERE tenant_id=? AND key=? "
                  "AND state='in_flight'",
                  [&](Statement& s) { s.Bind(1, tenant_id).Bind(2, key); });
  });
}

absl::Status SqliteStore::ExpireIdempotent(absl::Duration age) {
  return Write([&](WriteTxn& txn) {
    return RunSql(Raw(txn), "DELETE FROM idempotency_keys WHERE created_at < ?",
                  [&](Statement& s) { s.Bind(1, Micros(txn.now() - age)); });
  });
}

}  // namespace idsync
