#include "dispatcher/api/rest_routes.h"

#include "absl/strings/str_split.h"
#include "idsync/v1/control_plane.pb.h"

namespace idsync {
namespace {

namespace v1 = idsync::v1;
using google::protobuf::Message;

template <typename Req, typename Resp>
RouteHandler Read(absl::StatusOr<Resp> (ControlPlaneService::*method)(
    const Caller&, const Req&)) {
  return [method](
             ControlPlaneService& service, const Caller& caller,
             const Message& request,
             const BeforeCommit&) -> absl::StatusOr<std::unique_ptr<Message>> {
    absl::StatusOr<Resp> r =
        (service.*method)(caller, static_cast<const Req&>(request));
    if (!r.ok()) return r.status();
    return std::unique_ptr<Message>(new Resp(*std::move(r)));
  };
}

template <typename Req, typename Resp>
RouteHandler Write(absl::StatusOr<Resp> (ControlPlaneService::*method)(
    const Caller&, const Req&, const BeforeCommit&)) {
  return [method](ControlPlaneService& service, const Caller& caller,
                  const Message& request, const BeforeCommit& before_commit)
             -> absl::StatusOr<std::unique_ptr<Message>> {
    absl::StatusOr<Resp> r = (service.*method)(
        caller, static_cast<const Req&>(request), before_commit);
    if (!r.ok()) return r.status();
    return std::unique_ptr<Message>(new Resp(*std::move(r)));
  };
}

using S = ControlPlaneService;

}  // namespace

const std::vector<Route>& Routes() {
  static const auto* routes = new std::vector<Route>{
      {"GET", "/api/v1/identities", "listIdentities", "List identities",
       "identities", v1::ListIdentitiesRequest::descriptor(),
       v1::ListIdentitiesResponse::descriptor(), 200, Access::kRead, nullptr,
       false, Read(&S::ListIdentities)},
      {"POST", "/api/v1/identities", "createIdentity",
       "Create an identity (an HR joiner)", "identities",
       v1::CreateIdentityRequest::descriptor(), v1::Identity::descriptor(), 201,
       Access::kWrite, nullptr, true, Write(&S::CreateIdentity)},
      {"GET", "/api/v1/identities/{id}", "getIdentity", "Get an identity",
       "identities", v1::GetByIdRequest::descriptor(),
       v1::Identity::descriptor(), 200, Access::kRead, "id", false,
       Read(&S::GetIdentity)},
      {"PATCH", "/api/v1/identities/{id}", "updateIdentity",
       "Change fields of an identity created through the API", "identities",
       v1::UpdateIdentityRequest::descriptor(), v1::Identity::descriptor(), 200,
       Access::kWrite, "id", true, Write(&S::UpdateIdentity)},
      {"POST", "/api/v1/identities/{id}/deactivate", "deactivateIdentity",
       "Deactivate an identity created through the API", "identities",
       v1::GetByIdRequest::descriptor(), v1::Identity::descriptor(), 200,
       Access::kWrite, "id", false, Write(&S::DeactivateIdentity)},
      {"GET", "/api/v1/accounts", "listAccounts", "List accounts", "records",
       v1::ListAccountsRequest::descriptor(),
       v1::ListAccountsResponse::descriptor(), 200, Access::kRead, nullptr,
       false, Read(&S::ListAccounts)},
      {"GET", "/api/v1/accounts/{id}", "getAccount", "Get an account",
       "records", v1::GetByIdRequest::descriptor(), v1::Account::descriptor(),
       200, Access::kRead, "id", false, Read(&S::GetAccount)},
      {"GET", "/api/v1/entitlements", "listEntitlements", "List entitlements",
       "records", v1::ListEntitlementsRequest::descriptor(),
       v1::ListEntitlementsResponse::descriptor(), 200, Access::kRead, nullptr,
       false, Read(&S::ListEntitlements)},
      {"GET", "/api/v1/entitlements/{id}", "getEntitlement",
       "Get an entitlement", "records", v1::GetByIdRequest::descriptor(),
       v1::Entitlement::descriptor(), 200, Access::kRead, "id", false,
       Read(&S::GetEntitlement)},
      {"GET", "/api/v1/grants", "listGrants", "List grants", "records",
       v1::ListGrantsRequest::descriptor(),
       v1::ListGrantsResponse::descriptor(), 200, Access::kRead, nullptr, false,
       Read(&S::ListGrants)},
      {"GET", "/api/v1/grants/{id}", "getGrant", "Get a grant", "records",
       v1::GetByIdRequest::descriptor(), v1::Grant::descriptor(), 200,
       Access::kRead, "id", false, Read(&S::GetGrant)},
      {"GET", "/api/v1/connectors", "listConnectors", "List connectors",
       "connectors", v1::PageRequest::descriptor(),
       v1::ListConnectorsResponse::descriptor(), 200, Access::kRead, nullptr,
       false, Read(&S::ListConnectors)},
      {"POST", "/api/v1/connectors", "createConnector", "Create a connector",
       "connectors", v1::CreateConnectorRequest::descriptor(),
       v1::ConfiguredConnector::descriptor(), 201, Access::kWrite, nullptr,
       true, Write(&S::CreateConnector)},
      {"GET", "/api/v1/connectors/{id}", "getConnector", "Get a connector",
       "connectors", v1::GetByIdRequest::descriptor(),
       v1::ConfiguredConnector::descriptor(), 200, Access::kRead, "id", false,
       Read(&S::GetConnector)},
      {"PATCH", "/api/v1/connectors/{id}", "updateConnector",
       "Change a connector", "connectors",
       v1::UpdateConnectorRequest::descriptor(),
       v1::ConfiguredConnector::descriptor(), 200, Access::kWrite, "id", true,
       Write(&S::UpdateConnector)},
      {"DELETE", "/api/v1/connectors/{id}", "deleteConnector",
       "Delete a connector with its records and runs", "connectors",
       v1::GetByIdRequest::descriptor(),
       v1::DeleteConnectorResponse::descriptor(), 200, Access::kWrite, "id",
       false, Write(&S::DeleteConnector)},
      {"POST", "/api/v1/connectors/{id}/test", "testConnector",
       "Check that the connector reaches its source", "connectors",
       v1::GetByIdRequest::descriptor(),
       v1::TestConnectorResponse::descriptor(), 200, Access::kAction, "id",
       false, Read(&S::TestConnector)},
      {"POST", "/api/v1/connectors/{id}/sync", "startSync", "Start a sync",
       "sync-runs", v1::StartSyncRequest::descriptor(),
       v1::SyncRun::descriptor(), 202, Access::kWrite, "connector_id", true,
       Write(&S::StartSync)},
      {"GET", "/api/v1/connectors/{id}/runs", "listSyncRuns",
       "List a connector's sync runs", "sync-runs",
       v1::ListSyncRunsRequest::descriptor(),
       v1::ListSyncRunsResponse::descriptor(), 200, Access::kRead,
       "connector_id", false, Read(&S::ListSyncRuns)},
      {"GET", "/api/v1/sync-runs/{id}", "getSyncRun",
       "Get a sync run: status, counters, checkpoint", "sync-runs",
       v1::GetByIdRequest::descriptor(), v1::SyncRun::descriptor(), 200,
       Access::kRead, "id", false, Read(&S::GetSyncRun)},
      {"POST", "/api/v1/sync-runs/{id}/cancel", "cancelSyncRun",
       "Ask a running sync to stop", "sync-runs",
       v1::GetByIdRequest::descriptor(), v1::SyncRun::descriptor(), 202,
       Access::kWrite, "id", false, Write(&S::CancelSyncRun)},
      {"GET", "/api/v1/tokens", "listTokens", "List service tokens", "tokens",
       v1::ListTokensRequest::descriptor(),
       v1::ListTokensResponse::descriptor(), 200, Access::kRead, nullptr, false,
       Read(&S::ListTokens)},
      {"POST", "/api/v1/tokens", "createToken",
       "Create a service token (its secret is shown once)", "tokens",
       v1::CreateTokenRequest::descriptor(),
       v1::CreateTokenResponse::descriptor(), 201, Access::kWrite, nullptr,
       true, Write(&S::CreateToken)},
      {"POST", "/api/v1/tokens/{id}/revoke", "revokeToken", "Revoke a token",
       "tokens", v1::GetByIdRequest::descriptor(), v1::Token::descriptor(), 200,
       Access::kWrite, "id", false, Write(&S::RevokeToken)},
      {"POST", "/api/v1/agents/registration-tokens", "createRegistrationToken",
       "Create a one-time token that registers one agent (shown once)",
       "agents", v1::CreateRegistrationTokenRequest::descriptor(),
       v1::CreateRegistrationTokenResponse::descriptor(), 201, Access::kWrite,
       nullptr, true, Write(&S::CreateRegistrationToken)},
      {"GET", "/api/v1/agents", "listAgents", "List registered agents",
       "agents", v1::PageRequest::descriptor(),
       v1::ListAgentsResponse::descriptor(), 200, Access::kRead, nullptr, false,
       Read(&S::ListAgents)},
      {"GET", "/api/v1/agents/{id}", "getAgent",
       "Get an agent: online now, version, connector types", "agents",
       v1::GetByIdRequest::descriptor(), v1::Agent::descriptor(), 200,
       Access::kRead, "id", false, Read(&S::GetAgent)},
      {"DELETE", "/api/v1/agents/{id}", "deleteAgent",
       "Revoke an agent: its token is refused and its stream closed at once",
       "agents", v1::GetByIdRequest::descriptor(), v1::Agent::descriptor(), 200,
       Access::kWrite, "id", false, Write(&S::DeleteAgent)},
      {"GET", "/api/v1/audit-events", "listAuditEvents",
       "List audit events: every write, who, what, when", "audit",
       v1::ListAuditEventsRequest::descriptor(),
       v1::ListAuditEventsResponse::descriptor(), 200, Access::kRead, nullptr,
       false, Read(&S::ListAuditEvents)},
      {"GET", "/api/v1/webhooks", "listWebhooks", "List webhook endpoints",
       "webhooks", v1::PageRequest::descriptor(),
       v1::ListWebhooksResponse::descriptor(), 200, Access::kRead, nullptr,
       false, Read(&S::ListWebhooks)},
      {"POST", "/api/v1/webhooks", "createWebhook",
       "Register a webhook endpoint (its signing secret is shown once)",
       "webhooks", v1::CreateWebhookRequest::descriptor(),
       v1::CreateWebhookResponse::descriptor(), 201, Access::kWrite, nullptr,
       true, Write(&S::CreateWebhook)},
      {"GET", "/api/v1/webhooks/{id}", "getWebhook", "Get a webhook endpoint",
       "webhooks", v1::GetByIdRequest::descriptor(), v1::Webhook::descriptor(),
       200, Access::kRead, "id", false, Read(&S::GetWebhook)},
      {"PATCH", "/api/v1/webhooks/{id}", "updateWebhook",
       "Change a webhook endpoint's URL, event types or enabled flag",
       "webhooks", v1::UpdateWebhookRequest::descriptor(),
       v1::Webhook::descriptor(), 200, Access::kWrite, "id", true,
       Write(&S::UpdateWebhook)},
      {"DELETE", "/api/v1/webhooks/{id}", "deleteWebhook",
       "Delete a webhook endpoint with its deliveries", "webhooks",
       v1::GetByIdRequest::descriptor(),
       v1::DeleteWebhookResponse::descriptor(), 200, Access::kWrite, "id",
       false, Write(&S::DeleteWebhook)},
      {"GET", "/api/v1/webhooks/{id}/deliveries", "listDeliveries",
       "List a webhook's deliveries, oldest first", "webhooks",
       v1::ListDeliveriesRequest::descriptor(),
       v1::ListDeliveriesResponse::descriptor(), 200, Access::kRead,
       "webhook_id", false, Read(&S::ListDeliveries)},
      {"POST", "/api/v1/webhooks/{id}/deliveries/{delivery_id}/replay",
       "replayDelivery",
       "Send a delivery again (e.g. a dead one): pending, no attempts, due "
       "now",
       "webhooks", v1::ReplayDeliveryRequest::descriptor(),
       v1::Delivery::descriptor(), 202, Access::kWrite, "webhook_id", false,
       Write(&S::ReplayDelivery), "delivery_id"},
      {"GET", "/api/v1/callback-secret", "getCallbackSecret",
       "The secret that signs this tenant's progress callbacks (created on "
       "first use; admin tokens only)",
       "webhooks", v1::GetCallbackSecretRequest::descriptor(),
       v1::CallbackSecret::descriptor(), 200, Access::kRead, nullptr, false,
       Read(&S::GetCallbackSecret)},
  };
  return *routes;
}

std::vector<std::string> PathParameters(absl::string_view path) {
  std::vector<std::string> names;
  size_t at = 0;
  while ((at = path.find('{', at)) != absl::string_view::npos) {
    const size_t end = path.find('}', at);
    names.emplace_back(path.substr(at + 1, end - at - 1));
    at = end;
  }
  return names;
}

bool MatchPath(absl::string_view pattern, absl::string_view path,
               std::vector<absl::string_view>* params) {
  params->clear();
  std::vector<absl::string_view> want = absl::StrSplit(pattern, '/');
  std::vector<absl::string_view> got = absl::StrSplit(path, '/');
  if (want.size() != got.size()) return false;
  for (size_t i = 0; i < want.size(); ++i) {
    if (!want[i].empty() && want[i].front() == '{') {
      if (got[i].empty()) return false;
      params->push_back(got[i]);
    } else if (want[i] != got[i]) {
      return false;
    }
  }
  return true;
}

const Route* FindRoute(absl::string_view method, absl::string_view path,
                       std::vector<absl::string_view>* params,
                       bool* path_known) {
  *path_known = false;
  for (const Route& route : Routes()) {
    if (!MatchPath(route.path, path, params)) continue;
    *path_known = true;
    if (method == route.method) return &route;
  }
  params->clear();
  return nullptr;
}

}  // namespace idsync
