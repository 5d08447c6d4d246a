// Hostile input against the real idsync-dispatcher binary's REST API, sent as
// raw bytes over a socket (so nothing is tidied up by a client library):
// oversized, compressed and deeply nested bodies, invalid UTF-8, numbers out
// of range, unknown fields and wrong types, junk and traversal in ids, header
// injection in webhook and callback URLs, bad Idempotency-Keys, bad
// Authorization headers and content types. For every request: a 4xx (never a
// 5xx, a hang or a dead process) with a JSON error body that names the
// problem, and not a byte written to the store. Afterwards the server still
// serves.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/dispatcher_fixture.h"
#include "tests/testing/node_server.h"
#include "tests/testing/store_signature.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;
using Json = nlohmann::json;

// A public address as an IP literal: no DNS, and refused by no SSRF rule.
constexpr char kPublicHook[] = "https://93.184.216.34/hook";
constexpr size_t kBodyLimit = 1 << 20;

bool ContainsIgnoreCase(absl::string_view text, absl::string_view part) {
  return absl::StrContains(absl::AsciiStrToLower(text),
                           absl::AsciiStrToLower(part));
}

// A response read off the socket.
struct RawReply {
  int status = 0;
  std::string head;  // Status line and headers.
  std::string body;
  std::string error;  // Transport trouble: a timeout (a hang) or a reset.
  std::string Describe() const {
    return absl::StrCat(status, " ", error, "\n", head, "\n",
                        body.substr(0, 500));
  }
};

// One request, `request` sent as is on a new connection; the reply read up
// to its Content-Length. A server that answers nothing in 10 s hangs.
RawReply SendRaw(int port, const std::string& request) {
  RawReply reply;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) {
    reply.error = "socket failed";
    return reply;
  }
  timeval timeout{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    reply.error = "connect failed";
    return reply;
  }
  // The server may answer (and close) before it has read everything.
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n =
        send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += static_cast<size_t>(n);
  }
  std::string in;
  size_t header_end = std::string::npos;
  size_t want = std::string::npos;
  char buf[65536];
  while (want == std::string::npos || in.size() < want) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0) {
      reply.error = errno == EAGAIN || errno == EWOULDBLOCK
                        ? "no answer within 10 s (a hang)"
                        : absl::StrCat("recv: errno ", errno);
      break;
    }
    if (n == 0) break;
    in.append(buf, static_cast<size_t>(n));
    if (header_end == std::string::npos) {
      header_end = in.find("\r\n\r\n");
      if (header_end != std::string::npos) {
        want = header_end + 4;  // No Content-Length: read to the close.
        for (absl::string_view line : absl::StrSplit(
                 absl::string_view(in).substr(0, header_end), "\r\n")) {
          size_t length = 0;
          if (absl::StartsWithIgnoreCase(line, "content-length:") &&
              absl::SimpleAtoi(line.substr(15), &length)) {
            want = header_end + 4 + length;
          }
        }
        if (want == header_end + 4 &&
            !ContainsIgnoreCase(in.substr(0, header_end), "content-length:")) {
          want = std::string::npos;
        }
      }
    }
  }
  close(fd);
  if (header_end == std::string::npos) {
    if (reply.error.empty()) reply.error = "closed without an answer";
    return reply;
  }
  reply.head = in.substr(0, header_end);
  reply.body = in.substr(header_end + 4);
  if (!absl::StartsWith(reply.head, "HTTP/1.1 ") ||
      !absl::SimpleAtoi(reply.head.substr(9, 3), &reply.status)) {
    reply.error = "not an HTTP response";
  }
  return reply;
}

// Sends `first`, waits a moment, sends `second` on the same connection and
// returns everything read until the server closes it (or 3 s pass).
std::string SendInTwoParts(int port, const std::string& first,
                           const std::string& second) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return "socket failed";
  timeval timeout{3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return "connect failed";
  }
  send(fd, first.data(), first.size(), MSG_NOSIGNAL);
  absl::SleepFor(absl::Milliseconds(200));  // Two reads on the server.
  send(fd, second.data(), second.size(), MSG_NOSIGNAL);
  std::string in;
  char buf[65536];
  ssize_t n;
  while ((n = recv(fd, buf, sizeof(buf), 0)) > 0) {
    in.append(buf, static_cast<size_t>(n));
  }
  close(fd);
  return in;
}

int CountOf(absl::string_view text, absl::string_view part) {
  int n = 0;
  for (size_t at = text.find(part); at != absl::string_view::npos;
       at = text.find(part, at + 1)) {
    ++n;
  }
  return n;
}

// A request as raw bytes. Adds Host, Connection: close, the Authorization of
// `token` (none when empty), Content-Type: application/json for a body
// unless `headers` has one, and Content-Length unless `length` is false.
std::string Request(const std::string& method, const std::string& target,
                    const std::string& body = "",
                    const std::vector<std::string>& headers = {},
                    const std::string& token = "", bool length = true) {
  std::string out = absl::StrCat(method, " ", target,
                                 " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                 "Connection: close\r\n");
  if (!token.empty())
    absl::StrAppend(&out, "Authorization: Bearer ", token, "\r\n");
  bool typed = false;
  for (const std::string& h : headers) {
    absl::StrAppend(&out, h, "\r\n");
    typed = typed || absl::StartsWithIgnoreCase(h, "content-type:");
  }
  if (!body.empty() && !typed) {
    absl::StrAppend(&out, "Content-Type: application/json\r\n");
  }
  if (length) absl::StrAppend(&out, "Content-Length: ", body.size(), "\r\n");
  absl::StrAppend(&out, "\r\n", body);
  return out;
}

std::string Repeat(absl::string_view s, int n) {
  std::string out;
  out.reserve(s.size() * static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out.append(s.data(), s.size());
  return out;
}

// One hostile request and what it must get.
struct Case {
  std::string name;
  std::string request;  // Raw bytes, from Request().
  int status;           // The exact 4xx.
  std::string message;  // A part of the error message that names the problem.
};

class HostileInputTest : public testing::DispatcherTest {
 protected:
  void SetUp() override {
    // The corpus is sent faster than the default rate limit allows.
    dispatcher_args_ = {"--rate-limit", "100000", "--rate-burst", "100000"};
    DispatcherTest::SetUp();
    if (HasFatalFailure()) return;
    // Something of each kind to aim at: a csv connector with a finished run,
    // an identity created through the API, a (disabled) webhook, an auditor.
    const std::string csv = ImportPath("hr.csv");
    std::ofstream(csv) << "external_id,email,first_name,last_name\n"
                       << "E1,e1@example.com,Ann,Lee\n"
                       << "E2,e2@example.com,Bob,Kim\n";
    connector_ = Ok("POST", "/api/v1/connectors",
                    {{"business_id", "hr"},
                     {"type", "csv"},
                     {"config", {{"path", csv}}}})["id"]
                     .get<int64_t>();
    const int64_t run =
        Ok("POST", absl::StrCat("/api/v1/connectors/", connector_, "/sync"),
           Json::object())["id"]
            .get<int64_t>();
    std::string status = "running";
    for (int i = 0; i < 200 && status == "running"; ++i) {
      absl::SleepFor(absl::Milliseconds(20));
      status = Ok("GET", absl::StrCat("/api/v1/sync-runs/", run))["status"]
                   .get<std::string>();
    }
    ASSERT_EQ(status, "succeeded");
    identity_ = Ok("POST", "/api/v1/identities",
                   {{"external_id", "api-1"}, {"department", "Sales"}})["id"]
                    .get<int64_t>();
    webhook_ = Ok("POST", "/api/v1/webhooks",
                  {{"url", kPublicHook},
                   {"event_types", {"identity.created"}},
                   {"enabled", false}})["webhook"]["id"]
                   .get<int64_t>();
    auditor_ = Ok("POST", "/api/v1/tokens",
                  {{"name", "auditor"}, {"role", "auditor"}})["secret"]
                   .get<std::string>();
  }

  // Everything a request could have written: the records (signature), the
  // row counts of the other tables and the change times of the rows that
  // can be changed in place.
  std::string StoreState() {
    std::string state;
    auto signature = testing::SignStore(db_);
    EXPECT_TRUE(signature.ok()) << signature.status();
    if (signature.ok()) state = testing::DebugString(*signature);
    for (const char* sql :
         {"SELECT count(*) FROM tenants", "SELECT count(*) FROM connectors",
          "SELECT count(*) FROM sync_runs", "SELECT count(*) FROM tokens",
          "SELECT count(*) FROM audit_events", "SELECT count(*) FROM webhooks",
          "SELECT count(*) FROM outbox", "SELECT count(*) FROM deliveries",
          "SELECT count(*) FROM idempotency_keys",
          "SELECT count(*) FROM agents",
          "SELECT count(*) FROM tokens WHERE revoked_at IS NOT NULL",
          "SELECT coalesce(sum(updated_at), 0) FROM connectors",
          "SELECT coalesce(sum(updated_at), 0) FROM webhooks",
          "SELECT coalesce(sum(updated_at), 0) FROM identities",
          "SELECT count(*) FROM tenants WHERE callback_secret IS NOT NULL"}) {
      auto n = testing::QueryInt(db_, sql);
      absl::StrAppend(&state, sql, " = ",
                      n.ok() ? absl::StrCat(*n) : n.status().ToString(), "\n");
    }
    return state;
  }

  // Sends each case; checks the status, the error body, that no header was
  // injected, and that nothing was written.
  void Expect(const std::vector<Case>& cases) {
    for (const Case& c : cases) {
      SCOPED_TRACE(c.name);
      const std::string before = StoreState();
      const RawReply r = SendRaw(http_port_, c.request);
      ASSERT_TRUE(r.error.empty()) << r.Describe();
      ASSERT_FALSE(dispatcher_->Exited()) << "the dispatcher died";
      EXPECT_EQ(r.status, c.status) << r.Describe();
      EXPECT_GE(r.status, 400) << r.Describe();
      EXPECT_LT(r.status, 500) << r.Describe();
      const Json body = Json::parse(r.body, nullptr, false);
      ASSERT_TRUE(body.is_object()) << r.Describe();
      EXPECT_TRUE(body.contains("code") && body["code"].is_string() &&
                  !body["code"].get<std::string>().empty())
          << r.body;
      EXPECT_TRUE(body.contains("request_id")) << r.body;
      ASSERT_TRUE(body.contains("message") && body["message"].is_string())
          << r.body;
      EXPECT_THAT(body["message"].get<std::string>(), HasSubstr(c.message));
      EXPECT_FALSE(ContainsIgnoreCase(r.head, "\nX-Evil"))
          << "a header was injected into the response:\n"
          << r.head;
      EXPECT_EQ(StoreState(), before) << "the request wrote to the store";
      // Refusals carry the headers every answer does.
      EXPECT_TRUE(ContainsIgnoreCase(r.head, "X-Content-Type-Options: nosniff"))
          << r.head;
      EXPECT_TRUE(ContainsIgnoreCase(r.head, "Cache-Control: no-store"))
          << r.head;
    }
  }

  // The server still serves: health, a read, a write; the process lives.
  void ExpectHealthy() {
    ASSERT_FALSE(dispatcher_->Exited()) << "the dispatcher died";
    auto health = Call("GET", "/health");
    ASSERT_TRUE(health.ok()) << health.status();
    EXPECT_EQ(health->status, 200) << health->body;
    const Json list = Ok("GET", "/api/v1/identities?source=api");
    EXPECT_EQ(list["total"], 1) << list.dump();
    const Json created = Ok("POST", "/api/v1/identities",
                            {{"external_id", absl::StrCat("after-", ++n_)}});
    EXPECT_EQ(created["source"], "api") << created.dump();
    EXPECT_FALSE(dispatcher_->Exited());
  }

  std::string Post(const std::string& path, const std::string& body,
                   const std::vector<std::string>& headers = {}) {
    return Request("POST", path, body, headers, token_);
  }
  std::string Patch(const std::string& path, const std::string& body) {
    return Request("PATCH", path, body, {}, token_);
  }
  std::string Get(const std::string& path,
                  const std::vector<std::string>& headers = {}) {
    return Request("GET", path, "", headers, token_);
  }
  std::string SyncPath() const {
    return absl::StrCat("/api/v1/connectors/", connector_, "/sync");
  }
  std::string IdentityPath(absl::string_view suffix = "") const {
    return absl::StrCat("/api/v1/identities/", identity_, suffix);
  }
  std::string WebhookPath(absl::string_view suffix = "") const {
    return absl::StrCat("/api/v1/webhooks/", webhook_, suffix);
  }
  // A webhook body with `url`, JSON-escaped.
  static std::string Hook(const std::string& url) {
    return Json{{"url", url}, {"event_types", {"*"}}}.dump();
  }
  static std::string Callback(const std::string& url) {
    return Json{{"callback_url", url}}.dump();
  }

  // --- The corpus, by kind.

  std::vector<Case> Bodies() {
    const std::string ids = "/api/v1/identities";
    const std::string deep_config = absl::StrCat(
        R"({"business_id":"deep","type":"csv","config":{"path":"x","a":)",
        Repeat(R"({"a":)", 31), "1", Repeat("}", 31), "}}");
    return {
        {"declared body over 1 MiB",
         Request("POST", ids, "",
                 {absl::StrCat("Content-Length: ", kBodyLimit + 1),
                  "Content-Type: application/json"},
                 token_, false),
         413, "larger than 1048576 bytes"},
        {"Content-Length beyond 2^64",
         Request("POST", ids, "", {"Content-Length: 99999999999999999999999"},
                 token_, false),
         413, "larger than 1048576 bytes"},
        {"negative Content-Length",
         Request("POST", ids, R"({"external_id":"cl-1"})",
                 {"Content-Length: -5"}, token_, false),
         400, "Content-Length"},
        {"Content-Length not a number",
         Request("POST", ids, R"({"external_id":"cl-2"})",
                 {"Content-Length: abc"}, token_, false),
         400, "Content-Length"},
        {"chunked body",
         Request("POST", ids, "16\r\n{\"external_id\":\"ch-1\"}\r\n0\r\n\r\n",
                 {"Transfer-Encoding: chunked"}, token_, false),
         411, "Content-Length"},
        {"gzip body (a decompression bomb would pass the limit)",
         Post(ids, R"({"external_id":"gz-1"})", {"Content-Encoding: gzip"}),
         415, "Content-Encoding"},
        {"100,000 nested arrays",
         Post(ids, Repeat("[", 100000) + Repeat("]", 100000)), 400,
         "nests deeper than 32 levels"},
        {"50,000 nested objects",
         Post(ids, Repeat(R"({"a":)", 50000) + "1" + Repeat("}", 50000)), 400,
         "nests deeper than 32 levels"},
        {"500,000 unclosed arrays", Post(ids, Repeat("[", 500000)), 400,
         "nests deeper than 32 levels"},
        {"33 levels inside a connector config",
         Post("/api/v1/connectors", deep_config), 400,
         "nests deeper than 32 levels"},
        {"invalid UTF-8 in a string",
         Post(ids, "{\"external_id\":\"N-\xff\xfe\"}"), 400, "UTF-8"},
        {"overlong UTF-8", Post(ids, "{\"external_id\":\"N-\xc0\xaf\"}"), 400,
         "UTF-8"},
        {"UTF-8 encoded surrogate",
         Post(ids, "{\"external_id\":\"\xed\xa0\x80\"}"), 400, "UTF-8"},
        {"escaped lone surrogate", Post(ids, R"({"external_id":"\ud800"})"),
         400, "not valid JSON"},
        {"invalid UTF-8 in a key", Post(ids, "{\"\xff\":\"x\"}"), 400, "UTF-8"},
        {"invalid UTF-8 in an attribute",
         Post(ids, "{\"external_id\":\"u8\",\"attributes\":{\"k\":\"\xfe\"}}"),
         400, "UTF-8"},
        {"invalid UTF-8 in a query value", Get(ids + "?source=%ff%fe"), 400,
         "'source' is not valid UTF-8"},
        {"NUL in a string", Post(ids, R"({"external_id":"a\u0000b"})"), 400,
         "control character"},
        {"a list, not an object", Post(ids, R"([{"external_id":"l-1"}])"), 400,
         "must be a JSON object"},
        {"null body", Post(ids, "null"), 400, "must be a JSON object"},
        {"trailing garbage", Post(ids, R"({"external_id":"t-1"} x)"), 400,
         "not valid JSON"},
        {"NaN", Post(SyncPath(), R"({"deletion_threshold":NaN})"), 400,
         "not valid JSON"},
        {"a body where none is taken",
         Post(IdentityPath("/deactivate"), R"({"now":true})"), 400, "no body"},
        {"multipart body that is not JSON",
         Post(ids,
              "--xx\r\nContent-Disposition: form-data; name=\"external_id\""
              "\r\n\r\nmp-1\r\n--xx--\r\n",
              {"Content-Type: multipart/form-data; boundary=xx"}),
         400, "not valid JSON"},
        {"form body",
         Post(ids, "external_id=form-1",
              {"Content-Type: application/x-www-form-urlencoded"}),
         400, "not valid JSON"},
        {"XML body",
         Post(ids, "<identity external_id=\"x-1\"/>",
              {"Content-Type: application/xml"}),
         400, "not valid JSON"},
        {"Latin-1 body",
         Post(ids, "{\"external_id\":\"J\xf6rg\"}",
              {"Content-Type: application/json; charset=iso-8859-1"}),
         400, "UTF-8"},
    };
  }

  std::vector<Case> Numbers() {
    const std::string ids = "/api/v1/identities";
    return {
        {"limit=1e400", Get(ids + "?limit=1e400"), 400,
         "'limit' must be an integer"},
        {"limit=-1", Get(ids + "?limit=-1"), 400,
         "'limit' must be between 1 and 500"},
        {"limit=501", Get(ids + "?limit=501"), 400,
         "'limit' must be between 1 and 500"},
        {"limit=2^63", Get(ids + "?limit=9223372036854775808"), 400,
         "'limit' is out of range"},
        {"limit=2^31", Get(ids + "?limit=2147483648"), 400,
         "'limit' is out of range"},
        {"limit=0x10", Get(ids + "?limit=0x10"), 400,
         "'limit' must be an integer"},
        {"offset=-1", Get(ids + "?offset=-1"), 400, "'offset' must be >= 0"},
        {"offset=2^31", Get(ids + "?offset=2147483648"), 400,
         "'offset' is out of range"},
        {"limit=-1 on audit events", Get("/api/v1/audit-events?limit=-1"), 400,
         "'limit' must be between 1 and 500"},
        {"chunk_size 10001", Post(SyncPath(), R"({"chunk_size":10001})"), 400,
         "'chunk_size' must be between 1 and 10000"},
        {"chunk_size -1", Post(SyncPath(), R"({"chunk_size":-1})"), 400,
         "'chunk_size' must be between 1 and 10000"},
        {"chunk_size 2^63",
         Post(SyncPath(), R"({"chunk_size":9223372036854775808})"), 400,
         "'chunk_size' is out of range"},
        {"chunk_size 2^64",
         Post(SyncPath(), R"({"chunk_size":18446744073709551616})"), 400,
         "'chunk_size' must be an integer"},
        {"chunk_size 1e400", Post(SyncPath(), R"({"chunk_size":1e400})"), 400,
         "not valid JSON"},
        {"chunk_size 1.5", Post(SyncPath(), R"({"chunk_size":1.5})"), 400,
         "'chunk_size' must be an integer"},
        {"max_records -1", Post(SyncPath(), R"({"max_records":-1})"), 400,
         "'max_records' must be >= 0"},
        {"max_records 1e300", Post(SyncPath(), R"({"max_records":1e300})"), 400,
         "'max_records' must be an integer"},
        {"deletion_threshold 1.5",
         Post(SyncPath(), R"({"deletion_threshold":1.5})"), 400,
         "'deletion_threshold' must be a fraction between 0 and 1"},
        {"connector deletion_threshold -0.0001",
         Patch(absl::StrCat("/api/v1/connectors/", connector_),
               R"({"deletion_threshold":-0.0001})"),
         400, "'deletion_threshold' must be a fraction between 0 and 1"},
    };
  }

  std::vector<Case> FieldsAndTypes() {
    const std::string ids = "/api/v1/identities";
    const std::string connectors = "/api/v1/connectors";
    return {
        {"unknown field",
         Post(ids, R"({"external_id":"f-1","shoe_size":"42"})"), 400,
         "unknown field 'shoe_size'"},
        {"unknown query parameter", Get(ids + "?shoe_size=42"), 400,
         "unknown parameter 'shoe_size'"},
        {"unknown connector config key",
         Post(
             connectors,
             R"({"business_id":"f-2","type":"csv","config":{"path":"x","shoe_size":1}})"),
         400, "unknown key 'shoe_size'"},
        {"number for a string", Post(ids, R"({"external_id":42})"), 400,
         "'external_id' must be a string"},
        {"string for a bool", Post(SyncPath(), R"({"incremental":"yes"})"), 400,
         "'incremental' must be true or false"},
        {"number for a bool", Post(SyncPath(), R"({"incremental":1})"), 400,
         "'incremental' must be true or false"},
        {"yes for a bool in the query", Get(ids + "?include_inactive=yes"), 400,
         "'include_inactive' must be true or false"},
        {"list for attributes",
         Post(ids, R"({"external_id":"f-3","attributes":["a"]})"), 400,
         "'attributes' must be an object"},
        {"number as an attribute",
         Post(ids, R"({"external_id":"f-4","attributes":{"floor":3}})"), 400,
         "'attributes.floor' must be a string"},
        {"string for a config",
         Post(connectors, R"({"business_id":"f-5","type":"csv","config":"x"})"),
         400, "'config' must be an object"},
        {"string for auth_config",
         Post(
             connectors,
             R"({"business_id":"f-6","type":"csv","config":{"path":"x"},"auth_config":"pw"})"),
         400, "'auth_config' must be an object"},
        {"string for event_types",
         Post("/api/v1/webhooks", absl::StrCat(R"({"url":")", kPublicHook,
                                               R"(","event_types":"*"})")),
         400, "'event_types' must be an array"},
        {"string for enabled", Patch(WebhookPath(), R"({"enabled":"true"})"),
         400, "'enabled' must be true or false"},
        {"unknown token role",
         Post("/api/v1/tokens", R"({"name":"r","role":"root"})"), 400,
         "'role' must be \"admin\" or \"auditor\""},
        {"unknown connector type",
         Post(connectors,
              R"({"business_id":"f-7","type":"../../bin/sh","config":{}})"),
         400, "unknown connector type"},
        {"unknown mode",
         Post(
             connectors,
             R"({"business_id":"f-8","type":"csv","mode":"root","config":{"path":"x"}})"),
         400, "'mode' must be"},
        {"business_id with a path",
         Post(
             connectors,
             R"({"business_id":"../../etc","type":"csv","config":{"path":"x"}})"),
         400, "'business_id' must be 1-64 characters"},
        {"external_id over 256 bytes",
         Post(ids, Json{{"external_id", std::string(300, 'x')}}.dump()), 400,
         "'external_id' is longer than 256 bytes"},
        {"101 attributes",
         Post(ids,
              [] {
                Json j = {{"external_id", "f-9"},
                          {"attributes", Json::object()}};
                for (int i = 0; i < 101; ++i)
                  j["attributes"][absl::StrCat("k", i)] = "v";
                return j.dump();
              }()),
         400, "at most 100 attributes"},
    };
  }

  std::vector<Case> IdsAndPaths() {
    const std::string connector =
        absl::StrCat("/api/v1/connectors/", connector_);
    return {
        {"encoded traversal in an id", Get("/api/v1/identities/..%2F..%2Fetc"),
         404, "ids are positive integers"},
        {"traversal in the path", Get("/api/v1/identities/../../etc/passwd"),
         404, "no such endpoint"},
        {"SQL in an id", Get(connector + ";DROP"), 404,
         "ids are positive integers"},
        {"SQL in the id of a DELETE",
         Request("DELETE", connector + ";DROP", "", {}, token_), 404,
         "ids are positive integers"},
        {"encoded SQL in the id of a DELETE",
         Request("DELETE", connector + "%3B%20DROP%20TABLE%20connectors", "",
                 {}, token_),
         404, "ids are positive integers"},
        {"OR 1=1 in the id of a PATCH",
         Patch(IdentityPath("%20OR%201=1"), R"({"department":"X"})"), 404,
         "ids are positive integers"},
        {"id past int64", Get("/api/v1/connectors/99999999999999999999"), 404,
         "ids are positive integers"},
        {"5,000-digit id", Get("/api/v1/connectors/" + std::string(5000, '9')),
         404, "ids are positive integers"},
        {"100,000-byte id",
         Get("/api/v1/connectors/" + std::string(100000, 'a')), 414,
         "URL is too long"},
        {"id 0", Get("/api/v1/connectors/0"), 404, "ids are positive integers"},
        {"id -1", Get("/api/v1/connectors/-1"), 404,
         "ids are positive integers"},
        {"NUL in an id", Get("/api/v1/connectors/%00"), 404,
         "ids are positive integers"},
        {"encoded CRLF in an id", Get("/api/v1/connectors/1%0d%0aX-Evil:%201"),
         404, "ids are positive integers"},
        {"junk delivery id", Post(WebhookPath("/deliveries/abc/replay"), ""),
         404, "ids are positive integers"},
        {"id in the query as well",
         Get(IdentityPath(absl::StrCat("?id=", identity_ + 1))), 400,
         "unknown parameter 'id'"},
        {"id in the body differs from the path",
         Patch(IdentityPath(), absl::StrCat(R"({"id":)", identity_ + 1,
                                            R"(,"department":"X"})")),
         400, "'id' in the body differs from the path"},
        {"junk run id for events", Get("/api/v1/sync-runs/abc/events"), 404,
         "no such sync run"},
        {"missing run for events", Get("/api/v1/sync-runs/99999999/events"),
         404, "not found"},
        {"unknown route", Get("/api/v1/nothing"), 404, "no such endpoint"},
        {"PUT, a method no route takes",
         Request("PUT", connector, R"({"type":"csv"})", {}, token_), 405,
         "not allowed on this path"},
        {"TRACE", Request("TRACE", "/api/v1/identities", "", {}, token_), 405,
         "not allowed on this path"},
        {"POST without Content-Length to a missing identity",
         Request("POST", "/api/v1/identities/99999999/deactivate", "", {},
                 token_, false),
         404, "identity 99999999 not found"},
    };
  }

  std::vector<Case> Urls() {
    return {
        {"CRLF in a webhook host",
         Post("/api/v1/webhooks", Hook("http://x\r\nX-Evil: 1")), 400,
         "'url' holds a control character"},
        {"CRLF in a webhook path",
         Post("/api/v1/webhooks", Hook("https://93.184.216.34/\r\nX-Evil: 1")),
         400, "'url' holds a control character"},
        {"LF in a webhook path",
         Post("/api/v1/webhooks", Hook("https://93.184.216.34/\nX-Evil: 1")),
         400, "'url' holds a control character"},
        {"encoded CRLF in a webhook host",
         Post("/api/v1/webhooks", Hook("http://x%0d%0aX-Evil:%201/")), 400,
         "'url': callback URL is malformed"},
        {"space in a webhook path",
         Post("/api/v1/webhooks", Hook("https://93.184.216.34/a b")), 400,
         "'url': callback URL is malformed"},
        {"webhook URL over 2048 bytes",
         Post("/api/v1/webhooks",
              Hook(absl::StrCat(kPublicHook, "/", std::string(3000, 'a')))),
         400, "'url' is longer than 2048 bytes"},
        {"javascript: webhook",
         Post("/api/v1/webhooks", Hook("javascript:alert(1)")), 400,
         "must use http or https"},
        {"webhook with user info",
         Post("/api/v1/webhooks", Hook("https://user:pw@93.184.216.34/hook")),
         400, "must not contain user info"},
        {"loopback webhook",
         Post("/api/v1/webhooks", Hook("http://127.0.0.1/hook")), 400,
         "loopback/private address"},
        {"loopback webhook as a decimal",
         Post("/api/v1/webhooks", Hook("http://2130706433/hook")), 400,
         "loopback/private address"},
        {"metadata-service webhook",
         Post("/api/v1/webhooks", Hook("http://169.254.169.254/latest")), 400,
         "loopback/private address"},
        {"CRLF in a webhook URL change",
         Patch(WebhookPath(),
               Json{{"url", "https://93.184.216.34/\r\nX-Evil: 1"}}.dump()),
         400, "'url' holds a control character"},
        {"CRLF in an event type",
         Post("/api/v1/webhooks",
              Json{{"url", kPublicHook}, {"event_types", {"*\r\nX-Evil: 1"}}}
                  .dump()),
         400, "is not an event type"},
        {"CRLF in a callback host",
         Post(SyncPath(), Callback("http://x\r\nX-Evil: 1")), 400,
         "'callback_url' holds a control character"},
        {"CRLF in a callback path",
         Post(SyncPath(), Callback("https://93.184.216.34/\r\nX-Evil: 1")), 400,
         "'callback_url' holds a control character"},
        {"encoded CRLF in a callback host",
         Post(SyncPath(), Callback("http://x%0d%0aX-Evil:%201/")), 400,
         "'callback_url': callback URL is malformed"},
        {"loopback callback",
         Post(SyncPath(), Callback("http://127.0.0.1:9/cb")), 400,
         "'callback_url': callback URL host 127.0.0.1 is a loopback"},
    };
  }

  std::vector<Case> IdempotencyKeys() {
    const std::string body = R"({"external_id":"idem-1"})";
    const std::string ids = "/api/v1/identities";
    auto with_key = [&](const std::string& key) {
      return Post(ids, body, {absl::StrCat("Idempotency-Key: ", key)});
    };
    const std::string message = "Idempotency-Key must be 1-255 visible ASCII";
    return {
        {"256-byte key", with_key(std::string(256, 'k')), 400, message},
        // Control characters in any header are malformed HTTP.
        {"control character in the key",
         with_key("a\x01"
                  "b"),
         400, "header line is malformed"},
        {"tab in the key", with_key("a\tb"), 400, message},
        {"DEL in the key",
         with_key("a\x7f"
                  "b"),
         400, "header line is malformed"},
        {"non-ASCII key",
         with_key("a\xff\xfe"
                  "b"),
         400, message},
        {"space in the key", with_key("a b"), 400, message},
        {"100,000-byte key", with_key(std::string(100000, 'k')), 431,
         "header is larger than 16384 bytes"},
    };
  }

  std::vector<Case> Authorization() {
    const std::string body = R"({"external_id":"auth-1"})";
    const std::string ids = "/api/v1/identities";
    auto with = [&](const std::string& authorization) {
      return Request("POST", ids, body,
                     {absl::StrCat("Authorization: ", authorization)});
    };
    return {
        {"no Authorization", Request("POST", ids, body), 401,
         "missing credentials"},
        // The operator's metrics are on their own address.
        {"no Authorization on /metrics", Request("GET", "/metrics"), 404,
         "metrics address"},
        {"no scheme", with(token_), 401, "must be 'Bearer <token>'"},
        {"Basic", with("Basic " + token_), 401, "must be 'Bearer <token>'"},
        {"Bearer alone", with("Bearer"), 401, "must be 'Bearer <token>'"},
        {"5,000-byte token", with("Bearer idsync_" + std::string(5000, 'A')),
         401, "not an idsync token"},
        {"9,000-byte header", with("Bearer idsync_" + std::string(9000, 'A')),
         401, "not an idsync token"},
        {"20,000-byte header", with("Bearer idsync_" + std::string(20000, 'A')),
         431, "header is larger than 16384 bytes"},
        {"control characters in the token", with("Bearer idsync_svc_\x01\x02"),
         400, "header line is malformed"},
        {"non-ASCII token", with("Bearer idsync_svc_\xff\xfe"), 401,
         "unknown token"},
        {"the admin token and one more byte", with("Bearer " + token_ + "x"),
         401, "unknown token"},
        {"the admin token twice", with("Bearer " + token_ + " " + token_), 401,
         "unknown token"},
        {"an unknown agent token", with("Bearer idsync_agt_AAAA"), 401,
         "unknown token"},
        {"a write with an auditor token",
         Request("POST", ids, body, {}, auditor_), 403, "may only read"},
    };
  }

  // Framing a proxy in front could read differently from the server
  // (request smuggling), and header lines that are not header lines.
  std::vector<Case> Framing() {
    const std::string ids = "/api/v1/identities";
    const std::string body = R"({"external_id":"fr-1"})";
    const std::string n = absl::StrCat(body.size());
    return {
        {"two different Content-Lengths",
         Request("POST", ids, body,
                 {"Content-Length: " + n, "Content-Length: 5"}, token_, false),
         400, "Content-Length"},
        {"two equal Content-Lengths",
         Request("POST", ids, body,
                 {"Content-Length: " + n, "Content-Length: " + n}, token_,
                 false),
         400, "Content-Length"},
        {"Content-Length: +N",
         Request("POST", ids, body, {"Content-Length: +" + n}, token_, false),
         400, "Content-Length"},
        {"Content-Length with a space inside",
         Request("POST", ids, body, {"Content-Length: 2 2"}, token_, false),
         400, "Content-Length"},
        {"Transfer-Encoding and Content-Length",
         Request("POST", ids, body,
                 {"Transfer-Encoding: chunked", "Content-Length: " + n}, token_,
                 false),
         400, "Content-Length"},
        {"a header line without a colon",
         Request("POST", ids, body, {"X-Smuggle"}, token_), 400,
         "header line is malformed"},
        {"a space before the colon",
         Request("POST", ids, body, {"Content-Length : 5"}, token_), 400,
         "header line is malformed"},
        {"bare LF line ends",
         absl::StrCat("GET ", ids, " HTTP/1.1\nHost: x\nAuthorization: Bearer ",
                      token_, "\n\n"),
         400, "request line is malformed"},
        {"HTTP/2.0 on the request line",
         absl::StrCat("GET ", ids, " HTTP/2.0\r\nHost: x\r\n\r\n"), 400,
         "request line is malformed"},
        {"a space in the target",
         absl::StrCat("GET ", ids, "?a=b c HTTP/1.1\r\nHost: x\r\n\r\n"), 400,
         "request line is malformed"},
        {"bad percent-encoding in the query", Get(ids + "?status=%zz"), 400,
         "target is not a valid path"},
        {"an absolute URL as the target", Get("http://evil.example.com" + ids),
         400, "target is not a valid path"},
    };
  }

  std::vector<Case> All() {
    std::vector<Case> all;
    for (auto kind :
         {&HostileInputTest::Framing, &HostileInputTest::Bodies,
          &HostileInputTest::Numbers, &HostileInputTest::FieldsAndTypes,
          &HostileInputTest::IdsAndPaths, &HostileInputTest::Urls,
          &HostileInputTest::IdempotencyKeys,
          &HostileInputTest::Authorization}) {
      for (Case& c : (this->*kind)()) all.push_back(std::move(c));
    }
    return all;
  }

  int64_t connector_ = 0, identity_ = 0, webhook_ = 0;
  std::string auditor_;
  int n_ = 0;
};

TEST_F(HostileInputTest, AmbiguousFramingIsRefusedWithoutWriting) {
  Expect(Framing());
  ExpectHealthy();
}

TEST_F(HostileInputTest, BodiesAreRefusedWithoutWriting) {
  Expect(Bodies());
  ExpectHealthy();
}

TEST_F(HostileInputTest, NumbersOutOfRangeAreRefusedWithoutWriting) {
  Expect(Numbers());
  ExpectHealthy();
}

TEST_F(HostileInputTest, UnknownFieldsAndWrongTypesAreRefusedWithoutWriting) {
  Expect(FieldsAndTypes());
  ExpectHealthy();
}

TEST_F(HostileInputTest, JunkIdsAndPathsAreRefusedWithoutWriting) {
  Expect(IdsAndPaths());
  ExpectHealthy();
}

TEST_F(HostileInputTest, HeaderInjectionInUrlsIsRefusedWithoutWriting) {
  Expect(Urls());
  ExpectHealthy();
}

TEST_F(HostileInputTest, BadIdempotencyKeysAreRefusedWithoutWriting) {
  Expect(IdempotencyKeys());
  ExpectHealthy();
}

TEST_F(HostileInputTest, BadAuthorizationIsRefusedWithoutWriting) {
  Expect(Authorization());
  ExpectHealthy();
}

// The whole corpus against one process, twice: it still serves.
TEST_F(HostileInputTest, TheWholeCorpusLeavesTheServerHealthy) {
  const std::vector<Case> all = All();
  Expect(all);
  Expect(all);
  ExpectHealthy();
}

// A request refused before its body is read must not leave the body on the
// connection to be parsed as the next request: behind a proxy that reuses
// connections, a body holding a request would run it (request smuggling)
// and answers would go to the wrong clients.
TEST_F(HostileInputTest, UnreadBodiesAreNeverTakenForTheNextRequest) {
  const std::string smuggled =
      Post("/api/v1/identities", R"({"external_id":"smuggled"})");
  const std::string length = absl::StrCat("Content-Length: ", smuggled.size());
  auto first = [&](const std::string& method, const std::string& path,
                   const std::vector<std::string>& headers) {
    std::string out = absl::StrCat(method, " ", path,
                                   " HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                   "Authorization: Bearer ",
                                   token_, "\r\n");
    for (const std::string& h : headers) absl::StrAppend(&out, h, "\r\n");
    return out + "\r\n";
  };
  for (const auto& [name, request] :
       std::vector<std::pair<std::string, std::string>>{
           {"413, declared over the limit",
            first("POST", "/api/v1/identities",
                  {absl::StrCat("Content-Length: ", 2 * kBodyLimit)})},
           {"411, chunked", first("POST", "/api/v1/identities",
                                  {"Transfer-Encoding: chunked"})},
           {"415, gzip", first("POST", "/api/v1/identities",
                               {"Content-Encoding: gzip", length})},
           {"400, Content-Length not a number",
            first("POST", "/api/v1/identities", {"Content-Length: 1x"})},
           {"GET with a body", first("GET", "/api/v1/identities", {length})},
           {"HEAD with a body", first("HEAD", "/api/v1/identities", {length})},
           {"OPTIONS with a body",
            first("OPTIONS", "/api/v1/identities", {length})}}) {
    SCOPED_TRACE(name);
    const std::string before = StoreState();
    const std::string answer = SendInTwoParts(http_port_, request, smuggled);
    EXPECT_EQ(CountOf(answer, "HTTP/1.1 "), 1) << answer;
    EXPECT_THAT(answer, ::testing::StartsWith("HTTP/1.1 4")) << answer;
    EXPECT_EQ(StoreState(), before) << "the body ran as a request:\n" << answer;
  }
  ExpectHealthy();
}

// A body over 1 MiB sent whole (not just declared) is refused before it is
// parsed, by a real HTTP client that keeps sending.
TEST_F(HostileInputTest, BodyOverTheLimitSentWholeIs413) {
  const std::string before = StoreState();
  std::string body = R"({"external_id":"big-1")";
  body.append(2 * kBodyLimit, ' ');
  body += "}";
  HttpRequest req;
  req.method = "POST";
  req.url = absl::StrCat("http://127.0.0.1:", http_port_, "/api/v1/identities");
  req.headers = {{"Authorization", "Bearer " + token_},
                 {"Content-Type", "application/json"}};
  req.body = body;
  auto r = http_->SendOnce(req);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 413) << r->body;
  EXPECT_THAT(r->body, HasSubstr("larger than 1048576 bytes"));
  EXPECT_EQ(StoreState(), before);
  ExpectHealthy();
}

// What the hostile cases must not break: bodies are JSON whatever their
// Content-Type, up to 1 MiB (curl -d sends a form type), and a request
// without Content-Length has no body (docs/api.md).
TEST_F(HostileInputTest, JsonBodiesAreTakenWhateverTheirContentType) {
  Json big = {{"external_id", "form-typed"}, {"attributes", Json::object()}};
  for (int i = 0; i < 90; ++i) {
    big["attributes"][absl::StrCat("k", i)] = std::string(200, 'v');
  }
  ASSERT_GT(big.dump().size(), 8192u);  // Past the library's form limit.
  for (const auto& [name, type, body] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"form type, 18 KB", "application/x-www-form-urlencoded",
            big.dump()},
           {"multipart type", "multipart/form-data; boundary=xx",
            R"({"external_id":"multipart-typed"})"},
           {"text type", "text/plain", R"({"external_id":"text-typed"})"}}) {
    SCOPED_TRACE(name);
    const RawReply r =
        SendRaw(http_port_, Post("/api/v1/identities", body,
                                 {absl::StrCat("Content-Type: ", type)}));
    EXPECT_EQ(r.status, 201) << r.Describe();
  }
  const RawReply deactivated = SendRaw(
      http_port_,
      Request("POST", IdentityPath("/deactivate"), "", {}, token_, false));
  EXPECT_EQ(deactivated.status, 200) << deactivated.Describe();
  EXPECT_EQ(Json::parse(deactivated.body, nullptr, false)["active"], false)
      << deactivated.body;
}

// A webhook URL with a percent-encoded CRLF is a valid URL: it is kept and
// sent encoded, so no header is injected (the receiver sees the encoded
// path). Needs a receiver on loopback.
class HostileUrlDeliveryTest : public testing::DispatcherTest {
 protected:
  void SetUp() override {
    auto receiver = testing::NodeServer::Start(
        "tests/integration/webhooks/receiver.mjs", {});
    ASSERT_TRUE(receiver.ok()) << receiver.status();
    receiver_ = *std::move(receiver);
    dispatcher_args_ = {"--allow-private-callbacks"};
    DispatcherTest::SetUp();
  }
  std::unique_ptr<testing::NodeServer> receiver_;
};

TEST_F(HostileUrlDeliveryTest, EncodedCrlfInAWebhookUrlIsSentEncoded) {
  const std::string url = receiver_->url() + "/hooks/%0d%0aX-Evil:%201";
  Json created = Ok("POST", "/api/v1/webhooks",
                    {{"url", url}, {"event_types", {"identity.created"}}});
  EXPECT_EQ(created["webhook"]["url"], url);
  ASSERT_TRUE(receiver_
                  ->Control("POST", "/__control/secret",
                            Json{{"secret", created["secret"]}}.dump())
                  .ok());
  Ok("POST", "/api/v1/identities", {{"external_id", "crlf-1"}});
  auto r =
      receiver_->Control("GET", "/__control/wait?count=1&timeout_ms=15000");
  ASSERT_TRUE(r.ok()) << r.status();
  const Json events = Json::parse(*r)["events"];
  ASSERT_EQ(events.size(), 1u) << events.dump();
  const std::string path = events[0]["path"].get<std::string>();
  EXPECT_TRUE(ContainsIgnoreCase(path, "/hooks/%0d%0aX-Evil:%201")) << path;
  EXPECT_TRUE(events[0]["signature_valid"].get<bool>()) << events.dump();
  EXPECT_FALSE(events[0]["headers"].contains("x-evil")) << events.dump();
}

}  // namespace
}  // namespace idsync
