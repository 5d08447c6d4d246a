// ControlPlaneService: the dispatcher's admin API as plain C++ on the
// ControlPlane proto messages. The REST facade and the gRPC service both
// call it, so the two faces cannot drift. It authenticates tokens, checks
// roles, validates input, scopes everything by the caller's tenant, writes
// each change together with its audit event, and starts syncs on the
// workers. Thread-safe.
#ifndef IDSYNC_DISPATCHER_API_CONTROL_PLANE_SERVICE_H_
#define IDSYNC_DISPATCHER_API_CONTROL_PLANE_SERVICE_H_

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "connector/clock.h"
#include "connector/registry.h"
#include "dispatcher/secrets.h"
#include "dispatcher/store/store.h"
#include "dispatcher/sync_workers.h"
#include "idsync/v1/control_plane.pb.h"

namespace idsync {

class AgentHub;
class SourcePolicy;
class Metrics;

// Who is calling: from the bearer token.
struct Caller {
  int64_t tenant_id = 0;
  int64_t token_id = 0;
  std::string token_name;
  std::string role;  // "admin" or "auditor".
  std::string request_id;
  std::string Actor() const;
};

// Runs inside a write's transaction once its response is known, e.g. to
// store that response under an Idempotency-Key in the same commit.
using BeforeCommit = std::function<absl::Status(
    const google::protobuf::Message& response, WriteTxn& txn)>;

inline constexpr int kDefaultPageSize = 50;
inline constexpr int kMaxPageSize = 500;
inline constexpr int kMaxWebhooksPerTenant = 20;
inline constexpr int kMaxEventTypes = 50;
inline constexpr size_t kMaxUrlLength = 2048;

struct ControlPlaneServiceOptions {
  // Webhook and callback URLs may name loopback, private, link-local, CGNAT
  // and unique-local hosts (--allow-private-callbacks; tests).
  bool allow_private_callbacks = false;
  // The agent spine (dispatcher/agents/): says which agents are online and
  // closes the stream of an agent whose token is revoked. Without it, the
  // API shows the stored online flag and closes nothing.
  AgentHub* agents = nullptr;
  // What the tenant's hosted connectors may reach (files, addresses),
  // checked when a connector is created or changed. Without one, configs are
  // checked as if the operator wrote them (tests of the service alone).
  SourcePolicy* sources = nullptr;
  // Counts failed authentications; none without.
  Metrics* metrics = nullptr;
};

// Clears the secrets a write's response shows only once (a new token's, a
// new webhook's, a new registration token), so the response can be stored for
// Idempotency-Key replays. Other responses are left as they are.
void ClearOneTimeSecrets(google::protobuf::Message* response);

// A file being pushed for a CSV connector (PUT /api/v1/connectors/{id}/file):
// written to a temp file next to the connector's file, renamed over it once
// whole. The temp file is removed with this object unless committed.
struct FileUpload {
  ConnectorRow connector;
  std::string path;  // The connector's path, as configured.
  UniqueFd dir;      // The directory of the connector's file.
  std::string name;  // The file's name in `dir`.
  std::string temp;  // The temp file's name in `dir`.
  UniqueFd file;     // The temp file, open for writing.
  bool committed = false;
  ~FileUpload();
};

class ControlPlaneService {
 public:
  // Everything passed must outlive the service.
  ControlPlaneService(Store& store, const ConnectorRegistry& registry,
                      const SecretBox& secrets, SyncWorkers& workers,
                      ControlPlaneServiceOptions options = {});

  // Resolves an "Authorization: Bearer <token>" header. kUnauthenticated for
  // a missing, malformed, unknown or revoked token; kPermissionDenied for a
  // token that only works elsewhere (agent and registration tokens). Every
  // failure is logged (with `peer` and the request id, never the token) and
  // counted in the metrics.
  absl::StatusOr<Caller> Authenticate(absl::string_view authorization,
                                      std::string request_id,
                                      absl::string_view peer = "");

  // What an Idempotency-Key record keeps of a request: keyed, because the
  // request may carry secrets (a connector's auth_config).
  std::string RequestFingerprint(absl::string_view request) const {
    return secrets_.Mac(request, "idempotency");
  }

  absl::StatusOr<idsync::v1::ListIdentitiesResponse> ListIdentities(
      const Caller& caller, const idsync::v1::ListIdentitiesRequest& request);
  absl::StatusOr<idsync::v1::Identity> GetIdentity(
      const Caller& caller, const idsync::v1::GetByIdRequest& request);
  absl::StatusOr<idsync::v1::Identity> CreateIdentity(
      const Caller& caller, const idsync::v1::CreateIdentityRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::Identity> UpdateIdentity(
      const Caller& caller, const idsync::v1::UpdateIdentityRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::Identity> DeactivateIdentity(
      const Caller& caller, const idsync::v1::GetByIdRequest& request,
      const BeforeCommit& before_commit = nullptr);

  absl::StatusOr<idsync::v1::ListAccountsResponse> ListAccounts(
      const Caller& caller, const idsync::v1::ListAccountsRequest& request);
  absl::StatusOr<idsync::v1::Account> GetAccount(
      const Caller& caller, const idsync::v1::GetByIdRequest& request);
  absl::StatusOr<idsync::v1::ListEntitlementsResponse> ListEntitlements(
      const Caller& caller, const idsync::v1::ListEntitlementsRequest& request);
  absl::StatusOr<idsync::v1::Entitlement> GetEntitlement(
      const Caller& caller, const idsync::v1::GetByIdRequest& request);
  absl::StatusOr<idsync::v1::ListGrantsResponse> ListGrants(
      const Caller& caller, const idsync::v1::ListGrantsRequest& request);
  absl::StatusOr<idsync::v1::Grant> GetGrant(
      const Caller& caller, const idsync::v1::GetByIdRequest& request);

  absl::StatusOr<idsync::v1::ConfiguredConnector> CreateConnector(
      const Caller& caller, const idsync::v1::CreateConnectorRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::ListConnectorsResponse> ListConnectors(
      const Caller& caller, const idsync::v1::PageRequest& request);
  absl::StatusOr<idsync::v1::ConfiguredConnector> GetConnector(
      const Caller& caller, const idsync::v1::GetByIdRequest& request);
  absl::StatusOr<idsync::v1::ConfiguredConnector> UpdateConnector(
      const Caller& caller, const idsync::v1::UpdateConnectorRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::DeleteConnectorResponse> DeleteConnector(
      const Caller& caller, const idsync::v1::GetByIdRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::TestConnectorResponse> TestConnector(
      const Caller& caller, const idsync::v1::GetByIdRequest& request);
  // Before an upload's body is read: an admin caller, a hosted csv
  // connector, its path in the tenant's import directory. The temp file is
  // created (0600). kFailedPrecondition without an import directory or for
  // another connector type; kPermissionDenied for a path outside it.
  absl::StatusOr<std::unique_ptr<FileUpload>> PrepareFileUpload(
      const Caller& caller, int64_t connector_id);
  // Once the whole body is in `upload.file` (`bytes` long): made durable,
  // renamed over the connector's file (a run reading the old one reads it
  // to its end), audited, and, when `sync`, synced. A sync that cannot start
  // (one is running) leaves the file stored and says why in sync_error.
  absl::StatusOr<idsync::v1::UploadConnectorFileResponse> CommitFileUpload(
      const Caller& caller, FileUpload& upload, int64_t bytes, bool sync);
  absl::StatusOr<idsync::v1::SyncRun> StartSync(
      const Caller& caller, const idsync::v1::StartSyncRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::ListSyncRunsResponse> ListSyncRuns(
      const Caller& caller, const idsync::v1::ListSyncRunsRequest& request);

  absl::StatusOr<idsync::v1::SyncRun> GetSyncRun(
      const Caller& caller, const idsync::v1::GetByIdRequest& request);
  absl::StatusOr<idsync::v1::SyncRun> CancelSyncRun(
      const Caller& caller, const idsync::v1::GetByIdRequest& request,
      const BeforeCommit& before_commit = nullptr);

  absl::StatusOr<idsync::v1::CreateTokenResponse> CreateToken(
      const Caller& caller, const idsync::v1::CreateTokenRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::ListTokensResponse> ListTokens(
      const Caller& caller, const idsync::v1::ListTokensRequest& request);
  absl::StatusOr<idsync::v1::Token> RevokeToken(
      const Caller& caller, const idsync::v1::GetByIdRequest& request,
      const BeforeCommit& before_commit = nullptr);

  // Agents: a one-time registration token (its secret in this response
  // only), the registered agents, and revoking one (its token, and its
  // stream at once).
  absl::StatusOr<idsync::v1::CreateRegistrationTokenResponse>
  CreateRegistrationToken(
      const Caller& caller,
      const idsync::v1::CreateRegistrationTokenRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::ListAgentsResponse> ListAgents(
      const Caller& caller, const idsync::v1::PageRequest& request);
  absl::StatusOr<idsync::v1::Agent> GetAgent(
      const Caller& caller, const idsync::v1::GetByIdRequest& request);
  absl::StatusOr<idsync::v1::Agent> DeleteAgent(
      const Caller& caller, const idsync::v1::GetByIdRequest& request,
      const BeforeCommit& before_commit = nullptr);

  absl::StatusOr<idsync::v1::ListAuditEventsResponse> ListAuditEvents(
      const Caller& caller, const idsync::v1::ListAuditEventsRequest& request);

  // Webhooks: the secret is in CreateWebhook's response only.
  absl::StatusOr<idsync::v1::CreateWebhookResponse> CreateWebhook(
      const Caller& caller, const idsync::v1::CreateWebhookRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::ListWebhooksResponse> ListWebhooks(
      const Caller& caller, const idsync::v1::PageRequest& request);
  absl::StatusOr<idsync::v1::Webhook> GetWebhook(
      const Caller& caller, const idsync::v1::GetByIdRequest& request);
  absl::StatusOr<idsync::v1::Webhook> UpdateWebhook(
      const Caller& caller, const idsync::v1::UpdateWebhookRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::DeleteWebhookResponse> DeleteWebhook(
      const Caller& caller, const idsync::v1::GetByIdRequest& request,
      const BeforeCommit& before_commit = nullptr);
  absl::StatusOr<idsync::v1::ListDeliveriesResponse> ListDeliveries(
      const Caller& caller, const idsync::v1::ListDeliveriesRequest& request);
  absl::StatusOr<idsync::v1::Delivery> ReplayDelivery(
      const Caller& caller, const idsync::v1::ReplayDeliveryRequest& request,
      const BeforeCommit& before_commit = nullptr);
  // The tenant's callback signing secret, created on first use. Admins only.
  absl::StatusOr<idsync::v1::CallbackSecret> GetCallbackSecret(
      const Caller& caller,
      const idsync::v1::GetCallbackSecretRequest& request);

  // Creates the tenant if needed and its first admin token, returned once.
  // kAlreadyExists if the tenant already has an admin token.
  static absl::StatusOr<std::string> Bootstrap(Store& store,
                                               absl::string_view tenant);

 private:
  absl::StatusOr<ConnectorRow> FindConnector(const Caller& caller, int64_t id);
  absl::StatusOr<WebhookRow> FindWebhook(const Caller& caller, int64_t id);
  // The API's view of an agent: live online state, its token's revocation.
  absl::StatusOr<idsync::v1::Agent> AgentView(const AgentRow& row);
  // Mode and agent binding of a connector as it will be stored. With
  // `build`, a hosted connector must build from `config` and `auth_config`
  // (the hosts both name are checked against the tenant's address policy);
  // an agent one only needs a known type (its config may name files on the
  // agent's machine) and no auth_config (agents never get it).
  absl::Status CheckConnector(const ConnectorRow& row,
                              const google::protobuf::Struct& config,
                              const google::protobuf::Struct& auth_config,
                              bool has_auth, bool build) const;
  // kInvalidArgument naming `field` unless `url` may receive deliveries.
  absl::Status CheckTarget(absl::string_view field, absl::string_view url);
  // A new callback secret, sealed for the tenant.
  std::string NewCallbackSecret(int64_t tenant_id) const;

  Store& store_;
  const ConnectorRegistry& registry_;
  const SecretBox& secrets_;
  SyncWorkers& workers_;
  const ControlPlaneServiceOptions options_;
};

// The API's view of a run.
idsync::v1::SyncRun ToProto(const RunRow& run);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_API_CONTROL_PLANE_SERVICE_H_
