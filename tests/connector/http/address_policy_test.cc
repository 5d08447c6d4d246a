// SSRF protection: IsPublicAddress, CheckTargetUrl against a corpus of
// known bypass spellings, and the connect-time check of an HttpClient with
// a public-only address_policy against a real server on 127.0.0.1.
//
// Nothing here needs outside network access: the accepted URLs are public
// address literals (no DNS), and names used are "localhost" (from
// /etc/hosts, or answered by libcurl itself) or in .invalid (never resolve).
#include "connector/http/address_policy.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "connector/http/http_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/connector/http/test_server.h"

namespace idsync {
namespace {

using ::idsync::testing::TestServer;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// `text` (an IPv4 or IPv6 literal) as a sockaddr; fails the test otherwise.
struct Addr {
  explicit Addr(const std::string& text) {
    auto* in = reinterpret_cast<sockaddr_in*>(&storage);
    auto* in6 = reinterpret_cast<sockaddr_in6*>(&storage);
    if (inet_pton(AF_INET, text.c_str(), &in->sin_addr) == 1) {
      in->sin_family = AF_INET;
    } else if (inet_pton(AF_INET6, text.c_str(), &in6->sin6_addr) == 1) {
      in6->sin6_family = AF_INET6;
    } else {
      ADD_FAILURE() << "not an address: " << text;
    }
  }
  const sockaddr* get() const {
    return reinterpret_cast<const sockaddr*>(&storage);
  }
  sockaddr_storage storage{};
};

bool Public(const std::string& text) {
  return IsPublicAddress(Addr(text).get());
}

TEST(IsPublicAddressTest, RefusesNonPublicIpv4) {
  for (const char* a : {"0.0.0.0",         "0.255.255.255",   "10.0.0.0",
                        "10.255.255.255",  "100.64.0.0",      "100.127.255.255",
                        "127.0.0.1",       "127.255.255.254", "169.254.0.1",
                        "169.254.169.254", "172.16.0.0",      "172.31.255.255",
                        "192.0.0.0",       "192.0.0.255",     "192.0.2.1",
                        "192.168.0.1",     "192.168.255.255", "198.18.0.0",
                        "198.19.255.255",  "198.51.100.1",    "203.0.113.1",
                        "224.0.0.1",       "239.255.255.255", "240.0.0.1",
                        "255.255.255.254", "255.255.255.255"}) {
    EXPECT_FALSE(Public(a)) << a;
  }
}

TEST(IsPublicAddressTest, AcceptsPublicIpv4IncludingRangeNeighbours) {
  for (const char* a :
       {"1.0.0.1",       "8.8.8.8",         "9.255.255.255", "11.0.0.0",
        "93.184.215.14", "100.63.255.255",  "100.128.0.0",   "126.255.255.255",
        "128.0.0.0",     "169.253.255.255", "169.255.0.0",   "172.15.255.255",
        "172.32.0.0",    "192.0.1.0",       "192.0.3.0",     "192.167.255.255",
        "192.169.0.0",   "198.17.255.255",  "198.20.0.0",    "198.51.99.255",
        "203.0.112.255", "223.255.255.255"}) {
    EXPECT_TRUE(Public(a)) << a;
  }
}

TEST(IsPublicAddressTest, RefusesNonPublicIpv6) {
  for (const char* a :
       {"::", "::1", "fc00::1", "fd12:3456::1", "fe80::1", "febf::1", "fec0::1",
        "feff::1", "ff02::1", "ff0e::1", "2001:db8::1", "2001:db8:ffff::1",
        "100::1", "100::ffff:ffff:ffff:ffff",
        "2001::1",          // Teredo
        "3fff::1",          // documentation (RFC 9637)
        "64:ff9b:1::1",     // local-use NAT64
        "4000::1", "1::1",  // outside 2000::/3: unallocated
        // Embedded IPv4, judged by it:
        "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254",
        "::ffff:0.0.0.0", "::127.0.0.1", "::10.1.2.3",
        "::ffff:0:127.0.0.1",  // IPv4-translated
        "64:ff9b::127.0.0.1", "64:ff9b::a9fe:a9fe", "64:ff9b::c0a8:101",
        "2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:c0a8:101:1::1",
        "2002:a00:1::"}) {
    EXPECT_FALSE(Public(a)) << a;
  }
}

TEST(IsPublicAddressTest, AcceptsPublicIpv6AndPublicEmbeddedIpv4) {
  for (const char* a :
       {"2606:4700::1111", "2606:4700:4700::1111", "2a00:1450:4001::1",
        "2001:4860:4860::8888", "2001:db9::1", "3fff:1000::1", "::ffff:8.8.8.8",
        "64:ff9b::8.8.8.8", "2002:808:808::1", "3ffe::1"}) {
    EXPECT_TRUE(Public(a)) << a;
  }
}

TEST(IsPublicAddressTest, OtherFamiliesAndNullAreNotPublic) {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  EXPECT_FALSE(IsPublicAddress(reinterpret_cast<const sockaddr*>(&un)));
  sockaddr_storage unspec{};
  EXPECT_FALSE(IsPublicAddress(reinterpret_cast<const sockaddr*>(&unspec)));
  EXPECT_FALSE(IsPublicAddress(nullptr));
}

TEST(AddressToStringTest, FormatsBothFamilies) {
  EXPECT_EQ(AddressToString(Addr("10.0.0.1").get()), "10.0.0.1");
  EXPECT_EQ(AddressToString(Addr("0:0::1").get()), "::1");
  EXPECT_EQ(AddressToString(nullptr), "?");
}

// Every one must be refused with allow_private = false.
std::vector<std::string> SsrfCorpus() {
  std::vector<std::string> corpus = {
      // IPv4 loopback, every spelling.
      "http://127.0.0.1/",
      "http://127.0.0.1:8080/hook",
      "https://127.0.0.1:443/",
      "http://127.1/",
      "http://127.0.1/",
      "http://0x7f000001/",
      "http://0X7F000001/",
      "http://2130706433/",
      "http://0177.0.0.1/",
      "http://017700000001/",
      "http://0x7f.0.0.1/",
      "http://0x7f.1/",
      "http://0x7f.0x0.0x0.0x1/",
      "http://127.000.000.001/",
      "http://127.0.0.1./",
      "http://0x7f000001./",
      "http://127.1./",
      "http://2130706433./",
      "http://127.255.255.254/",
      "http://%31%32%37.0.0.1/",
      // "This network" / unspecified.
      "http://0/",
      "http://0.0.0.0/",
      "http://0.0.0.0:22/",
      "http://[::]/",
      // Names that are loopback.
      "http://localhost/",
      "http://LOCALHOST./",
      "http://LocalHost:8080/",
      "http://localhost./",
      "http://api.localhost/",
      "http://API.LOCALHOST./",
      // IPv6 loopback and embedded IPv4.
      "http://[::1]/",
      "http://[0:0:0:0:0:0:0:1]/",
      "http://[::1]:8080/",
      "http://[::ffff:127.0.0.1]/",
      "http://[::ffff:7f00:1]/",
      "http://[0:0:0:0:0:ffff:7f00:1]/",
      "http://[::FFFF:127.0.0.1]/",
      "http://[::127.0.0.1]/",
      "http://[::ffff:0:7f00:1]/",
      "http://[::ffff:169.254.169.254]/",
      "http://[::ffff:a00:1]/",
      "http://[64:ff9b::7f00:1]/",
      "http://[64:ff9b::a9fe:a9fe]/",
      "http://[64:ff9b::10.0.0.1]/",
      "http://[64:ff9b:1::8.8.8.8]/",
      "http://[2002:7f00:1::]/",
      "http://[2002:a9fe:a9fe::1]/",
      "http://[2002:c0a8:0101::]/",
      // IPv6 non-public ranges, zone ids.
      "http://[fe80::1]/",
      "http://[fe80::1%25eth0]/",
      "http://[fe80::1%25lo]:8080/",
      "http://[FE80::a:b:c:d]/",
      "http://[fc00::1]/",
      "http://[fd12:3456:789a::1]/",
      "http://[fec0::1]/",
      "http://[ff02::1]/",
      "http://[2001:db8::1]/",
      "http://[100::1]/",
      "http://[2001::1]/",
      "https://[2606:4700::1111%25eth0]/",  // A zone id even on a public one.
      // Cloud metadata.
      "http://169.254.169.254/latest/meta-data/",
      "http://169.254.169.254./",
      "http://2852039166/",
      "http://0xa9fea9fe/",
      "http://0251.0376.0251.0376/",
      "http://169.254.43518/",
      "http://[fd00:ec2::254]/",
      // Private, CGNAT, reserved, documentation, multicast, broadcast.
      "http://10.0.0.1/",
      "http://10.255.255.255/",
      "http://012.0.0.1/",
      "http://0x0a.0x00.0x00.0x01/",
      "http://167772161/",
      "http://172.16.0.1/",
      "http://172.31.255.254/",
      "http://192.168.1.1/",
      "http://192.168.0.1:8443/admin",
      "http://100.64.0.1/",
      "http://100.127.255.255/",
      "http://192.0.0.8/",
      "http://192.0.2.1/",
      "http://198.18.0.1/",
      "http://198.19.255.255/",
      "http://198.51.100.7/",
      "http://203.0.113.9/",
      "http://224.0.0.1/",
      "http://239.255.255.250/",
      "http://240.0.0.1/",
      "http://255.255.255.255/",
      "http://4294967295/",
      // User info tricks (refused even on a public host).
      "http://public.example@127.0.0.1/",
      "http://example.com:80@127.0.0.1/",
      "http://user:pass@93.184.215.14/",
      "http://@93.184.215.14/",
      "http://:@93.184.215.14/",
      "http://example.com@localhost/",
      "http://127.0.0.1\\@example.com/",
      "http://127.0.0.1:80\\@example.com/",
      // Fragments and backslashes that other parsers read differently.
      "http://127.0.0.1#@example.com/",
      "http://127.0.0.1#.example.com/",
      "http:\\\\127.0.0.1\\",
      "http:/\\127.0.0.1/",
      "http://\\127.0.0.1/",
      "http://127.0.0.1\\x/",
      // Schemes.
      "HTTP://127.0.0.1/",
      "HtTpS://[::1]/",
      "file:///etc/passwd",
      "file://localhost/etc/passwd",
      "gopher://127.0.0.1:6379/_FLUSHALL",
      "gopher://93.184.215.14/",
      "ftp://93.184.215.14/",
      "dict://127.0.0.1:11211/stat",
      "ldap://127.0.0.1/",
      "ws://93.184.215.14/",
      "javascript:alert(1)",
      "data:text/plain,hi",
      "//93.184.215.14/",
      "93.184.215.14",
      "93.184.215.14:80/",
      " http://127.0.0.1/",
      // Missing or broken host.
      "",
      "http://",
      "http:///",
      "http://:80/",
      "http://user@/",
      "http://[::1/",
      "http://[v1.x]/",
      "http://127.0.0.1 /",
      "http://127.0.0.1%09/",
      "http://1.2.3.4.5/",
      "http://does-not-exist.invalid/",
      "http://4294967296/",
      // Non-ASCII (libcurl would IDN-map "①②⑦" to "127").
      "http://\xe2\x91\xa0\xe2\x91\xa1\xe2\x91\xa6.0.0.1/",
      "http://\xff\xfe.example/",
      "http://93.184.215.14\xc0\xae/",
  };
  // Very long URLs, and a NUL that would cut the URL short for libcurl.
  corpus.push_back("http://93.184.215.14/" + std::string(10000, 'a'));
  corpus.push_back("http://" + std::string(300, 'a') + ".invalid/");
  static constexpr char kNulPath[] = "http://127.0.0.1/\0x";
  static constexpr char kNulHost[] = "http://93.184.215.14\0.127.0.0.1/";
  corpus.emplace_back(kNulPath, sizeof(kNulPath) - 1);
  corpus.emplace_back(kNulHost, sizeof(kNulHost) - 1);
  return corpus;
}

TEST(CheckTargetUrlTest, RefusesTheWholeSsrfCorpus) {
  const std::vector<std::string> corpus = SsrfCorpus();
  size_t refused = 0;
  for (const std::string& url : corpus) {
    const absl::Status s = CheckTargetUrl(url, /*allow_private=*/false);
    if (absl::IsInvalidArgument(s)) {
      ++refused;
      EXPECT_THAT(s.message(), HasSubstr("callback URL")) << url;
    } else {
      ADD_FAILURE() << "not refused: " << absl::CHexEscape(url) << " -> " << s;
    }
  }
  EXPECT_GE(corpus.size(), 60u);
  EXPECT_EQ(refused, corpus.size()) << refused << " of " << corpus.size();
  std::cout << "SSRF corpus: " << refused << "/" << corpus.size()
            << " refused\n";
}

TEST(CheckTargetUrlTest, AcceptsPublicLiterals) {
  for (const char* url :
       {"http://93.184.215.14/", "https://93.184.215.14:8443/hook?x=1#f",
        "HTTPS://1.1.1.1/", "https://[2606:4700::1111]/",
        "http://[2606:4700:4700::1111]:8080/webhook",
        "http://[::ffff:8.8.8.8]/", "http://[64:ff9b::808:808]/",
        "http://[2002:5db8:d70e::1]/", "http://134744072/",
        "http://0x08080808/"}) {
    EXPECT_TRUE(CheckTargetUrl(url, /*allow_private=*/false).ok())
        << url << ": " << CheckTargetUrl(url, false);
  }
}

TEST(CheckTargetUrlTest, AllowPrivateAcceptsLoopbackAndPrivate) {
  for (const char* url :
       {"http://127.0.0.1:8080/hook", "http://localhost/", "http://127.1/",
        "http://[::1]:9000/", "http://10.0.0.1/", "http://169.254.169.254/",
        "http://[fe80::1%25eth0]/", "https://192.168.1.1/"}) {
    EXPECT_TRUE(CheckTargetUrl(url, /*allow_private=*/true).ok())
        << url << ": " << CheckTargetUrl(url, true);
  }
}

TEST(CheckTargetUrlTest, AllowPrivateStillRefusesSchemesAndUserInfo) {
  for (const char* url : {"file:///etc/passwd", "gopher://127.0.0.1/",
                          "ftp://10.0.0.1/", "http://user:pw@127.0.0.1/",
                          "http://", "127.0.0.1:80", "http://\xff.example/"}) {
    EXPECT_TRUE(absl::IsInvalidArgument(CheckTargetUrl(url, true))) << url;
  }
}

TEST(CheckTargetUrlTest, MessagesNameTheProblem) {
  EXPECT_EQ(CheckTargetUrl("ftp://93.184.215.14/", false).message(),
            "callback URL must use http or https");
  EXPECT_EQ(
      CheckTargetUrl("http:\\\\127.0.0.1\\", false).message().substr(0, 25),
      "callback URL is malformed");
  EXPECT_EQ(CheckTargetUrl("http://127.0.0.1/", false).message(),
            "callback URL host 127.0.0.1 is a loopback/private address");
  EXPECT_EQ(CheckTargetUrl("http://127.1/", false).message(),
            "callback URL host 127.0.0.1 is a loopback/private address");
  EXPECT_EQ(CheckTargetUrl("http://[::1]/", false).message(),
            "callback URL host [::1] is a loopback/private address");
  EXPECT_EQ(CheckTargetUrl("http://0x7f000001./", false).message(),
            "callback URL host 0x7f000001. (127.0.0.1) is a loopback/private "
            "address");
  EXPECT_EQ(CheckTargetUrl("http://does-not-exist.invalid/", false).message(),
            "callback URL host does not resolve");
  EXPECT_EQ(CheckTargetUrl("http://u@93.184.215.14/", false).message(),
            "callback URL must not contain user info");
  EXPECT_EQ(CheckTargetUrl("http:///", false).message(),
            "callback URL is malformed: No host part in the URL");
  EXPECT_THAT(CheckTargetUrl("http://[fe80::1%25eth0]/", false).message(),
              HasSubstr("zone id"));
  EXPECT_THAT(CheckTargetUrl("http://\xff.example/", false).message(),
              HasSubstr("ASCII"));
}

TEST(CheckTargetUrlTest, MessagesNeverContainUserInfoPathOrQuery) {
  for (const char* url : {"http://admin:SECRET1@127.0.0.1/p?token=SECRET2",
                          "http://127.0.0.1/SECRET3?token=SECRET2#SECRET4",
                          "http://10.0.0.1:8080/x?token=SECRET2",
                          "gopher://SECRET1@127.0.0.1/?SECRET2",
                          "http://does-not-exist.invalid/?token=SECRET2",
                          "http://SECRET1@does-not-exist.invalid/"}) {
    const absl::Status s = CheckTargetUrl(url, false);
    EXPECT_TRUE(absl::IsInvalidArgument(s)) << url;
    EXPECT_THAT(s.message(),
                AllOf(Not(HasSubstr("SECRET")), Not(HasSubstr("admin")),
                      Not(HasSubstr("token")), Not(HasSubstr("?"))))
        << s;
  }
}

TEST(CheckTargetUrlTest, LongHostIsTruncatedInTheMessage) {
  const std::string url = "http://" + std::string(1000, 'a') + ".localhost/";
  const absl::Status s = CheckTargetUrl(url, false);
  EXPECT_TRUE(absl::IsInvalidArgument(s));
  EXPECT_LT(s.message().size(), 250u) << s;
}

// The connect-time check, against a real server on 127.0.0.1.
class ConnectCheckTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_.Get("/hook", [](const httplib::Request&, httplib::Response& res) {
      res.set_content("ok", "text/plain");
    });
    server_.Start();
  }
  void TearDown() override { client_.reset(); }

  HttpClient& Client(bool allow_private) {
    HttpClientOptions o;
    o.address_policy =
        allow_private ? AddressPolicy::Any() : AddressPolicy::PublicOnly();
    o.max_attempts = 3;
    o.initial_backoff = absl::Milliseconds(1);
    o.timeout = absl::Seconds(10);
    absl::StatusOr<std::unique_ptr<HttpClient>> c = HttpClient::Create(o);
    EXPECT_TRUE(c.ok()) << c.status();
    client_ = std::move(c).value();
    return *client_;
  }
  static HttpRequest Get(std::string url) {
    HttpRequest r;
    r.url = std::move(url);
    return r;
  }

  TestServer server_;
  std::unique_ptr<HttpClient> client_;
};

TEST_F(ConnectCheckTest, DefaultClientConnectsToLoopback) {
  EXPECT_TRUE(Client(/*allow_private=*/true).options().address_policy->any());
  HttpClientOptions defaults;
  EXPECT_EQ(defaults.address_policy, nullptr);
  absl::StatusOr<HttpResponse> r = client_->Send(Get(server_.Url("/hook")));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "ok");
  EXPECT_EQ(server_.CountTo("/hook"), 1u);
}

TEST_F(ConnectCheckTest, RefusesLoopbackAtConnectTimeWithoutRetrying) {
  HttpClient& client = Client(/*allow_private=*/false);
  absl::StatusOr<HttpResponse> r =
      client.Send(Get(server_.Url("/hook?token=SECRET")));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(r.status())) << r.status();
  EXPECT_THAT(r.status().message(),
              AllOf(HasSubstr("refused to connect to non-public address "
                              "127.0.0.1"),
                    HasSubstr(server_.Url("/hook")), Not(HasSubstr("SECRET"))));
  EXPECT_EQ(client.attempts(), 1);  // Not retried: it will never work.
  EXPECT_EQ(server_.requests().size(), 0u);
}

TEST_F(ConnectCheckTest, LegacySpellingIsRefusedAtConnectTimeToo) {
  HttpClient& client = Client(/*allow_private=*/false);
  absl::StatusOr<HttpResponse> r = client.SendOnce(
      Get(absl::StrCat("http://0x7f000001:", server_.port(), "/hook")));
  EXPECT_TRUE(absl::IsPermissionDenied(r.status())) << r.status();
  EXPECT_EQ(server_.requests().size(), 0u);
}

// A name that resolves to loopback when connecting (as a rebinding DNS
// server would answer after passing registration) is refused on the
// address actually resolved.
TEST_F(ConnectCheckTest, NameResolvingToLoopbackIsRefusedAtConnectTime) {
  HttpClient& client = Client(/*allow_private=*/false);
  absl::StatusOr<HttpResponse> r = client.SendOnce(
      Get(absl::StrCat("http://localhost:", server_.port(), "/hook")));
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(absl::IsPermissionDenied(r.status())) << r.status();
  EXPECT_THAT(r.status().message(),
              HasSubstr("refused to connect to non-public address"));
  EXPECT_EQ(server_.requests().size(), 0u);

  // The same name with the default client reaches the server.
  Client(/*allow_private=*/true);
  absl::StatusOr<HttpResponse> ok = client_->SendOnce(
      Get(absl::StrCat("http://localhost:", server_.port(), "/hook")));
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ(ok->status, 200);
}

// Sets an environment variable for the scope of a test.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (old_.has_value()) {
      setenv(name_, old_->c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Through a proxy the connect-time check would see only the proxy: a client
// refusing private addresses ignores proxy settings.
TEST(ProxyTest, ClientRefusingPrivateAddressesDoesNotUseTheEnvProxy) {
  TestServer proxy;
  proxy.Get(".*", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("via proxy", "text/plain");
  });
  proxy.Start();
  ScopedEnv env("http_proxy", absl::StrCat("http://127.0.0.1:", proxy.port()));
  ScopedEnv no_proxy("no_proxy", "");
  HttpRequest req;
  req.url = "http://target.invalid/hook";
  {
    HttpClientOptions o;  // Default: proxies are used.
    std::unique_ptr<HttpClient> client = *HttpClient::Create(o);
    absl::StatusOr<HttpResponse> r = client->SendOnce(req);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->body, "via proxy");
  }
  const size_t seen = proxy.requests().size();
  EXPECT_EQ(seen, 1u);
  {
    HttpClientOptions o;
    o.address_policy = AddressPolicy::PublicOnly();
    std::unique_ptr<HttpClient> client = *HttpClient::Create(o);
    absl::StatusOr<HttpResponse> r = client->SendOnce(req);
    // Direct: the name does not resolve.
    EXPECT_TRUE(absl::IsUnavailable(r.status())) << r.status();
  }
  EXPECT_EQ(proxy.requests().size(), seen);
}

}  // namespace
}  // namespace idsync
