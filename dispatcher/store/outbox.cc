#include "dispatcher/store/outbox.h"

#include <algorithm>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "connector/status_macros.h"
#include "dispatcher/store/record_schema.h"
#include "dispatcher/store/sqlite_rows.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

using idsync::v1::RecordKind;

constexpr const char* kChange[] = {"created", "updated", "deactivated"};

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime("%Y-%m-%d%ET%H:%M:%E3SZ", t, absl::UTCTimeZone());
}

}  // namespace

const std::vector<std::string>& EventTypes() {
  static const auto* types = [] {
    auto* v = new std::vector<std::string>;
    for (const char* kind : {"identity", "account", "entitlement", "grant"}) {
      for (const char* change : kChange) {
        v->push_back(absl::StrCat(kind, ".", change));
      }
    }
    for (const char* t : {"sync.started", "sync.completed", "sync.failed",
                          "sync.cancelled", "agent.online", "agent.offline"}) {
      v->push_back(t);
    }
    return v;
  }();
  return *types;
}

bool IsEventPattern(absl::string_view pattern) {
  for (const std::string& type : EventTypes()) {
    if (type == pattern) return true;
  }
  if (pattern == "*") return true;
  if (!absl::EndsWith(pattern, ".*")) return false;
  const absl::string_view group = pattern.substr(0, pattern.size() - 1);
  for (const std::string& type : EventTypes()) {
    if (absl::StartsWith(type, group)) return true;
  }
  return false;
}

bool PatternMatches(absl::string_view pattern, absl::string_view type) {
  if (pattern == "*" || pattern == type) return true;
  return absl::EndsWith(pattern, ".*") &&
         absl::StartsWith(type, pattern.substr(0, pattern.size() - 1));
}

absl::StatusOr<std::unique_ptr<Outbox>> Outbox::Prepare(sqlite3* db,
                                                        Detail detail) {
  std::unique_ptr<Outbox> o(new Outbox(db, detail));
  IDSYNC_ASSIGN_OR_RETURN(
      o->load_, Statement::Prepare(db,
                                   "SELECT id, event_types FROM webhooks "
                                   "WHERE tenant_id=? AND enabled=1"));
  IDSYNC_ASSIGN_OR_RETURN(
      o->insert_event_,
      Statement::Prepare(db,
                         "INSERT INTO outbox(tenant_id, type, data, "
                         "created_at) VALUES(?,?,?,?)"));
  IDSYNC_ASSIGN_OR_RETURN(
      o->insert_delivery_,
      Statement::Prepare(
          db,
          "INSERT INTO deliveries(tenant_id, outbox_id, webhook_id, url, "
          "endpoint, state, next_attempt_at, created_at, updated_at) "
          "VALUES(?,?,?,?,?,'pending',?,?,?)"));
  return o;
}

absl::Status Outbox::Load(int64_t tenant_id) {
  tenant_id_ = tenant_id;
  webhooks_.clear();
  queued_.clear();
  load_.Bind(1, tenant_id);
  while (true) {
    IDSYNC_ASSIGN_OR_RETURN(bool row, load_.Step());
    if (!row) break;
    nlohmann::json types = nlohmann::json::parse(load_.Text(1), nullptr, false);
    std::vector<std::string>& patterns = webhooks_[load_.Int(0)];
    if (!types.is_array()) continue;
    for (const auto& t : types) {
      if (t.is_string()) patterns.push_back(t.get<std::string>());
    }
  }
  load_.Reset();
  return absl::OkStatus();
}

bool Outbox::Wants(absl::string_view type) const {
  for (const auto& [id, patterns] : webhooks_) {
    for (const std::string& p : patterns) {
      if (PatternMatches(p, type)) return true;
    }
  }
  return false;
}

absl::Status Outbox::QueueRecord(RecordKind kind, RecordChange change,
                                 int64_t id,
                                 const google::protobuf::Message* record) {
  if (webhooks_.empty()) return absl::OkStatus();  // The common case: free.
  const KindSchema& schema = SchemaFor(kind);
  std::string type =
      absl::StrCat(schema.singular, ".", kChange[static_cast<int>(change)]);
  if (!Wants(type)) return absl::OkStatus();
  nlohmann::json item = {{"id", id}};
  if (record != nullptr) {
    std::vector<absl::string_view> values;
    ColumnValues(kind, *record, &values);
    const size_t shown = detail_ == Detail::kFull
                             ? values.size()
                             : static_cast<size_t>(schema.key_columns);
    for (size_t i = 0; i < shown && i < schema.columns.size(); ++i) {
      item[schema.columns[i]] = std::string(values[i]);
    }
  } else {
    // A deactivation: name the record by its key.
    std::string sql = "SELECT ";
    for (int i = 0; i < schema.key_columns; ++i) {
      absl::StrAppend(&sql, i > 0 ? ", " : "", schema.columns[i]);
    }
    absl::StrAppend(&sql, " FROM ", schema.table, " WHERE id=?");
    IDSYNC_ASSIGN_OR_RETURN(Statement key, Statement::Prepare(db_, sql));
    key.Bind(1, id);
    IDSYNC_ASSIGN_OR_RETURN(bool found, key.Step());
    for (int i = 0; found && i < schema.key_columns; ++i) {
      item[schema.columns[i]] = key.Text(i);
    }
  }
  queued_[std::move(type)].push_back(item.dump());
  return absl::OkStatus();
}

absl::Status Outbox::Flush(const EventContext& context, absl::Time now) {
  for (const auto& [type, items] : queued_) {
    for (size_t start = 0; start < items.size(); start += kItemsPerEvent) {
      const size_t end = std::min(items.size(), start + kItemsPerEvent);
      std::string data =
          absl::StrCat("{", context, context.empty() ? "" : ",",
                       "\"count\":", end - start, ",\"items\":[");
      for (size_t i = start; i < end; ++i) {
        absl::StrAppend(&data, i > start ? "," : "", items[i]);
      }
      absl::StrAppend(&data, "]}");
      IDSYNC_RETURN_IF_ERROR(Publish(type, data, now));
    }
  }
  queued_.clear();
  return absl::OkStatus();
}

absl::StatusOr<int64_t> Outbox::InsertEvent(absl::string_view type,
                                            absl::string_view data_json,
                                            absl::Time now) {
  insert_event_.Bind(1, tenant_id_).Bind(2, type).Bind(3, data_json);
  insert_event_.Bind(4, Micros(now));
  IDSYNC_RETURN_IF_ERROR(insert_event_.Run());
  return static_cast<int64_t>(sqlite3_last_insert_rowid(db_));
}

absl::Status Outbox::InsertDelivery(int64_t outbox_id, int64_t webhook_id,
                                    absl::string_view url, absl::Time now) {
  const std::string endpoint = webhook_id > 0
                                   ? absl::StrCat("webhook:", webhook_id)
                                   : absl::StrCat("callback:", url);
  insert_delivery_.Bind(1, tenant_id_).Bind(2, outbox_id);
  if (webhook_id > 0) {
    insert_delivery_.Bind(3, webhook_id);
  } else {
    insert_delivery_.BindNull(3);
  }
  insert_delivery_.Bind(4, url).Bind(5, endpoint);
  insert_delivery_.Bind(6, Micros(now))
      .Bind(7, Micros(now))
      .Bind(8, Micros(now));
  return insert_delivery_.Run();
}

absl::Status Outbox::Publish(absl::string_view type,
                             absl::string_view data_json, absl::Time now) {
  std::vector<int64_t> targets;
  for (const auto& [id, patterns] : webhooks_) {
    for (const std::string& p : patterns) {
      if (PatternMatches(p, type)) {
        targets.push_back(id);
        break;
      }
    }
  }
  if (targets.empty()) return absl::OkStatus();
  IDSYNC_ASSIGN_OR_RETURN(int64_t event, InsertEvent(type, data_json, now));
  for (int64_t webhook : targets) {
    IDSYNC_RETURN_IF_ERROR(InsertDelivery(event, webhook, "", now));
  }
  return absl::OkStatus();
}

absl::Status Outbox::PublishCallback(absl::string_view url,
                                     absl::string_view data_json,
                                     absl::Time now) {
  IDSYNC_ASSIGN_OR_RETURN(int64_t event,
                          InsertEvent("sync.progress", data_json, now));
  return InsertDelivery(event, 0, url, now);
}

std::string RunProgressJson(const RunRow& run) {
  const double seconds = absl::ToDoubleSeconds(
      run.finished_at.value_or(run.updated_at) - run.started_at);
  nlohmann::json j = {
      {"run_id", run.id},
      {"connector_id", run.connector_id},
      {"status", std::string(RunStatusName(run.status))},
      {"chunk", run.chunks},
      {"processed", run.processed},
      {"created", run.created},
      {"updated", run.updated},
      {"unchanged", run.unchanged},
      {"deleted", run.deleted},
      {"rejected", run.rejected},
      {"records_per_second",
       seconds > 0 ? static_cast<double>(run.processed) / seconds : 0.0},
      {"started_at", Rfc3339(run.started_at)},
      {"updated_at", Rfc3339(run.finished_at.value_or(run.updated_at))},
      {"error", run.error},
  };
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

absl::Status PublishRunEvent(sqlite3* db, const RunRow& run, absl::Time now) {
  IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<Outbox> outbox, Outbox::Prepare(db));
  IDSYNC_RETURN_IF_ERROR(outbox->Load(run.tenant_id));
  const std::string data = RunProgressJson(run);
  switch (run.status) {
    case RunStatus::kRunning:
      return outbox->Publish("sync.started", data, now);
    case RunStatus::kSucceeded:
      IDSYNC_RETURN_IF_ERROR(outbox->Publish("sync.completed", data, now));
      break;
    case RunStatus::kFailed:
      IDSYNC_RETURN_IF_ERROR(outbox->Publish("sync.failed", data, now));
      break;
    case RunStatus::kCancelled:
      IDSYNC_RETURN_IF_ERROR(outbox->Publish("sync.cancelled", data, now));
      break;
  }
  if (run.callback_url.empty()) return absl::OkStatus();
  return outbox->PublishCallback(run.callback_url, data, now);
}

}  // namespace idsync
