// HttpClient against a real in-process HTTP(S) server. Waits (backoff,
// Retry-After, rate limit) run on a fake clock, so they are instant and
// asserted exactly; only the timeout test spends real time (300 ms).
#include "connector/http/http_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/connector/http/test_server.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::idsync::testing::FakeClock;
using ::idsync::testing::SeenRequest;
using ::idsync::testing::TestServer;
using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Optional;
using ::testing::Pair;
using ::testing::SizeIs;

// A FakeClock that also remembers every wait asked of it.
class RecordingClock final : public Clock {
 public:
  absl::Time Now() override { return fake_.Now(); }
  void SleepFor(absl::Duration d) override {
    {
      absl::MutexLock lock(&mu_);
      sleeps_.push_back(d);
    }
    fake_.SleepFor(d);
  }
  std::vector<absl::Duration> sleeps() {
    absl::MutexLock lock(&mu_);
    return sleeps_;
  }
  absl::Duration Elapsed() { return fake_.Now() - start_; }

 private:
  FakeClock fake_;
  const absl::Time start_ = fake_.Now();
  absl::Mutex mu_;
  std::vector<absl::Duration> sleeps_ ABSL_GUARDED_BY(mu_);
};

// A port on 127.0.0.1 that refuses connections: bound, never listening.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    socklen_t len = sizeof(addr);
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A self-signed certificate for 127.0.0.1 (EC P-256), made in memory.
struct SelfSignedCert {
  SelfSignedCert() {
    key = EVP_EC_gen("P-256");
    cert = X509_new();
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
    X509_gmtime_adj(X509_getm_notBefore(cert), -3600);
    X509_gmtime_adj(X509_getm_notAfter(cert), 24 * 3600);
    X509_set_pubkey(cert, key);
    X509_NAME* name = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(
        name, "CN", MBSTRING_ASC,
        reinterpret_cast<const unsigned char*>("127.0.0.1"), -1, -1, 0);
    X509_set_issuer_name(cert, name);
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, cert, cert, nullptr, nullptr, 0);
    const std::pair<int, const char*> extensions[] = {
        {NID_subject_alt_name, "IP:127.0.0.1"},
        {NID_basic_constraints, "critical,CA:TRUE"}};
    for (const auto& [nid, value] : extensions) {
      X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
      X509_add_ext(cert, ext, -1);
      X509_EXTENSION_free(ext);
    }
    X509_sign(cert, key, EVP_sha256());
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(bio, cert);
    char* data = nullptr;
    const long n = BIO_get_mem_data(bio, &data);
    pem.assign(data, static_cast<size_t>(n));
    BIO_free(bio);
  }
  ~SelfSignedCert() {
    X509_free(cert);
    EVP_PKEY_free(key);
  }
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  std::string pem;
};

// Replies with the statuses in `script` in turn (then 200), each with a body
// naming the attempt and the headers `with`.
TestServer::Handler Script(std::vector<int> script,
                           httplib::Headers with = {}) {
  auto calls = std::make_shared<std::atomic<size_t>>(0);
  return [script = std::move(script), with = std::move(with), calls](
             const httplib::Request&, httplib::Response& res) {
    const size_t n = (*calls)++;
    res.status = n < script.size() ? script[n] : 200;
    for (const auto& [name, value] : with) res.set_header(name, value);
    res.set_content(absl::StrCat("attempt ", n + 1), "text/plain");
  };
}

// The messages of transport errors name the URL without its secrets.
void ExpectNoSecrets(const absl::Status& status) {
  EXPECT_THAT(status.message(),
              AllOf(Not(HasSubstr("SECRET")), Not(HasSubstr("pw")),
                    Not(HasSubstr("?")), Not(HasSubstr("#"))))
      << status;
}

class HttpClientTest : public ::testing::Test {
 protected:
  // Declaration order is destruction order reversed: the client goes first
  // (closing its connections), then the server, then what handlers use.
  absl::Notification release_;  // Frees handlers that block.
  RecordingClock clock_;
  TestServer server_;
  std::unique_ptr<HttpClient> client_;

  void TearDown() override {
    if (!release_.HasBeenNotified()) release_.Notify();
    client_.reset();
  }

  // Fast defaults for tests: 1 s initial backoff on the fake clock.
  static HttpClientOptions Options() {
    HttpClientOptions o;
    o.timeout = absl::Seconds(10);
    o.max_attempts = 4;
    o.initial_backoff = absl::Seconds(1);
    return o;
  }
  HttpClient& Client(HttpClientOptions o = Options()) {
    o.clock = &clock_;
    absl::StatusOr<std::unique_ptr<HttpClient>> c = HttpClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    client_ = std::move(c).value();
    return *client_;
  }
  static HttpRequest Req(std::string method, std::string url,
                         std::string body = "") {
    HttpRequest r;
    r.method = std::move(method);
    r.url = std::move(url);
    r.body = std::move(body);
    return r;
  }
  absl::StatusOr<HttpResponse> Get(const std::string& path) {
    return client_->Send(Req("GET", server_.Url(path)));
  }
};

// --- Requests and responses ---------------------------------------------

TEST_F(HttpClientTest, GetRoundTripsHeadersAndBody) {
  server_.Get("/hello", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("X-Custom-Header", "Some Value");
    res.set_content("hello, world", "text/plain");
  });
  server_.Start();
  Client();
  HttpRequest req = Req("GET", server_.Url("/hello"));
  req.headers = {{"X-Trace-Id", "abc-123"}, {"Accept", "text/plain"}};
  absl::StatusOr<HttpResponse> r = client_->Send(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "hello, world");
  // Names lower-cased, values as sent; Header() ignores case.
  EXPECT_THAT(r->headers, Contains(Pair("x-custom-header", "Some Value")));
  EXPECT_THAT(r->headers, Contains(Pair("content-type", "text/plain")));
  for (const auto& [name, value] : r->headers) {
    EXPECT_EQ(name, absl::AsciiStrToLower(name));
  }
  EXPECT_THAT(r->Header("X-CUSTOM-HEADER"),
              Optional(std::string("Some Value")));
  EXPECT_THAT(r->Header("x-custom-header"),
              Optional(std::string("Some Value")));
  EXPECT_EQ(r->Header("x-absent"), std::nullopt);

  std::vector<SeenRequest> seen = server_.requests();
  ASSERT_THAT(seen, SizeIs(1));
  EXPECT_EQ(seen[0].method, "GET");
  EXPECT_EQ(seen[0].Header("x-trace-id"), "abc-123");
  EXPECT_EQ(seen[0].Header("Accept"), "text/plain");
  EXPECT_EQ(seen[0].Header("User-Agent"), "idsync/1");
  EXPECT_EQ(client_->attempts(), 1);
  EXPECT_THAT(clock_.sleeps(), ElementsAre());
}

TEST_F(HttpClientTest, PostSendsBodyVerbatim) {
  server_.Post("/echo",
               [](const httplib::Request& req, httplib::Response& res) {
                 res.status = 201;
                 res.set_content(req.body, "application/octet-stream");
               });
  server_.Start();
  Client();
  const std::string body("{\"a\":1}\n\0binary\xff", 16);
  HttpRequest req = Req("POST", server_.Url("/echo"), body);
  req.headers = {{"Content-Type", "application/json"}};
  absl::StatusOr<HttpResponse> r = client_->Send(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 201);
  EXPECT_EQ(r->body, body);
  std::vector<SeenRequest> seen = server_.requests();
  ASSERT_THAT(seen, SizeIs(1));
  EXPECT_EQ(seen[0].method, "POST");
  EXPECT_EQ(seen[0].body, body);
  EXPECT_EQ(seen[0].Header("Content-Type"), "application/json");
  EXPECT_EQ(seen[0].Header("Content-Length"), "16");
  EXPECT_EQ(seen[0].HeaderCount("Expect"), 0u);  // No 100-continue trip.
}

TEST_F(HttpClientTest, PostWithoutBodySendsContentLengthZero) {
  server_.Post("/empty", [](const httplib::Request&, httplib::Response& res) {
    res.status = 204;
  });
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r =
      client_->Send(Req("POST", server_.Url("/empty")));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 204);
  EXPECT_EQ(r->body, "");
  ASSERT_EQ(server_.CountTo("/empty"), 1u);
  EXPECT_EQ(server_.requests()[0].Header("Content-Length"), "0");
}

class HttpMethodTest : public HttpClientTest,
                       public ::testing::WithParamInterface<const char*> {};

TEST_P(HttpMethodTest, MethodAndBodyReachTheServer) {
  const std::string method = GetParam();
  server_.Handle(method, "/thing",
                 [](const httplib::Request& req, httplib::Response& res) {
                   res.set_content(absl::StrCat(req.method, " ", req.body),
                                   "text/plain");
                 });
  server_.Start();
  Client();
  // (GET with a body: GetWithBodyIsStillGet.)
  const std::string body =
      method == "GET" || method == "DELETE" ? "" : "payload";
  absl::StatusOr<HttpResponse> r =
      client_->Send(Req(method, server_.Url("/thing"), body));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, absl::StrCat(method, " ", body));
}

INSTANTIATE_TEST_SUITE_P(Methods, HttpMethodTest,
                         ::testing::Values("GET", "POST", "PUT", "PATCH",
                                           "DELETE"));

TEST_F(HttpClientTest, GetWithBodyIsStillGet) {
  server_.Get("/search",
              [](const httplib::Request& req, httplib::Response& res) {
                res.set_content(absl::StrCat("GET ", req.body), "text/plain");
              });
  server_.Post("/search", [](const httplib::Request&, httplib::Response& res) {
    res.status = 405;
  });
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r =
      client_->Send(Req("GET", server_.Url("/search"), "{\"q\":1}"));
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_THAT(server_.requests(), SizeIs(1));
  EXPECT_EQ(server_.requests()[0].method, "GET");
  // (The test server does not read GET bodies; the length shows it came.)
  EXPECT_EQ(server_.requests()[0].Header("Content-Length"), "7");
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpClientTest, HeadReturnsHeadersWithoutBody) {
  server_.Get("/doc", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("ETag", "\"v1\"");
    res.set_content("a body HEAD must not return", "text/plain");
  });
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r =
      client_->Send(Req("HEAD", server_.Url("/doc")));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "");
  EXPECT_THAT(r->Header("etag"), Optional(std::string("\"v1\"")));
  EXPECT_EQ(server_.requests()[0].method, "HEAD");
}

TEST_F(HttpClientTest, UserAgentComesFromOptions) {
  server_.Get("/", Script({}));
  server_.Start();
  HttpClientOptions o = Options();
  o.user_agent = "idsync-test/9";
  Client(o);
  ASSERT_TRUE(Get("/").ok());
  EXPECT_EQ(server_.requests()[0].Header("User-Agent"), "idsync-test/9");
}

TEST_F(HttpClientTest, RedirectIsReturnedNotFollowed) {
  server_.Get("/old", [](const httplib::Request&, httplib::Response& res) {
    res.set_redirect("/new", 302);
  });
  server_.Get("/new", Script({}));
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r = Get("/old");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 302);
  EXPECT_THAT(r->Header("Location"), Optional(std::string("/new")));
  EXPECT_EQ(server_.CountTo("/new"), 0u);
  EXPECT_EQ(client_->attempts(), 1);
}

TEST_F(HttpClientTest, SequentialRequestsReuseOneConnection) {
  server_.Get("/a", Script({}));
  server_.Post("/b", Script({}));
  server_.Start();
  Client();
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(Get("/a").ok());
    ASSERT_TRUE(client_->Send(Req("POST", server_.Url("/b"), "x")).ok());
  }
  ASSERT_THAT(server_.requests(), SizeIs(6));
  EXPECT_EQ(server_.DistinctClientPorts(), 1u);
}

TEST_F(HttpClientTest, RetriesReuseTheConnection) {
  server_.Get("/flaky", Script({500, 502, 503}));
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r = Get("/flaky");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(server_.CountTo("/flaky"), 4u);
  EXPECT_EQ(server_.DistinctClientPorts(), 1u);
}

TEST_F(HttpClientTest, CreateRejectsNonsenseOptions) {
  HttpClientOptions o;
  o.max_attempts = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(HttpClient::Create(o).status()));
  o = HttpClientOptions();
  o.max_response_bytes = 0;
  EXPECT_TRUE(absl::IsInvalidArgument(HttpClient::Create(o).status()));
  o = HttpClientOptions();
  o.timeout = absl::ZeroDuration();
  EXPECT_TRUE(absl::IsInvalidArgument(HttpClient::Create(o).status()));
  EXPECT_TRUE(HttpClient::Create(HttpClientOptions()).ok());
}

// --- Retries, backoff and Retry-After -----------------------------------

TEST_F(HttpClientTest, RetryAfterSecondsIsWaitedExactly) {
  server_.Get("/busy", Script({503}, {{"Retry-After", "7"}}));
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r = Get("/busy");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "attempt 2");
  EXPECT_EQ(client_->attempts(), 2);
  EXPECT_THAT(clock_.sleeps(), ElementsAre(absl::Seconds(7)));
  EXPECT_EQ(clock_.Elapsed(), absl::Seconds(7));
}

TEST_F(HttpClientTest, RetryAfterHttpDateIsWaitedUntil) {
  const std::string date =
      absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT",
                       clock_.Now() + absl::Seconds(42), absl::UTCTimeZone());
  server_.Get("/limited", Script({429}, {{"Retry-After", date}}));
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r = Get("/limited");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(client_->attempts(), 2);
  EXPECT_THAT(clock_.sleeps(), ElementsAre(absl::Seconds(42)));
}

TEST_F(HttpClientTest, RetryAfterLongerThanTheLimitReturnsTheResponse) {
  server_.Get("/later", Script({503, 503}, {{"Retry-After", "3600"}}));
  server_.Start();
  HttpClientOptions o = Options();
  o.max_retry_after = absl::Minutes(5);
  Client(o);
  absl::StatusOr<HttpResponse> r = Get("/later");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 503);
  EXPECT_THAT(r->Header("retry-after"), Optional(std::string("3600")));
  EXPECT_EQ(client_->attempts(), 1);
  EXPECT_THAT(clock_.sleeps(), ElementsAre());
}

TEST_F(HttpClientTest, HugeRetryAfterIsNotWaitedOutEither) {
  // Ten digits: still a number of seconds, and far over max_retry_after.
  server_.Get("/later", Script({429, 429}, {{"Retry-After", "9999999999"}}));
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r = Get("/later");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 429);
  EXPECT_EQ(client_->attempts(), 1);
  EXPECT_THAT(clock_.sleeps(), ElementsAre());
}

TEST_F(HttpClientTest, UnparseableRetryAfterFallsBackToBackoff) {
  server_.Get("/busy", Script({503}, {{"Retry-After", "soon"}}));
  server_.Start();
  Client();
  ASSERT_TRUE(Get("/busy").ok());
  std::vector<absl::Duration> sleeps = clock_.sleeps();
  ASSERT_THAT(sleeps, SizeIs(1));
  EXPECT_GE(sleeps[0], absl::Milliseconds(800));
  EXPECT_LE(sleeps[0], absl::Milliseconds(1200));
}

TEST_F(HttpClientTest, RetryAfterIsIgnoredOnOtherStatuses) {
  server_.Get("/err", Script({500}, {{"Retry-After", "100"}}));
  server_.Start();
  Client();
  ASSERT_TRUE(Get("/err").ok());
  std::vector<absl::Duration> sleeps = clock_.sleeps();
  ASSERT_THAT(sleeps, SizeIs(1));
  EXPECT_LE(sleeps[0], absl::Milliseconds(1200));
}

TEST_F(HttpClientTest, ServerErrorsBackOffExponentiallyThenReturnTheLast) {
  server_.Get("/down", Script({500, 500, 500, 500, 500, 500}));
  server_.Start();
  HttpClientOptions o = Options();
  o.max_attempts = 5;
  o.initial_backoff = absl::Seconds(1);
  Client(o);
  absl::StatusOr<HttpResponse> r = Get("/down");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 500);
  EXPECT_EQ(r->body, "attempt 5");
  EXPECT_EQ(client_->attempts(), 5);
  EXPECT_EQ(server_.CountTo("/down"), 5u);
  std::vector<absl::Duration> sleeps = clock_.sleeps();
  ASSERT_THAT(sleeps, SizeIs(4));
  for (size_t i = 0; i < sleeps.size(); ++i) {
    const absl::Duration base = absl::Seconds(1 << i);  // 1, 2, 4, 8 s
    EXPECT_GE(sleeps[i], base * 0.8) << "wait " << i;
    EXPECT_LE(sleeps[i], base * 1.2) << "wait " << i;
  }
}

TEST_F(HttpClientTest, BackoffIsCappedAtMaxBackoff) {
  server_.Get("/down", Script({500, 500, 500, 500, 500}));
  server_.Start();
  HttpClientOptions o = Options();
  o.max_attempts = 5;
  o.initial_backoff = absl::Seconds(10);
  o.max_backoff = absl::Seconds(15);
  Client(o);
  ASSERT_TRUE(Get("/down").ok());
  std::vector<absl::Duration> sleeps = clock_.sleeps();
  ASSERT_THAT(sleeps, SizeIs(4));
  EXPECT_GE(sleeps[0], absl::Seconds(8));
  EXPECT_LE(sleeps[0], absl::Seconds(12));
  for (size_t i = 1; i < sleeps.size(); ++i) {
    EXPECT_GE(sleeps[i], absl::Seconds(12)) << "wait " << i;
    EXPECT_LE(sleeps[i], absl::Seconds(18)) << "wait " << i;
  }
}

TEST_F(HttpClientTest, JitterSpreadsTheWaits) {
  server_.Get("/down", Script(std::vector<int>(20, 500)));
  server_.Start();
  HttpClientOptions o = Options();
  o.max_attempts = 20;
  o.initial_backoff = absl::Seconds(1);
  o.max_backoff = absl::Seconds(1);  // Every wait is 1 s +-20%.
  Client(o);
  ASSERT_TRUE(Get("/down").ok());
  std::vector<absl::Duration> sleeps = clock_.sleeps();
  ASSERT_THAT(sleeps, SizeIs(19));
  absl::Duration lo = absl::InfiniteDuration(), hi = absl::ZeroDuration();
  for (absl::Duration d : sleeps) {
    EXPECT_GE(d, absl::Milliseconds(800));
    EXPECT_LE(d, absl::Milliseconds(1200));
    lo = std::min(lo, d);
    hi = std::max(hi, d);
  }
  EXPECT_GT(hi - lo, absl::Milliseconds(10));  // Not all the same.
}

TEST_F(HttpClientTest, SendOnceNeverRetries) {
  server_.Get("/busy", Script({503}, {{"Retry-After", "1"}}));
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r =
      client_->SendOnce(Req("GET", server_.Url("/busy")));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 503);
  EXPECT_EQ(client_->attempts(), 1);
  EXPECT_THAT(clock_.sleeps(), ElementsAre());
}

class RetryableStatusTest : public HttpClientTest,
                            public ::testing::WithParamInterface<int> {};

TEST_P(RetryableStatusTest, IsRetriedOnce) {
  server_.Get("/x", Script({GetParam()}));
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r = Get("/x");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(client_->attempts(), 2);
  EXPECT_THAT(clock_.sleeps(), SizeIs(1));
}

INSTANTIATE_TEST_SUITE_P(Statuses, RetryableStatusTest,
                         ::testing::Values(408, 429, 500, 502, 503, 504));

class FinalStatusTest : public HttpClientTest,
                        public ::testing::WithParamInterface<int> {};

TEST_P(FinalStatusTest, IsReturnedWithoutRetry) {
  server_.Get("/x", Script({GetParam()}, {{"Retry-After", "1"}}));
  server_.Start();
  Client();
  absl::StatusOr<HttpResponse> r = Get("/x");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, GetParam());
  EXPECT_EQ(client_->attempts(), 1);
  EXPECT_EQ(server_.CountTo("/x"), 1u);
  EXPECT_THAT(clock_.sleeps(), ElementsAre());
}

INSTANTIATE_TEST_SUITE_P(Statuses, FinalStatusTest,
                         ::testing::Values(400, 401, 403, 404, 409, 422, 501,
                                           505));

// --- Transport errors ---------------------------------------------------

TEST_F(HttpClientTest, ConnectionRefusedIsUnavailableAfterRetries) {
  RefusingPort refusing;
  HttpClientOptions o = Options();
  o.max_attempts = 3;
  Client(o);
  absl::StatusOr<HttpResponse> r = client_->Send(Req(
      "GET", absl::StrCat("http://user:pw-SECRET@127.0.0.1:", refusing.port(),
                          "/users?api_key=SECRET#frag")));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  EXPECT_THAT(r.status().message(),
              HasSubstr(absl::StrCat("127.0.0.1:", refusing.port(), "/users")));
  ExpectNoSecrets(r.status());
  EXPECT_EQ(client_->attempts(), 3);
  std::vector<absl::Duration> sleeps = clock_.sleeps();
  ASSERT_THAT(sleeps, SizeIs(2));
  EXPECT_GE(sleeps[0], absl::Milliseconds(800));
  EXPECT_LE(sleeps[0], absl::Milliseconds(1200));
  EXPECT_GE(sleeps[1], absl::Milliseconds(1600));
  EXPECT_LE(sleeps[1], absl::Milliseconds(2400));
}

TEST_F(HttpClientTest, RecoversWhenTheServerComesUp) {
  // A refused first attempt, then the same client against a live server.
  RefusingPort refusing;
  Client();
  EXPECT_TRUE(absl::IsUnavailable(
      client_
          ->SendOnce(Req(
              "GET", absl::StrCat("http://127.0.0.1:", refusing.port(), "/")))
          .status()));
  server_.Get("/", Script({}));
  server_.Start();
  absl::StatusOr<HttpResponse> r = Get("/");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
}

TEST_F(HttpClientTest, BodyOverTheBoundWithContentLengthIsResourceExhausted) {
  server_.Get("/big", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(4096, 'x'), "application/octet-stream");
  });
  server_.Start();
  HttpClientOptions o = Options();
  o.max_response_bytes = 4095;
  Client(o);
  absl::StatusOr<HttpResponse> r =
      client_->Send(Req("GET", server_.Url("/big?token=SECRET")));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("4095"));
  ExpectNoSecrets(r.status());
  EXPECT_EQ(client_->attempts(), 1);  // Not transient: not retried.
}

TEST_F(HttpClientTest, BodyExactlyAtTheBoundIsAccepted) {
  server_.Get("/big", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(std::string(4096, 'x'), "application/octet-stream");
  });
  server_.Start();
  HttpClientOptions o = Options();
  o.max_response_bytes = 4096;
  Client(o);
  absl::StatusOr<HttpResponse> r = Get("/big");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->body.size(), 4096u);
}

TEST_F(HttpClientTest, ChunkedBodyOverTheBoundIsResourceExhausted) {
  server_.Get("/stream", [](const httplib::Request&, httplib::Response& res) {
    res.set_chunked_content_provider(
        "application/octet-stream", [](size_t offset, httplib::DataSink& sink) {
          if (offset >= 1 << 20) {
            sink.done();
            return true;
          }
          const std::string chunk(16 * 1024, 'y');
          return sink.write(chunk.data(), chunk.size());
        });
  });
  server_.Start();
  HttpClientOptions o = Options();
  o.max_response_bytes = 100 * 1024;
  Client(o);
  absl::StatusOr<HttpResponse> r = Get("/stream");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
  EXPECT_EQ(client_->attempts(), 1);
}

TEST_F(HttpClientTest, TheBoundAppliesToTheDecodedBody) {
  // JSON compresses (the server gzips it for curl's Accept-Encoding): the
  // bytes on the wire are far under the bound, the decoded body is not.
  const std::string small(200 * 1024, ' ');
  const std::string bomb(8 << 20, ' ');
  server_.Get("/small",
              [small](const httplib::Request&, httplib::Response& res) {
                res.set_content(small, "application/json");
              });
  server_.Get("/bomb", [bomb](const httplib::Request&, httplib::Response& res) {
    res.set_content(bomb, "application/json");
  });
  server_.Start();
  HttpClientOptions o = Options();
  o.max_response_bytes = 1 << 20;
  Client(o);
  absl::StatusOr<HttpResponse> r = Get("/small");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->Header("content-encoding").has_value());  // Compressed.
  EXPECT_EQ(r->body, small);
  r = Get("/bomb");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(r.status())) << r.status();
}

TEST_F(HttpClientTest, SlowServerIsDeadlineExceeded) {
  server_.Get("/slow", [this](const httplib::Request&, httplib::Response& res) {
    release_.WaitForNotificationWithTimeout(absl::Seconds(2));
    res.set_content("late", "text/plain");
  });
  server_.Start();
  HttpClientOptions o = Options();
  o.timeout = absl::Milliseconds(300);
  o.max_attempts = 1;
  Client(o);
  absl::StatusOr<HttpResponse> r =
      client_->Send(Req("GET", server_.Url("/slow?sig=SECRET")));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("/slow"));
  ExpectNoSecrets(r.status());
  EXPECT_EQ(client_->attempts(), 1);
}

TEST_F(HttpClientTest, UrlWithoutSchemeKeepsItsSecretsToo) {
  // libcurl guesses http:// for such a URL; the message must still not
  // carry its user info.
  RefusingPort refusing;
  HttpClientOptions o = Options();
  o.max_attempts = 1;
  Client(o);
  absl::StatusOr<HttpResponse> r = client_->Send(
      Req("GET", absl::StrCat("user:pw-SECRET@127.0.0.1:", refusing.port(),
                              "/x?k=SECRET")));
  ASSERT_FALSE(r.ok());
  ExpectNoSecrets(r.status());
}

TEST_F(HttpClientTest, UnsupportedSchemeIsInvalidArgument) {
  Client();
  absl::StatusOr<HttpResponse> r = client_->Send(
      Req("GET", "ftp://user:pw-SECRET@127.0.0.1/file?key=SECRET"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  ExpectNoSecrets(r.status());
  EXPECT_EQ(client_->attempts(), 1);
}

TEST_F(HttpClientTest, MalformedUrlIsInvalidArgument) {
  Client();
  absl::StatusOr<HttpResponse> r =
      client_->Send(Req("GET", "http://[::1/path?x=SECRET"));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << r.status();
  ExpectNoSecrets(r.status());
}

// --- TLS ----------------------------------------------------------------

TEST_F(HttpClientTest, HttpsToAPlainHttpPortFails) {
  server_.Get("/", Script({}));
  server_.Start();
  HttpClientOptions o = Options();
  o.max_attempts = 2;
  Client(o);
  absl::StatusOr<HttpResponse> r = client_->Send(Req(
      "GET",
      absl::StrCat("https://127.0.0.1:", server_.port(), "/x?api_key=SECRET")));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status()) ||
              absl::IsUnavailable(r.status()))
      << r.status();
  ExpectNoSecrets(r.status());
}

class TlsTest : public HttpClientTest {
 protected:
  SelfSignedCert cert_;
  idsync::testing::ScopedTestDir dir_{"http_tls"};
  TestServer tls_{std::make_unique<httplib::SSLServer>(cert_.cert, cert_.key)};

  void TearDown() override {
    HttpClientTest::TearDown();
    tls_.Stop();
  }
  std::string CaFile() {
    const std::string path = dir_.File("ca.pem");
    std::ofstream(path) << cert_.pem;
    return path;
  }
};

TEST_F(TlsTest, SelfSignedServerFailsVerification) {
  tls_.Get("/secure", Script({}));
  tls_.Start("https");
  Client();
  absl::StatusOr<HttpResponse> r =
      client_->Send(Req("GET", tls_.Url("/secure?api_key=SECRET")));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status())) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("/secure"));
  ExpectNoSecrets(r.status());
  EXPECT_EQ(client_->attempts(), 1);  // Verification does not get better.
  EXPECT_EQ(tls_.CountTo("/secure"), 0u);
}

TEST_F(TlsTest, SelfSignedServerIsTrustedThroughCaFile) {
  tls_.Get("/secure", Script({}));
  tls_.Start("https");
  HttpClientOptions o = Options();
  o.ca_file = CaFile();
  Client(o);
  absl::StatusOr<HttpResponse> r =
      client_->Send(Req("GET", tls_.Url("/secure")));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "attempt 1");
}

TEST_F(TlsTest, MissingCaFileFails) {
  tls_.Get("/secure", Script({}));
  tls_.Start("https");
  HttpClientOptions o = Options();
  o.ca_file = dir_.File("absent.pem");
  Client(o);
  absl::StatusOr<HttpResponse> r =
      client_->Send(Req("GET", tls_.Url("/secure")));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsFailedPrecondition(r.status()) ||
              absl::IsUnavailable(r.status()))
      << r.status();
}

// --- Client-side rate limit ---------------------------------------------

TEST_F(HttpClientTest, RateLimitSpacesRequestsOnTheClock) {
  server_.Get("/r", Script({}));
  server_.Start();
  HttpClientOptions o = Options();
  o.requests_per_second = 2;
  o.burst = 1;
  Client(o);
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(Get("/r").ok());
  EXPECT_EQ(server_.CountTo("/r"), 5u);
  // The first goes at once, each of the other four waits half a second.
  EXPECT_GE(clock_.Elapsed(), absl::Milliseconds(1990));
  EXPECT_LE(clock_.Elapsed(), absl::Milliseconds(2010));
}

TEST_F(HttpClientTest, RateLimitAllowsABurst) {
  server_.Get("/r", Script({}));
  server_.Start();
  HttpClientOptions o = Options();
  o.requests_per_second = 1;
  o.burst = 3;
  Client(o);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(Get("/r").ok());
  EXPECT_EQ(clock_.Elapsed(), absl::ZeroDuration());
  ASSERT_TRUE(Get("/r").ok());
  EXPECT_GE(clock_.Elapsed(), absl::Milliseconds(990));
  EXPECT_LE(clock_.Elapsed(), absl::Milliseconds(1010));
}

TEST_F(HttpClientTest, RetriesTakeFromTheRateLimitToo) {
  server_.Get("/r", Script({500}));
  server_.Start();
  HttpClientOptions o = Options();
  o.requests_per_second = 0.1;  // One request per 10 s.
  o.burst = 1;
  Client(o);
  ASSERT_TRUE(Get("/r").ok());
  EXPECT_EQ(client_->attempts(), 2);
  // The backoff (about 1 s) and then the rest of the 10 s the bucket needs.
  EXPECT_GE(clock_.Elapsed(), absl::Milliseconds(9990));
  EXPECT_LE(clock_.Elapsed(), absl::Milliseconds(10010));
}

// --- RedactUrl, ParseRetryAfter, UrlEncode ------------------------------

TEST(RedactUrlTest, DropsUserInfoQueryAndFragment) {
  EXPECT_EQ(RedactUrl("https://user:pw@host.example:8443/a/b?x=1&k=s#frag"),
            "https://host.example:8443/a/b");
  EXPECT_EQ(RedactUrl("http://host/path"), "http://host/path");
  EXPECT_EQ(RedactUrl("http://host/path?api_key=s"), "http://host/path");
  EXPECT_EQ(RedactUrl("http://host#frag"), "http://host");
  EXPECT_EQ(RedactUrl("http://user:pw@host"), "http://host");
  EXPECT_EQ(RedactUrl("http://token@host/p"), "http://host/p");
  EXPECT_EQ(RedactUrl("http://a@b:c@host/p"), "http://host/p");
  // An '@' after the authority is not user info.
  EXPECT_EQ(RedactUrl("http://host/users/a@b.com"),
            "http://host/users/a@b.com");
  EXPECT_EQ(RedactUrl("http://host/p?next=http://u:p@evil/"), "http://host/p");
  EXPECT_EQ(RedactUrl("http://[::1]:8080/p?x"), "http://[::1]:8080/p");
  EXPECT_EQ(RedactUrl("/relative/path?x=1"), "/relative/path");
  EXPECT_EQ(RedactUrl("host/path?x=1"), "host/path");
  EXPECT_EQ(RedactUrl("user:pw@host/path?x=1"), "host/path");
  EXPECT_EQ(RedactUrl(""), "");
}

TEST(ParseRetryAfterTest, DeltaSeconds) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  EXPECT_THAT(ParseRetryAfter("7", now), Optional(absl::Seconds(7)));
  EXPECT_THAT(ParseRetryAfter(" 120 ", now), Optional(absl::Seconds(120)));
  EXPECT_THAT(ParseRetryAfter("0", now), Optional(absl::ZeroDuration()));
  EXPECT_THAT(ParseRetryAfter("999999999", now),
              Optional(absl::Seconds(999999999)));
}

TEST(ParseRetryAfterTest, HttpDates) {
  const absl::Time now =
      absl::FromUnixSeconds(1700000000);  // 2023-11-14 22:13:20 UTC
  EXPECT_THAT(ParseRetryAfter("Tue, 14 Nov 2023 22:14:00 GMT", now),
              Optional(absl::Seconds(40)));
  // RFC 850 and asctime forms, which RFC 9110 says to accept.
  EXPECT_THAT(ParseRetryAfter("Tuesday, 14-Nov-23 22:14:00 GMT", now),
              Optional(absl::Seconds(40)));
  EXPECT_THAT(ParseRetryAfter("Tue Nov 14 22:14:00 2023", now),
              Optional(absl::Seconds(40)));
  // A date in the past means now.
  EXPECT_THAT(ParseRetryAfter("Tue, 14 Nov 2023 22:00:00 GMT", now),
              Optional(absl::ZeroDuration()));
}

TEST(ParseRetryAfterTest, Unparseable) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(ParseRetryAfter("", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("   ", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("soon", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("1.5", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("-5", now), std::nullopt);
  EXPECT_EQ(ParseRetryAfter("7 seconds", now), std::nullopt);
}

TEST(ParseRetryAfterTest, HugeDeltaIsLongNotAbsent) {
  // Too big to wait out, but not "absent": a caller must not retry sooner.
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  std::optional<absl::Duration> d = ParseRetryAfter("9999999999", now);
  ASSERT_TRUE(d.has_value());
  EXPECT_GE(*d, absl::Hours(24 * 365));
}

TEST(UrlEncodeTest, KeepsUnreservedAndEncodesTheRest) {
  EXPECT_EQ(UrlEncode("AZaz09-._~"), "AZaz09-._~");
  EXPECT_EQ(UrlEncode("a b&c=d/e?f#g+h%i:j@k"),
            "a%20b%26c%3Dd%2Fe%3Ff%23g%2Bh%25i%3Aj%40k");
  EXPECT_EQ(UrlEncode("\xc3\xa9"), "%C3%A9");  // UTF-8 bytes, upper-case hex.
  EXPECT_EQ(UrlEncode(std::string("\0\xff", 2)), "%00%FF");
  EXPECT_EQ(UrlEncode(""), "");
}

}  // namespace
}  // namespace idsync
