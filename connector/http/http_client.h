// HttpClient: the one HTTP client (libcurl) for every connector and for
// delivery. One instance keeps one connection cache, so consecutive requests
// to a host reuse the connection. TLS peers are always verified (the system
// trust store or `ca_file`); redirects are never followed; proxies come from
// the usual environment variables (https_proxy, no_proxy, ...), which libcurl
// reads itself (not under a restricting address_policy). Thread-safe:
// requests on one client are serialized.
#ifndef IDSYNC_CONNECTOR_HTTP_HTTP_CLIENT_H_
#define IDSYNC_CONNECTOR_HTTP_HTTP_CLIENT_H_

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "connector/clock.h"
#include "connector/http/address_policy.h"
#include "connector/rate_limiter.h"

namespace idsync {

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "GET";
  std::string url;
  HttpHeaders headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  HttpHeaders headers;  // Names lower-cased, in arrival order.
  std::string body;
  // The first header named `name` (case-insensitive).
  std::optional<std::string> Header(absl::string_view name) const;
};

struct HttpClientOptions {
  absl::Duration timeout = absl::Seconds(30);  // Whole request.
  absl::Duration connect_timeout = absl::Seconds(10);
  std::string ca_file;  // PEM bundle; empty: the system trust store.
  // A PEM bundle's contents, used instead of ca_file when set (a file read
  // through a connector's FileAccess).
  std::string ca_pem;
  size_t max_response_bytes = size_t{64} << 20;  // Decoded body.
  // Send(): attempts per request, and the backoff between them.
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Milliseconds(500);
  absl::Duration max_backoff = absl::Seconds(30);
  // A Retry-After longer than this is not waited out: the response is
  // returned to the caller instead.
  absl::Duration max_retry_after = absl::Minutes(5);
  // Client-side rate limit (token bucket); 0 disables it.
  double requests_per_second = 0;
  double burst = 1;
  std::string user_agent = "idsync/1";
  Clock* clock = &Clock::Real();  // Waits and Retry-After dates.
  // Where connections may go, checked on the address libcurl is about to
  // connect to, so DNS rebinding cannot get around it; a refused connection
  // is kPermissionDenied. nullptr or Any(): anywhere. Under a restricting
  // policy proxies are not used (environment variables included): through a
  // proxy the check would see only the proxy's address, never the target's.
  std::shared_ptr<const AddressPolicy> address_policy;
};

class HttpClient {
 public:
  static absl::StatusOr<std::unique_ptr<HttpClient>> Create(
      HttpClientOptions options);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // One attempt. Every HTTP status is a response; transport failures are
  // kUnavailable (connect, reset), kDeadlineExceeded (timeout),
  // kFailedPrecondition (TLS verification), kResourceExhausted (body over
  // the bound), kInvalidArgument (bad URL) or kPermissionDenied (a
  // an address the address_policy refuses). Messages name
  // the URL without its query or user info, which may hold secrets.
  absl::StatusOr<HttpResponse> SendOnce(const HttpRequest& request);

  // SendOnce with retries for transient failures (kUnavailable,
  // kDeadlineExceeded; 408, 429, 500, 502, 503, 504): exponential backoff
  // with jitter, or the server's Retry-After on 429/503 when it is given.
  // Returns the last response (possibly still an error status) or the last
  // transport error. For requests that are safe to repeat.
  absl::StatusOr<HttpResponse> Send(const HttpRequest& request);

  const HttpClientOptions& options() const { return options_; }
  // Attempts made by Send/SendOnce so far (tests, metrics).
  int64_t attempts() const;

 private:
  struct Impl;
  HttpClient(HttpClientOptions options, std::unique_ptr<Impl> impl);
  absl::Duration Backoff(int attempt);

  const HttpClientOptions options_;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<RateLimiter> limiter_;
};

// `url` without user info, query or fragment: safe for messages and logs.
std::string RedactUrl(absl::string_view url);

// The wait a Retry-After value asks for (delta-seconds or an HTTP-date),
// relative to `now`; nullopt when it is absent or unparseable.
std::optional<absl::Duration> ParseRetryAfter(absl::string_view value,
                                              absl::Time now);

// Percent-encodes `text` for a query component (RFC 3986 unreserved kept).
std::string UrlEncode(absl::string_view text);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_HTTP_HTTP_CLIENT_H_
