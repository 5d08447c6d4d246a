// RestServer: the REST/JSON face of the control plane, on the event-driven
// HttpServer (http_server.h): slow clients and event streams cost memory,
// not threads.
//
// Routing follows the route table (rest_routes.h), which also drives the
// OpenAPI document at /openapi.json. Each API request: request id, bearer
// token, per-token rate limit, then the request message from path, query or
// JSON body, Idempotency-Key handling for writes, the service call, and JSON
// out. Errors are {code, message, details, request_id}. Every response
// carries security headers; none is cached. Thread-safe.
#ifndef IDSYNC_DISPATCHER_API_REST_SERVER_H_
#define IDSYNC_DISPATCHER_API_REST_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "connector/rate_limiter.h"
#include "dispatcher/api/control_plane_service.h"
#include "dispatcher/api/http_server.h"
#include "dispatcher/metrics.h"
#include "dispatcher/run_progress.h"
#include "nlohmann/json.hpp"

namespace idsync {

struct RestServerOptions {
  // Address, threads, deadlines and connection limits.
  HttpServerOptions http;
  // PUT /api/v1/connectors/{id}/file.
  uint64_t max_upload_bytes = uint64_t{1} << 30;
  absl::Duration idempotency_stale_after = absl::Seconds(60);
  absl::Duration event_heartbeat = absl::Seconds(15);
  std::string version = "0.1.0";
  // /metrics on this port answers only this operator token (compared by
  // hash); empty: /metrics is not served here (see MetricsServer).
  std::string metrics_token;
};

class RestServer {
 public:
  // Everything passed must outlive the server.
  RestServer(ControlPlaneService& service, Store& store, RunProgress& progress,
             Metrics& metrics, RateLimiter& limiter, RestServerOptions options);
  ~RestServer();

  // Binds and starts serving on background threads.
  absl::Status Start();
  void Stop();
  int port() const;

 private:
  class Handler;
  class Exchange;

  ControlPlaneService& service_;
  Store& store_;
  RunProgress& progress_;
  Metrics& metrics_;
  RateLimiter& limiter_;
  const RestServerOptions options_;
  std::unique_ptr<Handler> handler_;
  // Shared with the metrics collector, which may outlive the server.
  std::shared_ptr<HttpServer> http_;
};

// The operator's metrics listener: GET /metrics (and /health) on its own
// address, loopback by default, without a token: whoever reaches the
// address is the host's operator.
class MetricsServer {
 public:
  // `metrics` must outlive the server.
  MetricsServer(Metrics& metrics, HttpServerOptions options);
  ~MetricsServer();
  absl::Status Start();
  void Stop();
  int port() const;

 private:
  class Handler;
  std::unique_ptr<Handler> handler_;
  std::unique_ptr<HttpServer> http_;
};

// The headers every response of this API carries (no sniffing, no framing,
// no referrer, no caching: responses may carry secrets).
void AddSecurityHeaders(HttpFields* headers);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_API_REST_SERVER_H_
