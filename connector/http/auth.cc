#include "connector/http/auth.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "connector/config.h"
#include "connector/http/signing.h"
#include "connector/status_macros.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

constexpr absl::string_view kWhere = "auth_config";

// bearer, api_key, basic: the same headers on every request.
class StaticAuth : public Authenticator {
 public:
  explicit StaticAuth(HttpHeaders headers) : headers_(std::move(headers)) {}
  absl::Status Apply(HttpRequest& request) override {
    for (const auto& h : headers_) request.headers.push_back(h);
    return absl::OkStatus();
  }

 private:
  HttpHeaders headers_;
};

struct OAuth2Settings {
  std::string grant;  // "client_credentials" or "password".
  std::string token_url;
  std::string issuer;  // Discovery, when token_url is empty.
  std::string client_id, client_secret, username, password;
  std::string scope, audience;
  bool client_auth_basic = true;  // Else id and secret in the form body.
  absl::Duration refresh_skew = absl::Seconds(60);
};

struct CachedToken {
  std::string access_token;
  std::optional<absl::Time> expires_at;
};

// Tokens shared by every client with the same credentials, so a connector's
// runs (and its pages) reuse one token until it nears expiry.
struct TokenCache {
  absl::Mutex mu;
  absl::flat_hash_map<std::string, CachedToken> tokens ABSL_GUARDED_BY(mu);
};

TokenCache& Tokens() {
  static TokenCache* cache = new TokenCache;  // Never destroyed.
  return *cache;
}

// A short OAuth2 error code from a token endpoint's body, if it has one.
std::string OAuthErrorCode(absl::string_view body) {
  nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
  if (!j.is_object() || !j.contains("error") || !j["error"].is_string()) {
    return "";
  }
  std::string code = j["error"].get<std::string>();
  const bool plain =
      code.size() <= 40 && std::all_of(code.begin(), code.end(), [](char c) {
        return absl::ascii_islower(c) || c == '_';
      });
  return plain ? code : "";
}

class OAuth2Auth : public Authenticator {
 public:
  OAuth2Auth(OAuth2Settings s, HttpClient& client)
      : s_(std::move(s)), client_(client) {
    cache_key_ = Sha256Hex(absl::StrJoin(
        {s_.grant, s_.token_url, s_.issuer, s_.client_id, s_.client_secret,
         s_.username, s_.password, s_.scope, s_.audience},
        std::string(1, '\0')));
  }

  absl::Status Apply(HttpRequest& request) override {
    IDSYNC_ASSIGN_OR_RETURN(std::string token, Token());
    request.headers.emplace_back("Authorization",
                                 absl::StrCat("Bearer ", token));
    return absl::OkStatus();
  }

  absl::StatusOr<bool> Refresh() override {
    {
      TokenCache& cache = Tokens();
      absl::MutexLock lock(&cache.mu);
      cache.tokens.erase(cache_key_);
    }
    IDSYNC_RETURN_IF_ERROR(Fetch().status());
    return true;
  }

 private:
  absl::StatusOr<std::string> Token() {
    const absl::Time now = client_.options().clock->Now();
    {
      TokenCache& cache = Tokens();
      absl::MutexLock lock(&cache.mu);
      auto it = cache.tokens.find(cache_key_);
      if (it != cache.tokens.end() && (!it->second.expires_at.has_value() ||
                                       now < *it->second.expires_at)) {
        return it->second.access_token;
      }
    }
    return Fetch();
  }

  absl::StatusOr<std::string> TokenUrl() {
    if (!s_.token_url.empty()) return s_.token_url;
    std::string issuer(absl::StripSuffix(s_.issuer, "/"));
    const std::string url =
        absl::StrCat(issuer, "/.well-known/openid-configuration");
    HttpRequest req;
    req.url = url;
    req.headers.emplace_back("Accept", "application/json");
    IDSYNC_ASSIGN_OR_RETURN(HttpResponse r, client_.Send(req));
    if (r.status != 200) {
      return absl::UnavailableError(absl::StrCat(
          "OIDC discovery at ", RedactUrl(url), " answered HTTP ", r.status));
    }
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j.contains("token_endpoint") ||
        !j["token_endpoint"].is_string()) {
      return absl::FailedPreconditionError(
          absl::StrCat("OIDC discovery document at ", RedactUrl(url),
                       " has no token_endpoint"));
    }
    // OIDC Discovery 1.0 section 4.3: the issuer must match, or the document
    // may point our client secret at someone else's token endpoint.
    if (!j.contains("issuer") || !j["issuer"].is_string() ||
        absl::StripSuffix(j["issuer"].get<std::string>(), "/") != issuer) {
      return absl::FailedPreconditionError(
          absl::StrCat("OIDC discovery document at ", RedactUrl(url),
                       " names a different issuer"));
    }
    std::string endpoint = j["token_endpoint"].get<std::string>();
    if (!absl::StartsWith(endpoint, "https://") &&
        !(absl::StartsWith(endpoint, "http://") &&
          absl::StartsWith(issuer, "http://"))) {
      return absl::FailedPreconditionError(
          absl::StrCat("OIDC discovery at ", RedactUrl(url),
                       " gave a token_endpoint that is not https"));
    }
    s_.token_url = std::move(endpoint);  // Discover once per client.
    return s_.token_url;
  }

  absl::StatusOr<std::string> Fetch() {
    IDSYNC_ASSIGN_OR_RETURN(std::string url, TokenUrl());
    std::vector<std::string> form = {absl::StrCat("grant_type=", s_.grant)};
    if (s_.grant == "password") {
      form.push_back(absl::StrCat("username=", UrlEncode(s_.username)));
      form.push_back(absl::StrCat("password=", UrlEncode(s_.password)));
    }
    if (!s_.scope.empty()) {
      form.push_back(absl::StrCat("scope=", UrlEncode(s_.scope)));
    }
    if (!s_.audience.empty()) {
      form.push_back(absl::StrCat("audience=", UrlEncode(s_.audience)));
    }
    HttpRequest req;
    req.method = "POST";
    req.url = url;
    req.headers.emplace_back("Content-Type",
                             "application/x-www-form-urlencoded");
    req.headers.emplace_back("Accept", "application/json");
    if (s_.client_auth_basic && !s_.client_secret.empty()) {
      // RFC 6749 2.3.1: id and secret are form-encoded before Basic.
      req.headers.emplace_back(
          "Authorization",
          absl::StrCat("Basic ", absl::Base64Escape(absl::StrCat(
                                     UrlEncode(s_.client_id), ":",
                                     UrlEncode(s_.client_secret)))));
    } else {
      form.push_back(absl::StrCat("client_id=", UrlEncode(s_.client_id)));
      if (!s_.client_secret.empty()) {
        form.push_back(
            absl::StrCat("client_secret=", UrlEncode(s_.client_secret)));
      }
    }
    req.body = absl::StrJoin(form, "&");
    const absl::Time asked_at = client_.options().clock->Now();
    IDSYNC_ASSIGN_OR_RETURN(HttpResponse r, client_.Send(req));
    if (r.status != 200) {
      const std::string code = OAuthErrorCode(r.body);
      const std::string what = absl::StrCat(
          "OAuth2 token request to ", RedactUrl(url), " failed with HTTP ",
          r.status, code.empty() ? "" : absl::StrCat(" (", code, ")"));
      // Rejected credentials do not get better by retrying.
      if (r.status == 400 || r.status == 401 || r.status == 403) {
        return absl::UnauthenticatedError(what);
      }
      return absl::UnavailableError(what);
    }
    nlohmann::json j = nlohmann::json::parse(r.body, nullptr, false);
    if (!j.is_object() || !j.contains("access_token") ||
        !j["access_token"].is_string() ||
        j["access_token"].get_ref<const std::string&>().empty()) {
      return absl::UnavailableError(absl::StrCat("OAuth2 token response from ",
                                                 RedactUrl(url),
                                                 " has no access_token"));
    }
    CachedToken t;
    t.access_token = j["access_token"].get<std::string>();
    if (j.contains("expires_in")) {
      int64_t seconds = -1;
      const nlohmann::json& e = j["expires_in"];
      if (e.is_number_integer()) seconds = e.get<int64_t>();
      if (e.is_string()) (void)absl::SimpleAtoi(e.get<std::string>(), &seconds);
      if (seconds > 0) {
        // Refresh early, but never in less than half the token's life.
        const absl::Duration life = absl::Seconds(seconds);
        t.expires_at = asked_at + life - std::min(s_.refresh_skew, life / 2);
      }
    }
    TokenCache& cache = Tokens();
    absl::MutexLock lock(&cache.mu);
    cache.tokens[cache_key_] = t;
    return t.access_token;
  }

  OAuth2Settings s_;
  HttpClient& client_;
  std::string cache_key_;
};

// HMAC-SHA256 request signing around another mode. The signed string is
//   METHOD "\n" path?query "\n" unix-seconds "\n" hex(SHA-256(body))
// sent as <signature_header>: <prefix><base64(HMAC)>, with the time in
// <timestamp_header>.
class HmacSigner : public Authenticator {
 public:
  HmacSigner(std::unique_ptr<Authenticator> inner, std::string secret,
             std::string signature_header, std::string timestamp_header,
             std::string prefix, Clock& clock)
      : inner_(std::move(inner)),
        secret_(std::move(secret)),
        signature_header_(std::move(signature_header)),
        timestamp_header_(std::move(timestamp_header)),
        prefix_(std::move(prefix)),
        clock_(clock) {}

  absl::Status Apply(HttpRequest& request) override {
    IDSYNC_RETURN_IF_ERROR(inner_->Apply(request));
    const std::string ts = absl::StrCat(absl::ToUnixSeconds(clock_.Now()));
    const std::string canonical =
        absl::StrCat(request.method, "\n", PathAndQuery(request.url), "\n", ts,
                     "\n", Sha256Hex(request.body));
    request.headers.emplace_back(timestamp_header_, ts);
    request.headers.emplace_back(
        signature_header_, absl::StrCat(prefix_, absl::Base64Escape(HmacSha256(
                                                     secret_, canonical))));
    return absl::OkStatus();
  }
  absl::StatusOr<bool> Refresh() override { return inner_->Refresh(); }

  // What curl puts on the request line: the path (at least "/") and query.
  static std::string PathAndQuery(absl::string_view url) {
    url = url.substr(0, url.find('#'));
    const size_t scheme = url.find("://");
    const size_t at = url.find_first_of(
        "/?", scheme == absl::string_view::npos ? 0 : scheme + 3);
    if (at == absl::string_view::npos) return "/";
    return absl::StrCat(url[at] == '?' ? "/" : "", url.substr(at));
  }

 private:
  std::unique_ptr<Authenticator> inner_;
  const std::string secret_, signature_header_, timestamp_header_, prefix_;
  Clock& clock_;
};

absl::StatusOr<HttpHeaders> ExtraHeaders(const ConfigReader& r) {
  HttpHeaders out;
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* extra,
                          r.Object("extra_headers"));
  if (extra == nullptr) return out;
  ConfigReader er(*extra, absl::StrCat(kWhere, ".extra_headers"));
  for (const auto& [name, unused] : extra->fields()) {
    IDSYNC_ASSIGN_OR_RETURN(std::string value, er.RequiredString(name));
    out.emplace_back(name, std::move(value));
  }
  std::sort(out.begin(), out.end());  // Map order is unspecified.
  return out;
}

absl::StatusOr<std::unique_ptr<Authenticator>> CreateBase(
    const google::protobuf::Struct& auth_config, const ConfigReader& r,
    HttpClient& client) {
  IDSYNC_ASSIGN_OR_RETURN(std::string type, r.String("type", "none"));
  if (type == "none") {
    IDSYNC_RETURN_IF_ERROR(r.CheckKnownKeys({"type", "hmac"}));
    return std::make_unique<StaticAuth>(HttpHeaders{});
  }
  if (type == "bearer") {
    IDSYNC_RETURN_IF_ERROR(
        r.CheckKnownKeys({"type", "token", "header", "scheme", "hmac"}));
    IDSYNC_ASSIGN_OR_RETURN(std::string token, r.RequiredString("token"));
    IDSYNC_ASSIGN_OR_RETURN(std::string header,
                            r.String("header", "Authorization"));
    IDSYNC_ASSIGN_OR_RETURN(std::string scheme, r.String("scheme", "Bearer"));
    return std::make_unique<StaticAuth>(HttpHeaders{
        {header, scheme.empty() ? token : absl::StrCat(scheme, " ", token)}});
  }
  if (type == "api_key") {
    IDSYNC_RETURN_IF_ERROR(
        r.CheckKnownKeys({"type", "header", "key", "extra_headers", "hmac"}));
    IDSYNC_ASSIGN_OR_RETURN(std::string header, r.RequiredString("header"));
    IDSYNC_ASSIGN_OR_RETURN(std::string key, r.RequiredString("key"));
    IDSYNC_ASSIGN_OR_RETURN(HttpHeaders headers, ExtraHeaders(r));
    headers.emplace_back(std::move(header), std::move(key));
    return std::make_unique<StaticAuth>(std::move(headers));
  }
  if (type == "basic") {
    IDSYNC_RETURN_IF_ERROR(
        r.CheckKnownKeys({"type", "username", "password", "hmac"}));
    IDSYNC_ASSIGN_OR_RETURN(std::string user, r.RequiredString("username"));
    IDSYNC_ASSIGN_OR_RETURN(std::string password, r.RequiredString("password"));
    return std::make_unique<StaticAuth>(HttpHeaders{
        {"Authorization",
         absl::StrCat("Basic ",
                      absl::Base64Escape(absl::StrCat(user, ":", password)))}});
  }
  if (type == "oauth2_client_credentials" || type == "oauth2_password") {
    const bool password_grant = type == "oauth2_password";
    IDSYNC_RETURN_IF_ERROR(r.CheckKnownKeys(
        {"type", "token_url", "issuer", "client_id", "client_secret",
         "username", "password", "scope", "audience", "client_auth",
         "refresh_skew_seconds", "hmac"}));
    OAuth2Settings s;
    s.grant = password_grant ? "password" : "client_credentials";
    IDSYNC_ASSIGN_OR_RETURN(s.token_url, r.String("token_url", ""));
    IDSYNC_ASSIGN_OR_RETURN(s.issuer, r.String("issuer", ""));
    if (s.token_url.empty() == s.issuer.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          kWhere, ": give exactly one of 'token_url' and 'issuer'"));
    }
    for (const std::string* url : {&s.token_url, &s.issuer}) {
      if (!url->empty() && !absl::StartsWith(*url, "https://") &&
          !absl::StartsWith(*url, "http://")) {
        return absl::InvalidArgumentError(absl::StrCat(
            kWhere, ": '", url == &s.issuer ? "issuer" : "token_url",
            "' must be an http(s) URL"));
      }
    }
    IDSYNC_ASSIGN_OR_RETURN(s.client_id, r.RequiredString("client_id"));
    if (password_grant) {
      IDSYNC_ASSIGN_OR_RETURN(s.client_secret, r.String("client_secret", ""));
      IDSYNC_ASSIGN_OR_RETURN(s.username, r.RequiredString("username"));
      IDSYNC_ASSIGN_OR_RETURN(s.password, r.RequiredString("password"));
    } else {
      IDSYNC_ASSIGN_OR_RETURN(s.client_secret,
                              r.RequiredString("client_secret"));
    }
    IDSYNC_ASSIGN_OR_RETURN(s.scope, r.String("scope", ""));
    IDSYNC_ASSIGN_OR_RETURN(s.audience, r.String("audience", ""));
    IDSYNC_ASSIGN_OR_RETURN(
        std::string client_auth,
        r.String("client_auth", password_grant ? "post" : "basic"));
    if (client_auth != "basic" && client_auth != "post") {
      return absl::InvalidArgumentError(absl::StrCat(
          kWhere, ": 'client_auth' must be \"basic\" or \"post\""));
    }
    s.client_auth_basic = client_auth == "basic";
    IDSYNC_ASSIGN_OR_RETURN(int64_t skew,
                            r.Int("refresh_skew_seconds", 60, 0, 3600));
    s.refresh_skew = absl::Seconds(skew);
    return std::make_unique<OAuth2Auth>(std::move(s), client);
  }
  (void)auth_config;
  return absl::InvalidArgumentError(
      absl::StrCat(kWhere,
                   ": 'type' must be one of none, bearer, api_key, basic, "
                   "oauth2_client_credentials, oauth2_password"));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Authenticator>> CreateAuthenticator(
    const google::protobuf::Struct& auth_config, HttpClient& client) {
  ConfigReader r(auth_config, std::string(kWhere));
  IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<Authenticator> base,
                          CreateBase(auth_config, r, client));
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* hmac,
                          r.Object("hmac"));
  if (hmac == nullptr) return base;
  ConfigReader h(*hmac, absl::StrCat(kWhere, ".hmac"));
  IDSYNC_RETURN_IF_ERROR(h.CheckKnownKeys(
      {"secret", "signature_header", "timestamp_header", "prefix"}));
  IDSYNC_ASSIGN_OR_RETURN(std::string secret, h.RequiredString("secret"));
  IDSYNC_ASSIGN_OR_RETURN(std::string sig,
                          h.String("signature_header", "x-signature"));
  IDSYNC_ASSIGN_OR_RETURN(std::string ts,
                          h.String("timestamp_header", "x-timestamp"));
  IDSYNC_ASSIGN_OR_RETURN(std::string prefix, h.String("prefix", "v1="));
  return std::make_unique<HmacSigner>(
      std::move(base), std::move(secret), std::move(sig), std::move(ts),
      std::move(prefix), *client.options().clock);
}

AuthorizedClient::AuthorizedClient(std::unique_ptr<HttpClient> client,
                                   std::unique_ptr<Authenticator> auth)
    : client_(std::move(client)), auth_(std::move(auth)) {}

absl::StatusOr<HttpResponse> AuthorizedClient::Send(HttpRequest request) {
  HttpRequest signed_request = request;
  IDSYNC_RETURN_IF_ERROR(auth_->Apply(signed_request));
  IDSYNC_ASSIGN_OR_RETURN(HttpResponse r, client_->Send(signed_request));
  if (r.status != 401) return r;
  IDSYNC_ASSIGN_OR_RETURN(bool refreshed, auth_->Refresh());
  if (!refreshed) return r;
  IDSYNC_RETURN_IF_ERROR(auth_->Apply(request));
  return client_->Send(request);
}

absl::StatusOr<std::unique_ptr<AuthorizedClient>> CreateAuthorizedClient(
    HttpClientOptions options, const google::protobuf::Struct& auth_config) {
  IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<HttpClient> client,
                          HttpClient::Create(std::move(options)));
  IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<Authenticator> auth,
                          CreateAuthenticator(auth_config, *client));
  return std::make_unique<AuthorizedClient>(std::move(client), std::move(auth));
}

void ClearOAuth2TokenCache() {
  TokenCache& cache = Tokens();
  absl::MutexLock lock(&cache.mu);
  cache.tokens.clear();
}

std::vector<std::string> AuthUrls(const google::protobuf::Struct& auth_config) {
  std::vector<std::string> urls;
  for (const char* key : {"token_url", "issuer"}) {
    auto it = auth_config.fields().find(key);
    if (it != auth_config.fields().end() && it->second.has_string_value() &&
        !it->second.string_value().empty()) {
      urls.push_back(it->second.string_value());
    }
  }
  return urls;
}

}  // namespace idsync
