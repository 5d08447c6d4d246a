// SqliteStore: the embedded default Store, one SQLite file in WAL mode.
// Writes share one connection behind a mutex (SQLite has one writer at a
// time anyway); API reads use a pool of read connections, and each RunWriter
// opens its own connection, so a long run never blocks readers.
#ifndef IDSYNC_DISPATCHER_STORE_SQLITE_STORE_H_
#define IDSYNC_DISPATCHER_STORE_SQLITE_STORE_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "connector/clock.h"
#include "dispatcher/store/read_connection.h"
#include "dispatcher/store/sqlite_util.h"
#include "dispatcher/store/store.h"
#include "dispatcher/store/write_gate.h"

namespace idsync {

struct StoreOptions {
  std::string path;               // Created (with its schema) if missing.
  Clock* clock = &Clock::Real();  // Stamps API writes; must outlive the store.
};

class SqliteStore final : public Store {
 public:
  // Opens the file and applies pending migrations.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const StoreOptions& options);

  // API reads and writes (sqlite_store_api.cc).
  absl::StatusOr<int64_t> ListIdentities(
      const ListQuery& q, std::vector<idsync::v1::Identity>* items) override;
  absl::StatusOr<int64_t> ListAccounts(
      const ListQuery& q, std::vector<idsync::v1::Account>* items) override;
  absl::StatusOr<int64_t> ListEntitlements(
      const ListQuery& q, std::vector<idsync::v1::Entitlement>* items) override;
  absl::StatusOr<int64_t> ListGrants(
      const ListQuery& q, std::vector<idsync::v1::Grant>* items) override;
  absl::StatusOr<int64_t> ListConnectors(
      const ListQuery& q, std::vector<ConnectorRow>* items) override;
  absl::StatusOr<int64_t> ListRuns(const ListQuery& q,
                                   std::vector<RunRow>* items) override;
  absl::StatusOr<int64_t> ListTokens(const ListQuery& q,
                                     std::vector<TokenRow>* items) override;
  absl::StatusOr<int64_t> ListAudit(
      const ListQuery& q, std::vector<idsync::v1::AuditEvent>* items) override;
  absl::StatusOr<std::string> ConnectorAuth(int64_t tenant_id,
                                            int64_t id) override;
  absl::StatusOr<TokenRow> FindToken(absl::string_view hash) override;
  absl::StatusOr<std::vector<RunRow>> RunningRuns() override;
  absl::StatusOr<std::vector<ConnectorRow>> ScheduledConnectors() override;
  absl::Status Write(const WriteBody& body) override;
  absl::StatusOr<IdempotencyState> BeginIdempotent(
      int64_t tenant_id, absl::string_view key, absl::string_view request_hash,
      absl::Duration stale_after) override;
  absl::Status AbandonIdempotent(int64_t tenant_id,
                                 absl::string_view key) override;
  absl::Status ExpireIdempotent(absl::Duration age) override;
  absl::StatusOr<int64_t> ListWebhooks(const ListQuery& q,
                                       std::vector<WebhookRow>* items) override;
  absl::StatusOr<WebhookRow> GetWebhook(int64_t tenant_id, int64_t id) override;
  absl::StatusOr<int64_t> ListDeliveries(
      const ListQuery& q, int64_t webhook_id,
      std::vector<DeliveryRow>* items) override;
  absl::StatusOr<std::string> CallbackSecret(int64_t tenant_id) override;
  absl::StatusOr<int64_t> ListAgents(const ListQuery& q,
                                     std::vector<AgentRow>* items) override;
  absl::StatusOr<AgentRow> GetAgent(int64_t tenant_id, int64_t id) override;
  absl::StatusOr<AgentRow> AgentByToken(int64_t token_id) override;
  absl::StatusOr<AgentRow> RegisterAgent(
      absl::string_view registration_hash, absl::string_view name,
      absl::string_view agent_token_hash,
      absl::string_view agent_prefix) override;
  absl::Status SetAgentOnline(int64_t agent_id, bool online,
                              absl::string_view version,
                              const std::vector<std::string>& types) override;
  absl::Status TouchAgent(int64_t agent_id) override;
  absl::StatusOr<std::vector<int64_t>> OnlineAgents() override;
  absl::StatusOr<std::vector<DueDelivery>> DueDeliveries(absl::Time now,
                                                         int limit) override;
  absl::Status RecordDelivery(const DeliveryOutcome& outcome) override;
  absl::Status PruneDeliveries(absl::Time before) override;

  // Sync runs (sqlite_store.cc).
  absl::StatusOr<int64_t> EnsureTenant(absl::string_view name) override;
  absl::StatusOr<std::string> TenantName(int64_t tenant_id) override;
  absl::StatusOr<ConnectorRow> UpsertConnector(
      const ConnectorRow& connector) override;
  absl::StatusOr<ConnectorRow> GetConnector(int64_t tenant_id,
                                            int64_t id) override;
  absl::StatusOr<RunRow> CreateRun(const RunRow& run) override;
  absl::StatusOr<RunRow> GetRun(int64_t tenant_id, int64_t id) override;
  absl::StatusOr<std::optional<RunRow>> ActiveRun(
      int64_t tenant_id, int64_t connector_id) override;
  absl::Status ClaimRun(int64_t tenant_id, int64_t run_id,
                        absl::string_view expected_owner,
                        absl::string_view new_owner) override;
  absl::StatusOr<std::vector<SeenDelta>> LoadSeen(int64_t run_id) override;
  absl::StatusOr<std::vector<idsync::v1::Reject>> ListRejects(
      int64_t tenant_id, int64_t run_id, int limit) override;
  absl::Status FinishRun(const RunRow& run) override;
  absl::StatusOr<std::unique_ptr<RunWriter>> OpenRunWriter(
      const RunRow& run) override;

 private:
  SqliteStore(std::string path, Clock& clock, SqliteDb db)
      : path_(std::move(path)), clock_(clock), db_(std::move(db)) {}

  // A read connection from the pool, returned when the lease ends.
  class ReadLease {
   public:
    ReadLease(SqliteStore& store, std::unique_ptr<ReadConnection> conn)
        : store_(store), conn_(std::move(conn)) {}
    ~ReadLease();
    ReadLease(ReadLease&&) = default;
    ReadConnection& operator*() const { return *conn_; }
    ReadConnection* operator->() const { return conn_.get(); }

   private:
    SqliteStore& store_;
    std::unique_ptr<ReadConnection> conn_;
  };
  absl::StatusOr<ReadLease> Reader();
  absl::StatusOr<std::optional<RunRow>> QueryRun(absl::string_view where,
                                                 int64_t a, int64_t b)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const std::string path_;
  Clock& clock_;

  // Orders this process's write transactions; API writes first.
  WriteGate gate_;
  // The write connection: store-level writes and WriteTxn bodies.
  absl::Mutex mu_;
  SqliteDb db_ ABSL_GUARDED_BY(mu_);

  absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<ReadConnection>> readers_
      ABSL_GUARDED_BY(pool_mu_);
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_SQLITE_STORE_H_
