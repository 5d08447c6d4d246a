// The API against a real dispatcher under the exhaustion attacks of issue
// 16: 200 slowloris connections with no token (a partial header, one byte a
// second) and 500 event streams opened with a read-only auditor token, while
// /health and a list page must answer within 100 ms. The connections cost
// the dispatcher no threads; one address gets at most its share; and when
// the attackers go, the server's gauges return to zero. Also: /metrics on
// the operator's listener carries no tenant labels, and a failed
// authentication is in the log without its token.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "httplib.h"
#include "tests/integration/dispatcher_fixture.h"
#include "tests/testing/wait.h"

namespace idsync::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A TCP connection from loopback address `from` (127.0.0.x: each is its own
// client address to the server) to 127.0.0.1:`port`; -1 on failure.
int ConnectFrom(const std::string& from, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, from.c_str(), &local.sin_addr);
  sockaddr_in remote{};
  remote.sin_family = AF_INET;
  remote.sin_port = htons(static_cast<uint16_t>(port));
  remote.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
      connect(fd, reinterpret_cast<sockaddr*>(&remote), sizeof(remote)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

bool SendAll(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    const ssize_t n =
        send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Whatever `fd` has to read now (without waiting), appended to `*buffer`;
// false once the peer has closed.
bool ReadAvailable(int fd, std::string* buffer) {
  char chunk[4096];
  while (true) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) return true;
    const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buffer->append(chunk, static_cast<size_t>(n));
  }
}

int64_t ThreadsOf(pid_t pid) {
  std::ifstream status(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(status, line)) {
    int64_t n = 0;
    if (absl::StartsWith(line, "Threads:") &&
        absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(8)), &n)) {
      return n;
    }
  }
  return -1;
}

// The value of an unlabelled metric in a Prometheus text body; -1 if absent.
int64_t Gauge(const std::string& body, const std::string& name) {
  for (absl::string_view line : absl::StrSplit(body, '\n')) {
    if (absl::ConsumePrefix(&line, name + " ")) {
      int64_t v = 0;
      if (absl::SimpleAtoi(line, &v)) return v;
    }
  }
  return -1;
}

class HttpExhaustionTest : public DispatcherTest {
 protected:
  void SetUp() override {
    // ~750 sockets here, as many in the dispatcher (which inherits this).
    rlimit limit{};
    ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &limit), 0);
    ASSERT_GE(limit.rlim_max, 2048u) << "the hard open-file limit is too low";
    limit.rlim_cur = std::max<rlim_t>(limit.rlim_cur,
                                      std::min<rlim_t>(limit.rlim_max, 8192));
    ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &limit), 0);

    // A source that holds the sync's first request until the test ends, so
    // the run the streams follow stays running.
    source_.Get("/users", [this](const auto&, auto& res) {
      release_.WaitForNotificationWithTimeout(absl::Seconds(120));
      res.set_content(R"([{"id": "u1"}])", "application/json");
    });
    source_port_ = source_.bind_to_any_port("127.0.0.1");
    source_thread_ = std::thread([this] { source_.listen_after_bind(); });
    // The 500 streams come with one token: room for them in its rate limit
    // (the default would refuse all past the first 200).
    dispatcher_args_ = {"--tenant-source-cidrs", "acme=127.0.0.1/32",
                        "--rate-burst", "2000"};
    DispatcherTest::SetUp();
  }
  void TearDown() override {
    for (int fd : sockets_) close(fd);
    release_.Notify();
    source_.stop();
    source_thread_.join();
    DispatcherTest::TearDown();
  }

  // The time a GET of `path` (as the admin) takes, in ms; fails the test
  // unless it answers 200.
  double Timed(const std::string& path) {
    const absl::Time start = absl::Now();
    auto r = Call("GET", path);
    const double ms = absl::ToDoubleMilliseconds(absl::Now() - start);
    EXPECT_TRUE(r.ok()) << path << ": " << r.status();
    if (r.ok()) {
      EXPECT_EQ(r->status, 200) << path << ": " << r->body;
    }
    return ms;
  }
  // The slowest of 10 rounds of /health and a list page.
  double SlowestProbe() {
    double slowest = 0;
    for (int i = 0; i < 10; ++i) {
      slowest = std::max(slowest, Timed("/health"));
      slowest = std::max(slowest, Timed("/api/v1/identities?limit=50"));
    }
    return slowest;
  }
  // Starts a sync of `connector_id`; whether it ended in time.
  bool SyncToTheEnd(int64_t connector_id) {
    const Json run =
        Ok("POST", absl::StrCat("/api/v1/connectors/", connector_id, "/sync"));
    const std::string path =
        absl::StrCat("/api/v1/sync-runs/", run.value("id", int64_t{0}));
    return WaitUntil([&] { return Ok("GET", path)["status"] != "running"; });
  }
  std::string MetricsBody() {
    auto m = Metrics();
    EXPECT_TRUE(m.ok()) << m.status();
    return m.ok() ? m->body : "";
  }

  httplib::Server source_;
  int source_port_ = 0;
  std::thread source_thread_;
  absl::Notification release_;
  std::vector<int> sockets_;
};

TEST_F(HttpExhaustionTest, SlowClientsAndStreamsDoNotStopTheApi) {
  // A running sync, and an auditor token to follow it with.
  Json connector = Ok(
      "POST", "/api/v1/connectors",
      {{"business_id", "crm"},
       {"type", "rest"},
       {"config",
        {{"timeout_seconds", 300},
         {"streams",
          {{{"kind", "identities"},
            {"url", absl::StrCat("http://127.0.0.1:", source_port_, "/users")},
            {"fields", {{"external_id", "/id"}}}}}}}}});
  const int64_t run_id =
      Ok("POST", absl::StrCat("/api/v1/connectors/",
                              connector["id"].get<int64_t>(), "/sync"))["id"]
          .get<int64_t>();
  const std::string auditor =
      Ok("POST", "/api/v1/tokens",
         {{"name", "ro"}, {"role", "auditor"}})["secret"]
          .get<std::string>();
  const double idle_ms = SlowestProbe();
  const int64_t idle_threads = ThreadsOf(dispatcher_->pid());
  ASSERT_GT(idle_threads, 0);

  // 200 slowloris connections from 127.0.0.2 and .3 (100 each: under the
  // per-address limit of 128), each a partial header with no token.
  std::vector<int> slow;
  for (int i = 0; i < 200; ++i) {
    const int fd = ConnectFrom(absl::StrCat("127.0.0.", 2 + i % 2), http_port_);
    ASSERT_GE(fd, 0) << "slowloris " << i;
    sockets_.push_back(fd);
    slow.push_back(fd);
    ASSERT_TRUE(SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "));
  }
  std::atomic<bool> dripping{true};
  std::thread drip([&] {  // One byte a second on each.
    while (dripping) {
      for (int fd : slow) SendAll(fd, "a");
      for (int i = 0; i < 10 && dripping; ++i) {
        absl::SleepFor(absl::Milliseconds(100));
      }
    }
  });
  struct Joiner {
    std::atomic<bool>& flag;
    std::thread& thread;
    ~Joiner() {
      flag = false;
      if (thread.joinable()) thread.join();
    }
  } stop_dripping{dripping, drip};

  // 500 event streams of the running run, from 127.0.0.10..14.
  const std::string request = absl::StrCat(
      "GET /api/v1/sync-runs/", run_id,
      "/events HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n"
      "Authorization: Bearer ",
      auditor, "\r\n\r\n");
  std::vector<int> streams;
  for (int i = 0; i < 500; ++i) {
    const int fd =
        ConnectFrom(absl::StrCat("127.0.0.", 10 + i % 5), http_port_);
    ASSERT_GE(fd, 0) << "stream " << i;
    sockets_.push_back(fd);
    streams.push_back(fd);
    ASSERT_TRUE(SendAll(fd, request));
  }
  std::vector<std::string> heads(streams.size());
  ASSERT_TRUE(WaitUntil(
      [&] {
        for (size_t i = 0; i < streams.size(); ++i) {
          if (!absl::StrContains(heads[i], "\r\n\r\n")) {
            ReadAvailable(streams[i], &heads[i]);
            if (!absl::StrContains(heads[i], "\r\n\r\n")) return false;
          }
        }
        return true;
      },
      absl::Seconds(60)))
      << "not every stream was answered";
  for (const std::string& head : heads) {
    ASSERT_TRUE(absl::StartsWith(head, "HTTP/1.1 200")) << head;
    EXPECT_THAT(head, HasSubstr("text/event-stream"));
  }

  // All 700 open at once: the API still answers at once.
  const std::string during = MetricsBody();
  EXPECT_GE(Gauge(during, "idsync_http_connections"), 700) << during;
  EXPECT_EQ(Gauge(during, "idsync_http_event_streams"), 500) << during;
  const double busy_ms = SlowestProbe();
  RecordProperty("idle_probe_ms", absl::StrCat(idle_ms));
  RecordProperty("busy_probe_ms", absl::StrCat(busy_ms));
  EXPECT_LT(busy_ms, 100) << "idle: " << idle_ms << " ms";
  // Connections cost memory, not threads.
  EXPECT_LE(ThreadsOf(dispatcher_->pid()), idle_threads + 4);
  // Every slowloris connection is still open (the header deadline is 10 s),
  // so the probes above ran while they held on.
  for (int fd : slow) {
    std::string ignored;
    EXPECT_TRUE(ReadAvailable(fd, &ignored)) << "closed early";
  }

  // One address gets at most 128 connections; the next is refused with 503.
  std::vector<int> flood;
  for (int i = 0; i < 128; ++i) {
    const int fd = ConnectFrom("127.0.0.20", http_port_);
    ASSERT_GE(fd, 0);
    sockets_.push_back(fd);
    flood.push_back(fd);
  }
  ASSERT_TRUE(WaitUntil(
      [&] { return Gauge(MetricsBody(), "idsync_http_connections") >= 828; },
      absl::Seconds(10)));
  const int extra = ConnectFrom("127.0.0.20", http_port_);
  ASSERT_GE(extra, 0);
  sockets_.push_back(extra);
  ASSERT_TRUE(SendAll(extra, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"));
  std::string refused;
  WaitUntil([&] { return !ReadAvailable(extra, &refused); }, absl::Seconds(10));
  EXPECT_TRUE(absl::StartsWith(refused, "HTTP/1.1 503")) << refused;
  EXPECT_EQ(Timed("/health") < 100, true);

  // The attackers go: nothing stays behind.
  dripping = false;
  drip.join();
  for (int fd : sockets_) close(fd);
  sockets_.clear();
  EXPECT_TRUE(WaitUntil(
      [&] {
        const std::string after = MetricsBody();
        // The probe's own connection may still be counted.
        return Gauge(after, "idsync_http_connections") <= 1 &&
               Gauge(after, "idsync_http_event_streams") == 0;
      },
      absl::Seconds(20)))
      << MetricsBody();
  EXPECT_LE(ThreadsOf(dispatcher_->pid()), idle_threads + 4);
}

// The header deadline ends a slowloris connection even though it keeps
// sending: the server closes it (after a 408), the API stays up.
TEST_F(HttpExhaustionTest, TheHeaderDeadlineEndsASlowClient) {
  dispatcher_args_.push_back("--http-header-timeout");
  dispatcher_args_.push_back("2");
  StopDispatcher(SIGTERM);
  StartDispatcher();
  const int fd = ConnectFrom("127.0.0.2", http_port_);
  ASSERT_GE(fd, 0);
  sockets_.push_back(fd);
  ASSERT_TRUE(SendAll(fd, "GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: "));
  const absl::Time start = absl::Now();
  std::string answer;
  const bool closed = WaitUntil(
      [&] {
        SendAll(fd, "a");
        return !ReadAvailable(fd, &answer);
      },
      absl::Seconds(15), absl::Milliseconds(500));
  EXPECT_TRUE(closed) << "still open after 15 s";
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_THAT(answer, Not(HasSubstr("\"status\":\"ok\"")));
}

// /metrics is the operator's: on its own (loopback) listener, with no
// tenant's name or id in it unless --metrics-tenant-labels; a failed
// authentication is in the log and the metric, its token in neither.
TEST_F(HttpExhaustionTest, MetricsAndFailedLoginsTellNoTenantsSecrets) {
  Json connector = Ok("POST", "/api/v1/connectors",
                      {{"business_id", "hr"},
                       {"type", "csv"},
                       {"config", {{"path", "hr.csv"}}}});
  {
    std::ofstream(ImportPath("hr.csv"))
        << "employee_id,email\nE1,e1@example.com\n";
  }
  ASSERT_TRUE(SyncToTheEnd(connector["id"].get<int64_t>()));
  const std::string forged = "idsync_svc_forged-SECRET-0123456789";
  auto refused = Call("GET", "/api/v1/identities", nullptr, {}, forged);
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, 401);

  const std::string body = MetricsBody();
  EXPECT_THAT(body,
              HasSubstr("idsync_sync_runs_total{status=\"succeeded\"} 1"));
  EXPECT_THAT(body,
              HasSubstr("idsync_auth_failures_total{reason=\"unknown\"} 1"));
  EXPECT_THAT(body, Not(HasSubstr("tenant")));
  EXPECT_THAT(body, Not(HasSubstr("acme")));
  // Not on the API port without the operator's token.
  auto on_api = Call("GET", "/metrics");
  ASSERT_TRUE(on_api.ok());
  EXPECT_EQ(on_api->status, 404) << on_api->body;

  dispatcher_->Kill(SIGTERM);
  const ProcessResult stopped = dispatcher_->Wait();
  dispatcher_.reset();
  const std::string log = stopped.out + stopped.err;
  EXPECT_THAT(log, HasSubstr("authentication failed (unknown) from 127.0.0.1"));
  EXPECT_THAT(log, Not(HasSubstr("forged-SECRET")));

  // With the operator's consent, runs are counted per tenant.
  dispatcher_args_.push_back("--metrics-tenant-labels");
  StartDispatcher();
  ASSERT_TRUE(SyncToTheEnd(connector["id"].get<int64_t>()));
  EXPECT_THAT(MetricsBody(), HasSubstr("tenant_id="));
}

}  // namespace
}  // namespace idsync::testing
