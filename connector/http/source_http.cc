#include "connector/http/source_http.h"

#include <algorithm>
#include <cstdint>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "connector/status_macros.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

// A short machine-readable code from a JSON error body (OAuth2 `error`,
// SCIM `scimType`, `code`, `error.code`).
std::string ErrorCode(absl::string_view body) {
  using json = nlohmann::json;
  json j = json::parse(body, nullptr, false);
  if (!j.is_object()) return "";
  for (const char* ptr : {"/code", "/error/code", "/error", "/scimType"}) {
    const json::json_pointer p(ptr);
    if (!j.contains(p)) continue;
    const json& v = j.at(p);
    if (!(v.is_string() || v.is_number_integer())) continue;
    std::string code = v.is_string() ? v.get<std::string>() : v.dump();
    if (!code.empty() && code.size() <= 40 &&
        std::all_of(code.begin(), code.end(), [](char c) {
          return absl::ascii_isalnum(c) || c == '_' || c == '-' || c == '.';
        })) {
      return code;
    }
  }
  return "";
}

}  // namespace

absl::Status ParseHttpSourceOptions(const ConfigReader& r,
                                    absl::string_view where,
                                    HttpClientOptions& http,
                                    HttpHeaders& headers) {
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* h,
                          r.Object("headers"));
  if (h != nullptr) {
    ConfigReader hr(*h, absl::StrCat(where, ".headers"));
    for (const auto& [name, unused] : h->fields()) {
      IDSYNC_ASSIGN_OR_RETURN(std::string value, hr.RequiredString(name));
      headers.emplace_back(name, std::move(value));
    }
    std::sort(headers.begin(), headers.end());  // Map order is unspecified.
  }
  IDSYNC_ASSIGN_OR_RETURN(int64_t timeout,
                          r.Int("timeout_seconds", 30, 1, 3600));
  http.timeout = absl::Seconds(timeout);
  http.connect_timeout = std::min(http.timeout, absl::Seconds(10));
  IDSYNC_ASSIGN_OR_RETURN(http.ca_file, r.String("ca_file", ""));
  IDSYNC_ASSIGN_OR_RETURN(int64_t attempts, r.Int("max_attempts", 5, 1, 20));
  http.max_attempts = static_cast<int>(attempts);
  IDSYNC_ASSIGN_OR_RETURN(
      int64_t max_bytes,
      r.Int("max_response_bytes", 64 << 20, 1024, int64_t{1} << 30));
  http.max_response_bytes = static_cast<size_t>(max_bytes);
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* rate,
                          r.Object("rate_limit"));
  if (rate != nullptr) {
    const std::string rw = absl::StrCat(where, ".rate_limit");
    ConfigReader rr(*rate, rw);
    IDSYNC_RETURN_IF_ERROR(
        rr.CheckKnownKeys({"requests", "per_seconds", "burst"}));
    if (!rr.Has("requests")) {
      return absl::InvalidArgumentError(
          absl::StrCat(rw, ": 'requests' is required"));
    }
    IDSYNC_ASSIGN_OR_RETURN(int64_t requests,
                            rr.Int("requests", 1, 1, 1000000));
    IDSYNC_ASSIGN_OR_RETURN(int64_t per, rr.Int("per_seconds", 1, 1, 86400));
    IDSYNC_ASSIGN_OR_RETURN(int64_t burst, rr.Int("burst", 1, 1, 1000000));
    http.requests_per_second =
        static_cast<double>(requests) / static_cast<double>(per);
    http.burst = static_cast<double>(burst);
  }
  return absl::OkStatus();
}

absl::Status ConfineHttpSource(const SourceAccess& access,
                               absl::string_view where,
                               const std::vector<std::string>& urls,
                               HttpClientOptions& http) {
  http.address_policy = access.addresses;
  if (!http.ca_file.empty()) {
    IDSYNC_ASSIGN_OR_RETURN(
        http.ca_pem, ReadWholeFile(*access.files, http.ca_file,
                                   absl::StrCat(where, " ca_file"), 4 << 20));
    http.ca_file.clear();
  }
  if (access.addresses->any()) return absl::OkStatus();
  for (const std::string& url : urls) {
    // Messages name the host, never what it resolves to.
    IDSYNC_RETURN_IF_ERROR(CheckTargetUrl(url, *access.addresses,
                                          absl::StrCat(where, " URL"),
                                          /*name_address=*/false));
  }
  return absl::OkStatus();
}

absl::Status HttpResponseError(absl::string_view what, absl::string_view url,
                               const HttpResponse& r) {
  const std::string code = ErrorCode(r.body);
  const std::string message =
      absl::StrCat(what, ": HTTP ", r.status, " from ", RedactUrl(url),
                   code.empty() ? "" : absl::StrCat(" (", code, ")"));
  switch (r.status) {
    case 401:
      return absl::UnauthenticatedError(
          absl::StrCat(message, ": the source rejected the credentials"));
    case 403:
      return absl::PermissionDeniedError(
          absl::StrCat(message, ": the credentials lack access"));
    case 404:
      return absl::FailedPreconditionError(
          absl::StrCat(message, ": check the URL"));
    case 429:
      return absl::UnavailableError(
          absl::StrCat(message, ": still rate limited after retries"));
    default:
      break;
  }
  if (r.status >= 500) return absl::UnavailableError(message);
  return absl::FailedPreconditionError(message);
}

}  // namespace idsync
