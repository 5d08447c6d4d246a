#include "dispatcher/api/rest_server.h"

#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <utility>
#include <vector>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "connector/status_macros.h"
#include "dispatcher/api/json_mapping.h"
#include "dispatcher/api/openapi.h"
#include "dispatcher/api/rest_routes.h"
#include "dispatcher/api/status_mapping.h"
#include "dispatcher/secrets.h"
#include "google/protobuf/util/time_util.h"

namespace idsync {
namespace {

namespace v1 = idsync::v1;
using google::protobuf::Message;

constexpr char kJson[] = "application/json";
constexpr char kEventsPath[] = "/api/v1/sync-runs/{id}/events";
constexpr char kUploadPath[] = "/api/v1/connectors/{id}/file";

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

// The status a server-made refusal carries (for its JSON code).
absl::Status RefusalStatus(int http_status, absl::string_view message) {
  switch (http_status) {
    case 408:
      return absl::DeadlineExceededError(message);
    case 503:
      return absl::UnavailableError(message);
    case 500:
      return absl::InternalError(message);
    default:
      return absl::InvalidArgumentError(message);
  }
}

// Constant-time comparison of two secrets of any length (by their hashes).
bool SameSecret(absl::string_view a, absl::string_view b) {
  uint8_t ha[crypto_generichash_BYTES], hb[crypto_generichash_BYTES];
  crypto_generichash(ha, sizeof(ha), reinterpret_cast<const uint8_t*>(a.data()),
                     a.size(), nullptr, 0);
  crypto_generichash(hb, sizeof(hb), reinterpret_cast<const uint8_t*>(b.data()),
                     b.size(), nullptr, 0);
  return sodium_memcmp(ha, hb, sizeof(ha)) == 0;
}

}  // namespace

void AddSecurityHeaders(HttpFields* headers) {
  headers->emplace_back("X-Content-Type-Options", "nosniff");
  headers->emplace_back("X-Frame-Options", "DENY");
  headers->emplace_back("Referrer-Policy", "no-referrer");
  headers->emplace_back("Content-Security-Policy",
                        "default-src 'none'; frame-ancestors 'none'");
  headers->emplace_back("Cache-Control", "no-store");
}

// GET /api/v1/sync-runs/{id}/events: one "run" event per change, then "end"
// with the final state. Polled by the server on a worker; woken by the
// run's progress when it executes here, and looking the run up in the store
// otherwise (it may run on another replica, or have ended).
class RunEventStream final : public HttpEventStream {
 public:
  RunEventStream(Store& store, RunProgress& progress, absl::Duration heartbeat,
                 int64_t tenant_id, RunRow first)
      : store_(store),
        progress_(progress),
        heartbeat_(heartbeat),
        tenant_id_(tenant_id),
        run_id_(first.id),
        first_(std::move(first)),
        last_update_(first_.updated_at) {}
  ~RunEventStream() override {
    if (watch_ != 0) progress_.Unwatch(watch_);
  }

  void SetWaker(std::function<void()> wake) override {
    watch_ = progress_.Watch(run_id_, std::move(wake));
  }
  absl::Duration interval() const override {
    return std::min(absl::Seconds(1), heartbeat_);
  }

  bool Poll(std::string* out) override {
    if (!started_) {
      started_ = true;
      if (first_.status != RunStatus::kRunning) return End(first_, out);
      Send("run", first_, out);
      return true;
    }
    std::optional<RunProgress::Snapshot> snapshot =
        progress_.Wait(run_id_, version_, absl::ZeroDuration());
    if (snapshot.has_value() && snapshot->version > version_) {
      version_ = snapshot->version;
      if (!snapshot->done) {
        Send("run", snapshot->run, out);
        return true;
      }
    }
    // Not running here (or just ended): the store has the truth.
    if (!snapshot.has_value() || snapshot->done) {
      absl::StatusOr<RunRow> now = store_.GetRun(tenant_id_, run_id_);
      if (!now.ok()) return false;
      if (now->status != RunStatus::kRunning) return End(*now, out);
      if (!snapshot.has_value() && now->updated_at > last_update_) {
        last_update_ = now->updated_at;
        Send("run", *now, out);
        return true;
      }
    }
    if (absl::Now() - last_write_ >= heartbeat_) {
      last_write_ = absl::Now();
      out->append(": keepalive\n\n");
    }
    return true;
  }

 private:
  void Send(absl::string_view event, const RunRow& run, std::string* out) {
    ++sent_;
    last_write_ = absl::Now();
    absl::StrAppend(out, "event: ", event, "\nid: ", sent_,
                    "\ndata: ", ToJsonString(ToProto(run)), "\n\n");
  }
  bool End(const RunRow& run, std::string* out) {
    Send("end", run, out);
    return false;
  }

  Store& store_;
  RunProgress& progress_;
  const absl::Duration heartbeat_;
  const int64_t tenant_id_, run_id_;
  const RunRow first_;
  uint64_t watch_ = 0;
  // Touched by one poll at a time.
  bool started_ = false;
  int64_t version_ = 0, sent_ = 0;
  absl::Time last_update_, last_write_ = absl::Now();
};

// One request and its response.
class RestServer::Exchange {
 public:
  Exchange(RestServer& server, const HttpServerRequest& req,
           std::string request_id = "")
      : server_(server), req_(req) {
    if (request_id.empty()) {
      const std::string incoming(req.Header("x-request-id"));
      request_id = IsToken(incoming) ? incoming : NewRequestId();
    }
    request_id_ = std::move(request_id);
    res_.headers.emplace_back("X-Request-Id", request_id_);
    AddSecurityHeaders(&res_.headers);
  }

  HttpServerResponse Take() { return std::move(res_); }
  const std::string& request_id() const { return request_id_; }
  const Caller& caller() const { return caller_; }

  void SendText(int status, std::string body, const char* type = kJson) {
    res_.status = status;
    res_.body = std::move(body);
    res_.headers.emplace_back("Content-Type", type);
  }
  void SendJson(int status, const nlohmann::json& body) {
    SendText(status, Dump(body));
  }
  void SendError(const absl::Status& status,
                 nlohmann::json details = nlohmann::json::object()) {
    SendJson(HttpStatus(status.code()),
             ErrorBody(status, request_id_, std::move(details)));
  }
  void SendError(int http_status, const absl::Status& status) {
    SendJson(http_status, ErrorBody(status, request_id_));
  }

  // Token and rate limit; false (with the response made) if refused.
  bool Admit() {
    absl::StatusOr<Caller> caller = server_.service_.Authenticate(
        req_.Header("authorization"), request_id_, req_.peer);
    if (!caller.ok()) {
      if (absl::IsUnauthenticated(caller.status())) {
        res_.headers.emplace_back("WWW-Authenticate", "Bearer");
      }
      SendError(caller.status());
      return false;
    }
    caller_ = *std::move(caller);
    RateLimiter::Decision d = server_.limiter_.Take(caller_.token_id);
    const int64_t burst = static_cast<int64_t>(server_.limiter_.burst());
    res_.headers.emplace_back("RateLimit-Limit", absl::StrCat(burst));
    res_.headers.emplace_back("RateLimit-Remaining", absl::StrCat(d.remaining));
    if (!d.allowed) {
      const int64_t seconds = std::max<int64_t>(
          1, absl::ToInt64Seconds(absl::Ceil(d.retry_after, absl::Seconds(1))));
      res_.headers.emplace_back("Retry-After", absl::StrCat(seconds));
      res_.headers.emplace_back("RateLimit-Reset", absl::StrCat(seconds));
      SendError(absl::ResourceExhaustedError(
                    "rate limit exceeded for this token; retry later"),
                {{"retry_after_seconds", seconds}});
      return false;
    }
    return true;
  }

  void Serve(const Route& route, const std::vector<absl::string_view>& params) {
    if (!Admit()) return;
    std::unique_ptr<Message> request(
        google::protobuf::MessageFactory::generated_factory()
            ->GetPrototype(route.request)
            ->New());
    absl::Status parsed = BuildRequest(route, params, request.get());
    if (!parsed.ok()) return SendError(parsed);
    const std::string key(req_.Header("idempotency-key"));
    if (route.access == Access::kWrite && req_.HasHeader("idempotency-key")) {
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
        res_.headers.emplace_back("Idempotent-Replayed", "true");
        return SendText(state->status, state->response);
      case IdempotencyState::kMismatch:
        return SendError(422, absl::InvalidArgumentError(
                                  "this Idempotency-Key was used with a "
                                  "different request"));
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
    SendText(route.status, stored.empty() ? ToJsonString(**response) : stored);
  }

  // The request message from the path, then the query or the body.
  absl::Status BuildRequest(const Route& route,
                            const std::vector<absl::string_view>& params,
                            Message* request) {
    if (route.body) {
      // Any Content-Type: the body must parse as JSON. (Bearer tokens are not
      // sent by browsers on their own, so form posts are no CSRF risk.)
      IDSYNC_RETURN_IF_ERROR(
          ParseJson(req_.body.empty() ? "{}" : req_.body, request));
    } else {
      const absl::string_view body = absl::StripAsciiWhitespace(req_.body);
      if (!body.empty() && body != "{}") {
        return absl::InvalidArgumentError("this endpoint takes no body");
      }
      for (const auto& [name, value] : req_.query) {
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
      IDSYNC_RETURN_IF_ERROR(
          SetFromPath(route, name, params[match++], request));
    }
    return absl::OkStatus();
  }

  // Sets the int64 field `name` from a path parameter.
  absl::Status SetFromPath(const Route& route, const char* name,
                           absl::string_view text, Message* request) {
    IDSYNC_ASSIGN_OR_RETURN(int64_t id, PathId(text));
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

  static absl::StatusOr<int64_t> PathId(absl::string_view text) {
    int64_t id = 0;
    if (!absl::SimpleAtoi(text, &id) || id <= 0) {
      return absl::NotFoundError(absl::StrCat("no resource '",
                                              text.substr(0, 64),
                                              "' (ids are positive integers)"));
    }
    return id;
  }

  void Events(absl::string_view id_text) {
    if (!Admit()) return;
    absl::StatusOr<int64_t> id = PathId(id_text);
    if (!id.ok()) return SendError(absl::NotFoundError("no such sync run"));
    absl::StatusOr<RunRow> first =
        server_.store_.GetRun(caller_.tenant_id, *id);
    if (!first.ok()) return SendError(first.status());
    res_.status = 200;
    res_.headers.emplace_back("Content-Type", "text/event-stream");
    res_.stream = std::make_shared<RunEventStream>(
        server_.store_, server_.progress_, server_.options_.event_heartbeat,
        caller_.tenant_id, *std::move(first));
  }

  void Health() {
    v1::HealthResponse health;
    health.set_status("ok");
    health.set_version(server_.options_.version);
    *health.mutable_timestamp() =
        google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(
            absl::ToUnixMicros(absl::Now()));
    SendText(200, ToJsonString(health));
  }

  // /metrics on the API port: the operator's token only (tenants' tokens
  // would read every tenant's volumes).
  void Metrics() {
    const std::string& token = server_.options_.metrics_token;
    if (token.empty()) {
      return SendError(absl::NotFoundError(
          "no such endpoint: metrics are served on the operator's metrics "
          "address (--metrics-listen)"));
    }
    const absl::string_view given =
        absl::StripAsciiWhitespace(req_.Header("authorization"));
    if (absl::StartsWithIgnoreCase(given, "bearer ") &&
        SameSecret(absl::StripAsciiWhitespace(given.substr(7)), token)) {
      return SendText(200, server_.metrics_.Render(),
                      "text/plain; version=0.0.4");
    }
    // Anything else is judged as a tenant token (logged, counted, 401 when
    // bad), and a good one is still not the operator's.
    if (!Admit()) return;
    SendError(absl::PermissionDeniedError(
        "/metrics needs the operator's metrics token; tenant tokens cannot "
        "read it"));
  }

  // 404, or 405 with Allow when the path takes other methods.
  void NoRoute(bool path_known, const char* only = nullptr) {
    if (path_known) {
      std::vector<std::string> allowed;
      if (only != nullptr) allowed.push_back(only);
      std::vector<absl::string_view> params;
      for (const Route& route : Routes()) {
        if (MatchPath(route.path, req_.path, &params)) {
          allowed.push_back(route.method);
        }
      }
      if (allowed.empty()) allowed.push_back("GET");  // /health and the like.
      if (std::find(allowed.begin(), allowed.end(), "GET") != allowed.end()) {
        allowed.push_back("HEAD");
      }
      res_.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
      return SendError(
          405, absl::InvalidArgumentError(absl::StrCat(
                   "method ", absl::CHexEscape(req_.method.substr(0, 16)),
                   " is not allowed on this path")));
    }
    SendError(absl::NotFoundError("no such endpoint"));
  }

 private:
  RestServer& server_;
  const HttpServerRequest& req_;
  HttpServerResponse res_;
  std::string request_id_;
  Caller caller_;
};

// A pushed file on its way: who pushed it, and where it goes.
struct PendingUpload {
  Caller caller;
  std::string request_id;
  bool sync = true;
  std::unique_ptr<FileUpload> upload;
};

class RestServer::Handler final : public HttpHandler {
 public:
  explicit Handler(RestServer& server) : server_(server) {}

  BodyPlan PlanBody(const HttpServerRequest& header) override {
    BodyPlan plan;
    plan.limit = server_.options_.http.max_body_bytes;
    std::vector<absl::string_view> params;
    if (header.method == "PUT" &&
        MatchPath(kUploadPath, header.path, &params)) {
      plan.kind = BodyPlan::kFile;
      plan.limit = server_.options_.max_upload_bytes;
      const std::string id(params[0]);
      plan.admit = [this, id](const HttpServerRequest& req) {
        return AdmitUpload(req, id);
      };
    }
    return plan;
  }

  HttpServerResponse Handle(HttpServerRequest& req) override {
    if (req.context != nullptr) return FinishUpload(req);
    Exchange x(server_, req);
    const bool get = req.method == "GET" || req.method == "HEAD";
    std::vector<absl::string_view> params;
    if (req.path == "/health" && get) {
      x.Health();
    } else if (req.path == "/openapi.json" && get) {
      x.SendJson(200, OpenApiDocument(server_.options_.version));
    } else if (req.path == "/metrics" && get) {
      x.Metrics();
    } else if (MatchPath(kEventsPath, req.path, &params)) {
      if (get) {
        x.Events(params[0]);
      } else {
        x.NoRoute(true);
      }
    } else if (MatchPath(kUploadPath, req.path, &params)) {
      // A PUT comes with a context (FinishUpload).
      if (req.method == "PUT") {
        x.SendError(absl::InvalidArgumentError(
            "send the file as the body, with a Content-Length"));
      } else {
        x.NoRoute(true, "PUT");
      }
    } else {
      bool path_known = false;
      const std::string method = req.method == "HEAD" ? "GET" : req.method;
      const Route* route = FindRoute(method, req.path, &params, &path_known);
      if (route != nullptr) {
        x.Serve(*route, params);
      } else {
        x.NoRoute(path_known || req.path == "/health" ||
                  req.path == "/openapi.json" || req.path == "/metrics");
      }
    }
    return x.Take();
  }

  HttpServerResponse Refusal(int status, absl::string_view message,
                             const HttpServerRequest& req) override {
    Exchange x(server_, req);
    x.SendError(status, RefusalStatus(status, message));
    return x.Take();
  }

  void Sent(const HttpServerRequest& req, int status) override {
    server_.metrics_.CountRequest(req.method.empty() ? "?" : req.method,
                                  status);
  }

 private:
  Admission AdmitUpload(const HttpServerRequest& req, const std::string& id) {
    Admission a;
    Exchange x(server_, req);
    absl::StatusOr<int64_t> connector = Exchange::PathId(id);
    if (!x.Admit()) {
      a.refuse = x.Take();
      return a;
    }
    // Like the caller and the connector, the query is checked before a
    // byte of the body is read.
    bool sync = true;
    for (const auto& [name, value] : req.query) {
      if (name != "sync" || (value != "true" && value != "false")) {
        x.SendError(absl::InvalidArgumentError(
            "this endpoint takes one parameter: sync=true|false"));
        a.refuse = x.Take();
        return a;
      }
      sync = value == "true";
    }
    absl::StatusOr<std::unique_ptr<FileUpload>> upload =
        connector.ok()
            ? server_.service_.PrepareFileUpload(x.caller(), *connector)
            : absl::StatusOr<std::unique_ptr<FileUpload>>(connector.status());
    if (!upload.ok()) {
      x.SendError(upload.status());
      a.refuse = x.Take();
      return a;
    }
    a.file = UniqueFd(dup((*upload)->file.get()));
    auto pending = std::make_shared<PendingUpload>();
    pending->caller = x.caller();
    pending->request_id = x.request_id();
    pending->sync = sync;
    pending->upload = *std::move(upload);
    a.context = std::move(pending);
    return a;
  }

  HttpServerResponse FinishUpload(HttpServerRequest& req) {
    auto pending = std::static_pointer_cast<PendingUpload>(req.context);
    Exchange x(server_, req, pending->request_id);
    absl::StatusOr<v1::UploadConnectorFileResponse> done =
        server_.service_.CommitFileUpload(pending->caller, *pending->upload,
                                          static_cast<int64_t>(req.body_bytes),
                                          pending->sync);
    if (!done.ok()) {
      pending->upload.reset();  // The temp file goes before the answer.
      x.SendError(done.status());
    } else {
      x.SendText(done->has_run() ? 202 : 200, ToJsonString(*done));
    }
    return x.Take();
  }

  RestServer& server_;
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
      handler_(std::make_unique<Handler>(*this)),
      http_(std::make_shared<HttpServer>(*handler_, options_.http)) {}

RestServer::~RestServer() { Stop(); }

absl::Status RestServer::Start() {
  IDSYNC_RETURN_IF_ERROR(http_->Start());
  std::weak_ptr<HttpServer> weak = http_;
  metrics_.AddCollector([weak](std::string* out) {
    std::shared_ptr<HttpServer> http = weak.lock();
    if (http == nullptr) return;
    const HttpServerStats s = http->stats();
    absl::StrAppend(
        out,
        "# HELP idsync_http_connections Open API connections.\n"
        "# TYPE idsync_http_connections gauge\n"
        "idsync_http_connections ",
        s.connections_open,
        "\n# HELP idsync_http_event_streams Open event streams.\n"
        "# TYPE idsync_http_event_streams gauge\n"
        "idsync_http_event_streams ",
        s.streams_open,
        "\n# HELP idsync_http_refused_total Connections and requests the "
        "server refused itself, by reason.\n"
        "# TYPE idsync_http_refused_total counter\n"
        "idsync_http_refused_total{reason=\"connection_limit\"} ",
        s.connections_refused,
        "\nidsync_http_refused_total{reason=\"timeout\"} ", s.timeouts,
        "\nidsync_http_refused_total{reason=\"malformed\"} ", s.malformed,
        "\nidsync_http_refused_total{reason=\"busy\"} ", s.overloaded, "\n");
  });
  return absl::OkStatus();
}

void RestServer::Stop() { http_->Stop(); }

int RestServer::port() const { return http_->port(); }

class MetricsServer::Handler final : public HttpHandler {
 public:
  explicit Handler(Metrics& metrics) : metrics_(metrics) {}
  BodyPlan PlanBody(const HttpServerRequest&) override { return {}; }
  HttpServerResponse Handle(HttpServerRequest& req) override {
    HttpServerResponse r;
    AddSecurityHeaders(&r.headers);
    const bool get = req.method == "GET" || req.method == "HEAD";
    if (get && req.path == "/metrics") {
      r.body = metrics_.Render();
      r.headers.emplace_back("Content-Type", "text/plain; version=0.0.4");
    } else if (get && req.path == "/health") {
      r.body = "{\"status\":\"ok\"}";
      r.headers.emplace_back("Content-Type", kJson);
    } else {
      return Refusal(404, "no such endpoint (this address serves /metrics)",
                     req);
    }
    return r;
  }
  HttpServerResponse Refusal(int status, absl::string_view message,
                             const HttpServerRequest&) override {
    HttpServerResponse r;
    r.status = status;
    AddSecurityHeaders(&r.headers);
    r.headers.emplace_back("Content-Type", kJson);
    r.body = Dump(ErrorBody(RefusalStatus(status, message), ""));
    return r;
  }

 private:
  Metrics& metrics_;
};

MetricsServer::MetricsServer(Metrics& metrics, HttpServerOptions options)
    : handler_(std::make_unique<Handler>(metrics)),
      http_(std::make_unique<HttpServer>(*handler_, std::move(options))) {}
MetricsServer::~MetricsServer() { Stop(); }
absl::Status MetricsServer::Start() { return http_->Start(); }
void MetricsServer::Stop() { http_->Stop(); }
int MetricsServer::port() const { return http_->port(); }

}  // namespace idsync
