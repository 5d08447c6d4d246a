// What the HTTP source connectors (rest, scim) share: the config keys of
// their HTTP client, and the run error for an HTTP error response.
#ifndef IDSYNC_CONNECTOR_HTTP_SOURCE_HTTP_H_
#define IDSYNC_CONNECTOR_HTTP_SOURCE_HTTP_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "connector/config.h"
#include "connector/http/http_client.h"
#include "connector/registry.h"

namespace idsync {

// Reads timeout_seconds, ca_file, max_attempts, max_response_bytes,
// rate_limit {requests, per_seconds, burst} and headers {name: value} from
// `r` (whose messages are prefixed `where`). Absent keys keep the defaults.
absl::Status ParseHttpSourceOptions(const ConfigReader& r,
                                    absl::string_view where,
                                    HttpClientOptions& http,
                                    HttpHeaders& headers);

// Puts an HTTP source under `access`: its client connects only where the
// address policy allows (checked at connect time), its ca_file is read now
// through the FileAccess, and each of `urls` (the configured ones; those a
// source sends back are caught at connect time) is checked now, so a refused
// host fails at create. Messages start with `where`.
absl::Status ConfineHttpSource(const SourceAccess& access,
                               absl::string_view where,
                               const std::vector<std::string>& urls,
                               HttpClientOptions& http);

// The keys ParseHttpSourceOptions reads, for CheckKnownKeys lists.
#define IDSYNC_HTTP_SOURCE_KEYS                                       \
  "timeout_seconds", "ca_file", "max_attempts", "max_response_bytes", \
      "rate_limit", "headers"

// The run error for a non-2xx response to `url` while reading `what`: 401
// kUnauthenticated, 403 kPermissionDenied, 429 and 5xx kUnavailable, other
// 4xx kFailedPrecondition. Names the URL without its query and the API's
// error code when the body has an identifier-like one; never other body
// text (it may quote what was sent).
absl::Status HttpResponseError(absl::string_view what, absl::string_view url,
                               const HttpResponse& response);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_HTTP_SOURCE_HTTP_H_
