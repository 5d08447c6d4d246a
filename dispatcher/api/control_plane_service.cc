#include "dispatcher/api/control_plane_service.h"

#include <fcntl.h>
#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "connector/http/address_policy.h"
#include "connector/status_macros.h"
#include "connector/text.h"
#include "dispatcher/agents/agent_hub.h"
#include "dispatcher/metrics.h"
#include "dispatcher/record_hash.h"
#include "dispatcher/scheduler.h"
#include "dispatcher/source_policy.h"
#include "dispatcher/store/outbox.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "nlohmann/json.hpp"
#include "spdlog/spdlog.h"

namespace idsync {
namespace {

using google::protobuf::util::TimeUtil;
namespace v1 = idsync::v1;

constexpr size_t kMaxField = 1024;
constexpr size_t kMaxKey = 256;
constexpr int kMaxAttributes = 100;
constexpr size_t kMaxAttributeValue = 4096;

google::protobuf::Timestamp Stamp(absl::Time t) {
  return TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(t));
}

absl::Status RequireAdmin(const Caller& caller) {
  if (caller.role != "admin") {
    return absl::PermissionDeniedError(
        "this token may only read (role auditor); writes need an admin token");
  }
  return absl::OkStatus();
}

absl::Status CheckText(absl::string_view field, absl::string_view value,
                       size_t max = kMaxField) {
  if (value.size() > max) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", field, "' is longer than ", max, " bytes"));
  }
  if (!IsValidUtf8(value)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", field, "' is not valid UTF-8"));
  }
  for (char c : value) {
    if (static_cast<unsigned char>(c) < 0x20 && c != '\t') {
      return absl::InvalidArgumentError(
          absl::StrCat("'", field, "' holds a control character"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckAttributes(
    const google::protobuf::Map<std::string, std::string>& attributes) {
  if (attributes.size() > kMaxAttributes) {
    return absl::InvalidArgumentError(
        absl::StrCat("at most ", kMaxAttributes, " attributes"));
  }
  for (const auto& [key, value] : attributes) {
    if (key.empty())
      return absl::InvalidArgumentError("an attribute has no name");
    IDSYNC_RETURN_IF_ERROR(CheckText("attributes key", key, kMaxKey));
    IDSYNC_RETURN_IF_ERROR(CheckText(absl::StrCat("attributes.", Excerpt(key)),
                                     value, kMaxAttributeValue));
  }
  return absl::OkStatus();
}

// Names of things operators choose: connector business ids, token names.
absl::Status CheckName(absl::string_view field, absl::string_view name) {
  bool ok = !name.empty() && name.size() <= 64;
  for (char c : name) {
    ok = ok && (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.');
  }
  if (!ok) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", field,
                     "' must be 1-64 characters of letters, digits, '-', '_' "
                     "or '.'"));
  }
  return absl::OkStatus();
}

absl::Status CheckThreshold(double t) {
  if (!(t >= 0 && t <= 1)) {
    return absl::InvalidArgumentError(
        "'deletion_threshold' must be a fraction between 0 and 1");
  }
  return absl::OkStatus();
}

// Opaque cursors: "c1:<last id>", base64url.
std::string EncodeCursor(int64_t id) {
  std::string out;
  absl::WebSafeBase64Escape(absl::StrCat("c1:", id), &out);
  return out;
}

absl::StatusOr<int64_t> DecodeCursor(absl::string_view cursor) {
  std::string plain;
  int64_t id = 0;
  if (cursor.size() > 64 || !absl::WebSafeBase64Unescape(cursor, &plain) ||
      !absl::StartsWith(plain, "c1:") ||
      !absl::SimpleAtoi(absl::string_view(plain).substr(3), &id) || id < 0) {
    return absl::InvalidArgumentError("'cursor' is not a cursor this API gave");
  }
  return id;
}

// Validates paging parameters into `q`.
absl::Status Page(const Caller& caller, int32_t limit, int32_t offset,
                  const std::string& cursor, ListQuery* q) {
  q->tenant_id = caller.tenant_id;
  q->limit = limit == 0 ? kDefaultPageSize : limit;
  if (q->limit < 1 || q->limit > kMaxPageSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("'limit' must be between 1 and ", kMaxPageSize));
  }
  if (offset < 0) return absl::InvalidArgumentError("'offset' must be >= 0");
  q->offset = offset;
  if (!cursor.empty()) {
    if (offset != 0) {
      return absl::InvalidArgumentError("use 'cursor' or 'offset', not both");
    }
    IDSYNC_ASSIGN_OR_RETURN(q->after_id, DecodeCursor(cursor));
  }
  return absl::OkStatus();
}

// Fills a list response: items, total, paging echo and the next cursor.
template <typename Response, typename Item>
Response PageOf(std::vector<Item> items, int64_t total, const ListQuery& q,
                const std::function<int64_t(const Item&)>& id_of) {
  Response response;
  if (static_cast<int32_t>(items.size()) == q.limit) {
    response.set_next_cursor(EncodeCursor(id_of(items.back())));
  }
  for (Item& item : items) *response.add_items() = std::move(item);
  response.set_total(total);
  response.set_limit(q.limit);
  response.set_offset(static_cast<int32_t>(q.offset));
  return response;
}

template <typename Response, typename Item>
Response PageOf(std::vector<Item> items, int64_t total, const ListQuery& q) {
  return PageOf<Response, Item>(std::move(items), total, q,
                                [](const Item& i) { return i.id(); });
}

std::string Details(const nlohmann::json& details) {
  return details.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

AuditEntry Audit(const Caller& caller, std::string action,
                 std::string resource_type, int64_t resource_id,
                 const nlohmann::json& details = nlohmann::json::object()) {
  AuditEntry e;
  e.tenant_id = caller.tenant_id;
  e.actor = caller.Actor();
  e.action = std::move(action);
  e.resource_type = std::move(resource_type);
  e.resource_id = absl::StrCat(resource_id);
  e.request_id = caller.request_id;
  e.details_json = Details(details);
  return e;
}

absl::Status Commit(const BeforeCommit& before_commit,
                    const google::protobuf::Message& response, WriteTxn& txn) {
  return before_commit ? before_commit(response, txn) : absl::OkStatus();
}

v1::ConfiguredConnector ToProto(const ConnectorRow& row) {
  v1::ConfiguredConnector c;
  c.set_id(row.id);
  c.set_business_id(row.business_id);
  c.set_type(row.type);
  c.set_mode(row.mode);
  // Stored by us as a JSON object.
  (void)google::protobuf::util::JsonStringToMessage(row.config_json,
                                                    c.mutable_config());
  c.set_auth_config_set(row.has_auth);
  c.set_deletion_threshold(row.deletion_threshold);
  c.set_agent(row.agent);
  *c.mutable_created_at() = Stamp(row.created_at);
  *c.mutable_updated_at() = Stamp(row.updated_at);
  if (row.last_sync_at.has_value()) {
    *c.mutable_last_sync_at() = Stamp(*row.last_sync_at);
  }
  if (!row.schedule.empty()) {
    v1::ConnectorSchedule* out = c.mutable_schedule();
    out->set_incremental_every_minutes(row.schedule.incremental_minutes);
    out->set_full_cron(row.schedule.full_cron);
    out->set_time_zone(row.schedule.time_zone);
    // Checked when stored; a zone the system no longer knows shows no time.
    absl::StatusOr<NextRuns> next =
        NextScheduledRuns(row.schedule, row.updated_at);
    if (next.ok() && next->incremental.has_value()) {
      *out->mutable_next_incremental_at() = Stamp(*next->incremental);
    }
    if (next.ok() && next->full.has_value() &&
        *next->full != absl::InfiniteFuture()) {
      *out->mutable_next_full_at() = Stamp(*next->full);
    }
  }
  return c;
}

nlohmann::json ScheduleJson(const ConnectorSchedule& s) {
  return {{"incremental_every_minutes", s.incremental_minutes},
          {"full_cron", s.full_cron},
          {"time_zone", s.time_zone}};
}

// The schedule an API request asks for, checked. Its handled times are set
// in the write (StartSchedule), so the first runs are the next due times
// after the change.
absl::StatusOr<ConnectorSchedule> ScheduleFrom(
    const v1::ConnectorSchedule& in) {
  ConnectorSchedule schedule;
  schedule.incremental_minutes = in.incremental_every_minutes();
  schedule.full_cron = in.full_cron();
  schedule.time_zone = in.time_zone();
  IDSYNC_RETURN_IF_ERROR(CheckSchedule(schedule));
  return schedule;
}

// Stores `schedule` for the connector, counting from now.
absl::Status StartSchedule(WriteTxn& txn, ConnectorRow& row,
                           ConnectorSchedule schedule) {
  schedule.incremental_handled_at = schedule.full_handled_at = txn.now();
  row.schedule = std::move(schedule);
  return txn.SetSchedule(row.tenant_id, row.id, row.schedule);
}

v1::Token ToProto(const TokenRow& row) {
  v1::Token t;
  t.set_id(row.id);
  t.set_name(row.name);
  t.set_role(row.role);
  t.set_prefix(row.prefix);
  *t.mutable_created_at() = Stamp(row.created_at);
  if (row.revoked_at.has_value())
    *t.mutable_revoked_at() = Stamp(*row.revoked_at);
  return t;
}

absl::StatusOr<std::string> StructToJson(const google::protobuf::Struct& s) {
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(s, &json).ok()) {
    return absl::InvalidArgumentError("cannot encode the object as JSON");
  }
  return json;
}

// An identity the API owns, with its content as a record for hashing.
v1::RemoteIdentity ToRecord(const v1::Identity& i) {
  v1::RemoteIdentity r;
  r.set_external_id(i.external_id());
  r.set_email(i.email());
  r.set_first_name(i.first_name());
  r.set_last_name(i.last_name());
  r.set_display_name(i.display_name());
  r.set_department(i.department());
  r.set_job_title(i.job_title());
  r.set_manager_external_id(i.manager_external_id());
  r.set_status(i.status());
  *r.mutable_attributes() = i.attributes();
  return r;
}

// The fields of an identity the API writes.
absl::Status CheckIdentityFields(const v1::Identity& identity) {
  for (const auto& [field, value] :
       std::initializer_list<std::pair<const char*, const std::string&>>{
           {"email", identity.email()},
           {"first_name", identity.first_name()},
           {"last_name", identity.last_name()},
           {"display_name", identity.display_name()},
           {"department", identity.department()},
           {"job_title", identity.job_title()},
           {"manager_external_id", identity.manager_external_id()},
           {"status", identity.status()}}) {
    IDSYNC_RETURN_IF_ERROR(CheckText(field, value));
  }
  if (!identity.email().empty() &&
      identity.email().find('@') == std::string::npos) {
    return absl::InvalidArgumentError("'email' is not an email address");
  }
  return CheckAttributes(identity.attributes());
}

absl::Status CheckMode(absl::string_view mode) {
  if (mode != "hosted" && mode != "agent") {
    return absl::InvalidArgumentError(
        "'mode' must be \"hosted\" (run by the dispatcher) or \"agent\" (run "
        "by an on-prem agent)");
  }
  return absl::OkStatus();
}

// The type exists and accepts the config: the connector builds.
absl::Status CheckConfig(const ConnectorRegistry& registry,
                         SourcePolicy* sources, const ConnectorRow& row,
                         const google::protobuf::Struct& config,
                         const google::protobuf::Struct& auth_config) {
  ConnectorSpec spec;
  spec.business_id = row.business_id;
  spec.config = config;
  spec.auth_config = auth_config;  // The hosts it names are checked too.
  if (sources != nullptr) {
    IDSYNC_ASSIGN_OR_RETURN(spec.access, sources->For(row.tenant_id));
  }
  absl::Status built = registry.Create(row.type, spec).status();
  // An unknown type is bad input, not a missing resource (the registry says
  // kNotFound).
  if (absl::IsNotFound(built)) {
    return absl::InvalidArgumentError(built.message());
  }
  return built;
}

// What a connection test says through the API. Bad config, files and
// refused credentials or addresses are the tenant's to fix and keep their
// words; every other failure (refused, timed out, an answer in another
// protocol) reads the same, or the test would tell a closed port from an
// open one of another service: a port scanner. The log has the detail.
std::string TestMessage(const absl::Status& s, const ConnectorRow& row) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
      return "";
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kPermissionDenied:
      return std::string(s.message());
    default:
      spdlog::warn("connector {} (tenant {}) test failed: {}", row.id,
                   row.tenant_id, std::string(s.message()));
      return absl::StrCat(
          "cannot reach the source as a ", row.type,
          " service: no connection, no answer in time, or an answer that is "
          "not a ",
          row.type, " service's (the dispatcher's log has the detail)");
  }
}

std::string WebhookContext(int64_t id) { return absl::StrCat("webhook:", id); }
std::string CallbackContext(int64_t tenant_id) {
  return absl::StrCat("callback:", tenant_id);
}

// A URL as the audit log keeps it: without query and fragment, which may
// hold a receiver's own token.
std::string AuditUrl(absl::string_view url) {
  return std::string(url.substr(0, url.find_first_of("?#")));
}

v1::Webhook ToProto(const WebhookRow& row) {
  v1::Webhook w;
  w.set_id(row.id);
  w.set_url(row.url);
  for (const std::string& type : row.event_types) w.add_event_types(type);
  w.set_enabled(row.enabled);
  w.set_disabled_reason(row.disabled_reason);
  *w.mutable_created_at() = Stamp(row.created_at);
  *w.mutable_updated_at() = Stamp(row.updated_at);
  return w;
}

v1::Delivery ToProto(const DeliveryRow& row) {
  v1::Delivery d;
  d.set_id(row.id);
  d.set_webhook_id(row.webhook_id);
  d.set_event_id(absl::StrCat("msg_", row.event_id));
  d.set_event_type(row.event_type);
  d.set_state(row.state);
  d.set_attempts(row.attempts);
  if (row.state == "pending") {
    *d.mutable_next_attempt_at() = Stamp(row.next_attempt_at);
  }
  d.set_last_status(row.last_status);
  d.set_last_error(row.last_error);
  *d.mutable_created_at() = Stamp(row.created_at);
  if (row.delivered_at.has_value()) {
    *d.mutable_delivered_at() = Stamp(*row.delivered_at);
  }
  return d;
}

// 1..kMaxEventTypes known types or patterns ("identity.created",
// "identity.*", "*").
absl::Status CheckEventTypes(
    const google::protobuf::RepeatedPtrField<std::string>& types) {
  if (types.empty()) {
    return absl::InvalidArgumentError(
        "'event_types' needs at least one event type, \"<group>.*\" or "
        "\"*\"");
  }
  if (types.size() > kMaxEventTypes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'event_types' has more than ", kMaxEventTypes, " entries"));
  }
  for (int i = 0; i < types.size(); ++i) {
    if (!IsEventPattern(types[i])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "'event_types[", i, "]' (\"", absl::CHexEscape(Excerpt(types[i], 64)),
          "\") is not an event type (e.g. \"identity.created\"), a group "
          "(\"identity.*\") or \"*\""));
    }
  }
  return absl::OkStatus();
}

}  // namespace

void ClearOneTimeSecrets(google::protobuf::Message* response) {
  const google::protobuf::Descriptor* d = response->GetDescriptor();
  if (d == v1::CreateTokenResponse::descriptor()) {
    static_cast<v1::CreateTokenResponse*>(response)->clear_secret();
  } else if (d == v1::CreateWebhookResponse::descriptor()) {
    static_cast<v1::CreateWebhookResponse*>(response)->clear_secret();
  } else if (d == v1::CreateRegistrationTokenResponse::descriptor()) {
    static_cast<v1::CreateRegistrationTokenResponse*>(response)->clear_token();
  }
}

std::string Caller::Actor() const {
  return absl::StrCat(token_name, " (token ", token_id, ")");
}

v1::SyncRun ToProto(const RunRow& run) {
  v1::SyncRun r;
  r.set_id(run.id);
  r.set_connector_id(run.connector_id);
  r.set_status(std::string(RunStatusName(run.status)));
  switch (run.phase) {
    case RunPhase::kDeletions:
      r.set_phase("deletions");
      break;
    case RunPhase::kDone:
      r.set_phase("done");
      break;
    default:
      r.set_phase("records");
  }
  r.set_incremental(run.incremental);
  r.set_chunk_size(run.chunk_size);
  r.set_max_records(run.max_records.value_or(0));
  r.set_deletion_threshold(run.deletion_threshold);
  r.set_callback_url(run.callback_url);
  r.set_chunks(run.chunks);
  r.set_processed(run.processed);
  r.set_created(run.created);
  r.set_updated(run.updated);
  r.set_unchanged(run.unchanged);
  r.set_deleted(run.deleted);
  r.set_rejected(run.rejected);
  r.set_source_done(run.source_done);
  r.set_source_total(run.source_total);
  r.set_resumes(run.resumes);
  r.set_cut(run.cut);
  r.set_deletion_note(run.deletion_note);
  r.set_error(run.error);
  *r.mutable_started_at() = Stamp(run.started_at);
  *r.mutable_updated_at() = Stamp(run.updated_at);
  if (run.finished_at.has_value())
    *r.mutable_finished_at() = Stamp(*run.finished_at);
  return r;
}

ControlPlaneService::ControlPlaneService(Store& store,
                                         const ConnectorRegistry& registry,
                                         const SecretBox& secrets,
                                         SyncWorkers& workers,
                                         ControlPlaneServiceOptions options)
    : store_(store),
      registry_(registry),
      secrets_(secrets),
      workers_(workers),
      options_(options) {}

absl::StatusOr<Caller> ControlPlaneService::Authenticate(
    absl::string_view authorization, std::string request_id,
    absl::string_view peer) {
  // `reason` is a metric label; the message goes to the caller.
  auto refuse = [&](absl::string_view reason, absl::Status status) {
    spdlog::warn(
        "authentication failed ({}) from {} request_id={}", std::string(reason),
        peer.empty() ? std::string("?") : std::string(peer), request_id);
    if (options_.metrics != nullptr) options_.metrics->CountAuthFailure(reason);
    return status;
  };
  absl::string_view token = absl::StripAsciiWhitespace(authorization);
  if (token.empty()) {
    return refuse("missing",
                  absl::UnauthenticatedError(
                      "missing credentials: send 'Authorization: Bearer "
                      "<token>'"));
  }
  if (token.size() < 7 ||
      !absl::EqualsIgnoreCase(token.substr(0, 7), "bearer ")) {
    return refuse("malformed",
                  absl::UnauthenticatedError(
                      "the Authorization header must be 'Bearer <token>'"));
  }
  token = absl::StripAsciiWhitespace(token.substr(7));
  if (!absl::StartsWith(token, "idsync_") || token.size() > 128) {
    return refuse("malformed",
                  absl::UnauthenticatedError("not an idsync token"));
  }
  const std::string hash = TokenHash(token);
  absl::StatusOr<TokenRow> row = store_.FindToken(hash);
  if (absl::IsNotFound(row.status())) {
    return refuse("unknown", absl::UnauthenticatedError("unknown token"));
  }
  IDSYNC_RETURN_IF_ERROR(row.status());
  if (row->revoked_at.has_value()) {
    return refuse("revoked",
                  absl::UnauthenticatedError("this token was revoked"));
  }
  if (row->kind != "service") {
    return refuse("wrong_kind",
                  absl::PermissionDeniedError(absl::StrCat(
                      row->kind == "agent" ? "an " : "a ", row->kind,
                      " token only works on the agent spine")));
  }
  Caller caller;
  caller.tenant_id = row->tenant_id;
  caller.token_id = row->id;
  caller.token_name = row->name;
  caller.role = row->role;
  caller.request_id = std::move(request_id);
  return caller;
}

// --- Identities and other records
// ------------------------------------------------

namespace {

// Adds the filters every record list shares.
absl::Status RecordFilters(const std::string& source, bool include_inactive,
                           ListQuery* q) {
  if (!source.empty()) {
    IDSYNC_RETURN_IF_ERROR(CheckText("source", source, kMaxKey));
    q->source = source;
  }
  q->include_inactive = include_inactive;
  return absl::OkStatus();
}

absl::Status Equals(absl::string_view field, const std::string& value,
                    ListQuery* q) {
  if (value.empty()) return absl::OkStatus();
  IDSYNC_RETURN_IF_ERROR(CheckText(field, value, kMaxKey));
  q->equals.push_back({std::string(field), value});
  return absl::OkStatus();
}

// One record by id, active or not, in the caller's tenant.
template <typename Msg>
absl::StatusOr<Msg> GetRecord(const Caller& caller, int64_t id,
                              absl::string_view what,
                              const std::function<absl::StatusOr<int64_t>(
                                  const ListQuery&, std::vector<Msg>*)>& list) {
  ListQuery q;
  q.tenant_id = caller.tenant_id;
  q.limit = 1;
  q.include_inactive = true;
  q.equals.push_back({"id", absl::StrCat(id)});
  std::vector<Msg> items;
  IDSYNC_RETURN_IF_ERROR(list(q, &items).status());
  if (items.empty()) {
    return absl::NotFoundError(absl::StrCat(what, " ", id, " not found"));
  }
  return std::move(items.front());
}

v1::GetByIdRequest ById(int64_t id) {
  v1::GetByIdRequest get;
  get.set_id(id);
  return get;
}

}  // namespace

absl::StatusOr<v1::ListIdentitiesResponse> ControlPlaneService::ListIdentities(
    const Caller& caller, const v1::ListIdentitiesRequest& request) {
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  IDSYNC_RETURN_IF_ERROR(
      RecordFilters(request.source(), request.include_inactive(), &q));
  IDSYNC_RETURN_IF_ERROR(Equals("status", request.status(), &q));
  std::vector<v1::Identity> items;
  IDSYNC_ASSIGN_OR_RETURN(int64_t total, store_.ListIdentities(q, &items));
  return PageOf<v1::ListIdentitiesResponse>(std::move(items), total, q);
}

absl::StatusOr<v1::Identity> ControlPlaneService::GetIdentity(
    const Caller& caller, const v1::GetByIdRequest& request) {
  return GetRecord<v1::Identity>(
      caller, request.id(), "identity",
      [this](const ListQuery& q, std::vector<v1::Identity>* items) {
        return store_.ListIdentities(q, items);
      });
}

absl::StatusOr<v1::Identity> ControlPlaneService::CreateIdentity(
    const Caller& caller, const v1::CreateIdentityRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  if (request.external_id().empty()) {
    return absl::InvalidArgumentError("'external_id' is required");
  }
  IDSYNC_RETURN_IF_ERROR(
      CheckText("external_id", request.external_id(), kMaxKey));
  v1::Identity identity;
  identity.set_external_id(request.external_id());
  identity.set_email(request.email());
  identity.set_first_name(request.first_name());
  identity.set_last_name(request.last_name());
  identity.set_display_name(request.display_name());
  identity.set_department(request.department());
  identity.set_job_title(request.job_title());
  identity.set_manager_external_id(request.manager_external_id());
  identity.set_status(request.status().empty() ? "active" : request.status());
  *identity.mutable_attributes() = request.attributes();
  IDSYNC_RETURN_IF_ERROR(CheckIdentityFields(identity));
  const v1::RemoteIdentity record = ToRecord(identity);
  std::string scratch;
  const uint64_t hash = ContentHash(record, &scratch);
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_ASSIGN_OR_RETURN(int64_t api, txn.ApiConnector(caller.tenant_id));
    absl::StatusOr<int64_t> inserted = txn.InsertRecord(
        caller.tenant_id, api, v1::RECORD_KIND_IDENTITY, record, hash);
    if (absl::IsFailedPrecondition(inserted.status())) {
      return absl::AlreadyExistsError(
          absl::StrCat("an identity with external_id '",
                       Excerpt(request.external_id(), 64), "' already exists"));
    }
    IDSYNC_ASSIGN_OR_RETURN(int64_t id, std::move(inserted));
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "identity.create", "identity", id,
                        {{"external_id", request.external_id()}})));
    identity.set_id(id);
    identity.set_source("api");
    identity.set_connector_id(api);
    identity.set_active(true);
    *identity.mutable_created_at() = Stamp(txn.now());
    *identity.mutable_updated_at() = Stamp(txn.now());
    return Commit(before_commit, identity, txn);
  }));
  return identity;
}

absl::StatusOr<v1::Identity> ControlPlaneService::UpdateIdentity(
    const Caller& caller, const v1::UpdateIdentityRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(v1::Identity identity,
                          GetIdentity(caller, ById(request.id())));
  if (identity.source() != "api") {
    return absl::FailedPreconditionError(
        absl::StrCat("identity ", identity.id(), " is managed by connector '",
                     identity.source(), "'; change it at the source"));
  }
  if (!identity.active()) {
    return absl::FailedPreconditionError(
        absl::StrCat("identity ", identity.id(), " is deactivated"));
  }
  // Copy the fields present in the request.
  nlohmann::json changed = nlohmann::json::array();
  const google::protobuf::Reflection* from = request.GetReflection();
  const google::protobuf::Reflection* to = identity.GetReflection();
  for (const char* name :
       {"email", "first_name", "last_name", "display_name", "department",
        "job_title", "manager_external_id", "status"}) {
    const auto* field = request.GetDescriptor()->FindFieldByName(name);
    if (!from->HasField(request, field)) continue;
    to->SetString(&identity, identity.GetDescriptor()->FindFieldByName(name),
                  from->GetString(request, field));
    changed.push_back(name);
  }
  for (const auto& [key, value] : request.attributes()) {
    if (value.empty()) {
      identity.mutable_attributes()->erase(key);
    } else {
      (*identity.mutable_attributes())[key] = value;
    }
  }
  if (!request.attributes().empty()) changed.push_back("attributes");
  IDSYNC_RETURN_IF_ERROR(CheckIdentityFields(identity));
  const v1::RemoteIdentity record = ToRecord(identity);
  std::string scratch;
  const uint64_t hash = ContentHash(record, &scratch);
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(txn.UpdateRecord(
        caller.tenant_id, identity.connector_id(), v1::RECORD_KIND_IDENTITY,
        identity.id(), record, hash));
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "identity.update", "identity", identity.id(),
                        {{"fields", changed}})));
    *identity.mutable_updated_at() = Stamp(txn.now());
    return Commit(before_commit, identity, txn);
  }));
  return identity;
}

absl::StatusOr<v1::Identity> ControlPlaneService::DeactivateIdentity(
    const Caller& caller, const v1::GetByIdRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(v1::Identity identity, GetIdentity(caller, request));
  if (identity.source() != "api") {
    return absl::FailedPreconditionError(
        absl::StrCat("identity ", identity.id(), " is managed by connector '",
                     identity.source(), "'; remove it at the source"));
  }
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    if (identity.active()) {
      IDSYNC_RETURN_IF_ERROR(
          txn.DeactivateRecord(v1::RECORD_KIND_IDENTITY, identity.id()));
      IDSYNC_RETURN_IF_ERROR(txn.Audit(
          Audit(caller, "identity.deactivate", "identity", identity.id(),
                {{"external_id", identity.external_id()}})));
      identity.set_active(false);
      *identity.mutable_deactivated_at() = Stamp(txn.now());
      *identity.mutable_updated_at() = Stamp(txn.now());
    }
    return Commit(before_commit, identity, txn);
  }));
  return identity;
}

absl::StatusOr<v1::ListAccountsResponse> ControlPlaneService::ListAccounts(
    const Caller& caller, const v1::ListAccountsRequest& request) {
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  IDSYNC_RETURN_IF_ERROR(
      RecordFilters(request.source(), request.include_inactive(), &q));
  IDSYNC_RETURN_IF_ERROR(
      Equals("identity_external_id", request.identity_external_id(), &q));
  std::vector<v1::Account> items;
  IDSYNC_ASSIGN_OR_RETURN(int64_t total, store_.ListAccounts(q, &items));
  return PageOf<v1::ListAccountsResponse>(std::move(items), total, q);
}

absl::StatusOr<v1::Account> ControlPlaneService::GetAccount(
    const Caller& caller, const v1::GetByIdRequest& request) {
  return GetRecord<v1::Account>(
      caller, request.id(), "account",
      [this](const ListQuery& q, std::vector<v1::Account>* items) {
        return store_.ListAccounts(q, items);
      });
}

absl::StatusOr<v1::ListEntitlementsResponse>
ControlPlaneService::ListEntitlements(
    const Caller& caller, const v1::ListEntitlementsRequest& request) {
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  IDSYNC_RETURN_IF_ERROR(
      RecordFilters(request.source(), request.include_inactive(), &q));
  std::vector<v1::Entitlement> items;
  IDSYNC_ASSIGN_OR_RETURN(int64_t total, store_.ListEntitlements(q, &items));
  return PageOf<v1::ListEntitlementsResponse>(std::move(items), total, q);
}

absl::StatusOr<v1::Entitlement> ControlPlaneService::GetEntitlement(
    const Caller& caller, const v1::GetByIdRequest& request) {
  return GetRecord<v1::Entitlement>(
      caller, request.id(), "entitlement",
      [this](const ListQuery& q, std::vector<v1::Entitlement>* items) {
        return store_.ListEntitlements(q, items);
      });
}

absl::StatusOr<v1::ListGrantsResponse> ControlPlaneService::ListGrants(
    const Caller& caller, const v1::ListGrantsRequest& request) {
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  IDSYNC_RETURN_IF_ERROR(
      RecordFilters(request.source(), request.include_inactive(), &q));
  IDSYNC_RETURN_IF_ERROR(
      Equals("account_external_id", request.account_external_id(), &q));
  IDSYNC_RETURN_IF_ERROR(
      Equals("entitlement_external_id", request.entitlement_external_id(), &q));
  if (!request.identity_external_id().empty()) {
    IDSYNC_RETURN_IF_ERROR(CheckText("identity_external_id",
                                     request.identity_external_id(), kMaxKey));
    q.grants_of_identity = request.identity_external_id();
  }
  std::vector<v1::Grant> items;
  IDSYNC_ASSIGN_OR_RETURN(int64_t total, store_.ListGrants(q, &items));
  return PageOf<v1::ListGrantsResponse>(std::move(items), total, q);
}

absl::StatusOr<v1::Grant> ControlPlaneService::GetGrant(
    const Caller& caller, const v1::GetByIdRequest& request) {
  return GetRecord<v1::Grant>(
      caller, request.id(), "grant",
      [this](const ListQuery& q, std::vector<v1::Grant>* items) {
        return store_.ListGrants(q, items);
      });
}

// --- Connectors and runs
// ----------------------------------------------------------

absl::StatusOr<ConnectorRow> ControlPlaneService::FindConnector(
    const Caller& caller, int64_t id) {
  absl::StatusOr<ConnectorRow> row = store_.GetConnector(caller.tenant_id, id);
  if (row.ok() && row->type == "api") {
    return absl::NotFoundError(absl::StrCat("connector ", id, " not found"));
  }
  return row;
}

absl::Status ControlPlaneService::CheckConnector(
    const ConnectorRow& row, const google::protobuf::Struct& config,
    const google::protobuf::Struct& auth_config, bool has_auth,
    bool build) const {
  IDSYNC_RETURN_IF_ERROR(CheckMode(row.mode));
  if (row.mode == "hosted") {
    if (!row.agent.empty()) {
      return absl::InvalidArgumentError(
          "'agent' is only for connectors in mode \"agent\"");
    }
    return build ? CheckConfig(registry_, options_.sources, row, config,
                               auth_config)
                 : absl::OkStatus();
  }
  if (row.agent.empty()) {
    return absl::InvalidArgumentError(
        "'agent' is required in mode \"agent\": the name or group of the "
        "agents that may run this connector");
  }
  // Any name an agent may have registered with (the spine takes up to 200
  // bytes), or a group.
  IDSYNC_RETURN_IF_ERROR(CheckText("agent", row.agent, 200));
  if (has_auth) {
    return absl::InvalidArgumentError(
        "'auth_config' is never sent to agents: an agent connector keeps its "
        "credentials on the agent (clear a stored one with \"auth_config\": "
        "{})");
  }
  // The connector runs on the agent, whose config may name its own files
  // and hosts: only the type is checked here.
  const std::vector<std::string> types = registry_.Types();
  if (std::find(types.begin(), types.end(), row.type) == types.end()) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown connector type '", Excerpt(row.type, 64),
                     "' (known: ", absl::StrJoin(types, ", "), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::ConfiguredConnector> ControlPlaneService::CreateConnector(
    const Caller& caller, const v1::CreateConnectorRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_RETURN_IF_ERROR(CheckName("business_id", request.business_id()));
  if (request.business_id() == "api" || request.type() == "api") {
    return absl::InvalidArgumentError(
        "\"api\" is reserved for identities created through the API");
  }
  ConnectorRow row;
  row.tenant_id = caller.tenant_id;
  row.business_id = request.business_id();
  row.type = request.type();
  row.mode = request.mode().empty() ? "hosted" : request.mode();
  row.agent = request.agent();
  row.deletion_threshold =
      request.has_deletion_threshold() ? request.deletion_threshold() : 0.2;
  IDSYNC_RETURN_IF_ERROR(CheckThreshold(row.deletion_threshold));
  IDSYNC_ASSIGN_OR_RETURN(row.config_json, StructToJson(request.config()));
  const bool has_auth = request.auth_config().fields_size() > 0;
  IDSYNC_RETURN_IF_ERROR(CheckConnector(row, request.config(),
                                        request.auth_config(), has_auth,
                                        /*build=*/true));
  IDSYNC_ASSIGN_OR_RETURN(std::string auth_json,
                          StructToJson(request.auth_config()));
  IDSYNC_ASSIGN_OR_RETURN(ConnectorSchedule schedule,
                          ScheduleFrom(request.schedule()));
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_ASSIGN_OR_RETURN(row.id, txn.InsertConnector(row));
    if (!schedule.empty()) {
      IDSYNC_RETURN_IF_ERROR(StartSchedule(txn, row, schedule));
    }
    if (has_auth) {
      IDSYNC_RETURN_IF_ERROR(txn.SetConnectorAuth(
          row.tenant_id, row.id, secrets_.Seal(auth_json, AuthContext(row))));
    }
    nlohmann::json details = {{"business_id", row.business_id},
                              {"type", row.type},
                              {"mode", row.mode},
                              {"auth_config_set", has_auth}};
    if (!row.agent.empty()) details["agent"] = row.agent;
    if (!row.schedule.empty()) details["schedule"] = ScheduleJson(row.schedule);
    IDSYNC_RETURN_IF_ERROR(txn.Audit(
        Audit(caller, "connector.create", "connector", row.id, details)));
    row.has_auth = has_auth;
    row.created_at = row.updated_at = txn.now();
    return Commit(before_commit, ToProto(row), txn);
  }));
  return ToProto(row);
}

absl::StatusOr<v1::ListConnectorsResponse> ControlPlaneService::ListConnectors(
    const Caller& caller, const v1::PageRequest& request) {
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  std::vector<ConnectorRow> rows;
  IDSYNC_ASSIGN_OR_RETURN(int64_t total, store_.ListConnectors(q, &rows));
  std::vector<v1::ConfiguredConnector> items;
  for (const ConnectorRow& row : rows) items.push_back(ToProto(row));
  return PageOf<v1::ListConnectorsResponse>(std::move(items), total, q);
}

absl::StatusOr<v1::ConfiguredConnector> ControlPlaneService::GetConnector(
    const Caller& caller, const v1::GetByIdRequest& request) {
  IDSYNC_ASSIGN_OR_RETURN(ConnectorRow row,
                          FindConnector(caller, request.id()));
  return ToProto(row);
}

absl::StatusOr<v1::ConfiguredConnector> ControlPlaneService::UpdateConnector(
    const Caller& caller, const v1::UpdateConnectorRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(ConnectorRow row,
                          FindConnector(caller, request.id()));
  nlohmann::json changed = nlohmann::json::array();
  const ConnectorRow before = row;
  if (request.has_mode()) {
    IDSYNC_RETURN_IF_ERROR(CheckMode(request.mode()));
    row.mode = request.mode();
    // Back to hosted: the binding goes unless the request names one (which
    // is then refused).
    if (row.mode == "hosted" && !request.has_agent()) row.agent.clear();
    changed.push_back("mode");
  }
  if (request.has_agent()) {
    row.agent = request.agent();
    changed.push_back("agent");
  }
  if (request.has_deletion_threshold()) {
    IDSYNC_RETURN_IF_ERROR(CheckThreshold(request.deletion_threshold()));
    row.deletion_threshold = request.deletion_threshold();
    changed.push_back("deletion_threshold");
  }
  if (request.has_config()) {
    IDSYNC_ASSIGN_OR_RETURN(row.config_json, StructToJson(request.config()));
    changed.push_back("config");
  }
  std::optional<ConnectorSchedule> schedule;
  if (request.has_schedule()) {
    IDSYNC_ASSIGN_OR_RETURN(schedule, ScheduleFrom(request.schedule()));
    changed.push_back("schedule");
  }
  // The connector as it will be. A hosted one builds here when its config
  // is new or it was an agent's until now.
  const bool auth_after = request.has_auth_config()
                              ? request.auth_config().fields_size() > 0
                              : row.has_auth;
  // A new auth_config builds it too (the hosts it names are checked); a
  // stored one was checked when it was set.
  const bool build = row.mode == "hosted" &&
                     (request.has_config() || request.has_auth_config() ||
                      before.mode != "hosted");
  google::protobuf::Struct config;
  if (request.has_config()) {
    config = request.config();
  } else if (build && !google::protobuf::util::JsonStringToMessage(
                           before.config_json, &config)
                           .ok()) {
    return absl::InternalError(
        absl::StrCat("connector ", row.id, " has a config that is not JSON"));
  }
  IDSYNC_RETURN_IF_ERROR(
      CheckConnector(row, config, request.auth_config(), auth_after, build));
  if (row.mode != before.mode || row.agent != before.agent) {
    IDSYNC_ASSIGN_OR_RETURN(std::optional<RunRow> active,
                            store_.ActiveRun(caller.tenant_id, row.id));
    if (active.has_value()) {
      return absl::FailedPreconditionError(
          absl::StrCat("connector ", row.id, " has an active run (", active->id,
                       "); wait for it or cancel it before moving it"));
    }
  }
  std::optional<std::string> sealed;
  if (request.has_auth_config()) {
    IDSYNC_ASSIGN_OR_RETURN(std::string auth_json,
                            StructToJson(request.auth_config()));
    sealed = request.auth_config().fields_size() > 0
                 ? secrets_.Seal(auth_json, AuthContext(row))
                 : "";
    changed.push_back("auth_config");
  }
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(txn.UpdateConnector(row));
    if (schedule.has_value()) {
      IDSYNC_RETURN_IF_ERROR(StartSchedule(txn, row, *schedule));
    }
    if (sealed.has_value()) {
      IDSYNC_RETURN_IF_ERROR(
          txn.SetConnectorAuth(row.tenant_id, row.id, *sealed));
      row.has_auth = !sealed->empty();
    }
    nlohmann::json details = {{"fields", changed}};
    if (row.mode != before.mode) details["mode"] = row.mode;
    if (row.agent != before.agent) details["agent"] = row.agent;
    if (request.has_schedule())
      details["schedule"] = ScheduleJson(row.schedule);
    IDSYNC_RETURN_IF_ERROR(txn.Audit(
        Audit(caller, "connector.update", "connector", row.id, details)));
    row.updated_at = txn.now();
    return Commit(before_commit, ToProto(row), txn);
  }));
  return ToProto(row);
}

absl::StatusOr<v1::DeleteConnectorResponse>
ControlPlaneService::DeleteConnector(const Caller& caller,
                                     const v1::GetByIdRequest& request,
                                     const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(ConnectorRow row,
                          FindConnector(caller, request.id()));
  IDSYNC_ASSIGN_OR_RETURN(std::optional<RunRow> active,
                          store_.ActiveRun(caller.tenant_id, row.id));
  if (active.has_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("connector ", row.id, " has an active run (", active->id,
                     "); cancel it first"));
  }
  v1::DeleteConnectorResponse response;
  response.set_id(row.id);
  response.set_deleted(true);
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(txn.DeleteConnector(caller.tenant_id, row.id));
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "connector.delete", "connector", row.id,
                        {{"business_id", row.business_id}})));
    return Commit(before_commit, response, txn);
  }));
  return response;
}

absl::StatusOr<v1::TestConnectorResponse> ControlPlaneService::TestConnector(
    const Caller& caller, const v1::GetByIdRequest& request) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(ConnectorRow row,
                          FindConnector(caller, request.id()));
  if (row.mode == "agent") {
    return absl::FailedPreconditionError(absl::StrCat(
        "connector ", row.id,
        " runs on an agent: testing agent connectors is not supported yet "
        "(start a sync with max_records 1 instead)"));
  }
  absl::Status s = workers_.Test(row);
  v1::TestConnectorResponse response;
  response.set_ok(s.ok());
  response.set_error(std::string(TestMessage(s, row)));
  return response;
}

FileUpload::~FileUpload() {
  if (!committed && dir && !temp.empty()) unlinkat(dir.get(), temp.c_str(), 0);
}

absl::StatusOr<std::unique_ptr<FileUpload>>
ControlPlaneService::PrepareFileUpload(const Caller& caller,
                                       int64_t connector_id) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(ConnectorRow row,
                          FindConnector(caller, connector_id));
  if (row.type != "csv" || row.mode != "hosted") {
    return absl::FailedPreconditionError(
        absl::StrCat("connector ", row.id,
                     " does not read a pushed file: uploads are for hosted csv "
                     "connectors"));
  }
  if (options_.sources == nullptr || !options_.sources->has_import_dir()) {
    return absl::FailedPreconditionError(
        "the dispatcher runs without --import-dir: it keeps no files for "
        "tenants");
  }
  google::protobuf::Struct config;
  if (!google::protobuf::util::JsonStringToMessage(row.config_json, &config)
           .ok() ||
      !config.fields().contains("path") ||
      !config.fields().at("path").has_string_value()) {
    return absl::FailedPreconditionError(
        absl::StrCat("connector ", row.id, " has no 'path' in its config"));
  }
  auto upload = std::make_unique<FileUpload>();
  upload->path = config.fields().at("path").string_value();
  IDSYNC_ASSIGN_OR_RETURN(
      std::string root,
      options_.sources->TenantDir(caller.tenant_id, /*create=*/true));
  IDSYNC_ASSIGN_OR_RETURN(
      ParentDir parent,
      OpenParentBeneath(root, upload->path, "the connector's 'path'"));
  upload->dir = std::move(parent.dir);
  upload->name = std::move(parent.name);
  uint8_t random[8];
  randombytes_buf(random, sizeof(random));
  upload->temp =
      absl::StrCat(".", upload->name, ".upload-",
                   absl::BytesToHexString(absl::string_view(
                       reinterpret_cast<const char*>(random), sizeof(random))));
  upload->file =
      UniqueFd(openat(upload->dir.get(), upload->temp.c_str(),
                      O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600));
  if (!upload->file) {
    return absl::InternalError(
        "cannot create the upload's file in the import directory");
  }
  upload->connector = std::move(row);
  return upload;
}

absl::StatusOr<v1::UploadConnectorFileResponse>
ControlPlaneService::CommitFileUpload(const Caller& caller, FileUpload& upload,
                                      int64_t bytes, bool sync) {
  // The hash is read back from the file: what is stored is what was hashed.
  crypto_hash_sha256_state sha;
  crypto_hash_sha256_init(&sha);
  {
    UniqueFd in(
        openat(upload.dir.get(), upload.temp.c_str(), O_RDONLY | O_CLOEXEC));
    if (!in) return absl::InternalError("the upload's file vanished");
    char buffer[1 << 16];
    ssize_t n;
    while ((n = read(in.get(), buffer, sizeof(buffer))) > 0) {
      crypto_hash_sha256_update(&sha, reinterpret_cast<uint8_t*>(buffer),
                                static_cast<size_t>(n));
    }
    if (n < 0) return absl::InternalError("cannot read the upload back");
  }
  uint8_t digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256_final(&sha, digest);
  if (fsync(upload.file.get()) != 0 ||
      renameat(upload.dir.get(), upload.temp.c_str(), upload.dir.get(),
               upload.name.c_str()) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot store the upload: ", std::strerror(errno)));
  }
  upload.committed = true;
  fsync(upload.dir.get());  // The rename itself.
  v1::UploadConnectorFileResponse response;
  response.set_connector_id(upload.connector.id);
  response.set_path(upload.path);
  response.set_bytes(bytes);
  response.set_sha256(absl::BytesToHexString(absl::string_view(
      reinterpret_cast<const char*>(digest), sizeof(digest))));
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) {
    return txn.Audit(Audit(caller, "connector.file.upload", "connector",
                           upload.connector.id,
                           {{"path", upload.path},
                            {"bytes", bytes},
                            {"sha256", response.sha256()}}));
  }));
  if (sync) {
    v1::StartSyncRequest start;
    start.set_connector_id(upload.connector.id);
    absl::StatusOr<v1::SyncRun> run = StartSync(caller, start);
    if (run.ok()) {
      *response.mutable_run() = *std::move(run);
    } else {
      response.set_sync_error(std::string(run.status().message()));
    }
  }
  return response;
}

absl::StatusOr<v1::SyncRun> ControlPlaneService::StartSync(
    const Caller& caller, const v1::StartSyncRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(ConnectorRow row,
                          FindConnector(caller, request.connector_id()));
  SyncOptions options;
  options.incremental = request.incremental();
  options.chunk_size =
      request.chunk_size() == 0 ? kDefaultChunkSize : request.chunk_size();
  if (options.chunk_size < 1 || options.chunk_size > kMaxChunkSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("'chunk_size' must be between 1 and ", kMaxChunkSize));
  }
  if (request.max_records() < 0) {
    return absl::InvalidArgumentError("'max_records' must be >= 0");
  }
  if (request.max_records() > 0) options.max_records = request.max_records();
  if (request.has_deletion_threshold()) {
    IDSYNC_RETURN_IF_ERROR(CheckThreshold(request.deletion_threshold()));
    options.deletion_threshold = request.deletion_threshold();
  }
  if (!request.callback_url().empty()) {
    IDSYNC_RETURN_IF_ERROR(
        CheckText("callback_url", request.callback_url(), kMaxUrlLength));
    IDSYNC_RETURN_IF_ERROR(CheckTarget("callback_url", request.callback_url()));
    options.callback_url = request.callback_url();
  }
  // The run's callbacks are signed with the tenant's callback secret: make
  // sure it has one when the run is created (an existing one stays).
  const std::string callback_secret =
      options.callback_url.empty() ? "" : NewCallbackSecret(caller.tenant_id);
  absl::StatusOr<RunRow> run = workers_.Start(
      row, options, [&](const RunRow& created, WriteTxn& txn) -> absl::Status {
        if (!callback_secret.empty()) {
          IDSYNC_RETURN_IF_ERROR(
              txn.SetCallbackSecret(caller.tenant_id, callback_secret)
                  .status());
        }
        IDSYNC_RETURN_IF_ERROR(
            txn.Audit(Audit(caller, "sync.start", "sync_run", created.id,
                            {{"connector_id", row.id},
                             {"incremental", request.incremental()}})));
        return Commit(before_commit, ToProto(created), txn);
      });
  if (absl::IsFailedPrecondition(run.status())) {
    IDSYNC_ASSIGN_OR_RETURN(std::optional<RunRow> active,
                            store_.ActiveRun(caller.tenant_id, row.id));
    return absl::FailedPreconditionError(absl::StrCat(
        "connector ", row.id, " already has an active run",
        active.has_value() ? absl::StrCat(" (", active->id, ")") : ""));
  }
  IDSYNC_RETURN_IF_ERROR(run.status());
  return ToProto(*run);
}

absl::StatusOr<v1::ListSyncRunsResponse> ControlPlaneService::ListSyncRuns(
    const Caller& caller, const v1::ListSyncRunsRequest& request) {
  IDSYNC_RETURN_IF_ERROR(
      FindConnector(caller, request.connector_id()).status());
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  q.connector_id = request.connector_id();
  std::vector<RunRow> rows;
  IDSYNC_ASSIGN_OR_RETURN(int64_t total, store_.ListRuns(q, &rows));
  std::vector<v1::SyncRun> items;
  for (const RunRow& run : rows) items.push_back(ToProto(run));
  return PageOf<v1::ListSyncRunsResponse>(std::move(items), total, q);
}

absl::StatusOr<v1::SyncRun> ControlPlaneService::GetSyncRun(
    const Caller& caller, const v1::GetByIdRequest& request) {
  IDSYNC_ASSIGN_OR_RETURN(RunRow run,
                          store_.GetRun(caller.tenant_id, request.id()));
  return ToProto(run);
}

absl::StatusOr<v1::SyncRun> ControlPlaneService::CancelSyncRun(
    const Caller& caller, const v1::GetByIdRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(RunRow run,
                          store_.GetRun(caller.tenant_id, request.id()));
  if (run.status != RunStatus::kRunning) {
    return absl::FailedPreconditionError(
        absl::StrCat("sync run ", run.id, " already ended (",
                     RunStatusName(run.status), ")"));
  }
  absl::Status cancelled = workers_.Cancel(run.id);
  if (absl::IsNotFound(cancelled)) {
    return absl::FailedPreconditionError(
        absl::StrCat("sync run ", run.id,
                     " is executing in another process; stop it there"));
  }
  IDSYNC_RETURN_IF_ERROR(cancelled);
  const v1::SyncRun response = ToProto(run);
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "sync.cancel", "sync_run", run.id)));
    return Commit(before_commit, response, txn);
  }));
  return response;
}

// --- Tokens and audit
// -------------------------------------------------------------

absl::StatusOr<v1::CreateTokenResponse> ControlPlaneService::CreateToken(
    const Caller& caller, const v1::CreateTokenRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_RETURN_IF_ERROR(CheckName("name", request.name()));
  if (request.role() != "admin" && request.role() != "auditor") {
    return absl::InvalidArgumentError(
        "'role' must be \"admin\" or \"auditor\"");
  }
  const std::string secret = NewToken(kServiceTokenPrefix);
  TokenRow row;
  row.tenant_id = caller.tenant_id;
  row.name = request.name();
  row.kind = "service";
  row.role = request.role();
  row.prefix = secret.substr(0, kServiceTokenPrefix.size() + 4);
  v1::CreateTokenResponse response;
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_ASSIGN_OR_RETURN(row.id, txn.InsertToken(row, TokenHash(secret)));
    row.created_at = txn.now();
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "token.create", "token", row.id,
                        {{"name", row.name}, {"role", row.role}})));
    *response.mutable_token() = ToProto(row);
    response.set_secret(secret);
    return Commit(before_commit, response, txn);
  }));
  return response;
}

absl::StatusOr<v1::ListTokensResponse> ControlPlaneService::ListTokens(
    const Caller& caller, const v1::ListTokensRequest& request) {
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  q.equals.push_back({"kind", "service"});
  std::vector<TokenRow> rows;
  IDSYNC_ASSIGN_OR_RETURN(int64_t total, store_.ListTokens(q, &rows));
  std::vector<v1::Token> items;
  for (const TokenRow& row : rows) items.push_back(ToProto(row));
  return PageOf<v1::ListTokensResponse>(std::move(items), total, q);
}

absl::StatusOr<v1::Token> ControlPlaneService::RevokeToken(
    const Caller& caller, const v1::GetByIdRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  // Any kind: service tokens, an agent's token, an unused registration
  // token.
  ListQuery q;
  q.tenant_id = caller.tenant_id;
  q.limit = 1;
  q.equals.push_back({"id", absl::StrCat(request.id())});
  std::vector<TokenRow> rows;
  IDSYNC_RETURN_IF_ERROR(store_.ListTokens(q, &rows).status());
  if (rows.empty()) {
    return absl::NotFoundError(
        absl::StrCat("token ", request.id(), " not found"));
  }
  TokenRow row = rows.front();
  std::optional<int64_t> agent_id;
  if (row.kind == "agent") {
    absl::StatusOr<AgentRow> agent = store_.AgentByToken(row.id);
    if (agent.ok()) {
      agent_id = agent->id;
    } else if (!absl::IsNotFound(agent.status())) {
      return agent.status();
    }
  }
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(txn.RevokeToken(caller.tenant_id, row.id));
    nlohmann::json details = {{"name", row.name}, {"kind", row.kind}};
    if (agent_id.has_value()) details["agent_id"] = *agent_id;
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "token.revoke", "token", row.id, details)));
    if (!row.revoked_at.has_value()) row.revoked_at = txn.now();
    return Commit(before_commit, ToProto(row), txn);
  }));
  // Revoked first, so the agent cannot come straight back; then its stream
  // closes.
  if (agent_id.has_value() && options_.agents != nullptr) {
    options_.agents->Disconnect(*agent_id);
  }
  return ToProto(row);
}

// --- Agents
// ------------------------------------------------------------------------

absl::StatusOr<v1::CreateRegistrationTokenResponse>
ControlPlaneService::CreateRegistrationToken(
    const Caller& caller, const v1::CreateRegistrationTokenRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_RETURN_IF_ERROR(CheckName("name", request.name()));
  if (!request.group().empty()) {
    IDSYNC_RETURN_IF_ERROR(CheckName("group", request.group()));
  }
  const std::string secret = NewToken(kRegistrationTokenPrefix);
  TokenRow row;
  row.tenant_id = caller.tenant_id;
  row.name = request.name();
  row.kind = "registration";
  row.role = "agent";
  row.prefix = secret.substr(0, kRegistrationTokenPrefix.size() + 4);
  row.agent_group = request.group();
  v1::CreateRegistrationTokenResponse response;
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_ASSIGN_OR_RETURN(row.id, txn.InsertToken(row, TokenHash(secret)));
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "registration_token.create", "token", row.id,
                        {{"name", row.name}, {"group", row.agent_group}})));
    response.set_token(secret);
    response.set_id(row.id);
    response.set_name(row.name);
    response.set_group(row.agent_group);
    *response.mutable_created_at() = Stamp(txn.now());
    return Commit(before_commit, response, txn);
  }));
  return response;
}

absl::StatusOr<v1::Agent> ControlPlaneService::AgentView(const AgentRow& row) {
  v1::Agent a;
  a.set_id(row.id);
  a.set_name(row.name);
  a.set_group(row.group);
  a.set_version(row.version);
  for (const std::string& type : row.connector_types) {
    a.add_connector_types(type);
  }
  a.set_online(options_.agents != nullptr ? options_.agents->IsOnline(row.id)
                                          : row.online);
  if (row.last_seen_at.has_value()) {
    *a.mutable_last_seen_at() = Stamp(*row.last_seen_at);
  }
  *a.mutable_created_at() = Stamp(row.created_at);
  a.set_token_id(row.token_id);
  ListQuery q;
  q.tenant_id = row.tenant_id;
  q.limit = 1;
  q.equals.push_back({"id", absl::StrCat(row.token_id)});
  std::vector<TokenRow> tokens;
  IDSYNC_RETURN_IF_ERROR(store_.ListTokens(q, &tokens).status());
  // No token (never: they are inserted together) counts as revoked.
  if (tokens.empty()) {
    *a.mutable_revoked_at() = Stamp(row.created_at);
  } else if (tokens.front().revoked_at.has_value()) {
    *a.mutable_revoked_at() = Stamp(*tokens.front().revoked_at);
  }
  if (a.has_revoked_at()) a.set_online(false);
  return a;
}

absl::StatusOr<v1::ListAgentsResponse> ControlPlaneService::ListAgents(
    const Caller& caller, const v1::PageRequest& request) {
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  std::vector<AgentRow> rows;
  IDSYNC_ASSIGN_OR_RETURN(int64_t total, store_.ListAgents(q, &rows));
  std::vector<v1::Agent> items;
  for (const AgentRow& row : rows) {
    IDSYNC_ASSIGN_OR_RETURN(v1::Agent agent, AgentView(row));
    items.push_back(std::move(agent));
  }
  return PageOf<v1::ListAgentsResponse>(std::move(items), total, q);
}

absl::StatusOr<v1::Agent> ControlPlaneService::GetAgent(
    const Caller& caller, const v1::GetByIdRequest& request) {
  IDSYNC_ASSIGN_OR_RETURN(AgentRow row,
                          store_.GetAgent(caller.tenant_id, request.id()));
  return AgentView(row);
}

absl::StatusOr<v1::Agent> ControlPlaneService::DeleteAgent(
    const Caller& caller, const v1::GetByIdRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(AgentRow row,
                          store_.GetAgent(caller.tenant_id, request.id()));
  IDSYNC_ASSIGN_OR_RETURN(v1::Agent agent, AgentView(row));
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(txn.RevokeToken(caller.tenant_id, row.token_id));
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "agent.revoke", "agent", row.id,
                        {{"name", row.name}, {"token_id", row.token_id}})));
    if (!agent.has_revoked_at()) *agent.mutable_revoked_at() = Stamp(txn.now());
    agent.set_online(false);
    return Commit(before_commit, agent, txn);
  }));
  // The token is refused from now on; close the stream it opened.
  if (options_.agents != nullptr) options_.agents->Disconnect(row.id);
  return agent;
}

absl::StatusOr<v1::ListAuditEventsResponse>
ControlPlaneService::ListAuditEvents(
    const Caller& caller, const v1::ListAuditEventsRequest& request) {
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  IDSYNC_RETURN_IF_ERROR(Equals("action", request.action(), &q));
  IDSYNC_RETURN_IF_ERROR(Equals("resource_type", request.resource_type(), &q));
  std::vector<v1::AuditEvent> items;
  IDSYNC_ASSIGN_OR_RETURN(int64_t total, store_.ListAudit(q, &items));
  return PageOf<v1::ListAuditEventsResponse>(std::move(items), total, q);
}

// --- Webhooks and callbacks
// -------------------------------------------------------

absl::Status ControlPlaneService::CheckTarget(absl::string_view field,
                                              absl::string_view url) {
  absl::Status s = CheckTargetUrl(url, options_.allow_private_callbacks);
  if (s.ok()) return s;
  if (absl::IsInvalidArgument(s)) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", field, "': ", s.message()));
  }
  return s;
}

std::string ControlPlaneService::NewCallbackSecret(int64_t tenant_id) const {
  return secrets_.Seal(NewSigningSecret(), CallbackContext(tenant_id));
}

absl::StatusOr<WebhookRow> ControlPlaneService::FindWebhook(
    const Caller& caller, int64_t id) {
  absl::StatusOr<WebhookRow> row = store_.GetWebhook(caller.tenant_id, id);
  if (absl::IsNotFound(row.status())) {
    return absl::NotFoundError(absl::StrCat("webhook ", id, " not found"));
  }
  return row;
}

absl::StatusOr<v1::CreateWebhookResponse> ControlPlaneService::CreateWebhook(
    const Caller& caller, const v1::CreateWebhookRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  if (request.url().empty()) {
    return absl::InvalidArgumentError("'url' is required");
  }
  IDSYNC_RETURN_IF_ERROR(CheckText("url", request.url(), kMaxUrlLength));
  IDSYNC_RETURN_IF_ERROR(CheckEventTypes(request.event_types()));
  IDSYNC_RETURN_IF_ERROR(CheckTarget("url", request.url()));
  WebhookRow row;
  row.tenant_id = caller.tenant_id;
  row.url = request.url();
  row.event_types.assign(request.event_types().begin(),
                         request.event_types().end());
  row.enabled = request.has_enabled() ? request.enabled() : true;
  const std::string secret = NewSigningSecret();
  v1::CreateWebhookResponse response;
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    // Counted inside the write transaction: API writes are serialized, so
    // concurrent creates cannot both pass the limit.
    ListQuery q;
    q.tenant_id = caller.tenant_id;
    q.limit = 1;
    std::vector<WebhookRow> some;
    IDSYNC_ASSIGN_OR_RETURN(int64_t count, store_.ListWebhooks(q, &some));
    if (count >= kMaxWebhooksPerTenant) {
      return absl::FailedPreconditionError(absl::StrCat(
          "this tenant already has ", count, " webhooks, the most allowed (",
          kMaxWebhooksPerTenant, "); delete one first"));
    }
    IDSYNC_ASSIGN_OR_RETURN(row.id, txn.InsertWebhook(row));
    IDSYNC_RETURN_IF_ERROR(txn.SetWebhookSecret(
        row.tenant_id, row.id, secrets_.Seal(secret, WebhookContext(row.id))));
    row.created_at = row.updated_at = txn.now();
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "webhook.create", "webhook", row.id,
                        {{"url", AuditUrl(row.url)},
                         {"event_types", row.event_types},
                         {"enabled", row.enabled}})));
    *response.mutable_webhook() = ToProto(row);
    response.set_secret(secret);
    return Commit(before_commit, response, txn);
  }));
  return response;
}

absl::StatusOr<v1::ListWebhooksResponse> ControlPlaneService::ListWebhooks(
    const Caller& caller, const v1::PageRequest& request) {
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  std::vector<WebhookRow> rows;
  IDSYNC_ASSIGN_OR_RETURN(int64_t total, store_.ListWebhooks(q, &rows));
  std::vector<v1::Webhook> items;
  for (const WebhookRow& row : rows) items.push_back(ToProto(row));
  return PageOf<v1::ListWebhooksResponse>(std::move(items), total, q);
}

absl::StatusOr<v1::Webhook> ControlPlaneService::GetWebhook(
    const Caller& caller, const v1::GetByIdRequest& request) {
  IDSYNC_ASSIGN_OR_RETURN(WebhookRow row, FindWebhook(caller, request.id()));
  return ToProto(row);
}

absl::StatusOr<v1::Webhook> ControlPlaneService::UpdateWebhook(
    const Caller& caller, const v1::UpdateWebhookRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(WebhookRow row, FindWebhook(caller, request.id()));
  nlohmann::json details = {{"fields", nlohmann::json::array()}};
  if (request.has_url()) {
    if (request.url().empty()) {
      return absl::InvalidArgumentError("'url' must not be empty");
    }
    IDSYNC_RETURN_IF_ERROR(CheckText("url", request.url(), kMaxUrlLength));
    IDSYNC_RETURN_IF_ERROR(CheckTarget("url", request.url()));
    row.url = request.url();
    details["fields"].push_back("url");
    details["url"] = AuditUrl(row.url);
  }
  if (!request.event_types().empty()) {
    IDSYNC_RETURN_IF_ERROR(CheckEventTypes(request.event_types()));
    row.event_types.assign(request.event_types().begin(),
                           request.event_types().end());
    details["fields"].push_back("event_types");
    details["event_types"] = row.event_types;
  }
  if (request.has_enabled()) {
    row.enabled = request.enabled();
    if (row.enabled) row.disabled_reason.clear();
    details["fields"].push_back("enabled");
    details["enabled"] = row.enabled;
  }
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(txn.UpdateWebhook(row));
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "webhook.update", "webhook", row.id, details)));
    row.updated_at = txn.now();
    return Commit(before_commit, ToProto(row), txn);
  }));
  return ToProto(row);
}

absl::StatusOr<v1::DeleteWebhookResponse> ControlPlaneService::DeleteWebhook(
    const Caller& caller, const v1::GetByIdRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_ASSIGN_OR_RETURN(WebhookRow row, FindWebhook(caller, request.id()));
  v1::DeleteWebhookResponse response;
  response.set_id(row.id);
  response.set_deleted(true);
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(txn.DeleteWebhook(caller.tenant_id, row.id));
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "webhook.delete", "webhook", row.id,
                        {{"url", AuditUrl(row.url)}})));
    return Commit(before_commit, response, txn);
  }));
  return response;
}

absl::StatusOr<v1::ListDeliveriesResponse> ControlPlaneService::ListDeliveries(
    const Caller& caller, const v1::ListDeliveriesRequest& request) {
  IDSYNC_RETURN_IF_ERROR(FindWebhook(caller, request.webhook_id()).status());
  ListQuery q;
  IDSYNC_RETURN_IF_ERROR(
      Page(caller, request.limit(), request.offset(), request.cursor(), &q));
  std::vector<DeliveryRow> rows;
  IDSYNC_ASSIGN_OR_RETURN(
      int64_t total, store_.ListDeliveries(q, request.webhook_id(), &rows));
  std::vector<v1::Delivery> items;
  for (const DeliveryRow& row : rows) items.push_back(ToProto(row));
  return PageOf<v1::ListDeliveriesResponse>(std::move(items), total, q);
}

absl::StatusOr<v1::Delivery> ControlPlaneService::ReplayDelivery(
    const Caller& caller, const v1::ReplayDeliveryRequest& request,
    const BeforeCommit& before_commit) {
  IDSYNC_RETURN_IF_ERROR(RequireAdmin(caller));
  IDSYNC_RETURN_IF_ERROR(FindWebhook(caller, request.webhook_id()).status());
  // The delivery, by keyset paging to its id (the store has no single-row
  // read for deliveries).
  ListQuery q;
  q.tenant_id = caller.tenant_id;
  q.limit = 1;
  q.after_id = request.delivery_id() - 1;
  std::vector<DeliveryRow> rows;
  IDSYNC_RETURN_IF_ERROR(
      store_.ListDeliveries(q, request.webhook_id(), &rows).status());
  if (request.delivery_id() <= 0 || rows.empty() ||
      rows.front().id != request.delivery_id()) {
    return absl::NotFoundError(
        absl::StrCat("delivery ", request.delivery_id(), " of webhook ",
                     request.webhook_id(), " not found"));
  }
  DeliveryRow row = std::move(rows.front());
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(txn.ReplayDelivery(
        caller.tenant_id, request.webhook_id(), request.delivery_id()));
    IDSYNC_RETURN_IF_ERROR(
        txn.Audit(Audit(caller, "delivery.replay", "delivery", row.id,
                        {{"webhook_id", row.webhook_id},
                         {"event_id", absl::StrCat("msg_", row.event_id)},
                         {"event_type", row.event_type},
                         {"previous_state", row.state}})));
    // As the store leaves it: a fresh send (the audit keeps the history).
    row.state = "pending";
    row.attempts = 0;
    row.next_attempt_at = txn.now();
    row.last_status = 0;
    row.last_error.clear();
    row.delivered_at.reset();
    row.updated_at = txn.now();
    return Commit(before_commit, ToProto(row), txn);
  }));
  return ToProto(row);
}

absl::StatusOr<v1::CallbackSecret> ControlPlaneService::GetCallbackSecret(
    const Caller& caller, const v1::GetCallbackSecretRequest&) {
  if (caller.role != "admin") {
    return absl::PermissionDeniedError(absl::StrCat(
        "the callback secret is for admin tokens only (this token has role ",
        caller.role, ")"));
  }
  IDSYNC_ASSIGN_OR_RETURN(std::string sealed,
                          store_.CallbackSecret(caller.tenant_id));
  if (sealed.empty()) {
    IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
      IDSYNC_ASSIGN_OR_RETURN(
          bool stored,
          txn.SetCallbackSecret(caller.tenant_id,
                                NewCallbackSecret(caller.tenant_id)));
      if (!stored) return absl::OkStatus();  // Someone else was first.
      return txn.Audit(
          Audit(caller, "callback_secret.create", "tenant", caller.tenant_id));
    }));
    // Read back: a concurrent request may have stored its secret first.
    IDSYNC_ASSIGN_OR_RETURN(sealed, store_.CallbackSecret(caller.tenant_id));
  }
  absl::StatusOr<std::string> secret =
      secrets_.Open(sealed, CallbackContext(caller.tenant_id));
  if (!secret.ok()) {
    return absl::DataLossError(
        "the tenant's callback secret does not open with this key");
  }
  v1::CallbackSecret response;
  response.set_secret(*std::move(secret));
  return response;
}

absl::StatusOr<std::string> ControlPlaneService::Bootstrap(
    Store& store, absl::string_view tenant) {
  IDSYNC_RETURN_IF_ERROR(CheckName("tenant", tenant));
  if (tenant == "." || tenant == "..") {
    // The name also names the tenant's import directory.
    return absl::InvalidArgumentError("'tenant' must not be \".\" or \"..\"");
  }
  IDSYNC_ASSIGN_OR_RETURN(int64_t tenant_id, store.EnsureTenant(tenant));
  ListQuery q;
  q.tenant_id = tenant_id;
  q.limit = 1;
  q.equals.push_back({"role", "admin"});
  std::vector<TokenRow> admins;
  IDSYNC_ASSIGN_OR_RETURN(int64_t count, store.ListTokens(q, &admins));
  if (count > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat("tenant '", tenant,
                     "' already has an admin token; create more through the "
                     "API"));
  }
  const std::string secret = NewToken(kServiceTokenPrefix);
  IDSYNC_RETURN_IF_ERROR(store.Write([&](WriteTxn& txn) -> absl::Status {
    TokenRow row;
    row.tenant_id = tenant_id;
    row.name = "bootstrap-admin";
    row.kind = "service";
    row.role = "admin";
    row.prefix = secret.substr(0, kServiceTokenPrefix.size() + 4);
    IDSYNC_ASSIGN_OR_RETURN(row.id, txn.InsertToken(row, TokenHash(secret)));
    AuditEntry e;
    e.tenant_id = tenant_id;
    e.actor = "idsync-dispatcher bootstrap";
    e.action = "token.create";
    e.resource_type = "token";
    e.resource_id = absl::StrCat(row.id);
    e.details_json = Details({{"name", row.name}, {"role", "admin"}});
    return txn.Audit(e);
  }));
  return secret;
}

}  // namespace idsync
