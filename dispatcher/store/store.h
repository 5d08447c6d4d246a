// Store: the governance store behind the dispatcher. SqliteStore is the
// embedded default; the interface is shaped so a PostgreSQL one can follow.
// Every row carries tenant_id and every query is scoped by it.
//
// A Store is thread-safe. A RunWriter belongs to one run on one thread.
#ifndef IDSYNC_DISPATCHER_STORE_STORE_H_
#define IDSYNC_DISPATCHER_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "google/protobuf/message.h"
#include "idsync/v1/connector.pb.h"
#include "idsync/v1/control_plane.pb.h"

namespace idsync {

// When the scheduler syncs a connector (dispatcher/scheduler.h).
struct ConnectorSchedule {
  int incremental_minutes = 0;  // 0: no scheduled incremental syncs.
  std::string full_cron;        // Empty: no scheduled full syncs.
  std::string time_zone;        // For full_cron; empty: UTC.
  // The last due time the scheduler acted on (started or skipped); the
  // next due time is computed from it. Set to "now" when the schedule is.
  std::optional<absl::Time> incremental_handled_at;
  std::optional<absl::Time> full_handled_at;
  bool empty() const { return incremental_minutes == 0 && full_cron.empty(); }
};

struct ConnectorRow {
  int64_t id = 0;
  int64_t tenant_id = 0;
  std::string business_id;
  std::string type;
  std::string mode = "hosted";
  std::string config_json = "{}";
  double deletion_threshold = 0.2;  // Fraction of active records.
  std::string sync_token;           // Watermark of the last successful run.
  std::optional<absl::Time> last_sync_at;
  bool has_auth = false;  // A sealed auth_config is stored.
  // mode "agent": the name or group of the agents that may run it.
  std::string agent;
  absl::Time created_at;
  absl::Time updated_at;
  ConnectorSchedule schedule;
};

enum class RunStatus { kRunning, kSucceeded, kFailed, kCancelled };
absl::string_view RunStatusName(RunStatus status);

// Where a run is: applying records, removing unseen ones, or finished.
enum class RunPhase { kRecords, kDeletions, kDone };

// A sync run: its options, its checkpoint and its counters. The checkpoint
// (chunks, resume_token, counters, phase) always commits together with the
// records it covers.
struct RunRow {
  int64_t id = 0;
  int64_t tenant_id = 0;
  int64_t connector_id = 0;
  RunStatus status = RunStatus::kRunning;
  RunPhase phase = RunPhase::kRecords;
  bool incremental = false;
  int32_t chunk_size = 0;
  std::optional<int64_t> max_records;
  double deletion_threshold = 0.2;
  std::string callback_url;
  std::string owner;  // The process applying it (see ProcessIdentity).

  int64_t chunks = 0;
  std::string resume_token;
  int64_t processed = 0, created = 0, updated = 0, unchanged = 0, deleted = 0,
          rejected = 0;
  int64_t source_done = 0, source_total = 0;  // From the connector, if known.
  int64_t resumes = 0;  // How often it was picked up after a crash.
  bool cut = false;     // Stopped at max_records: no deletions, no watermark.
  std::string deletion_note;  // Why deletions were skipped or refused.
  std::string error;
  std::string next_sync_token;
  absl::Time started_at;
  absl::Time updated_at;
  std::optional<absl::Time> finished_at;
};

// A stored record's identity and state, as change detection needs it.
struct ExistingRecord {
  int64_t id = 0;
  uint64_t content_hash = 0;
  bool deleted = false;
};

// The key of a record: external_id, or for grants the two external ids.
struct RecordKey {
  absl::string_view first;
  absl::string_view second;  // Grants only.
};

// Row ids of one kind that a run saw during one commit group, encoded.
struct SeenDelta {
  idsync::v1::RecordKind kind;
  std::string encoded;
};

// Applies one run's records. Statements are prepared once for the run.
// Between Begin() and Commit()/Rollback() everything is one transaction.
class RunWriter {
 public:
  virtual ~RunWriter() = default;

  // `now` stamps every row written until the commit.
  virtual absl::Status Begin(absl::Time now) = 0;
  // True when a more urgent write (an API request) waits for this run's
  // transaction: commit the group early.
  virtual bool ShouldYield() { return false; }
  virtual absl::StatusOr<std::optional<ExistingRecord>> Lookup(
      idsync::v1::RecordKind kind, RecordKey key) = 0;
  // `record` is the message for `kind` (RemoteIdentity for identities, ...).
  // Returns the new row's id, or nullopt (nothing written) when a record
  // with the same key exists: for new records that saves the Lookup.
  virtual absl::StatusOr<std::optional<int64_t>> InsertIfNew(
      idsync::v1::RecordKind kind, const google::protobuf::Message& record,
      uint64_t content_hash) = 0;
  // Overwrites the row and clears a deletion mark.
  virtual absl::Status Update(idsync::v1::RecordKind kind, int64_t id,
                              const google::protobuf::Message& record,
                              uint64_t content_hash) = 0;
  virtual absl::Status MarkDeleted(idsync::v1::RecordKind kind, int64_t id) = 0;
  virtual absl::Status AddReject(const idsync::v1::Reject& reject) = 0;
  // Saves the run's checkpoint and the seen deltas, then commits.
  virtual absl::Status Commit(const RunRow& run,
                              const std::vector<SeenDelta>& seen) = 0;
  virtual void Rollback() = 0;

  // Outside a transaction: the run's connector's records not marked deleted.
  // The largest row id of `kind` in the store (0 when empty): no seen id can
  // be larger.
  virtual absl::StatusOr<int64_t> MaxId(idsync::v1::RecordKind kind) = 0;
  // Whether the run's connector has any record of `kind`, deleted or not.
  virtual absl::StatusOr<bool> HasRecords(idsync::v1::RecordKind kind) = 0;
  virtual absl::Status ForEachActive(
      idsync::v1::RecordKind kind,
      const std::function<void(int64_t id)>& visit) = 0;
};

// --- The API's view of the store --------------------------------------------

// One page of a list: offset paging, or keyset paging after an id (cursor).
struct ListQuery {
  int64_t tenant_id = 0;
  int32_t limit = 50;
  int64_t offset = 0;
  std::optional<int64_t> after_id;      // Cursor paging: rows with id > this.
  std::optional<int64_t> connector_id;  // Filters below are ANDed.
  std::string source;                   // Records: the connector's business_id.
  bool include_inactive = false;
  // Exact matches on record columns. Column names come from code, never from
  // requests.
  std::vector<std::pair<std::string, std::string>> equals;
  // Grants only: grants of the accounts linked to this identity.
  std::string grants_of_identity;
};

struct TokenRow {
  int64_t id = 0;
  int64_t tenant_id = 0;
  std::string name;
  std::string kind;  // "service", "agent", "registration".
  std::string role;  // "admin", "auditor", "agent".
  std::string prefix;
  absl::Time created_at;
  std::optional<absl::Time> revoked_at;
  std::string agent_group;  // Registration tokens: the new agent's group.
};

struct AuditEntry {
  int64_t tenant_id = 0;
  std::string actor;
  std::string action;
  std::string resource_type;
  std::string resource_id;
  std::string request_id;
  std::string details_json = "{}";  // Never secrets.
};

// An on-prem agent (agents/), registered with a one-time token.
struct AgentRow {
  int64_t id = 0;
  int64_t tenant_id = 0;
  std::string name;
  std::string group;
  int64_t token_id = 0;
  std::string version;
  std::vector<std::string> connector_types;
  bool online = false;
  std::optional<absl::Time> last_seen_at;
  absl::Time created_at;
};

// A webhook endpoint of a tenant. Its secret is sealed in the store and
// never part of the row.
struct WebhookRow {
  int64_t id = 0;
  int64_t tenant_id = 0;
  std::string url;
  std::vector<std::string> event_types;  // Patterns, see outbox.h.
  bool enabled = true;
  std::string disabled_reason;  // Why the endpoint was disabled (e.g. 410).
  absl::Time created_at;
  absl::Time updated_at;
};

// One event to one endpoint (a webhook, or a run's callback URL).
struct DeliveryRow {
  int64_t id = 0;
  int64_t tenant_id = 0;
  int64_t event_id = 0;    // The outbox row; "msg_<event_id>" on the wire.
  int64_t webhook_id = 0;  // 0 for a callback.
  std::string url;         // A callback's URL; for webhooks the webhook's.
  std::string event_type;
  std::string state;  // "pending", "delivered" or "dead".
  int32_t attempts = 0;
  absl::Time next_attempt_at;
  int32_t last_status = 0;  // HTTP status of the last attempt; 0: none.
  std::string last_error;
  absl::Time created_at;
  absl::Time updated_at;
  std::optional<absl::Time> delivered_at;
};

// What the delivery worker needs to send a delivery.
struct DueDelivery {
  DeliveryRow delivery;
  std::string endpoint;  // Deliveries of one endpoint go in order.
  std::string data;      // The event's data, a JSON object.
  absl::Time event_time;
  std::string sealed_secret;  // The webhook's, or the tenant's callback one.
  std::string secret_context;
};

// The result of one attempt.
struct DeliveryOutcome {
  int64_t id = 0;
  int32_t attempts = 0;
  std::string
      state;  // "pending" (retry at next_attempt_at), "delivered", "dead".
  absl::Time next_attempt_at;
  int32_t last_status = 0;
  std::string last_error;
  std::string disable_webhook;  // Non-empty: disable it, with this reason.
};

// What an Idempotency-Key lookup found.
struct IdempotencyState {
  enum Kind { kNew, kInFlight, kDone, kMismatch } kind = kNew;
  int status = 0;  // kDone: the stored response.
  std::string response;
};

// One write transaction of the API, on the store's write connection. Every
// method writes inside it; nothing is visible until the body returns OK.
class WriteTxn {
 public:
  virtual ~WriteTxn() = default;
  virtual absl::Time now() const = 0;

  // The tenant's "api" connector, which owns API-created identities.
  virtual absl::StatusOr<int64_t> ApiConnector(int64_t tenant_id) = 0;
  virtual absl::StatusOr<int64_t> InsertRecord(
      int64_t tenant_id, int64_t connector_id, idsync::v1::RecordKind kind,
      const google::protobuf::Message& record, uint64_t content_hash) = 0;
  virtual absl::Status UpdateRecord(int64_t tenant_id, int64_t connector_id,
                                    idsync::v1::RecordKind kind, int64_t id,
                                    const google::protobuf::Message& record,
                                    uint64_t content_hash) = 0;
  virtual absl::Status DeactivateRecord(idsync::v1::RecordKind kind,
                                        int64_t id) = 0;

  // Connectors: config_json is a JSON object; sealed_auth may be empty.
  virtual absl::StatusOr<int64_t> InsertConnector(const ConnectorRow& row) = 0;
  virtual absl::Status UpdateConnector(const ConnectorRow& row) = 0;
  virtual absl::Status SetConnectorAuth(int64_t tenant_id, int64_t id,
                                        absl::string_view sealed) = 0;
  // Removes the connector with its records and runs.
  virtual absl::Status DeleteConnector(int64_t tenant_id, int64_t id) = 0;
  // Replaces the connector's schedule, its handled_at times with it.
  virtual absl::Status SetSchedule(int64_t tenant_id, int64_t id,
                                   const ConnectorSchedule& schedule) = 0;
  // Records the due times the scheduler acted on; nullopt leaves one as is.
  virtual absl::Status MarkScheduleHandled(
      int64_t tenant_id, int64_t id, std::optional<absl::Time> incremental,
      std::optional<absl::Time> full) = 0;
  // A new running run (kFailedPrecondition if the connector has one).
  virtual absl::StatusOr<RunRow> InsertRun(const RunRow& run) = 0;

  virtual absl::StatusOr<int64_t> InsertToken(const TokenRow& row,
                                              absl::string_view hash) = 0;
  virtual absl::Status RevokeToken(int64_t tenant_id, int64_t id) = 0;

  // Webhooks. The secret is sealed by the caller (context "webhook:<id>").
  virtual absl::StatusOr<int64_t> InsertWebhook(const WebhookRow& row) = 0;
  virtual absl::Status SetWebhookSecret(int64_t tenant_id, int64_t id,
                                        absl::string_view sealed) = 0;
  // url, event_types, enabled (re-enabling clears disabled_reason).
  virtual absl::Status UpdateWebhook(const WebhookRow& row) = 0;
  // Removes the webhook with its deliveries.
  virtual absl::Status DeleteWebhook(int64_t tenant_id, int64_t id) = 0;
  // Sends a delivery again: pending, no attempts, due now.
  virtual absl::Status ReplayDelivery(int64_t tenant_id, int64_t webhook_id,
                                      int64_t delivery_id) = 0;
  // Stores the tenant's callback secret unless it has one; returns whether
  // it stored this one.
  virtual absl::StatusOr<bool> SetCallbackSecret(int64_t tenant_id,
                                                 absl::string_view sealed) = 0;

  virtual absl::Status Audit(const AuditEntry& entry) = 0;
  // Marks an Idempotency-Key done with its response (see BeginIdempotent).
  virtual absl::Status CompleteIdempotent(int64_t tenant_id,
                                          absl::string_view key, int status,
                                          absl::string_view response) = 0;
};

using WriteBody = std::function<absl::Status(WriteTxn& txn)>;

class Store {
 public:
  virtual ~Store() = default;

  // --- API reads (connection pool; do not block on a sync's commit) ---
  // Each lister fills `items` and returns the total matching the filters.
  virtual absl::StatusOr<int64_t> ListIdentities(
      const ListQuery& q, std::vector<idsync::v1::Identity>* items) = 0;
  virtual absl::StatusOr<int64_t> ListAccounts(
      const ListQuery& q, std::vector<idsync::v1::Account>* items) = 0;
  virtual absl::StatusOr<int64_t> ListEntitlements(
      const ListQuery& q, std::vector<idsync::v1::Entitlement>* items) = 0;
  virtual absl::StatusOr<int64_t> ListGrants(
      const ListQuery& q, std::vector<idsync::v1::Grant>* items) = 0;
  virtual absl::StatusOr<int64_t> ListConnectors(
      const ListQuery& q, std::vector<ConnectorRow>* items) = 0;
  virtual absl::StatusOr<int64_t> ListRuns(const ListQuery& q,
                                           std::vector<RunRow>* items) = 0;
  virtual absl::StatusOr<int64_t> ListTokens(const ListQuery& q,
                                             std::vector<TokenRow>* items) = 0;
  virtual absl::StatusOr<int64_t> ListAudit(
      const ListQuery& q, std::vector<idsync::v1::AuditEvent>* items) = 0;
  // The connector's sealed auth_config ("" if none).
  virtual absl::StatusOr<std::string> ConnectorAuth(int64_t tenant_id,
                                                    int64_t id) = 0;
  virtual absl::StatusOr<int64_t> ListWebhooks(
      const ListQuery& q, std::vector<WebhookRow>* items) = 0;
  virtual absl::StatusOr<WebhookRow> GetWebhook(int64_t tenant_id,
                                                int64_t id) = 0;
  // Deliveries of a webhook, oldest first.
  virtual absl::StatusOr<int64_t> ListDeliveries(
      const ListQuery& q, int64_t webhook_id,
      std::vector<DeliveryRow>* items) = 0;
  // The tenant's sealed callback secret ("" if none yet; context
  // "callback:<tenant_id>").
  virtual absl::StatusOr<std::string> CallbackSecret(int64_t tenant_id) = 0;
  virtual absl::StatusOr<int64_t> ListAgents(const ListQuery& q,
                                             std::vector<AgentRow>* items) = 0;
  virtual absl::StatusOr<AgentRow> GetAgent(int64_t tenant_id, int64_t id) = 0;
  // The agent holding the agent token `token_id`; kNotFound if none.
  virtual absl::StatusOr<AgentRow> AgentByToken(int64_t token_id) = 0;
  // A token by its hash, revoked or not; kNotFound if unknown.
  virtual absl::StatusOr<TokenRow> FindToken(absl::string_view hash) = 0;
  // Runs left running, of any tenant (for resuming at start-up).
  virtual absl::StatusOr<std::vector<RunRow>> RunningRuns() = 0;
  // Connectors with a schedule, of any tenant (for the scheduler).
  virtual absl::StatusOr<std::vector<ConnectorRow>> ScheduledConnectors() = 0;

  // --- API writes ---
  // Runs `body` in one transaction; commits if it returns OK.
  virtual absl::Status Write(const WriteBody& body) = 0;
  // Claims an Idempotency-Key for a request with this body hash, in its own
  // committed transaction so concurrent requests see it in flight. An
  // in-flight claim older than `stale_after` is taken over.
  virtual absl::StatusOr<IdempotencyState> BeginIdempotent(
      int64_t tenant_id, absl::string_view key, absl::string_view request_hash,
      absl::Duration stale_after) = 0;
  // Drops an in-flight claim whose request failed (nothing to replay).
  virtual absl::Status AbandonIdempotent(int64_t tenant_id,
                                         absl::string_view key) = 0;
  // Deletes keys first claimed more than `age` ago, done or abandoned in
  // flight: a key replays for `age` after its first use.
  virtual absl::Status ExpireIdempotent(absl::Duration age) = 0;

  // --- Sync runs ---

  virtual absl::StatusOr<int64_t> EnsureTenant(absl::string_view name) = 0;
  // kNotFound for an unknown tenant id.
  virtual absl::StatusOr<std::string> TenantName(int64_t tenant_id) = 0;

  // Creates the connector, or updates type/mode/config of the one with the
  // same (tenant, business_id); its threshold and sync_token stay.
  virtual absl::StatusOr<ConnectorRow> UpsertConnector(
      const ConnectorRow& connector) = 0;
  virtual absl::StatusOr<ConnectorRow> GetConnector(int64_t tenant_id,
                                                    int64_t id) = 0;

  // Inserts a running run. kFailedPrecondition if the connector already has
  // one (one active run per connector).
  virtual absl::StatusOr<RunRow> CreateRun(const RunRow& run) = 0;
  virtual absl::StatusOr<RunRow> GetRun(int64_t tenant_id, int64_t id) = 0;
  virtual absl::StatusOr<std::optional<RunRow>> ActiveRun(
      int64_t tenant_id, int64_t connector_id) = 0;
  // Takes over a run whose owner is `expected_owner`. kAborted if someone
  // else took it first.
  virtual absl::Status ClaimRun(int64_t tenant_id, int64_t run_id,
                                absl::string_view expected_owner,
                                absl::string_view new_owner) = 0;
  // The seen deltas committed so far by a run.
  virtual absl::StatusOr<std::vector<SeenDelta>> LoadSeen(int64_t run_id) = 0;
  virtual absl::StatusOr<std::vector<idsync::v1::Reject>> ListRejects(
      int64_t tenant_id, int64_t run_id, int limit) = 0;

  // Ends a run: writes its final row, drops its seen deltas and, when it
  // succeeded and was not cut, stores next_sync_token and last_sync_at on
  // its connector.
  virtual absl::Status FinishRun(const RunRow& run) = 0;

  virtual absl::StatusOr<std::unique_ptr<RunWriter>> OpenRunWriter(
      const RunRow& run) = 0;

  // --- Agents (dispatcher/agents/) ---
  // Exchanges a registration token (by hash; it must be unrevoked) for a
  // new agent and its agent token (stored by hash), in one transaction that
  // also revokes the registration token: it works once.
  // kPermissionDenied for an unknown, used or revoked token.
  virtual absl::StatusOr<AgentRow> RegisterAgent(
      absl::string_view registration_hash, absl::string_view name,
      absl::string_view agent_token_hash, absl::string_view agent_prefix) = 0;
  // Records the agent's connection state and publishes agent.online /
  // agent.offline when `online` changes. `hello` fields are kept when empty.
  virtual absl::Status SetAgentOnline(
      int64_t agent_id, bool online, absl::string_view version,
      const std::vector<std::string>& types) = 0;
  virtual absl::Status TouchAgent(int64_t agent_id) = 0;  // last_seen_at
  // Agents the store shows online, of any tenant.
  virtual absl::StatusOr<std::vector<int64_t>> OnlineAgents() = 0;

  // --- Delivery (dispatcher/delivery/) ---
  // Pending deliveries due at `now`, at most one per endpoint (the oldest:
  // an endpoint's events go in order), oldest first. Deliveries of
  // disabled webhooks wait.
  virtual absl::StatusOr<std::vector<DueDelivery>> DueDeliveries(absl::Time now,
                                                                 int limit) = 0;
  virtual absl::Status RecordDelivery(const DeliveryOutcome& outcome) = 0;
  // Deletes delivered and dead deliveries (and events no delivery needs)
  // last updated before `before`.
  virtual absl::Status PruneDeliveries(absl::Time before) = 0;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_STORE_H_
