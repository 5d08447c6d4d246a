// ControlPlaneGrpc: the gRPC face of the control plane. Same service layer,
// same tokens (metadata "authorization: Bearer <token>"), same rate limit
// and Idempotency-Key semantics (metadata "idempotency-key") as REST.
// Thread-safe.
#ifndef IDSYNC_DISPATCHER_API_GRPC_SERVICE_H_
#define IDSYNC_DISPATCHER_API_GRPC_SERVICE_H_

#include "connector/rate_limiter.h"
#include "dispatcher/api/control_plane_service.h"
#include "dispatcher/run_progress.h"
#include "idsync/v1/control_plane.grpc.pb.h"

namespace idsync {

class ControlPlaneGrpc final : public idsync::v1::ControlPlane::Service {
 public:
  // Everything passed must outlive the service.
  ControlPlaneGrpc(ControlPlaneService& service, Store& store,
                   RunProgress& progress, RateLimiter& limiter);

#define IDSYNC_RPC(Name, Req, Resp)                 \
  grpc::Status Name(grpc::ServerContext* context,   \
                    const idsync::v1::Req* request, \
                    idsync::v1::Resp* response) override;
  IDSYNC_RPC(ListIdentities, ListIdentitiesRequest, ListIdentitiesResponse)
  IDSYNC_RPC(GetIdentity, GetByIdRequest, Identity)
  IDSYNC_RPC(CreateIdentity, CreateIdentityRequest, Identity)
  IDSYNC_RPC(UpdateIdentity, UpdateIdentityRequest, Identity)
  IDSYNC_RPC(DeactivateIdentity, GetByIdRequest, Identity)
  IDSYNC_RPC(ListAccounts, ListAccountsRequest, ListAccountsResponse)
  IDSYNC_RPC(GetAccount, GetByIdRequest, Account)
  IDSYNC_RPC(ListEntitlements, ListEntitlementsRequest,
             ListEntitlementsResponse)
  IDSYNC_RPC(GetEntitlement, GetByIdRequest, Entitlement)
  IDSYNC_RPC(ListGrants, ListGrantsRequest, ListGrantsResponse)
  IDSYNC_RPC(GetGrant, GetByIdRequest, Grant)
  IDSYNC_RPC(CreateConnector, CreateConnectorRequest, ConfiguredConnector)
  IDSYNC_RPC(ListConnectors, PageRequest, ListConnectorsResponse)
  IDSYNC_RPC(GetConnector, GetByIdRequest, ConfiguredConnector)
  IDSYNC_RPC(UpdateConnector, UpdateConnectorRequest, ConfiguredConnector)
  IDSYNC_RPC(DeleteConnector, GetByIdRequest, DeleteConnectorResponse)
  IDSYNC_RPC(TestConnector, GetByIdRequest, TestConnectorResponse)
  IDSYNC_RPC(StartSync, StartSyncRequest, SyncRun)
  IDSYNC_RPC(ListSyncRuns, ListSyncRunsRequest, ListSyncRunsResponse)
  IDSYNC_RPC(GetSyncRun, GetByIdRequest, SyncRun)
  IDSYNC_RPC(CancelSyncRun, GetByIdRequest, SyncRun)
  IDSYNC_RPC(CreateToken, CreateTokenRequest, CreateTokenResponse)
  IDSYNC_RPC(ListTokens, ListTokensRequest, ListTokensResponse)
  IDSYNC_RPC(RevokeToken, GetByIdRequest, Token)
  IDSYNC_RPC(CreateRegistrationToken, CreateRegistrationTokenRequest,
             CreateRegistrationTokenResponse)
  IDSYNC_RPC(ListAgents, PageRequest, ListAgentsResponse)
  IDSYNC_RPC(GetAgent, GetByIdRequest, Agent)
  IDSYNC_RPC(DeleteAgent, GetByIdRequest, Agent)
  IDSYNC_RPC(ListAuditEvents, ListAuditEventsRequest, ListAuditEventsResponse)
  IDSYNC_RPC(CreateWebhook, CreateWebhookRequest, CreateWebhookResponse)
  IDSYNC_RPC(ListWebhooks, PageRequest, ListWebhooksResponse)
  IDSYNC_RPC(GetWebhook, GetByIdRequest, Webhook)
  IDSYNC_RPC(UpdateWebhook, UpdateWebhookRequest, Webhook)
  IDSYNC_RPC(DeleteWebhook, GetByIdRequest, DeleteWebhookResponse)
  IDSYNC_RPC(ListDeliveries, ListDeliveriesRequest, ListDeliveriesResponse)
  IDSYNC_RPC(ReplayDelivery, ReplayDeliveryRequest, Delivery)
  IDSYNC_RPC(GetCallbackSecret, GetCallbackSecretRequest, CallbackSecret)
#undef IDSYNC_RPC

  grpc::Status WatchSyncRun(
      grpc::ServerContext* context, const idsync::v1::GetByIdRequest* request,
      grpc::ServerWriter<idsync::v1::SyncRun>* writer) override;

 private:
  template <typename Req, typename Resp>
  grpc::Status Read(grpc::ServerContext* context, const Req& request,
                    Resp* response,
                    absl::StatusOr<Resp> (ControlPlaneService::*method)(
                        const Caller&, const Req&));
  template <typename Req, typename Resp>
  grpc::Status Write(grpc::ServerContext* context, const char* name,
                     const Req& request, Resp* response,
                     absl::StatusOr<Resp> (ControlPlaneService::*method)(
                         const Caller&, const Req&, const BeforeCommit&));
  absl::StatusOr<Caller> Admit(grpc::ServerContext* context);

  ControlPlaneService& service_;
  Store& store_;
  RunProgress& progress_;
  RateLimiter& limiter_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_API_GRPC_SERVICE_H_
