// Source authentication against a real in-process server that checks what
// it receives: static credentials, HMAC signatures (recomputed here with
// OpenSSL from the documented canonical string), and OAuth2 against a token
// endpoint written in the test. Time is a FakeClock.
#include "connector/http/auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/substitute.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/connector/http/test_server.h"
#include "tests/testing/fake_clock.h"

namespace idsync {
namespace {

using ::idsync::testing::FakeClock;
using ::idsync::testing::SeenRequest;
using ::idsync::testing::TestServer;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Key;
using ::testing::Not;
using ::testing::SizeIs;

// Secrets carry "SECRET" so leak checks can look for it; the characters
// that need encoding check that they are encoded.
constexpr char kSecret[] = "SECRET s3cr:t&+/";
constexpr char kToken[] = "/oauth/token";
constexpr char kApi[] = "/api/users";
constexpr char kDiscovery[] = "/.well-known/openid-configuration";

google::protobuf::Struct Json(const std::string& text) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &s).ok())
      << text;
  return s;
}

std::string PercentDecode(absl::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    int hex = 0;
    if (s[i] == '%' && i + 2 < s.size() &&
        absl::SimpleHexAtoi(s.substr(i + 1, 2), &hex)) {
      out.push_back(static_cast<char>(hex));
      i += 2;
    } else {
      out.push_back(s[i] == '+' ? ' ' : s[i]);
    }
  }
  return out;
}

// An application/x-www-form-urlencoded body, decoded.
std::map<std::string, std::string> Form(absl::string_view body) {
  std::map<std::string, std::string> out;
  for (absl::string_view pair : absl::StrSplit(body, '&', absl::SkipEmpty())) {
    std::pair<absl::string_view, absl::string_view> kv =
        absl::StrSplit(pair, absl::MaxSplits('=', 1));
    out[PercentDecode(kv.first)] = PercentDecode(kv.second);
  }
  return out;
}

std::string BasicOf(absl::string_view user, absl::string_view password) {
  return absl::StrCat("Basic ",
                      absl::Base64Escape(absl::StrCat(user, ":", password)));
}

// The signature the documented scheme gives, computed with OpenSSL (not the
// code under test): base64(HMAC-SHA256(secret,
//   METHOD \n path?query \n unix-seconds \n hex(SHA-256(body)))).
std::string ExpectedSignature(const std::string& secret, const SeenRequest& req,
                              const std::string& timestamp) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(req.body.data(), req.body.size(), digest, &len, EVP_sha256(),
             nullptr);
  const std::string body_hash = absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
  const std::string canonical = absl::StrCat(req.method, "\n", req.target, "\n",
                                             timestamp, "\n", body_hash);
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(canonical.data()),
       canonical.size(), digest, &len);
  return absl::Base64Escape(
      absl::string_view(reinterpret_cast<const char*>(digest), len));
}

void ExpectNoSecret(const absl::Status& status) {
  EXPECT_THAT(status.message(),
              AllOf(Not(HasSubstr("SECRET")), Not(HasSubstr("s3cr")),
                    Not(HasSubstr("hunter2"))))
      << status;
}

class AuthTest : public ::testing::Test {
 protected:
  // Clients are destroyed (their connections closed) before the server.
  FakeClock clock_;
  TestServer server_;
  std::string base_;
  std::vector<std::unique_ptr<AuthorizedClient>> clients_;
  std::atomic<int> tokens_issued_{0};

  void SetUp() override { ClearOAuth2TokenCache(); }
  void TearDown() override { clients_.clear(); }

  std::string Start() {
    base_ = server_.Start();
    return base_;
  }

  // GET /api/users answers `status_for(request)` (default 200), echoing
  // the Authorization header in the body.
  void ServeApi(std::function<int(const httplib::Request&)> status_for =
                    [](const httplib::Request&) { return 200; }) {
    server_.Handle(
        "GET", kApi,
        [status_for](const httplib::Request& req, httplib::Response& res) {
          res.status = status_for(req);
          res.set_content(req.get_header_value("Authorization"), "text/plain");
        });
    server_.Handle("POST", kApi,
                   [](const httplib::Request& req, httplib::Response& res) {
                     res.set_content(req.body, "application/json");
                   });
  }
  // POST /oauth/token issues tok-1, tok-2, ... with `expires_in` (a JSON
  // value, or "" for none).
  void ServeTokens(const std::string& expires_in = "3600") {
    server_.Post(kToken, [this, expires_in](const httplib::Request&,
                                            httplib::Response& res) {
      const int n = ++tokens_issued_;
      res.set_content(
          absl::StrCat(R"({"access_token":"tok-)", n,
                       R"(","token_type":"Bearer")",
                       expires_in.empty()
                           ? ""
                           : absl::StrCat(R"(,"expires_in":)", expires_in),
                       "}"),
          "application/json");
    });
  }
  // An OpenID Provider configuration naming `issuer` (default: this server,
  // from the Host header) and its token endpoint.
  void ServeDiscovery(std::string issuer = "",
                      bool with_token_endpoint = true) {
    server_.Get(
        kDiscovery, [issuer, with_token_endpoint](const httplib::Request& req,
                                                  httplib::Response& res) {
          const std::string self =
              absl::StrCat("http://", req.get_header_value("Host"));
          std::string doc = absl::StrCat(
              R"({"issuer":")", issuer.empty() ? self : issuer, R"(")",
              with_token_endpoint
                  ? absl::StrCat(R"(,"token_endpoint":")", self, kToken, R"(")")
                  : "",
              R"(,"jwks_uri":")", self, R"(/jwks"})");
          res.set_content(doc, "application/json");
        });
  }

  static HttpClientOptions Options(Clock* clock) {
    HttpClientOptions o;
    o.timeout = absl::Seconds(10);
    o.max_attempts = 3;
    o.initial_backoff = absl::Seconds(1);
    o.clock = clock;
    return o;
  }
  AuthorizedClient& Client(const std::string& auth_json) {
    absl::StatusOr<std::unique_ptr<AuthorizedClient>> c =
        CreateAuthorizedClient(Options(&clock_), Json(auth_json));
    EXPECT_TRUE(c.ok()) << c.status();
    clients_.push_back(std::move(c).value());
    return *clients_.back();
  }
  // The status of building an authenticator from `auth_json`.
  absl::Status ConfigStatus(const std::string& auth_json) {
    absl::StatusOr<std::unique_ptr<HttpClient>> http =
        HttpClient::Create(Options(&clock_));
    EXPECT_TRUE(http.ok());
    return CreateAuthenticator(Json(auth_json), **http).status();
  }

  absl::StatusOr<HttpResponse> GetUsers(AuthorizedClient& c,
                                        const std::string& query = "") {
    HttpRequest req;
    req.url = absl::StrCat(base_, kApi, query);
    return c.Send(req);
  }
  // GET /api/users, which must answer 200; returns what the server saw.
  SeenRequest GetUsersOk(AuthorizedClient& c, const std::string& query = "") {
    const size_t before = server_.CountTo(kApi);
    absl::StatusOr<HttpResponse> r = GetUsers(c, query);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r.ok() ? r->status : 0, 200);
    std::vector<SeenRequest> seen = server_.RequestsTo(kApi);
    EXPECT_EQ(seen.size(), before + 1);
    return seen.empty() ? SeenRequest() : seen.back();
  }

  std::string ClientCredentials(const std::string& extra = "") const {
    return absl::Substitute(
        R"({"type": "oauth2_client_credentials", "token_url": "$0$1",
            "client_id": "idsync app", "client_secret": "$2" $3})",
        base_, kToken, kSecret, extra);
  }
};

// --- Static credentials -------------------------------------------------

TEST_F(AuthTest, NoneSendsNoCredentials) {
  ServeApi();
  Start();
  for (const char* config : {R"({})", R"({"type": "none"})"}) {
    SeenRequest seen = GetUsersOk(Client(config));
    EXPECT_EQ(seen.HeaderCount("Authorization"), 0u) << config;
  }
}

TEST_F(AuthTest, BearerSendsTheToken) {
  ServeApi();
  Start();
  SeenRequest seen =
      GetUsersOk(Client(R"({"type": "bearer", "token": "wsk_live_1"})"));
  EXPECT_EQ(seen.Header("Authorization"), "Bearer wsk_live_1");
  EXPECT_EQ(seen.HeaderCount("Authorization"), 1u);
}

TEST_F(AuthTest, BearerWithCustomHeaderAndScheme) {
  ServeApi();
  Start();
  SeenRequest seen = GetUsersOk(Client(R"({"type": "bearer", "token": "t0k",
      "header": "X-Api-Token", "scheme": "Token"})"));
  EXPECT_EQ(seen.Header("X-Api-Token"), "Token t0k");
  EXPECT_EQ(seen.HeaderCount("Authorization"), 0u);
  // An empty scheme sends the token alone.
  seen = GetUsersOk(Client(
      R"({"type": "bearer", "token": "raw", "header": "X-Key", "scheme": ""})"));
  EXPECT_EQ(seen.Header("X-Key"), "raw");
}

TEST_F(AuthTest, ApiKeyWithExtraHeaders) {
  ServeApi();
  Start();
  SeenRequest seen = GetUsersOk(Client(R"({"type": "api_key",
      "header": "x-api-key", "key": "ak_123",
      "extra_headers": {"x-client-id": "idsync-client", "x-tenant": "t1"}})"));
  EXPECT_EQ(seen.Header("X-Api-Key"), "ak_123");
  EXPECT_EQ(seen.Header("x-client-id"), "idsync-client");
  EXPECT_EQ(seen.Header("x-tenant"), "t1");
  EXPECT_EQ(seen.HeaderCount("Authorization"), 0u);
}

TEST_F(AuthTest, BasicEncodesUserAndPassword) {
  ServeApi();
  Start();
  SeenRequest seen = GetUsersOk(Client(
      R"({"type": "basic", "username": "svc", "password": "p@ss:w0rd é"})"));
  EXPECT_EQ(seen.Header("Authorization"), BasicOf("svc", "p@ss:w0rd é"));
}

TEST_F(AuthTest, StaticCredentials401IsReturnedWithoutRetry) {
  ServeApi([](const httplib::Request&) { return 401; });
  Start();
  AuthorizedClient& c = Client(R"({"type": "bearer", "token": "revoked"})");
  absl::StatusOr<HttpResponse> r = GetUsers(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(server_.CountTo(kApi), 1u);
}

TEST_F(AuthTest, CredentialsDoNotChangeTheCallersRequest) {
  ServeApi();
  Start();
  AuthorizedClient& c = Client(R"({"type": "bearer", "token": "t"})");
  HttpRequest req;
  req.url = absl::StrCat(base_, kApi);
  req.headers = {{"Accept", "application/json"}};
  ASSERT_TRUE(c.Send(req).ok());
  EXPECT_THAT(req.headers, SizeIs(1));
  SeenRequest seen = server_.RequestsTo(kApi).back();
  EXPECT_EQ(seen.Header("Accept"), "application/json");
  EXPECT_EQ(seen.Header("Authorization"), "Bearer t");
}

TEST_F(AuthTest, AuthorizedClientKeepsTheClientsRetries) {
  auto calls = std::make_shared<std::atomic<int>>(0);
  ServeApi(
      [calls](const httplib::Request&) { return ++*calls == 1 ? 503 : 200; });
  Start();
  AuthorizedClient& c = Client(R"({"type": "bearer", "token": "t"})");
  ASSERT_TRUE(GetUsers(c).ok());
  EXPECT_EQ(server_.CountTo(kApi), 2u);
  EXPECT_EQ(c.http().attempts(), 2);
}

// --- HMAC signing -------------------------------------------------------

TEST_F(AuthTest, HmacSignsAGetWithItsQuery) {
  ServeApi();
  Start();
  SeenRequest seen = GetUsersOk(Client(R"({"type": "bearer", "token": "t",
                 "hmac": {"secret": "hmac-SECRET"}})"),
                                "?page=2&filter=name%20eq%20%22a%22");
  EXPECT_EQ(seen.target, "/api/users?page=2&filter=name%20eq%20%22a%22");
  EXPECT_EQ(seen.Header("Authorization"), "Bearer t");  // Still there.
  const std::string ts = seen.Header("x-timestamp");
  EXPECT_EQ(ts, absl::StrCat(absl::ToUnixSeconds(clock_.Now())));
  EXPECT_EQ(seen.Header("x-signature"),
            "v1=" + ExpectedSignature("hmac-SECRET", seen, ts));
}

// BUG (auth.cc, HmacSigner::PathAndQuery): with no '/' after the host, the
// query is dropped ("/" is signed), or a '/' inside the query is taken for
// the path. Enable when fixed.
TEST_F(AuthTest, HmacSignsAUrlWithoutAPath) {
  // curl sends "GET /?page=2..." for http://host:port?page=2...
  server_.Get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("root", "text/plain");
  });
  Start();
  AuthorizedClient& c = Client(R"({"hmac": {"secret": "s"}})");
  HttpRequest req;
  req.url = absl::StrCat(base_, "?page=2&next=/a/b");
  ASSERT_TRUE(c.Send(req).ok());
  std::vector<SeenRequest> seen = server_.RequestsTo("/");
  ASSERT_THAT(seen, SizeIs(1));
  EXPECT_EQ(seen[0].target, "/?page=2&next=/a/b");
  EXPECT_EQ(
      seen[0].Header("x-signature"),
      "v1=" + ExpectedSignature("s", seen[0], seen[0].Header("x-timestamp")));
}

TEST_F(AuthTest, HmacSignsAPostBodyWithCustomHeaders) {
  ServeApi();
  Start();
  AuthorizedClient& c = Client(R"({"type": "api_key", "header": "x-api-key",
      "key": "k", "hmac": {"secret": "s2", "signature_header": "X-Sig",
      "timestamp_header": "X-Ts", "prefix": ""}})");
  HttpRequest req;
  req.method = "POST";
  req.url = absl::StrCat(base_, kApi, "?dry_run=true");
  req.body = R"({"filter": {"active": true}})";
  req.headers = {{"Content-Type", "application/json"}};
  absl::StatusOr<HttpResponse> r = c.Send(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  SeenRequest seen = server_.RequestsTo(kApi).back();
  EXPECT_EQ(seen.method, "POST");
  EXPECT_EQ(seen.body, req.body);
  EXPECT_EQ(seen.Header("X-Sig"),
            ExpectedSignature("s2", seen, seen.Header("X-Ts")));
  EXPECT_EQ(seen.HeaderCount("x-signature"), 0u);
  // A signature over another body would not match.
  SeenRequest tampered = seen;
  tampered.body += " ";
  EXPECT_NE(seen.Header("X-Sig"),
            ExpectedSignature("s2", tampered, seen.Header("X-Ts")));
}

TEST_F(AuthTest, HmacTimestampFollowsTheClock) {
  ServeApi();
  Start();
  AuthorizedClient& c = Client(R"({"hmac": {"secret": "s"}})");  // type none
  SeenRequest first = GetUsersOk(c);
  clock_.Advance(absl::Seconds(100));
  SeenRequest second = GetUsersOk(c);
  EXPECT_EQ(first.Header("x-timestamp"), "1700000000");
  EXPECT_EQ(second.Header("x-timestamp"), "1700000100");
  EXPECT_EQ(second.Header("x-signature"),
            "v1=" + ExpectedSignature("s", second, "1700000100"));
  EXPECT_NE(first.Header("x-signature"), second.Header("x-signature"));
}

// --- Configuration errors -----------------------------------------------

struct BadConfig {
  const char* name;
  const char* json;
  const char* says;  // A part of the message.
  friend void PrintTo(const BadConfig& c, std::ostream* os) { *os << c.name; }
};

class AuthConfigErrorTest : public AuthTest,
                            public ::testing::WithParamInterface<BadConfig> {};

TEST_P(AuthConfigErrorTest, IsInvalidArgumentNamingTheKeyWithoutSecrets) {
  absl::Status s = ConfigStatus(GetParam().json);
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_THAT(s.message(), HasSubstr("auth_config"));
  EXPECT_THAT(s.message(), HasSubstr(GetParam().says));
  ExpectNoSecret(s);
}

INSTANTIATE_TEST_SUITE_P(
    Mistakes, AuthConfigErrorTest,
    ::testing::Values(
        BadConfig{"UnknownType", R"({"type": "kerberos", "token": "SECRET"})",
                  "'type' must be one of"},
        BadConfig{"TypeNotAString", R"({"type": 7})",
                  "'type' must be a string"},
        BadConfig{"BearerWithoutToken", R"({"type": "bearer"})",
                  "'token' is required"},
        BadConfig{"BearerTokenNotAString",
                  R"({"type": "bearer", "token": 12345})",
                  "'token' must be a string"},
        BadConfig{"BearerUnknownKey",
                  R"({"type": "bearer", "token": "SECRET", "tokn": "SECRET"})",
                  "unknown key 'tokn'"},
        BadConfig{"NoneWithAToken", R"({"type": "none", "token": "SECRET"})",
                  "unknown key 'token'"},
        BadConfig{"ApiKeyWithoutHeader",
                  R"({"type": "api_key", "key": "SECRET"})",
                  "'header' is required"},
        BadConfig{"ApiKeyWithoutKey", R"({"type": "api_key", "header": "x"})",
                  "'key' is required"},
        BadConfig{"ApiKeyExtraHeaderNotAString",
                  R"({"type": "api_key", "header": "x", "key": "SECRET",
                      "extra_headers": {"x-n": 1}})",
                  "auth_config.extra_headers: 'x-n' must be a string"},
        BadConfig{"ApiKeyExtraHeadersNotAnObject",
                  R"({"type": "api_key", "header": "x", "key": "SECRET",
                      "extra_headers": ["SECRET"]})",
                  "'extra_headers' must be an object"},
        BadConfig{"BasicWithoutPassword",
                  R"({"type": "basic", "username": "u"})",
                  "'password' is required"},
        BadConfig{"BasicUnknownKey",
                  R"({"type": "basic", "username": "u", "password": "hunter2",
                      "pasword": "hunter2"})",
                  "unknown key 'pasword'"},
        BadConfig{"OAuth2BothTokenUrlAndIssuer",
                  R"({"type": "oauth2_client_credentials",
                      "token_url": "https://a/token", "issuer": "https://a",
                      "client_id": "c", "client_secret": "SECRET"})",
                  "exactly one of 'token_url' and 'issuer'"},
        BadConfig{"OAuth2NeitherTokenUrlNorIssuer",
                  R"({"type": "oauth2_client_credentials", "client_id": "c",
                      "client_secret": "SECRET"})",
                  "exactly one of 'token_url' and 'issuer'"},
        BadConfig{"OAuth2TokenUrlNotHttp",
                  R"({"type": "oauth2_client_credentials",
                      "token_url": "ftp://a/token", "client_id": "c",
                      "client_secret": "SECRET"})",
                  "'token_url' must be an http(s) URL"},
        BadConfig{
            "OAuth2IssuerNotHttp",
            R"({"type": "oauth2_client_credentials", "issuer": "a.example",
                      "client_id": "c", "client_secret": "SECRET"})",
            "'issuer' must be an http(s) URL"},
        BadConfig{"OAuth2WithoutClientSecret",
                  R"({"type": "oauth2_client_credentials",
                      "token_url": "https://a/token", "client_id": "c"})",
                  "'client_secret' is required"},
        BadConfig{"OAuth2WithoutClientId",
                  R"({"type": "oauth2_client_credentials",
                      "token_url": "https://a/token", "client_secret": "SECRET"})",
                  "'client_id' is required"},
        BadConfig{"OAuth2BadClientAuth",
                  R"({"type": "oauth2_client_credentials",
                      "token_url": "https://a/token", "client_id": "c",
                      "client_secret": "SECRET", "client_auth": "jwt"})",
                  "'client_auth' must be"},
        BadConfig{"OAuth2SkewOutOfRange",
                  R"({"type": "oauth2_client_credentials",
                      "token_url": "https://a/token", "client_id": "c",
                      "client_secret": "SECRET", "refresh_skew_seconds": 7200})",
                  "'refresh_skew_seconds' must be an integer in [0, 3600]"},
        BadConfig{"OAuth2UnknownKey",
                  R"({"type": "oauth2_client_credentials",
                      "token_url": "https://a/token", "client_id": "c",
                      "client_secret": "SECRET", "scopes": "a"})",
                  "unknown key 'scopes'"},
        BadConfig{"PasswordGrantWithoutUsername",
                  R"({"type": "oauth2_password", "token_url": "https://a/t",
                      "client_id": "c", "password": "hunter2"})",
                  "'username' is required"},
        BadConfig{"PasswordGrantWithoutPassword",
                  R"({"type": "oauth2_password", "token_url": "https://a/t",
                      "client_id": "c", "username": "u"})",
                  "'password' is required"},
        BadConfig{"HmacNotAnObject",
                  R"({"type": "bearer", "token": "t", "hmac": "SECRET"})",
                  "'hmac' must be an object"},
        BadConfig{
            "HmacWithoutSecret",
            R"({"type": "bearer", "token": "t", "hmac": {"prefix": "x"}})",
            "auth_config.hmac: 'secret' is required"},
        BadConfig{"HmacUnknownKey",
                  R"({"type": "bearer", "token": "SECRET",
                      "hmac": {"secret": "SECRET", "algorithm": "sha1"}})",
                  "auth_config.hmac: unknown key 'algorithm'"}),
    [](const ::testing::TestParamInfo<BadConfig>& info) {
      return std::string(info.param.name);
    });

TEST_F(AuthTest, DocumentedExamplesAreValid) {
  const std::filesystem::path dir =
      std::filesystem::path(IDSYNC_SOURCE_DIR) / "docs/connectors/rest";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!absl::EndsWith(name, ".auth.json")) continue;
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    EXPECT_TRUE(ConfigStatus(text.str()).ok())
        << name << ": " << ConfigStatus(text.str());
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

// --- OAuth2 client credentials ------------------------------------------

TEST_F(AuthTest, ClientCredentialsSendsBasicClientAuthAndTheForm) {
  ServeTokens();
  ServeApi();
  Start();
  AuthorizedClient& c = Client(ClientCredentials(
      R"(, "scope": "users:read groups:read", "audience": "https://api.example")"));
  SeenRequest api = GetUsersOk(c);
  EXPECT_EQ(api.Header("Authorization"), "Bearer tok-1");

  std::vector<SeenRequest> token = server_.RequestsTo(kToken);
  ASSERT_THAT(token, SizeIs(1));
  EXPECT_EQ(token[0].method, "POST");
  EXPECT_EQ(token[0].Header("Content-Type"),
            "application/x-www-form-urlencoded");
  // RFC 6749 2.3.1: id and secret form-encoded, then Basic.
  EXPECT_EQ(token[0].Header("Authorization"),
            BasicOf("idsync%20app", "SECRET%20s3cr%3At%26%2B%2F"));
  std::string basic;
  ASSERT_TRUE(
      absl::Base64Unescape(token[0].Header("Authorization").substr(6), &basic));
  const size_t colon = basic.find(':');
  EXPECT_EQ(PercentDecode(basic.substr(0, colon)), "idsync app");
  EXPECT_EQ(PercentDecode(basic.substr(colon + 1)), kSecret);

  std::map<std::string, std::string> form = Form(token[0].body);
  EXPECT_EQ(form["grant_type"], "client_credentials");
  EXPECT_EQ(form["scope"], "users:read groups:read");
  EXPECT_EQ(form["audience"], "https://api.example");
  EXPECT_THAT(form, Not(Contains(Key("client_secret"))));
  EXPECT_THAT(form, Not(Contains(Key("client_id"))));
  EXPECT_THAT(token[0].body, Not(HasSubstr("s3cr")));
}

TEST_F(AuthTest, ClientAuthPostPutsTheCredentialsInTheBody) {
  ServeTokens();
  ServeApi();
  Start();
  GetUsersOk(Client(ClientCredentials(R"(, "client_auth": "post")")));
  std::vector<SeenRequest> token = server_.RequestsTo(kToken);
  ASSERT_THAT(token, SizeIs(1));
  EXPECT_EQ(token[0].HeaderCount("Authorization"), 0u);
  std::map<std::string, std::string> form = Form(token[0].body);
  EXPECT_EQ(form["grant_type"], "client_credentials");
  EXPECT_EQ(form["client_id"], "idsync app");
  EXPECT_EQ(form["client_secret"], kSecret);
  EXPECT_THAT(form, Not(Contains(Key("scope"))));  // Not configured.
}

TEST_F(AuthTest, TokenIsReusedAcrossRequestsAndClients) {
  ServeTokens();
  ServeApi();
  Start();
  AuthorizedClient& a = Client(ClientCredentials());
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(GetUsersOk(a).Header("Authorization"), "Bearer tok-1");
  }
  // Another client with the same credentials shares the token.
  AuthorizedClient& b = Client(ClientCredentials());
  EXPECT_EQ(GetUsersOk(b).Header("Authorization"), "Bearer tok-1");
  EXPECT_EQ(server_.CountTo(kToken), 1u);
  // Other credentials get their own.
  AuthorizedClient& other = Client(ClientCredentials(R"(, "scope": "x")"));
  EXPECT_EQ(GetUsersOk(other).Header("Authorization"), "Bearer tok-2");
  EXPECT_EQ(server_.CountTo(kToken), 2u);
}

TEST_F(AuthTest, TokenIsRefreshedWhenTheClockPassesExpiryLessSkew) {
  ServeTokens("3600");
  ServeApi();
  Start();
  AuthorizedClient& c = Client(ClientCredentials());
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-1");
  clock_.Advance(absl::Seconds(3600 - 60) - absl::Milliseconds(1));
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-1");
  clock_.Advance(absl::Milliseconds(1));  // Default skew: 60 s.
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-2");
  EXPECT_EQ(server_.CountTo(kToken), 2u);
}

TEST_F(AuthTest, RefreshSkewIsConfigurable) {
  ServeTokens("\"3600\"");  // A string, as some servers send it.
  ServeApi();
  Start();
  AuthorizedClient& c =
      Client(ClientCredentials(R"(, "refresh_skew_seconds": 600)"));
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-1");
  clock_.Advance(absl::Seconds(2999));
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-1");
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-2");
}

TEST_F(AuthTest, ShortLivedTokenIsKeptForHalfItsLife) {
  ServeTokens("60");  // Shorter than twice the default 60 s skew.
  ServeApi();
  Start();
  AuthorizedClient& c = Client(ClientCredentials());
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-1");
  clock_.Advance(absl::Seconds(29));
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-1");
  clock_.Advance(absl::Seconds(1));
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-2");
}

TEST_F(AuthTest, TokenWithoutExpiryIsKeptUntilRejected) {
  ServeTokens("");  // No expires_in.
  ServeApi();
  Start();
  AuthorizedClient& c = Client(ClientCredentials());
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-1");
  clock_.Advance(absl::Hours(24 * 365));
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-1");
  EXPECT_EQ(server_.CountTo(kToken), 1u);
}

TEST_F(AuthTest, A401RefreshesTheTokenOnceAndRetries) {
  ServeTokens();
  ServeApi([](const httplib::Request& req) {
    return req.get_header_value("Authorization") == "Bearer tok-1" ? 401 : 200;
  });
  Start();
  AuthorizedClient& c = Client(ClientCredentials());
  absl::StatusOr<HttpResponse> r = GetUsers(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "Bearer tok-2");
  EXPECT_EQ(server_.CountTo(kToken), 2u);
  std::vector<SeenRequest> api = server_.RequestsTo(kApi);
  ASSERT_THAT(api, SizeIs(2));
  EXPECT_EQ(api[1].HeaderCount("Authorization"), 1u);
  // The new token is cached for the next request.
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-2");
  EXPECT_EQ(server_.CountTo(kToken), 2u);
}

TEST_F(AuthTest, ASecond401IsReturnedNotLooped) {
  ServeTokens();
  ServeApi([](const httplib::Request&) { return 401; });
  Start();
  AuthorizedClient& c = Client(ClientCredentials());
  absl::StatusOr<HttpResponse> r = GetUsers(c);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 401);
  EXPECT_EQ(server_.CountTo(kToken), 2u);
  EXPECT_EQ(server_.CountTo(kApi), 2u);
}

TEST_F(AuthTest, RetryAfterA401IsSignedAfresh) {
  ServeTokens();
  ServeApi([](const httplib::Request& req) {
    return req.get_header_value("Authorization") == "Bearer tok-1" ? 401 : 200;
  });
  Start();
  AuthorizedClient& c =
      Client(ClientCredentials(R"(, "hmac": {"secret": "sig-SECRET"})"));
  clock_.Advance(absl::Seconds(5));
  ASSERT_TRUE(GetUsers(c).ok());
  std::vector<SeenRequest> api = server_.RequestsTo(kApi);
  ASSERT_THAT(api, SizeIs(2));
  const SeenRequest& retry = api[1];
  EXPECT_EQ(retry.HeaderCount("Authorization"), 1u);
  EXPECT_EQ(retry.HeaderCount("x-signature"), 1u);
  EXPECT_EQ(retry.HeaderCount("x-timestamp"), 1u);
  EXPECT_EQ(retry.Header("Authorization"), "Bearer tok-2");
  EXPECT_EQ(retry.Header("x-signature"),
            "v1=" + ExpectedSignature("sig-SECRET", retry,
                                      retry.Header("x-timestamp")));
}

TEST_F(AuthTest, RejectedClientIsUnauthenticatedWithoutTheSecret) {
  server_.Post(kToken, [](const httplib::Request&, httplib::Response& res) {
    res.status = 401;
    res.set_content(
        R"({"error":"invalid_client","error_description":"bad secret SECRET s3cr:t"})",
        "application/json");
  });
  ServeApi();
  Start();
  AuthorizedClient& c = Client(ClientCredentials());
  absl::StatusOr<HttpResponse> r = GetUsers(c);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnauthenticated(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("invalid_client"));
  EXPECT_THAT(r.status().message(), HasSubstr("401"));
  EXPECT_THAT(r.status().message(), Not(HasSubstr("bad secret")));
  ExpectNoSecret(r.status());
  EXPECT_EQ(server_.CountTo(kToken), 1u);  // Not retried.
  EXPECT_EQ(server_.CountTo(kApi), 0u);
}

TEST_F(AuthTest, UnreadableErrorCodeIsLeftOut) {
  server_.Post(kToken, [](const httplib::Request&, httplib::Response& res) {
    res.status = 400;
    res.set_content(R"({"error":"Your secret SECRET is wrong"})",
                    "application/json");
  });
  Start();
  absl::StatusOr<HttpResponse> r = GetUsers(Client(ClientCredentials()));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnauthenticated(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), Not(HasSubstr("wrong")));
  ExpectNoSecret(r.status());
}

TEST_F(AuthTest, TokenEndpointOutageIsUnavailable) {
  server_.Post(kToken, [](const httplib::Request&, httplib::Response& res) {
    res.status = 500;
  });
  Start();
  absl::StatusOr<HttpResponse> r = GetUsers(Client(ClientCredentials()));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("500"));
  EXPECT_EQ(server_.CountTo(kToken), 3u);  // The client's max_attempts.
}

TEST_F(AuthTest, TokenResponseWithoutAccessTokenIsAnError) {
  server_.Post(kToken, [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"token_type":"Bearer","expires_in":3600})",
                    "application/json");
  });
  Start();
  absl::StatusOr<HttpResponse> r = GetUsers(Client(ClientCredentials()));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("access_token"));
}

// --- OIDC discovery -----------------------------------------------------

std::string WithIssuer(const std::string& issuer) {
  return absl::Substitute(
      R"({"type": "oauth2_client_credentials", "issuer": "$0",
          "client_id": "app", "client_secret": "$1"})",
      issuer, kSecret);
}

TEST_F(AuthTest, IssuerDiscoveryFindsTheTokenEndpointOnce) {
  ServeDiscovery();
  ServeTokens();
  ServeApi([](const httplib::Request& req) {
    return req.get_header_value("Authorization") == "Bearer tok-1" ? 401 : 200;
  });
  Start();
  AuthorizedClient& c = Client(WithIssuer(base_));
  absl::StatusOr<HttpResponse> r = GetUsers(c);  // 401, refresh, 200.
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body, "Bearer tok-2");
  EXPECT_EQ(server_.CountTo(kToken), 2u);
  EXPECT_EQ(server_.CountTo(kDiscovery), 1u);
}

TEST_F(AuthTest, IssuerWithATrailingSlashMatches) {
  ServeDiscovery();
  ServeTokens();
  ServeApi();
  Start();
  EXPECT_EQ(GetUsersOk(Client(WithIssuer(base_ + "/"))).Header("Authorization"),
            "Bearer tok-1");
  EXPECT_EQ(server_.CountTo(kDiscovery), 1u);
}

TEST_F(AuthTest, DiscoveryDocumentForAnotherIssuerIsRefused) {
  ServeDiscovery("https://evil.example");
  ServeTokens();
  ServeApi();
  Start();
  absl::StatusOr<HttpResponse> r = GetUsers(Client(WithIssuer(base_)));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("different issuer"));
  ExpectNoSecret(r.status());
  EXPECT_EQ(server_.CountTo(kToken), 0u);  // The secret never left.
  EXPECT_EQ(server_.CountTo(kApi), 0u);
}

TEST_F(AuthTest, DiscoveryDocumentWithoutTokenEndpointIsAnError) {
  ServeDiscovery("", /*with_token_endpoint=*/false);
  Start();
  absl::StatusOr<HttpResponse> r = GetUsers(Client(WithIssuer(base_)));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("token_endpoint"));
}

TEST_F(AuthTest, MissingDiscoveryDocumentIsUnavailable) {
  Start();  // Nothing served: 404.
  absl::StatusOr<HttpResponse> r = GetUsers(Client(WithIssuer(base_)));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("404"));
}

// --- OAuth2 password grant ----------------------------------------------

TEST_F(AuthTest, PasswordGrantSendsTheUserAndClientInTheBody) {
  ServeTokens();
  ServeApi();
  Start();
  AuthorizedClient& c = Client(absl::Substitute(
      R"({"type": "oauth2_password", "token_url": "$0$1",
          "client_id": "pw-client", "username": "svc idsync",
          "password": "hunter2&x=y", "scope": "api"})",
      base_, kToken));
  EXPECT_EQ(GetUsersOk(c).Header("Authorization"), "Bearer tok-1");
  std::vector<SeenRequest> token = server_.RequestsTo(kToken);
  ASSERT_THAT(token, SizeIs(1));
  EXPECT_EQ(token[0].HeaderCount("Authorization"), 0u);
  std::map<std::string, std::string> form = Form(token[0].body);
  EXPECT_EQ(form["grant_type"], "password");
  EXPECT_EQ(form["username"], "svc idsync");
  EXPECT_EQ(form["password"], "hunter2&x=y");
  EXPECT_EQ(form["client_id"], "pw-client");
  EXPECT_EQ(form["scope"], "api");
  EXPECT_THAT(form, Not(Contains(Key("client_secret"))));
  EXPECT_THAT(form, Not(Contains(Key("x"))));  // '&' and '=' were encoded.
}

TEST_F(AuthTest, PasswordGrantWithAClientSecret) {
  ServeTokens();
  ServeApi();
  Start();
  const std::string common = absl::Substitute(
      R"("type": "oauth2_password", "token_url": "$0$1", "client_id": "pc",
         "client_secret": "$2", "username": "u", "password": "p")",
      base_, kToken, kSecret);
  // Default client_auth for this grant: "post".
  GetUsersOk(Client(absl::StrCat("{", common, "}")));
  std::vector<SeenRequest> token = server_.RequestsTo(kToken);
  ASSERT_THAT(token, SizeIs(1));
  EXPECT_EQ(Form(token[0].body)["client_secret"], kSecret);
  EXPECT_EQ(token[0].HeaderCount("Authorization"), 0u);

  ClearOAuth2TokenCache();
  GetUsersOk(Client(absl::StrCat("{", common, R"(, "client_auth": "basic"})")));
  token = server_.RequestsTo(kToken);
  ASSERT_THAT(token, SizeIs(2));
  EXPECT_EQ(token[1].Header("Authorization"),
            BasicOf("pc", "SECRET%20s3cr%3At%26%2B%2F"));
  EXPECT_THAT(Form(token[1].body), Not(Contains(Key("client_secret"))));
  EXPECT_EQ(Form(token[1].body)["username"], "u");
}

}  // namespace
}  // namespace idsync
