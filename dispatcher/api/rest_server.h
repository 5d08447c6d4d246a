// RestServer: the REST/JSON face of the control plane, on cpp-httplib.
//
// One route table drives both the routing and the OpenAPI document served at
// /openapi.json, so the document describes what the server really does. Each
// API request: request id, bearer token, per-token rate limit, then the
// request message from path, query or JSON body, Idempotency-Key handling for
// writes, the service call, and JSON out. Errors are
// {code, message, details, request_id}. Thread-safe.
#ifndef IDSYNC_DISPATCHER_API_REST_SERVER_H_
#define IDSYNC_DISPATCHER_API_REST_SERVER_H_

#include <memory>
#include <string>
#include <thread>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "connector/rate_limiter.h"
#include "dispatcher/api/control_plane_service.h"
#include "dispatcher/metrics.h"
#include "dispatcher/run_progress.h"
#include "nlohmann/json.hpp"

namespace httplib {
class Server;
}  // namespace httplib

namespace idsync {

struct RestServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see RestServer::port()).
  size_t max_body_bytes = 1 << 20;
  int threads = 32;  // Also bounds concurrent event streams.
  absl::Duration idempotency_stale_after = absl::Seconds(60);
  absl::Duration event_heartbeat = absl::Seconds(15);
  std::string version = "0.1.0";
};

class RestServer {
 public:
  // Everything passed must outlive the server.
  RestServer(ControlPlaneService& service, Store& store, RunProgress& progress,
             Metrics& metrics, RateLimiter& limiter, RestServerOptions options);
  ~RestServer();

  // Binds and starts serving on a background thread.
  absl::Status Start();
  void Stop();
  int port() const { return port_; }

  // The OpenAPI 3.0 document of this API.
  static nlohmann::json OpenApi(const std::string& version);

 private:
  class Handler;

  ControlPlaneService& service_;
  Store& store_;
  RunProgress& progress_;
  Metrics& metrics_;
  RateLimiter& limiter_;
  const RestServerOptions options_;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_API_REST_SERVER_H_
