// StoreWrapper: forwards every Store call to another Store (LevelDB's
// EnvWrapper pattern), so a fault-injecting store overrides only what it
// changes. Thread-safe if the wrapped store is.
#ifndef IDSYNC_TESTS_TESTING_STORE_WRAPPER_H_
#define IDSYNC_TESTS_TESTING_STORE_WRAPPER_H_

#include <memory>
#include <string>
#include <vector>

#include "dispatcher/store/store.h"

namespace idsync::testing {

class StoreWrapper : public Store {
 public:
  // "*base" must outlive the wrapper.
  explicit StoreWrapper(Store& base) : base_(base) {}

  absl::StatusOr<int64_t> ListIdentities(
      const ListQuery& q, std::vector<idsync::v1::Identity>* items) override {
    return base_.ListIdentities(q, items);
  }
  absl::StatusOr<int64_t> ListAccounts(
      const ListQuery& q, std::vector<idsync::v1::Account>* items) override {
    return base_.ListAccounts(q, items);
  }
  absl::StatusOr<int64_t> ListEntitlements(
      const ListQuery& q,
      std::vector<idsync::v1::Entitlement>* items) override {
    return base_.ListEntitlements(q, items);
  }
  absl::StatusOr<int64_t> ListGrants(
      const ListQuery& q, std::vector<idsync::v1::Grant>* items) override {
    return base_.ListGrants(q, items);
  }
  absl::StatusOr<int64_t> ListConnectors(
      const ListQuery& q, std::vector<ConnectorRow>* items) override {
    return base_.ListConnectors(q, items);
  }
  absl::StatusOr<int64_t> ListRuns(const ListQuery& q,
                                   std::vector<RunRow>* items) override {
    return base_.ListRuns(q, items);
  }
  absl::StatusOr<int64_t> ListTokens(const ListQuery& q,
                                     std::vector<TokenRow>* items) override {
    return base_.ListTokens(q, items);
  }
  absl::StatusOr<int64_t> ListAudit(
      const ListQuery& q, std::vector<idsync::v1::AuditEvent>* items) override {
    return base_.ListAudit(q, items);
  }
  absl::StatusOr<std::string> ConnectorAuth(int64_t tenant_id,
                                            int64_t id) override {
    return base_.ConnectorAuth(tenant_id, id);
  }
  absl::StatusOr<int64_t> ListWebhooks(
      const ListQuery& q, std::vector<WebhookRow>* items) override {
    return base_.ListWebhooks(q, items);
  }
  absl::StatusOr<WebhookRow> GetWebhook(int64_t tenant_id,
                                        int64_t id) override {
    return base_.GetWebhook(tenant_id, id);
  }
  absl::StatusOr<int64_t> ListDeliveries(
      const ListQuery& q, int64_t webhook_id,
      std::vector<DeliveryRow>* items) override {
    return base_.ListDeliveries(q, webhook_id, items);
  }
  absl::StatusOr<std::string> CallbackSecret(int64_t tenant_id) override {
    return base_.CallbackSecret(tenant_id);
  }
  absl::StatusOr<int64_t> ListAgents(const ListQuery& q,
                                     std::vector<AgentRow>* items) override {
    return base_.ListAgents(q, items);
  }
  absl::StatusOr<AgentRow> GetAgent(int64_t tenant_id, int64_t id) override {
    return base_.GetAgent(tenant_id, id);
  }
  absl::StatusOr<AgentRow> AgentByToken(int64_t token_id) override {
    return base_.AgentByToken(token_id);
  }
  absl::StatusOr<TokenRow> FindToken(absl::string_view hash) override {
    return base_.FindToken(hash);
  }
  absl::StatusOr<std::vector<RunRow>> RunningRuns() override {
    return base_.RunningRuns();
  }
  absl::StatusOr<std::vector<ConnectorRow>> ScheduledConnectors() override {
    return base_.ScheduledConnectors();
  }
  absl::Status Write(const WriteBody& body) override {
    return base_.Write(body);
  }
  absl::StatusOr<IdempotencyState> BeginIdempotent(
      int64_t tenant_id, absl::string_view key, absl::string_view request_hash,
      absl::Duration stale_after) override {
    return base_.BeginIdempotent(tenant_id, key, request_hash, stale_after);
  }
  absl::Status AbandonIdempotent(int64_t tenant_id,
                                 absl::string_view key) override {
    return base_.AbandonIdempotent(tenant_id, key);
  }
  absl::Status ExpireIdempotent(absl::Duration age) override {
    return base_.ExpireIdempotent(age);
  }

  absl::StatusOr<int64_t> EnsureTenant(absl::string_view name) override {
    return base_.EnsureTenant(name);
  }
  absl::StatusOr<std::string> TenantName(int64_t tenant_id) override {
    return base_.TenantName(tenant_id);
  }
  absl::StatusOr<ConnectorRow> UpsertConnector(const ConnectorRow& c) override {
    return base_.UpsertConnector(c);
  }
  absl::StatusOr<ConnectorRow> GetConnector(int64_t tenant_id,
                                            int64_t id) override {
    return base_.GetConnector(tenant_id, id);
  }
  absl::StatusOr<RunRow> CreateRun(const RunRow& run) override {
    return base_.CreateRun(run);
  }
  absl::StatusOr<RunRow> GetRun(int64_t tenant_id, int64_t id) override {
    return base_.GetRun(tenant_id, id);
  }
  absl::StatusOr<std::optional<RunRow>> ActiveRun(
      int64_t tenant_id, int64_t connector_id) override {
    return base_.ActiveRun(tenant_id, connector_id);
  }
  absl::Status ClaimRun(int64_t tenant_id, int64_t run_id,
                        absl::string_view expected_owner,
                        absl::string_view new_owner) override {
    return base_.ClaimRun(tenant_id, run_id, expected_owner, new_owner);
  }
  absl::StatusOr<std::vector<SeenDelta>> LoadSeen(int64_t run_id) override {
    return base_.LoadSeen(run_id);
  }
  absl::StatusOr<std::vector<idsync::v1::Reject>> ListRejects(
      int64_t tenant_id, int64_t run_id, int limit) override {
    return base_.ListRejects(tenant_id, run_id, limit);
  }
  absl::StatusOr<AgentRow> RegisterAgent(
      absl::string_view registration_hash, absl::string_view name,
      absl::string_view agent_token_hash,
      absl::string_view agent_prefix) override {
    return base_.RegisterAgent(registration_hash, name, agent_token_hash,
                               agent_prefix);
  }
  absl::Status SetAgentOnline(int64_t agent_id, bool online,
                              absl::string_view version,
                              const std::vector<std::string>& types) override {
    return base_.SetAgentOnline(agent_id, online, version, types);
  }
  absl::Status TouchAgent(int64_t agent_id) override {
    return base_.TouchAgent(agent_id);
  }
  absl::StatusOr<std::vector<int64_t>> OnlineAgents() override {
    return base_.OnlineAgents();
  }
  absl::StatusOr<std::vector<DueDelivery>> DueDeliveries(absl::Time now,
                                                         int limit) override {
    return base_.DueDeliveries(now, limit);
  }
  absl::Status RecordDelivery(const DeliveryOutcome& outcome) override {
    return base_.RecordDelivery(outcome);
  }
  absl::Status PruneDeliveries(absl::Time before) override {
    return base_.PruneDeliveries(before);
  }
  absl::Status FinishRun(const RunRow& run) override {
    return base_.FinishRun(run);
  }
  absl::StatusOr<std::unique_ptr<RunWriter>> OpenRunWriter(
      const RunRow& run) override {
    return base_.OpenRunWriter(run);
  }

 protected:
  Store& base() { return base_; }

 private:
  Store& base_;
};

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_TESTING_STORE_WRAPPER_H_
