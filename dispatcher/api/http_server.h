// HttpServer: an event-driven HTTP/1.1 server (Boost.Beast on Asio) in which
// a connection costs memory, never a thread.
//
// A few I/O threads read and write every connection asynchronously; complete
// requests go to a bounded pool of worker threads that run the handler (which
// may block, e.g. on the store). So a client that sends its header one byte a
// second, never reads its answer, or holds an event stream open, holds no
// worker, and /health answers while thousands of them are connected.
//
// What it refuses, each with a JSON error and the connection closed:
//  - a header that has not arrived `header_timeout` after its first byte, a
//    body not read within `body_timeout` (both totals, not idle times);
//  - more than `max_connections_per_address` connections from one address or
//    `max_connections` in all (503 at accept);
//  - malformed HTTP: a header line without a colon, conflicting or non-numeric
//    Content-Length, bare LF line ends, bad versions or targets (400);
//  - a header over `max_header_bytes` (431), a body over its limit (413);
//  - more queued requests than `max_queued` (503, Retry-After).
// Thread-safe; Start once, Stop once (the destructor stops).
#ifndef IDSYNC_DISPATCHER_API_HTTP_SERVER_H_
#define IDSYNC_DISPATCHER_API_HTTP_SERVER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "connector/file_access.h"

namespace idsync {

using HttpFields = std::vector<std::pair<std::string, std::string>>;

struct HttpServerRequest {
  std::string method;       // As sent ("GET"); HEAD is answered like GET.
  std::string path;         // The target's path, percent-decoding not applied.
  HttpFields query;         // Decoded name/value pairs, in order.
  HttpFields headers;       // Names lower-cased, in arrival order.
  std::string body;         // In-memory bodies (BodyPlan::kMemory).
  std::string peer;         // The client's address ("127.0.0.1").
  uint64_t body_bytes = 0;  // The body's size, in memory or in a file.
  // kFile bodies: what BodyPlan::admit returned with the file.
  std::shared_ptr<void> context;

  // The first header named `name` (lower case), or "".
  absl::string_view Header(absl::string_view name) const;
  bool HasHeader(absl::string_view name) const;
  // How many headers are named `name` (lower case).
  int HeaderCount(absl::string_view name) const;
};

// An event stream's source (Server-Sent Events): polled on a worker thread
// whenever it wakes itself or `interval()` has passed.
class HttpEventStream {
 public:
  virtual ~HttpEventStream() = default;
  // Appends to `*out` what to send now (possibly nothing). false ends the
  // stream after `*out` is sent.
  virtual bool Poll(std::string* out) = 0;
  // The longest wait between polls (heartbeats, state the stream must look
  // up itself).
  virtual absl::Duration interval() const = 0;
  // `wake`, callable from any thread while the stream lives, makes the
  // server poll soon. Called once, before the first Poll.
  virtual void SetWaker(std::function<void()> wake) {}
};

struct HttpServerResponse {
  int status = 200;
  HttpFields headers;  // Content-Type among them.
  std::string body;
  bool close = false;  // Close the connection after this response.
  // When set, the response is an endless chunked body fed by the stream
  // (`body` is ignored); the connection closes when it ends.
  std::shared_ptr<HttpEventStream> stream;
};

// What BodyPlan::admit decides before a file body is read.
struct Admission {
  // Sent instead of reading the body (the connection then closes).
  std::optional<HttpServerResponse> refuse;
  // Otherwise: where the body goes (the server writes it and closes this
  // descriptor), and what the handler gets with the request.
  UniqueFd file;
  std::shared_ptr<void> context;
};

// How to take a request's body, decided from its header.
struct BodyPlan {
  enum Kind { kMemory, kFile };
  Kind kind = kMemory;
  uint64_t limit = 0;  // Bytes; a larger declared or sent body is a 413.
  // kFile: the longest pause between two reads of the body (a large upload
  // may take long in all, but must keep moving).
  absl::Duration idle_timeout = absl::Seconds(30);
  // kFile (required): runs on a worker before any body byte is read, e.g.
  // to check the caller's token and open the file the body goes to.
  std::function<Admission(const HttpServerRequest&)> admit;
  // Sent instead of reading the body, right away (the connection closes).
  std::optional<HttpServerResponse> reject;
};

class HttpHandler {
 public:
  virtual ~HttpHandler() = default;
  // On an I/O thread, after the header: how to read the body. Must not
  // block.
  virtual BodyPlan PlanBody(const HttpServerRequest& header) = 0;
  // On a worker thread, with the whole request.
  virtual HttpServerResponse Handle(HttpServerRequest& request) = 0;
  // A response the server makes itself (malformed request, limits): the
  // handler formats it (e.g. as its JSON error). On any thread; must not
  // block. `request` has what was parsed, maybe nothing.
  virtual HttpServerResponse Refusal(int status, absl::string_view message,
                                     const HttpServerRequest& request) = 0;
  // Every response sent, for metrics and logs. Any thread; must not block.
  virtual void Sent(const HttpServerRequest& request, int status) {}
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (see HttpServer::port()).
  int io_threads = 2;
  int worker_threads = 16;
  size_t max_queued = 4096;
  size_t max_header_bytes = 16 << 10;
  // The body limit of ordinary requests (a handler's PlanBody may choose
  // another, e.g. for uploads).
  uint64_t max_body_bytes = 1 << 20;
  absl::Duration header_timeout = absl::Seconds(10);
  absl::Duration body_timeout = absl::Seconds(30);
  // Wait for the first byte of a request (keep-alive connections too).
  absl::Duration idle_timeout = absl::Seconds(60);
  // A response (or one event) that the client does not take in this long
  // ends the connection.
  absl::Duration write_timeout = absl::Seconds(30);
  int max_connections = 10000;
  int max_connections_per_address = 128;
};

// Counters, for /metrics.
struct HttpServerStats {
  int64_t connections_open = 0;
  int64_t connections_refused = 0;  // Over a connection limit.
  int64_t timeouts = 0;             // Header, body, idle or write.
  int64_t malformed = 0;            // 400, 413, 431 by the server itself.
  int64_t overloaded = 0;           // 503: the worker queue was full.
  int64_t streams_open = 0;
};

class HttpServer {
 public:
  // `handler` must outlive the server.
  HttpServer(HttpHandler& handler, HttpServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds (exclusively: no SO_REUSEPORT) and starts serving. kUnavailable
  // when the address cannot be bound.
  absl::Status Start();
  // Closes the listener and every connection; waits for the threads.
  void Stop();
  int port() const;
  HttpServerStats stats() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_API_HTTP_SERVER_H_
