#include "dispatcher/api/grpc_service.h"

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "dispatcher/api/status_mapping.h"
#include "dispatcher/secrets.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace idsync {
namespace {

namespace v1 = idsync::v1;

std::string Metadata(grpc::ServerContext* context, const std::string& key) {
  const auto& md = context->client_metadata();
  auto it = md.find(key);
  return it == md.end() ? ""
                        : std::string(it->second.data(), it->second.size());
}

// The request's bytes with map fields in key order. Map iteration order is
// randomised per message, so plain serialization of the same request (e.g.
// identity attributes, a connector's config) differs between a call and its
// retry, which would turn an idempotent replay into a mismatch.
std::string DeterministicBytes(const google::protobuf::Message& message) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    message.SerializeToCodedStream(&coded);
  }
  return out;
}

}  // namespace

ControlPlaneGrpc::ControlPlaneGrpc(ControlPlaneService& service, Store& store,
                                   RunProgress& progress, RateLimiter& limiter)
    : service_(service),
      store_(store),
      progress_(progress),
      limiter_(limiter) {}

absl::StatusOr<Caller> ControlPlaneGrpc::Admit(grpc::ServerContext* context) {
  static std::atomic<uint64_t> counter{0};
  absl::StatusOr<Caller> caller = service_.Authenticate(
      Metadata(context, "authorization"),
      absl::StrFormat("g%015x", counter.fetch_add(1)), context->peer());
  if (!caller.ok()) return caller;
  context->AddInitialMetadata("x-request-id", caller->request_id);
  RateLimiter::Decision d = limiter_.Take(caller->token_id);
  if (!d.allowed) {
    return absl::ResourceExhaustedError(
        absl::StrCat("rate limit exceeded for this token; retry in ",
                     absl::ToInt64Milliseconds(d.retry_after), " ms"));
  }
  return caller;
}

template <typename Req, typename Resp>
grpc::Status ControlPlaneGrpc::Read(
    grpc::ServerContext* context, const Req& request, Resp* response,
    absl::StatusOr<Resp> (ControlPlaneService::*method)(const Caller&,
                                                        const Req&)) {
  absl::StatusOr<Caller> caller = Admit(context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<Resp> result = (service_.*method)(*caller, request);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

template <typename Req, typename Resp>
grpc::Status ControlPlaneGrpc::Write(
    grpc::ServerContext* context, const char* name, const Req& request,
    Resp* response,
    absl::StatusOr<Resp> (ControlPlaneService::*method)(const Caller&,
                                                        const Req&,
                                                        const BeforeCommit&)) {
  absl::StatusOr<Caller> caller = Admit(context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  const std::string key = Metadata(context, "idempotency-key");
  if (key.empty()) {
    absl::StatusOr<Resp> result = (service_.*method)(*caller, request, nullptr);
    if (!result.ok()) return ToGrpcStatus(result.status());
    *response = *std::move(result);
    return grpc::Status::OK;
  }
  // A stored response is only for a caller allowed to make the request
  // (every write is an admin's); keys are shared across the tenant.
  if (caller->role != "admin") {
    return grpc::Status(grpc::StatusCode::PERMISSION_DENIED,
                        "this token may only read (role auditor); writes "
                        "need an admin token");
  }
  if (key.size() > 255) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                        "idempotency-key is longer than 255 characters");
  }
  const std::string serialized = DeterministicBytes(request);
  // gRPC keys share the tenant's key space with REST; the method name in the
  // hash keeps a reuse across faces or methods a mismatch.
  const std::string hash = service_.RequestFingerprint(
      absl::StrCat("grpc\n", name, "\n", serialized));
  absl::StatusOr<IdempotencyState> state =
      store_.BeginIdempotent(caller->tenant_id, key, hash, absl::Seconds(60));
  if (!state.ok()) return ToGrpcStatus(state.status());
  switch (state->kind) {
    case IdempotencyState::kDone:
      context->AddInitialMetadata("idempotent-replayed", "true");
      if (!response->ParseFromString(state->response)) {
        return grpc::Status(grpc::StatusCode::DATA_LOSS,
                            "stored response cannot be read");
      }
      return grpc::Status::OK;
    case IdempotencyState::kMismatch:
      return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                          "this idempotency-key was used with a different "
                          "request");
    case IdempotencyState::kInFlight:
      return grpc::Status(grpc::StatusCode::ABORTED,
                          "a request with this idempotency-key is still in "
                          "progress");
    case IdempotencyState::kNew:
      break;
  }
  BeforeCommit store_response = [&](const google::protobuf::Message& r,
                                    WriteTxn& txn) {
    // A new token's or webhook's secret is shown once and never stored: a
    // replay returns the response without it.
    std::unique_ptr<google::protobuf::Message> redacted(r.New());
    redacted->CopyFrom(r);
    ClearOneTimeSecrets(redacted.get());
    return txn.CompleteIdempotent(caller->tenant_id, key, 0,
                                  redacted->SerializeAsString());
  };
  absl::StatusOr<Resp> result =
      (service_.*method)(*caller, request, store_response);
  if (!result.ok()) {
    store_.AbandonIdempotent(caller->tenant_id, key).IgnoreError();
    return ToGrpcStatus(result.status());
  }
  *response = *std::move(result);
  return grpc::Status::OK;
}

#define IDSYNC_READ(Name, Req, Resp)                                      \
  grpc::Status ControlPlaneGrpc::Name(grpc::ServerContext* context,       \
                                      const v1::Req* request,             \
                                      v1::Resp* response) {               \
    return Read(context, *request, response, &ControlPlaneService::Name); \
  }
#define IDSYNC_WRITE(Name, Req, Resp)                               \
  grpc::Status ControlPlaneGrpc::Name(grpc::ServerContext* context, \
                                      const v1::Req* request,       \
                                      v1::Resp* response) {         \
    return Write(context, #Name, *request, response,                \
                 &ControlPlaneService::Name);                       \
  }
IDSYNC_READ(ListIdentities, ListIdentitiesRequest, ListIdentitiesResponse)
IDSYNC_READ(GetIdentity, GetByIdRequest, Identity)
IDSYNC_WRITE(CreateIdentity, CreateIdentityRequest, Identity)
IDSYNC_WRITE(UpdateIdentity, UpdateIdentityRequest, Identity)
IDSYNC_WRITE(DeactivateIdentity, GetByIdRequest, Identity)
IDSYNC_READ(ListAccounts, ListAccountsRequest, ListAccountsResponse)
IDSYNC_READ(GetAccount, GetByIdRequest, Account)
IDSYNC_READ(ListEntitlements, ListEntitlementsRequest, ListEntitlementsResponse)
IDSYNC_READ(GetEntitlement, GetByIdRequest, Entitlement)
IDSYNC_READ(ListGrants, ListGrantsRequest, ListGrantsResponse)
IDSYNC_READ(GetGrant, GetByIdRequest, Grant)
IDSYNC_WRITE(CreateConnector, CreateConnectorRequest, ConfiguredConnector)
IDSYNC_READ(ListConnectors, PageRequest, ListConnectorsResponse)
IDSYNC_READ(GetConnector, GetByIdRequest, ConfiguredConnector)
IDSYNC_WRITE(UpdateConnector, UpdateConnectorRequest, ConfiguredConnector)
IDSYNC_WRITE(DeleteConnector, GetByIdRequest, DeleteConnectorResponse)
IDSYNC_READ(TestConnector, GetByIdRequest, TestConnectorResponse)
IDSYNC_WRITE(StartSync, StartSyncRequest, SyncRun)
IDSYNC_READ(ListSyncRuns, ListSyncRunsRequest, ListSyncRunsResponse)
IDSYNC_READ(GetSyncRun, GetByIdRequest, SyncRun)
IDSYNC_WRITE(CancelSyncRun, GetByIdRequest, SyncRun)
IDSYNC_WRITE(CreateToken, CreateTokenRequest, CreateTokenResponse)
IDSYNC_READ(ListTokens, ListTokensRequest, ListTokensResponse)
IDSYNC_WRITE(RevokeToken, GetByIdRequest, Token)
IDSYNC_WRITE(CreateRegistrationToken, CreateRegistrationTokenRequest,
             CreateRegistrationTokenResponse)
IDSYNC_READ(ListAgents, PageRequest, ListAgentsResponse)
IDSYNC_READ(GetAgent, GetByIdRequest, Agent)
IDSYNC_WRITE(DeleteAgent, GetByIdRequest, Agent)
IDSYNC_READ(ListAuditEvents, ListAuditEventsRequest, ListAuditEventsResponse)
IDSYNC_WRITE(CreateWebhook, CreateWebhookRequest, CreateWebhookResponse)
IDSYNC_READ(ListWebhooks, PageRequest, ListWebhooksResponse)
IDSYNC_READ(GetWebhook, GetByIdRequest, Webhook)
IDSYNC_WRITE(UpdateWebhook, UpdateWebhookRequest, Webhook)
IDSYNC_WRITE(DeleteWebhook, GetByIdRequest, DeleteWebhookResponse)
IDSYNC_READ(ListDeliveries, ListDeliveriesRequest, ListDeliveriesResponse)
IDSYNC_WRITE(ReplayDelivery, ReplayDeliveryRequest, Delivery)
IDSYNC_READ(GetCallbackSecret, GetCallbackSecretRequest, CallbackSecret)
#undef IDSYNC_READ
#undef IDSYNC_WRITE

grpc::Status ControlPlaneGrpc::WatchSyncRun(
    grpc::ServerContext* context, const v1::GetByIdRequest* request,
    grpc::ServerWriter<v1::SyncRun>* writer) {
  absl::StatusOr<Caller> caller = Admit(context);
  if (!caller.ok()) return ToGrpcStatus(caller.status());
  absl::StatusOr<RunRow> run = store_.GetRun(caller->tenant_id, request->id());
  if (!run.ok()) return ToGrpcStatus(run.status());
  if (!writer->Write(ToProto(*run))) return grpc::Status::CANCELLED;
  int64_t version = 0;
  absl::Time last = run->updated_at;
  while (run->status == RunStatus::kRunning) {
    if (context->IsCancelled()) return grpc::Status::CANCELLED;
    std::optional<RunProgress::Snapshot> snapshot =
        progress_.Wait(request->id(), version, absl::Seconds(1));
    if (snapshot.has_value() && snapshot->version > version &&
        !snapshot->done) {
      version = snapshot->version;
      if (!writer->Write(ToProto(snapshot->run)))
        return grpc::Status::CANCELLED;
      continue;
    }
    if (snapshot.has_value()) version = snapshot->version;
    // Ended, or running in another process: read the store.
    run = store_.GetRun(caller->tenant_id, request->id());
    if (!run.ok()) return ToGrpcStatus(run.status());
    if (run->status != RunStatus::kRunning || run->updated_at > last) {
      last = run->updated_at;
      if (!writer->Write(ToProto(*run))) return grpc::Status::CANCELLED;
    }
  }
  return grpc::Status::OK;
}

}  // namespace idsync
