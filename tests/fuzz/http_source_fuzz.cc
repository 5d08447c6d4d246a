// Fuzzes what the HTTP source connectors (scim, rest) and their auth modes
// parse without a network: each input is tried as
//  - a "scim" connector config (CreateScimConnector),
//  - an auth_config (CreateAuthenticator; Apply for the modes that need no
//    token endpoint: none, bearer, api_key, basic, each with hmac),
//  - an error response body (HttpResponseError: the SCIM scimType / OAuth2
//    error code it quotes),
//  - a Retry-After value (ParseRetryAfter) and a URL (RedactUrl, UrlEncode).
// The SCIM resource mapping (User/Group -> records) and the OAuth2 token and
// discovery responses are parsed inside the connectors' private members
// right after HttpClient::Send; there is no pure function to reach them.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "connector/http/auth.h"
#include "connector/http/http_client.h"
#include "connector/http/source_http.h"
#include "connector/scim/scim_connector.h"
#include "google/protobuf/util/json_util.h"
#include "tests/fuzz/fuzz_util.h"

namespace idsync {
namespace {

using fuzz::Check;

HttpClient& Client() {
  static HttpClient* client = [] {
    auto c = HttpClient::Create(HttpClientOptions{});
    Check(c.ok(), "HttpClient::Create failed");
    return c->release();
  }();
  return *client;
}

void FuzzConfigs(const std::string& text) {
  ConnectorSpec spec;
  if (!google::protobuf::util::JsonStringToMessage(text, &spec.config).ok()) {
    return;
  }
  auto scim = CreateScimConnector(spec);
  if (scim.ok()) Check((*scim)->Describe().ok(), "scim Describe failed");

  const google::protobuf::Struct& auth_config = spec.config;
  auto auth = CreateAuthenticator(auth_config, Client());
  if (!auth.ok()) return;
  auto type = auth_config.fields().find("type");
  if (type != auth_config.fields().end() &&
      absl::StartsWith(type->second.string_value(), "oauth2")) {
    return;  // Apply would fetch a token.
  }
  HttpRequest request;
  request.method = "POST";
  request.url = "https://api.example.com/v1/users?page=2#frag";
  request.body = text;
  Check((*auth)->Apply(request).ok(), "static credentials failed to apply");
  absl::StatusOr<bool> refreshed = (*auth)->Refresh();
  Check(refreshed.ok() && !*refreshed, "static credentials refreshed");
}

void FuzzResponse(absl::string_view bytes) {
  static constexpr int kStatuses[] = {400, 401, 403, 404, 409, 429, 500, 503};
  HttpResponse response;
  response.status = kStatuses[bytes.size() % 8];
  response.body = std::string(bytes);
  // '~' cannot be in a quoted error code, so these can only come from the
  // URL.
  const absl::Status error = HttpResponseError(
      "scim", "https://user:hunt~er2@scim.example.com/Users?secret=s3cr~3t",
      response);
  Check(!error.ok(), "an error response mapped to OK");
  Check(!absl::StrContains(error.message(), "s3cr~3t") &&
            !absl::StrContains(error.message(), "hunt~er2"),
        "an error message quotes the URL's query or user info");
}

void FuzzHeaderAndUrl(absl::string_view bytes) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  std::optional<absl::Duration> wait = ParseRetryAfter(bytes, now);
  Check(!wait.has_value() || *wait >= absl::ZeroDuration(),
        "a negative Retry-After wait");
  const std::string redacted = RedactUrl(bytes);
  Check(redacted.find_first_of("?#") == std::string::npos,
        "RedactUrl kept a query or fragment");
  const std::string encoded = UrlEncode(bytes);
  Check(encoded.size() >= bytes.size(), "UrlEncode lost bytes");
}

}  // namespace
}  // namespace idsync

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  idsync::FuzzConfigs(std::string(bytes));
  idsync::FuzzResponse(bytes);
  idsync::FuzzHeaderAndUrl(bytes);
  return 0;
}
