#include "dispatcher/api/rest_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"
#include "connector/status_macros.h"
#include "dispatcher/api/json_mapping.h"
#include "dispatcher/api/status_mapping.h"
#include "dispatcher/secrets.h"
#include "google/protobuf/util/time_util.h"

namespace idsync {
namespace {

namespace v1 = idsync::v1;
using google::protobuf::Descriptor;
using google::protobuf::Message;

using RouteHandler = std::function<absl::StatusOr<std::unique_ptr<Message>>(
    ControlPlaneService&, const Caller&, const Message&, const BeforeCommit&)>;

// kWrite: admin-only change, audited, Idempotency-Key honoured.
enum class Access { kRead, kWrite, kAction };

struct Route {
  const char* method;
  const char* path;  // "{id}", then at most one more "{name}" parameter.
  const char* operation_id;
  const char* summary;
  const char* tag;
  const Descriptor* request;
  const Descriptor* response;
  int status;
  Access access;
  const char* path_field;  // Request field set from {id}; nullptr if none.
  bool body;               // The request comes as a JSON body.
  RouteHandler handler;
  // Request field set from the path's second parameter; nullptr if none.
  const char* second_path_field = nullptr;
};

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

// The names of a path's parameters, in order ("id", "delivery_id").
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

std::string PathRegex(absl::string_view path) {
  std::string regex(path);
  for (const std::string& name : PathParameters(path)) {
    regex =
        absl::StrReplaceAll(regex, {{absl::StrCat("{", name, "}"), "([^/]+)"}});
  }
  return absl::StrCat("^", regex, "$");
}

bool IsToken(absl::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  for (char c : s) {
    if (!absl::ascii_isalnum(c) && c != '-' && c != '_') return false;
  }
  return true;
}

std::string NewRequestId() {
  static absl::Mutex mu(absl::kConstInit);
  static absl::BitGen* gen = new absl::BitGen();
  absl::MutexLock lock(&mu);
  return absl::StrFormat("%016x", absl::Uniform<uint64_t>(*gen));
}

nlohmann::json ErrorBody(const absl::Status& status,
                         const std::string& request_id,
                         nlohmann::json details = nlohmann::json::object()) {
  return {{"code", std::string(ErrorCodeName(status.code()))},
          {"message", std::string(status.message())},
          {"details", std::move(details)},
          {"request_id", request_id}};
}

std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// Sends the response already in `res` and then closes the connection. The
// library (0.11) has no call for that, but it ends a connection whose
// response fails to write: the body goes out through a content provider that
// writes all of it and then reports failure.
void SendAndClose(httplib::Response& res) {
  auto body = std::make_shared<std::string>(std::move(res.body));
  res.body.clear();
  const std::string type = res.get_header_value("Content-Type");
  res.headers.erase("Content-Type");
  res.set_header("Connection", "close");
  res.set_content_provider(
      body->size(), type,
      [body](size_t offset, size_t length, httplib::DataSink& sink) {
        sink.write(body->data() + offset, length);
        return false;
      });
}

}  // namespace

// Serves one request of a route; created per request.
class RestServer::Handler {
 public:
  Handler(RestServer& server, const httplib::Request& req,
          httplib::Response& res)
      : server_(server), req_(req), res_(res) {
    const std::string incoming = req.get_header_value("X-Request-Id");
    request_id_ = IsToken(incoming) ? incoming : NewRequestId();
    res_.set_header("X-Request-Id", request_id_);
  }
  ~Handler() { server_.metrics_.CountRequest(req_.method, res_.status); }

  void SendJson(int status, const nlohmann::json& body) {
    res_.status = status;
    res_.set_content(Dump(body), "application/json");
  }
  void SendText(int status, std::string json) {
    res_.status = status;
    res_.set_content(std::move(json), "application/json");
  }
  void SendError(const absl::Status& status,
                 nlohmann::json details = nlohmann::json::object()) {
    SendJson(HttpStatus(status.code()),
             ErrorBody(status, request_id_, details));
  }

  // Token and rate limit; false (with the response sent) if refused.
  bool Admit() {
    absl::StatusOr<Caller> caller = server_.service_.Authenticate(
        req_.get_header_value("Authorization"), request_id_);
    if (!caller.ok()) {
      if (absl::IsUnauthenticated(caller.status())) {
        res_.set_header("WWW-Authenticate", "Bearer");
      }
      SendError(caller.status());
      return false;
    }
    caller_ = *std::move(caller);
    RateLimiter::Decision d = server_.limiter_.Take(caller_.token_id);
    const int64_t burst = static_cast<int64_t>(server_.limiter_.burst());
    res_.set_header("RateLimit-Limit", absl::StrCat(burst));
    res_.set_header("RateLimit-Remaining", absl::StrCat(d.remaining));
    if (!d.allowed) {
      const int64_t seconds = std::max<int64_t>(
          1, absl::ToInt64Seconds(absl::Ceil(d.retry_after, absl::Seconds(1))));
      res_.set_header("Retry-After", absl::StrCat(seconds));
      res_.set_header("RateLimit-Reset", absl::StrCat(seconds));
      SendError(absl::ResourceExhaustedError(
                    "rate limit exceeded for this token; retry later"),
                {{"retry_after_seconds", seconds}});
      return false;
    }
    return true;
  }

  void Serve(const Route& route) {
    if (!Admit()) return;
    std::unique_ptr<Message> request(
        google::protobuf::MessageFactory::generated_factory()
            ->GetPrototype(route.request)
            ->New());
    absl::Status parsed = BuildRequest(route, request.get());
    if (!parsed.ok()) return SendError(parsed);
    const std::string key = req_.get_header_value("Idempotency-Key");
    if (route.access == Access::kWrite && !key.empty()) {
      return ServeIdempotent(route, *request, key);
    }
    absl::StatusOr<std::unique_ptr<Message>> response =
        route.handler(server_.service_, caller_, *request, nullptr);
    if (!response.ok()) return SendError(response.status());
    SendText(route.status, ToJsonString(**response));
  }

  void ServeIdempotent(const Route& route, const Message& request,
                       const std::string& key) {
    bool printable = !key.empty() && key.size() <= 255;
    for (char c : key) printable = printable && c > 0x20 && c < 0x7f;
    if (!printable) {
      return SendError(absl::InvalidArgumentError(
          "Idempotency-Key must be 1-255 visible ASCII characters"));
    }
    // Keys are per tenant: a stored response is only for a caller who may
    // make the request (every write is an admin's), or an auditor repeating
    // an admin's key and body would be handed, e.g., a new token's secret.
    if (caller_.role != "admin") {
      return SendError(absl::PermissionDeniedError(
          "this token may only read (role auditor); writes need an admin "
          "token"));
    }
    const std::string hash = server_.service_.RequestFingerprint(
        absl::StrCat(req_.method, "\n", req_.path, "\n", req_.body));
    absl::StatusOr<IdempotencyState> state = server_.store_.BeginIdempotent(
        caller_.tenant_id, key, hash, server_.options_.idempotency_stale_after);
    if (!state.ok()) return SendError(state.status());
    switch (state->kind) {
      case IdempotencyState::kDone:
        res_.set_header("Idempotent-Replayed", "true");
        res_.status = state->status;
        res_.set_content(state->response, "application/json");
        return;
      case IdempotencyState::kMismatch:
        return SendJson(422, ErrorBody(absl::InvalidArgumentError(
                                           "this Idempotency-Key was used with "
                                           "a different request"),
                                       request_id_));
      case IdempotencyState::kInFlight:
        return SendError(absl::AbortedError(
            "a request with this Idempotency-Key is still in progress"));
      case IdempotencyState::kNew:
        break;
    }
    std::string stored;
    BeforeCommit store_response = [&](const Message& response,
                                      WriteTxn& txn) -> absl::Status {
      stored = ToJsonString(response);
      // A new token's or webhook's secret is shown once and never stored: a
      // replay returns the response without it.
      std::unique_ptr<Message> redacted(response.New());
      redacted->CopyFrom(response);
      ClearOneTimeSecrets(redacted.get());
      return txn.CompleteIdempotent(caller_.tenant_id, key, route.status,
                                    ToJsonString(*redacted));
    };
    absl::StatusOr<std::unique_ptr<Message>> response =
        route.handler(server_.service_, caller_, request, store_response);
    if (!response.ok()) {
      // Nothing was written: the key is free for a corrected request.
      server_.store_.AbandonIdempotent(caller_.tenant_id, key).IgnoreError();
      return SendError(response.status());
    }
    res_.status = route.status;
    res_.set_content(stored.empty() ? ToJsonString(**response) : stored,
                     "application/json");
  }

  // The request message from the path, then the query or the body.
  absl::Status BuildRequest(const Route& route, Message* request) {
    if (route.body) {
      // Any Content-Type: the body must parse as JSON. (Bearer tokens are not
      // sent by browsers on their own, so form posts are no CSRF risk.)
      IDSYNC_RETURN_IF_ERROR(
          ParseJson(req_.body.empty() ? "{}" : req_.body, request));
    } else {
      const std::string body(absl::StripAsciiWhitespace(req_.body));
      if (!body.empty() && body != "{}") {
        return absl::InvalidArgumentError("this endpoint takes no body");
      }
      for (const auto& [name, value] : req_.params) {
        if ((route.path_field != nullptr && name == route.path_field) ||
            (route.second_path_field != nullptr &&
             name == route.second_path_field)) {
          return absl::InvalidArgumentError(
              absl::StrCat("unknown parameter '", name, "'"));
        }
        IDSYNC_RETURN_IF_ERROR(SetFieldFromString(name, value, request));
      }
    }
    int match = 0;
    for (const char* name : {route.path_field, route.second_path_field}) {
      if (name == nullptr) continue;
      IDSYNC_RETURN_IF_ERROR(SetFromPath(route, name, ++match, request));
    }
    return absl::OkStatus();
  }

  // Sets the int64 field `name` from path parameter `match` (1-based).
  absl::Status SetFromPath(const Route& route, const char* name, int match,
                           Message* request) {
    int64_t id = 0;
    const std::string text = req_.matches[match].str();
    if (!absl::SimpleAtoi(text, &id) || id <= 0) {
      return absl::NotFoundError(absl::StrCat("no resource '",
                                              text.substr(0, 64),
                                              "' (ids are positive integers)"));
    }
    const auto* field = route.request->FindFieldByName(name);
    const auto* reflection = request->GetReflection();
    if (reflection->HasField(*request, field) &&
        reflection->GetInt64(*request, field) != id) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", name, "' in the body differs from the path"));
    }
    reflection->SetInt64(request, field, id);
    return absl::OkStatus();
  }

  // GET /api/v1/sync-runs/{id}/events: Server-Sent Events, one "run" event
  // per change, then "end" with the final state.
  void Events() {
    if (!Admit()) return;
    int64_t id = 0;
    if (!absl::SimpleAtoi(req_.matches[1].str(), &id) || id <= 0) {
      return SendError(absl::NotFoundError("no such sync run"));
    }
    absl::StatusOr<RunRow> first = server_.store_.GetRun(caller_.tenant_id, id);
    if (!first.ok()) return SendError(first.status());
    struct State {
      int64_t version = 0;
      int64_t sent = 0;
      absl::Time last_write;
      bool started = false;
    };
    auto state = std::make_shared<State>();
    RestServer& server = server_;
    const int64_t tenant = caller_.tenant_id;
    res_.status = 200;
    res_.set_header("Cache-Control", "no-cache");
    res_.set_chunked_content_provider(
        "text/event-stream",
        [&server, state, id, tenant, first = *first](
            size_t, httplib::DataSink& sink) -> bool {
          auto send = [&](absl::string_view event, const RunRow& run) {
            ++state->sent;
            state->last_write = absl::Now();
            const std::string data =
                absl::StrCat("event: ", event, "\nid: ", state->sent,
                             "\ndata: ", ToJsonString(ToProto(run)), "\n\n");
            return sink.write(data.data(), data.size());
          };
          auto finish = [&](const RunRow& run) {
            bool ok = send("end", run);
            sink.done();
            return ok;
          };
          if (!state->started) {
            state->started = true;
            if (first.status != RunStatus::kRunning) return finish(first);
            return send("run", first);
          }
          const absl::Duration wait =
              std::min(absl::Seconds(1), server.options_.event_heartbeat);
          std::optional<RunProgress::Snapshot> snapshot =
              server.progress_.Wait(id, state->version, wait);
          if (snapshot.has_value() && snapshot->version > state->version) {
            state->version = snapshot->version;
            if (!snapshot->done) return send("run", snapshot->run);
          }
          // Not running here (or just ended): the store has the truth.
          if (!snapshot.has_value() || snapshot->done) {
            absl::StatusOr<RunRow> now = server.store_.GetRun(tenant, id);
            if (!now.ok()) {
              sink.done();
              return false;
            }
            if (now->status != RunStatus::kRunning) return finish(*now);
            if (!snapshot.has_value() && now->updated_at > first.updated_at) {
              return send("run", *now);
            }
          }
          if (absl::Now() - state->last_write >=
              server.options_.event_heartbeat) {
            state->last_write = absl::Now();
            return sink.write(": keepalive\n\n", 14);
          }
          return true;
        });
  }

  RestServer& server_;
  const httplib::Request& req_;
  httplib::Response& res_;
  std::string request_id_;
  Caller caller_;
};

RestServer::RestServer(ControlPlaneService& service, Store& store,
                       RunProgress& progress, Metrics& metrics,
                       RateLimiter& limiter, RestServerOptions options)
    : service_(service),
      store_(store),
      progress_(progress),
      metrics_(metrics),
      limiter_(limiter),
      options_(std::move(options)),
      server_(std::make_unique<httplib::Server>()) {}

RestServer::~RestServer() { Stop(); }

absl::Status RestServer::Start() {
  httplib::Server& http = *server_;
  const int threads = options_.threads;
  http.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  http.set_payload_max_length(options_.max_body_bytes);
  // Headers and body go out in separate writes; with Nagle's algorithm the
  // body waits for the client's delayed ACK (~40 ms a request on Linux).
  http.set_tcp_nodelay(true);
  // Clients that keep connections open (pipelines, dashboards) keep them;
  // the library's default closes every fifth request.
  http.set_keep_alive_max_count(10000);
  // The library's default sets SO_REUSEPORT, so a second server on a port in
  // use would start and share (split) the traffic; and it listens with a
  // backlog of 5, so a burst of new connections gets SYNs dropped (clients
  // retry after 1 s or more) or reset. Bind exclusively; remember the socket
  // to listen on it with a full backlog.
  auto listen_fd = std::make_shared<socket_t>(INVALID_SOCKET);
  http.set_socket_options([listen_fd](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
    *listen_fd = sock;
  });
  // Runs before the library reads the body.
  http.set_pre_routing_handler([this](const httplib::Request& req,
                                      httplib::Response& res) {
    // Refused before the body is read: what is left of it must not be
    // taken for the next request on the connection (request smuggling),
    // so the connection ends with the answer.
    auto refuse = [&](int status, absl::string_view message) {
      Handler h(*this, req, res);
      h.SendError(absl::InvalidArgumentError(message));
      res.status = status;
      SendAndClose(res);
      return httplib::Server::HandlerResponse::Handled;
    };
    // The library does not bound chunked bodies by the payload limit:
    // only bodies of a declared length are taken.
    if (req.has_header("Transfer-Encoding")) {
      return refuse(
          411, "send the body with a Content-Length (no Transfer-Encoding)");
    }
    // The library would inflate a compressed body past the limit (a
    // 400 KB gzip body became 400 MB in memory).
    const std::string encoding = req.get_header_value("Content-Encoding");
    if (!encoding.empty() && !absl::EqualsIgnoreCase(encoding, "identity")) {
      return refuse(415,
                    "Content-Encoding is not supported: send the body "
                    "uncompressed");
    }
    // A Content-Length the library would misread ("abc" as 0, "-5" as
    // huge) is refused here, with a message that says why.
    const bool has_length = req.has_header("Content-Length");
    const std::string declared = req.get_header_value("Content-Length");
    uint64_t length = 0;
    if (has_length && !absl::SimpleAtoi(declared, &length)) {
      if (declared.empty() ||
          !std::all_of(declared.begin(), declared.end(), absl::ascii_isdigit)) {
        return refuse(400, "Content-Length is not a number of bytes");
      }
      length = std::numeric_limits<uint64_t>::max();  // Too many digits.
    }
    if (length > options_.max_body_bytes) {
      return refuse(413, absl::StrCat("the body is larger than ",
                                      options_.max_body_bytes, " bytes"));
    }
    // The library reads bodies of these methods only.
    const bool read = req.method == "POST" || req.method == "PATCH" ||
                      req.method == "PUT" || req.method == "DELETE";
    if (!read && length > 0) {
      const std::string method = req.method;
      // A HEAD answer has no body, so it could not end the connection:
      // this one is answered like a GET.
      if (method == "HEAD") {
        const_cast<httplib::Request&>(req).method = "GET";
      }
      return refuse(400, absl::StrCat(method, " requests take no body"));
    }
    // Bodies are JSON whatever their Content-Type (curl -d sends a form
    // type), and a request without Content-Length has no body (RFC 9112
    // 6.3). The library would parse form bodies as a query (refusing
    // ones over 8 KiB with 413), split multipart ones (400), and refuse
    // a POST without Content-Length (400): let it read the plain bytes.
    // The library owns `req` (not const) and has not read it yet.
    httplib::Headers& headers = const_cast<httplib::Request&>(req).headers;
    const std::string type =
        absl::AsciiStrToLower(req.get_header_value("Content-Type"));
    if (absl::StartsWith(type, "multipart/") ||
        absl::StartsWith(type, "application/x-www-form-urlencoded")) {
      headers.erase("Content-Type");
    }
    if (!has_length) headers.emplace("Content-Length", "0");
    return httplib::Server::HandlerResponse::Unhandled;
  });
  http.set_error_handler([this](const httplib::Request& req,
                                httplib::Response& res) {
    if (!res.body.empty() || res.content_provider_) return;
    const int status = res.status;
    Handler h(*this, req, res);
    absl::Status error;
    switch (status) {
      case 404:
        error = absl::NotFoundError("no such endpoint");
        break;
      case 413:
        error = absl::InvalidArgumentError(absl::StrCat(
            "the body is larger than ", options_.max_body_bytes, " bytes"));
        break;
      case 414:
        error = absl::InvalidArgumentError("the request URL is too long");
        break;
      case 400:
        // The library refuses requests it cannot read before routing.
        error = absl::InvalidArgumentError(
            "the request is not valid HTTP/1.1 for this API (a malformed "
            "request line or header, a header line over 8 KiB, or an "
            "unknown method)");
        break;
      default:
        error = absl::InvalidArgumentError(absl::StrCat("HTTP error ", status));
    }
    h.SendJson(status, ErrorBody(error, h.request_id_));
  });

  http.Get("/health",
           [this](const httplib::Request& req, httplib::Response& res) {
             Handler h(*this, req, res);
             v1::HealthResponse health;
             health.set_status("ok");
             health.set_version(options_.version);
             *health.mutable_timestamp() =
                 google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
                     absl::ToUnixMicros(absl::Now()));
             h.SendText(200, ToJsonString(health));
           });
  http.Get("/openapi.json",
           [this](const httplib::Request& req, httplib::Response& res) {
             Handler h(*this, req, res);
             h.SendJson(200, OpenApi(options_.version));
           });
  http.Get("/metrics",
           [this](const httplib::Request& req, httplib::Response& res) {
             Handler h(*this, req, res);
             if (!h.Admit()) return;
             res.status = 200;
             res.set_content(metrics_.Render(), "text/plain; version=0.0.4");
           });
  http.Get(PathRegex("/api/v1/sync-runs/{id}/events"),
           [this](const httplib::Request& req, httplib::Response& res) {
             Handler(*this, req, res).Events();
           });
  for (const Route& route : Routes()) {
    const std::string pattern = PathRegex(route.path);
    auto handler = [this, &route](const httplib::Request& req,
                                  httplib::Response& res) {
      Handler(*this, req, res).Serve(route);
    };
    const std::string method = route.method;
    if (method == "GET") http.Get(pattern, handler);
    if (method == "POST") http.Post(pattern, handler);
    if (method == "PATCH") http.Patch(pattern, handler);
    if (method == "DELETE") http.Delete(pattern, handler);
  }

  port_ = options_.port == 0
              ? http.bind_to_any_port(options_.host)
              : (http.bind_to_port(options_.host, options_.port) ? options_.port
                                                                 : -1);
  if (port_ <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", options_.host, ":", options_.port,
                     " (in use, or no permission)"));
  }
  if (*listen_fd != INVALID_SOCKET) ::listen(*listen_fd, SOMAXCONN);
  thread_ = std::thread([this] { server_->listen_after_bind(); });
  while (!server_->is_running()) absl::SleepFor(absl::Milliseconds(1));
  return absl::OkStatus();
}

void RestServer::Stop() {
  if (thread_.joinable()) {
    server_->stop();
    thread_.join();
  }
}

nlohmann::json RestServer::OpenApi(const std::string& version) {
  std::set<std::string> referenced;
  nlohmann::json paths = nlohmann::json::object();
  const nlohmann::json error_response = {
      {"description", "An error: {code, message, details, request_id}"},
      {"content",
       {{"application/json",
         {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}};
  for (const Route& route : Routes()) {
    nlohmann::json op = {{"operationId", route.operation_id},
                         {"summary", route.summary},
                         {"tags", {route.tag}}};
    nlohmann::json parameters = nlohmann::json::array();
    for (const std::string& name : PathParameters(route.path)) {
      parameters.push_back(
          {{"name", name},
           {"in", "path"},
           {"required", true},
           {"schema", {{"type", "integer"}, {"format", "int64"}}}});
    }
    if (route.body) {
      referenced.insert(route.request->name());
      op["requestBody"] = {
          {"required", route.access == Access::kWrite &&
                           std::string(route.method) == "POST"},
          {"content",
           {{"application/json",
             {{"schema",
               {{"$ref", absl::StrCat("#/components/schemas/",
                                      route.request->name())}}}}}}}};
    } else if (std::string(route.method) == "GET") {
      std::set<std::string> unused;
      const nlohmann::json fields =
          SchemaOf(route.request, false, &unused)["properties"];
      for (const auto& [name, schema] : fields.items()) {
        if ((route.path_field != nullptr && name == route.path_field) ||
            (route.second_path_field != nullptr &&
             name == route.second_path_field)) {
          continue;
        }
        parameters.push_back({{"name", name},
                              {"in", "query"},
                              {"required", false},
                              {"schema", schema}});
      }
    }
    if (route.access == Access::kWrite) {
      parameters.push_back(
          {{"name", "Idempotency-Key"},
           {"in", "header"},
           {"required", false},
           {"description",
            "Replays the stored response of an earlier request with the same "
            "key and body (24 h)"},
           {"schema", {{"type", "string"}, {"maxLength", 255}}}});
    }
    if (!parameters.empty()) op["parameters"] = parameters;
    referenced.insert(route.response->name());
    op["responses"] = {
        {absl::StrCat(route.status),
         {{"description", "Success"},
          {"content",
           {{"application/json",
             {{"schema",
               {{"$ref", absl::StrCat("#/components/schemas/",
                                      route.response->name())}}}}}}}}},
        {"default", error_response}};
    std::string method(route.method);
    absl::AsciiStrToLower(&method);
    paths[route.path][method] = op;
  }
  paths["/api/v1/sync-runs/{id}/events"]["get"] = {
      {"operationId", "watchSyncRun"},
      {"summary",
       "Server-Sent Events: a 'run' event per change, then 'end' with the "
       "final state (data: a SyncRun)"},
      {"tags", {"sync-runs"}},
      {"parameters",
       {{{"name", "id"},
         {"in", "path"},
         {"required", true},
         {"schema", {{"type", "integer"}, {"format", "int64"}}}}}},
      {"responses",
       {{"200",
         {{"description", "An event stream"},
          {"content",
           {{"text/event-stream", {{"schema", {{"type", "string"}}}}}}}}},
        {"default", error_response}}}};
  referenced.insert("SyncRun");
  const nlohmann::json no_auth = nlohmann::json::array();
  paths["/health"]["get"] = {
      {"operationId", "health"},
      {"summary", "Liveness: status, version, time"},
      {"tags", {"operations"}},
      {"security", no_auth},
      {"responses",
       {{"200",
         {{"description", "Healthy"},
          {"content",
           {{"application/json",
             {{"schema",
               {{"$ref", "#/components/schemas/HealthResponse"}}}}}}}}}}}};
  referenced.insert("HealthResponse");
  paths["/metrics"]["get"] = {
      {"operationId", "metrics"},
      {"summary", "Prometheus metrics"},
      {"tags", {"operations"}},
      {"responses",
       {{"200",
         {{"description", "Prometheus text format"},
          {"content", {{"text/plain", {{"schema", {{"type", "string"}}}}}}}}},
        {"default", error_response}}}};
  paths["/openapi.json"]["get"] = {
      {"operationId", "openapi"},
      {"summary", "This document"},
      {"tags", {"operations"}},
      {"security", no_auth},
      {"responses",
       {{"200",
         {{"description", "OpenAPI 3.0 document"},
          {"content",
           {{"application/json", {{"schema", {{"type", "object"}}}}}}}}}}}};

  // Schemas of every referenced message, following nested references.
  nlohmann::json schemas = nlohmann::json::object();
  std::set<std::string> done;
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  while (true) {
    std::set<std::string> pending;
    for (const std::string& name : referenced) {
      if (!done.count(name)) pending.insert(name);
    }
    if (pending.empty()) break;
    for (const std::string& name : pending) {
      done.insert(name);
      const Descriptor* d =
          pool->FindMessageTypeByName(absl::StrCat("idsync.v1.", name));
      if (d == nullptr) continue;
      const bool response = !absl::EndsWith(name, "Request");
      schemas[name] = SchemaOf(d, response, &referenced);
    }
  }
  schemas["Error"] = {
      {"type", "object"},
      {"required", {"code", "message", "details", "request_id"}},
      {"properties",
       {{"code", {{"type", "string"}}},
        {"message", {{"type", "string"}}},
        {"details", {{"type", "object"}}},
        {"request_id", {{"type", "string"}}}}}};
  return {
      {"openapi", "3.0.3"},
      {"info",
       {{"title", "idsync control plane"},
        {"version", version},
        {"description",
         "Identities, accounts, entitlements and grants synced from sources; "
         "connectors and their sync runs; on-prem agents; webhooks and "
         "their deliveries; tokens and the audit log. "
         "Authenticate with 'Authorization: Bearer <token>'."}}},
      {"servers", {{{"url", "/"}}}},
      {"security", {{{"bearer", nlohmann::json::array()}}}},
      {"paths", paths},
      {"components",
       {{"securitySchemes",
         {{"bearer", {{"type", "http"}, {"scheme", "bearer"}}}}},
        {"schemas", schemas}}}};
}

}  // namespace idsync
