// The REST API against a real server over real HTTP: health and metrics, the
// HR joiner, input validation, synced identities, pagination, connectors,
// sync runs with live progress (Server-Sent Events), audit, unknown routes.
#include <arpa/inet.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/time_util.h"
#include "gtest/gtest.h"
#include "tests/dispatcher/api/api_fixture.h"

namespace idsync::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

using RestServerTest = ApiTest;

std::string IdPath(const std::string& base, int64_t id,
                   const std::string& suffix = "") {
  return absl::StrCat(base, "/", id, suffix);
}

// --- Health and metrics

TEST_F(RestServerTest, HealthNeedsNoTokenAndReportsStatusVersionAndTime) {
  Reply r = Get("/health", "");
  ASSERT_EQ(r.status, 200) << r.Describe();
  ASSERT_TRUE(r.json.is_object()) << r.body;
  EXPECT_EQ(r.json.size(), 3u) << r.body;
  EXPECT_EQ(r.json["status"], "ok");
  EXPECT_EQ(r.json["version"], "0.1.0");
  google::protobuf::Timestamp ts;
  ASSERT_TRUE(r.json["timestamp"].is_string()) << r.body;
  ASSERT_TRUE(google::protobuf::util::TimeUtil::FromString(
      r.json["timestamp"].get<std::string>(), &ts))
      << r.body;
  const absl::Time at = absl::FromUnixSeconds(ts.seconds());
  EXPECT_LT(absl::AbsDuration(absl::Now() - at), absl::Minutes(1));
  EXPECT_FALSE(r.Header("X-Request-Id").empty());
}

// /metrics is the operator's: every tenant's volumes are in it, so a tenant
// token (even an admin's) is refused, and only the operator's token reads it.
TEST_F(RestServerTest, MetricsNeedTheOperatorTokenAndCountRequestsByStatus) {
  Reply anonymous = Get("/metrics", "");
  ExpectError(anonymous, 401, "unauthenticated");
  EXPECT_EQ(anonymous.Header("WWW-Authenticate"), "Bearer");
  ExpectError(Get("/metrics", admin_), 403, "permission_denied");
  ExpectError(Get("/metrics", CreateToken(admin_, "ro", "auditor")), 403,
              "permission_denied");

  EXPECT_EQ(Get("/api/v1/identities", admin_).status, 200);
  EXPECT_EQ(Get("/api/v1/identities", admin_).status, 200);
  EXPECT_EQ(Get("/api/v1/identities/987654", admin_).status, 404);
  EXPECT_EQ(Get("/api/v1/identities", "idsync_svc_nope").status, 401);
  EXPECT_EQ(Post("/api/v1/identities", admin_, {{"external_id", "m1"}}).status,
            201);

  Reply metrics = Get("/metrics", kMetricsToken);
  ASSERT_EQ(metrics.status, 200) << metrics.Describe();
  EXPECT_TRUE(absl::StartsWith(metrics.Header("Content-Type"), "text/plain"))
      << metrics.Header("Content-Type");
  EXPECT_THAT(
      metrics.body,
      HasSubstr("idsync_http_requests_total{method=\"GET\",code=\"200\"} 2\n"));
  EXPECT_THAT(
      metrics.body,
      HasSubstr("idsync_http_requests_total{method=\"GET\",code=\"404\"} 1\n"));
  EXPECT_THAT(
      metrics.body,
      HasSubstr("idsync_http_requests_total{method=\"GET\",code=\"401\"} 2\n"));
  EXPECT_THAT(metrics.body,
              HasSubstr("idsync_auth_failures_total{reason=\"missing\"} 1\n"));
  EXPECT_THAT(metrics.body,
              HasSubstr("idsync_auth_failures_total{reason=\"unknown\"} 1\n"));
  EXPECT_THAT(
      metrics.body,
      HasSubstr(
          "idsync_http_requests_total{method=\"POST\",code=\"201\"} 2\n"));
  EXPECT_THAT(metrics.body, HasSubstr("# TYPE idsync_sync_runs_total counter"));
}

// Any token is a method to the parser; counting each made-up one under its
// own label let a client without a token grow the metrics without bound.
TEST_F(RestServerTest, MadeUpMethodsShareOneMetricsLabel) {
  for (int i = 0; i < 20; ++i) {
    Reply r = Send(absl::StrCat("XMETHOD", i), "/health", "");
    EXPECT_GE(r.status, 400) << r.Describe();
  }
  Reply metrics = Get("/metrics", kMetricsToken);
  ASSERT_EQ(metrics.status, 200) << metrics.Describe();
  EXPECT_THAT(metrics.body, Not(HasSubstr("XMETHOD")));
  EXPECT_THAT(metrics.body,
              HasSubstr("idsync_http_requests_total{method=\"other\""));
}

// The listen backlog of the TCP socket listening on `port`, as the kernel
// reports it (sock_diag; `ss -lt` shows it as Send-Q). nullopt if the kernel
// does not answer.
std::optional<uint32_t> ListenBacklog(int port) {
  const int fd =
      socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) return std::nullopt;
  struct {
    nlmsghdr header;
    inet_diag_req_v2 request;
  } query{};
  query.header.nlmsg_len = sizeof(query);
  query.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  query.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
  query.request.sdiag_family = AF_INET;
  query.request.sdiag_protocol = IPPROTO_TCP;
  query.request.idiag_states = 1 << 10;  // TCP_LISTEN
  std::optional<uint32_t> backlog;
  if (send(fd, &query, sizeof(query), 0) == sizeof(query)) {
    alignas(nlmsghdr) char buffer[16384];
    bool done = false;
    while (!done) {
      ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      for (auto* h = reinterpret_cast<nlmsghdr*>(buffer); NLMSG_OK(h, n);
           h = NLMSG_NEXT(h, n)) {
        if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) {
          done = true;
          break;
        }
        const auto* m = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
        if (ntohs(m->id.idiag_sport) == port) backlog = m->idiag_wqueue;
      }
    }
  }
  close(fd);
  return backlog;
}

// A burst of new connections (a pipeline's workers, dashboards, a load
// balancer's health checks) must not overflow the listen queue: the kernel
// then drops SYNs (the client retransmits after 1 s, 3 s, 7 s, ...) or resets
// connections. 100 clients connecting at once saw up to 43% resets and 1-6 s
// delays with a backlog of 5, none with SOMAXCONN.
TEST_F(RestServerTest, TheListenQueueHoldsABurstOfConnections) {
  std::optional<uint32_t> backlog = ListenBacklog(port_);
  if (!backlog.has_value()) GTEST_SKIP() << "no sock_diag here";
  EXPECT_GE(*backlog, 128u);
}

// A second dispatcher started on a port that is taken fails to start; it must
// not share the port (and split the traffic) with the first.
TEST_F(RestServerTest, ASecondServerCannotTakeAPortInUse) {
  RestServerOptions options;
  options.http.host = "127.0.0.1";
  options.http.port = port_;
  RestServer second(*service_, *store_, progress_, metrics_, *limiter_,
                    options);
  absl::Status started = second.Start();
  EXPECT_TRUE(absl::IsUnavailable(started)) << started;
  second.Stop();
  EXPECT_EQ(Get("/health", "").status, 200);
}

// --- The HR joiner

TEST_F(RestServerTest, HrJoinerIsCreatedReadChangedAndDeactivated) {
  const Json joiner = {{"external_id", "W-1001"},
                       {"email", "ada@example.com"},
                       {"first_name", "Ada"},
                       {"last_name", "Lovelace"},
                       {"department", "Engineering"},
                       {"manager_external_id", "W-1"},
                       {"attributes", {{"badge", "B-7"}, {"site", "London"}}}};
  Reply created = Post("/api/v1/identities", admin_, joiner);
  ASSERT_EQ(created.status, 201) << created.Describe();
  const int64_t id = created.json["id"].get<int64_t>();
  EXPECT_GT(id, 0);
  EXPECT_EQ(created.json["external_id"], "W-1001");
  EXPECT_EQ(created.json["source"], "api");
  EXPECT_EQ(created.json["status"], "active");
  EXPECT_EQ(created.json["active"], true);
  EXPECT_TRUE(created.json["deactivated_at"].is_null());
  EXPECT_TRUE(created.json["created_at"].is_string());

  Reply read = Get(IdPath("/api/v1/identities", id), admin_);
  ASSERT_EQ(read.status, 200) << read.Describe();
  for (const char* field :
       {"id", "external_id", "email", "first_name", "last_name", "department",
        "manager_external_id", "attributes", "source", "active", "status"}) {
    EXPECT_EQ(read.json[field], created.json[field]) << field;
  }

  // A field, and attributes merged: "" removes one, others stay.
  Reply patched = Patch(IdPath("/api/v1/identities", id), admin_,
                        {{"department", "Research"},
                         {"attributes", {{"badge", ""}, {"floor", "3"}}}});
  ASSERT_EQ(patched.status, 200) << patched.Describe();
  EXPECT_EQ(patched.json["department"], "Research");
  EXPECT_EQ(patched.json["first_name"], "Ada");
  EXPECT_EQ(patched.json["attributes"],
            Json({{"site", "London"}, {"floor", "3"}}));
  read = Get(IdPath("/api/v1/identities", id), admin_);
  EXPECT_EQ(read.json["department"], "Research");
  EXPECT_EQ(read.json["email"], "ada@example.com");
  EXPECT_EQ(read.json["attributes"],
            Json({{"site", "London"}, {"floor", "3"}}));

  Reply deactivated =
      Post(IdPath("/api/v1/identities", id, "/deactivate"), admin_);
  ASSERT_EQ(deactivated.status, 200) << deactivated.Describe();
  EXPECT_EQ(deactivated.json["active"], false);
  EXPECT_TRUE(deactivated.json["deactivated_at"].is_string());
  read = Get(IdPath("/api/v1/identities", id), admin_);
  EXPECT_EQ(read.json["active"], false);
  EXPECT_TRUE(read.json["deactivated_at"].is_string()) << read.body;

  auto ids_of = [](const Reply& list) {
    std::set<int64_t> ids;
    for (const Json& item : list.json["items"]) {
      ids.insert(item["id"].get<int64_t>());
    }
    return ids;
  };
  Reply active = Get("/api/v1/identities", admin_);
  EXPECT_EQ(ids_of(active).count(id), 0u) << active.body;
  EXPECT_EQ(active.json["total"], 0);
  Reply all = Get("/api/v1/identities?include_inactive=true", admin_);
  EXPECT_EQ(ids_of(all).count(id), 1u) << all.body;
  EXPECT_EQ(all.json["total"], 1);

  // A deactivated identity is not changed any more.
  const auto before = RowCounts();
  ExpectError(Patch(IdPath("/api/v1/identities", id), admin_,
                    {{"department", "Sales"}}),
              409, "failed_precondition", "deactivated");
  EXPECT_EQ(RowCounts(), before);
  EXPECT_EQ(Get(IdPath("/api/v1/identities", id), admin_).json["department"],
            "Research");
}

TEST_F(RestServerTest, DuplicateExternalIdIsConflictAndWritesNothing) {
  ASSERT_EQ(CreateIdentity(admin_, "W-7").status, 201);
  const auto before = RowCounts();
  Reply again = CreateIdentity(admin_, "W-7", {{"email", "other@example.com"}});
  ExpectError(again, 409, "already_exists", "W-7");
  EXPECT_EQ(RowCounts(), before);
}

// Bad input: a clear 4xx with {code, message, details, request_id} and not
// one row written.
TEST_F(RestServerTest, InvalidInputIsAClearClientErrorAndWritesNothing) {
  const int64_t connector =
      CreateCsvConnector(admin_, "hr", WriteCsv("hr.csv", 2));
  ASSERT_EQ(CreateIdentity(admin_, "W-1").status, 201);
  const int64_t existing =
      Get("/api/v1/identities", admin_).json["items"][0]["id"].get<int64_t>();
  std::string deep = "1";
  for (int i = 0; i < 100; ++i) deep = absl::StrCat("[", deep, "]");
  Json many = Json::object();
  for (int i = 0; i < 101; ++i) many[absl::StrCat("k", i)] = "v";

  struct Case {
    const char* name;
    std::string method;
    std::string path;
    std::string body;
    int status;
    const char* code;
    const char* message_part;
  };
  const std::string identities = "/api/v1/identities";
  const std::string sync = IdPath("/api/v1/connectors", connector, "/sync");
  const std::vector<Case> cases = {
      {"missing external_id", "POST", identities,
       R"({"email":"a@example.com"})", 400, "invalid_argument", "external_id"},
      {"empty external_id", "POST", identities, R"({"external_id":""})", 400,
       "invalid_argument", "external_id"},
      {"bad email", "POST", identities,
       R"({"external_id":"N-1","email":"not-an-email"})", 400,
       "invalid_argument", "email"},
      {"bool as yes", "POST", sync, R"({"incremental":"yes"})", 400,
       "invalid_argument", "incremental"},
      {"bool as yes in the query", "GET", identities + "?include_inactive=yes",
       "", 400, "invalid_argument", "include_inactive"},
      {"unknown field", "POST", identities,
       R"({"external_id":"N-1","shoe_size":"42"})", 400, "invalid_argument",
       "shoe_size"},
      {"number for a string", "POST", identities, R"({"external_id":42})", 400,
       "invalid_argument", "external_id"},
      {"object for a string", "POST", identities,
       R"({"external_id":"N-1","email":{"a":1}})", 400, "invalid_argument",
       "email"},
      {"number as an attribute", "POST", identities,
       R"({"external_id":"N-1","attributes":{"floor":3}})", 400,
       "invalid_argument", "attributes.floor"},
      {"list for attributes", "POST", identities,
       R"({"external_id":"N-1","attributes":["a"]})", 400, "invalid_argument",
       "attributes"},
      {"string for a number", "POST", sync, R"({"chunk_size":"100"})", 400,
       "invalid_argument", "chunk_size"},
      {"fraction for an integer", "POST", sync, R"({"max_records":1.5})", 400,
       "invalid_argument", "max_records"},
      {"chunk_size out of bounds", "POST", sync, R"({"chunk_size":10001})", 400,
       "invalid_argument", "chunk_size"},
      {"a list, not an object", "POST", identities, R"([{"external_id":"x"}])",
       400, "invalid_argument", "object"},
      {"not JSON", "POST", identities, R"({"external_id":)", 400,
       "invalid_argument", "not valid JSON"},
      {"nesting depth 100", "POST", identities,
       absl::StrCat(R"({"external_id":"N-1","attributes":{"a":)", deep, "}}"),
       400, "invalid_argument", "nests deeper"},
      {"invalid UTF-8", "POST", identities,
       "{\"external_id\":\"N-\xff\xfe\",\"first_name\":\"A\xc3\"}", 400,
       "invalid_argument", "UTF-8"},
      {"control character", "POST", identities,
       R"({"external_id":"N-1","first_name":"A\u0007B"})", 400,
       "invalid_argument", "control character"},
      {"external_id too long", "POST", identities,
       Json({{"external_id", std::string(300, 'x')}}).dump(), 400,
       "invalid_argument", "longer than"},
      {"too many attributes", "POST", identities,
       Json({{"external_id", "N-1"}, {"attributes", many}}).dump(), 400,
       "invalid_argument", "attributes"},
      {"id in the body differs from the path", "PATCH",
       IdPath(identities, existing), R"({"id":999999,"department":"X"})", 400,
       "invalid_argument", "differs"},
      {"a body where none is taken", "POST",
       IdPath(identities, existing, "/deactivate"), R"({"now":true})", 400,
       "invalid_argument", "no body"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const auto before = RowCounts();
    Reply r = Send(c.method, c.path, admin_, c.body);
    ExpectError(r, c.status, c.code, c.message_part);
    EXPECT_EQ(RowCounts(), before);
  }
  // The server is still well after all of that.
  EXPECT_EQ(Get("/api/v1/identities", admin_).json["total"], 1);
}

// Bodies over the limit (1 MiB) are refused whole, however they are sent,
// before anything is parsed or written. The bodies are valid JSON (padded
// with whitespace) that would otherwise be accepted.
TEST_F(RestServerTest, OversizedBodiesAreRefusedWith413) {
  constexpr size_t kLimit = 1 << 20;
  auto padded = [](const std::string& external_id, size_t size) {
    std::string body = absl::StrCat(R"({"external_id":")", external_id, "\"");
    body.append(size - body.size() - 1, ' ');
    body += "}";
    return body;
  };
  // At the limit: accepted.
  Reply at_limit = SendStreaming("POST", "/api/v1/identities", admin_,
                                 padded("at-limit", kLimit), false);
  EXPECT_EQ(at_limit.status, 201) << at_limit.Describe();

  const auto before = RowCounts();
  for (const auto& [name, size, chunked] :
       std::vector<std::tuple<std::string, size_t, bool>>{
           {"one byte over", kLimit + 1, false},
           {"2 MB", 2 * kLimit, false},
           {"2 MB, chunked", 2 * kLimit, true},
           {"64 MB, chunked", 64 * kLimit, true}}) {
    SCOPED_TRACE(name);
    Reply r = SendStreaming("POST", "/api/v1/identities", admin_,
                            padded(absl::StrCat("over-", size), size), chunked);
    ASSERT_NE(r.status, 0) << r.error;
    EXPECT_TRUE(r.status == 413 || (chunked && r.status == 411))
        << r.Describe();
    if (r.status == 413 || r.status == 411) {
      ExpectError(r, r.status, "invalid_argument");
    }
    EXPECT_EQ(RowCounts(), before);
  }
  // The server is well afterwards.
  EXPECT_EQ(Get("/api/v1/identities", admin_).json["total"], 1);
}

// --- Synced identities

TEST_F(RestServerTest, SyncedIdentitiesCannotBeChangedThroughTheApi) {
  const int64_t connector =
      CreateCsvConnector(admin_, "workday-feed", WriteCsv("workday.csv", 3));
  Json run = StartSync(admin_, connector);
  EXPECT_EQ(run["status"], "running");
  EXPECT_EQ(run["connector_id"], connector);
  Json done = WaitForRun(admin_, run["id"].get<int64_t>());
  ASSERT_EQ(done["status"], "succeeded") << done.dump();
  EXPECT_EQ(done["created"], 3);

  Reply list = Get("/api/v1/identities?source=workday-feed", admin_);
  ASSERT_EQ(list.status, 200) << list.Describe();
  ASSERT_EQ(list.json["total"], 3) << list.body;
  const Json synced = list.json["items"][0];
  const int64_t id = synced["id"].get<int64_t>();
  EXPECT_EQ(synced["source"], "workday-feed");

  const auto before = RowCounts();
  ExpectError(Patch(IdPath("/api/v1/identities", id), admin_,
                    {{"department", "Sales"}}),
              409, "failed_precondition", "workday-feed");
  ExpectError(Post(IdPath("/api/v1/identities", id, "/deactivate"), admin_),
              409, "failed_precondition", "workday-feed");
  EXPECT_EQ(RowCounts(), before);
  Reply read = Get(IdPath("/api/v1/identities", id), admin_);
  EXPECT_EQ(read.json["active"], true);
  EXPECT_EQ(read.json["department"], synced["department"]);
}

// --- Pagination

// Walks the identities with `next_page` (offset or cursor) while a background
// thread inserts a batch of identities between every two pages, until the
// original rows are covered.
class PagingTest : public ApiTest {
 protected:
  static constexpr int kOriginal = 1234;
  static constexpr int kPerBatch = 7;

  void Walk(bool cursor) {
    const std::vector<int64_t> original =
        InsertIdentities(tenant_id_, "P-", 0, kOriginal);
    ASSERT_EQ(original.size(), static_cast<size_t>(kOriginal));
    const int64_t max_original = original.back();

    // The handshake: the walker asks for a batch (requested) and waits until
    // the inserter has committed it (done).
    absl::Mutex mu;
    int requested = 0, done = 0;
    bool stop = false;
    std::vector<int64_t> inserted;
    std::thread inserter([&] {
      for (int batch = 0;; ++batch) {
        bool quit = false;
        {
          absl::MutexLock lock(&mu);
          auto asked = [&]() { return requested > done; };
          mu.Await(absl::Condition(&asked));
          quit = stop;
        }
        std::vector<int64_t> ids;
        if (!quit) {
          ids = InsertIdentities(tenant_id_, "late-", batch * kPerBatch,
                                 kPerBatch);
        }
        absl::MutexLock lock(&mu);
        inserted.insert(inserted.end(), ids.begin(), ids.end());
        ++done;
        if (quit) return;
      }
    });
    bool inserting = true;
    auto insert_batch = [&](bool last) {
      absl::MutexLock lock(&mu);
      stop = last;
      ++requested;
      auto caught_up = [&]() { return done >= requested; };
      mu.Await(absl::Condition(&caught_up));
    };

    std::map<int64_t, int> seen;
    std::vector<int64_t> order;
    std::string next;
    int64_t offset = 0, first_total = -1, last_total = -1;
    for (int page = 0; page < 1000; ++page) {
      const std::string path =
          cursor ? absl::StrCat("/api/v1/identities?limit=100",
                                next.empty() ? "" : "&cursor=", next)
                 : absl::StrCat("/api/v1/identities?limit=100&offset=", offset);
      Reply r = Get(path, admin_);
      ASSERT_EQ(r.status, 200) << r.Describe();
      EXPECT_EQ(r.json["limit"], 100);
      if (first_total < 0) first_total = r.json["total"].get<int64_t>();
      last_total = r.json["total"].get<int64_t>();
      for (const Json& item : r.json["items"]) {
        const int64_t id = item["id"].get<int64_t>();
        ++seen[id];
        order.push_back(id);
      }
      offset += static_cast<int64_t>(r.json["items"].size());
      next = r.json["next_cursor"].get<std::string>();
      const bool end = cursor ? next.empty() : r.json["items"].size() < 100;
      if (end) break;
      // Between two pages, a batch is inserted, until the walk has passed
      // the original rows.
      if (inserting) {
        const bool last = !order.empty() && order.back() >= max_original;
        insert_batch(/*last=*/false);
        if (last) {
          insert_batch(/*last=*/true);
          inserting = false;
        }
      }
    }
    if (inserting) insert_batch(/*last=*/true);
    inserter.join();

    EXPECT_EQ(first_total, kOriginal);
    EXPECT_GE(inserted.size(), static_cast<size_t>(5 * kPerBatch))
        << "the walk did not overlap the inserts";
    EXPECT_EQ(last_total, kOriginal + static_cast<int64_t>(inserted.size()));
    for (const auto& [id, n] : seen) EXPECT_EQ(n, 1) << "id " << id;
    for (int64_t id : original) EXPECT_EQ(seen.count(id), 1u) << "id " << id;
    for (int64_t id : inserted) EXPECT_EQ(seen.count(id), 1u) << "new " << id;
    EXPECT_EQ(seen.size(), original.size() + inserted.size());
    EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
  }
};

TEST_F(PagingTest, OffsetWalkVisitsEveryIdentityOnceWhileRowsAreInserted) {
  Walk(/*cursor=*/false);
}

TEST_F(PagingTest, CursorWalkVisitsEveryIdentityOnceWhileRowsAreInserted) {
  Walk(/*cursor=*/true);
}

TEST_F(RestServerTest, PagingParametersHaveDefaultsBoundsAndChecks) {
  InsertIdentities(tenant_id_, "Q-", 0, 600);
  Reply r = Get("/api/v1/identities", admin_);
  ASSERT_EQ(r.status, 200) << r.Describe();
  EXPECT_EQ(r.json["limit"], 50);
  EXPECT_EQ(r.json["offset"], 0);
  EXPECT_EQ(r.json["items"].size(), 50u);
  EXPECT_EQ(r.json["total"], 600);
  EXPECT_FALSE(r.json["next_cursor"].get<std::string>().empty());

  r = Get("/api/v1/identities?limit=0", admin_);
  EXPECT_EQ(r.json["limit"], 50);
  EXPECT_EQ(r.json["items"].size(), 50u);
  r = Get("/api/v1/identities?limit=500", admin_);
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.json["items"].size(), 500u);
  r = Get("/api/v1/identities?limit=500&offset=500", admin_);
  EXPECT_EQ(r.json["items"].size(), 100u);
  EXPECT_EQ(r.json["offset"], 500);
  EXPECT_EQ(r.json["total"], 600);
  EXPECT_TRUE(r.json["next_cursor"].get<std::string>().empty());
  r = Get("/api/v1/identities?offset=10000", admin_);
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.json["items"].empty());
  EXPECT_EQ(r.json["total"], 600);

  ExpectError(Get("/api/v1/identities?limit=501", admin_), 400,
              "invalid_argument", "limit");
  ExpectError(Get("/api/v1/identities?limit=-1", admin_), 400,
              "invalid_argument", "limit");
  ExpectError(Get("/api/v1/identities?offset=-1", admin_), 400,
              "invalid_argument", "offset");
  ExpectError(Get("/api/v1/identities?limit=ten", admin_), 400,
              "invalid_argument", "limit");
  ExpectError(Get("/api/v1/identities?cursor=garbage!", admin_), 400,
              "invalid_argument", "cursor");
  ExpectError(Get("/api/v1/identities?cursor=YzE6eHl6", admin_), 400,
              "invalid_argument", "cursor");  // "c1:xyz"
  const std::string cursor = Get("/api/v1/identities?limit=10", admin_)
                                 .json["next_cursor"]
                                 .get<std::string>();
  ASSERT_FALSE(cursor.empty());
  ExpectError(
      Get(absl::StrCat("/api/v1/identities?offset=5&cursor=", cursor), admin_),
      400, "invalid_argument", "cursor");
  ExpectError(Get("/api/v1/identities?colour=blue", admin_), 400,
              "invalid_argument", "colour");
  // Every list pages the same way.
  for (const char* list :
       {"/api/v1/accounts", "/api/v1/entitlements", "/api/v1/grants",
        "/api/v1/connectors", "/api/v1/tokens", "/api/v1/audit-events"}) {
    SCOPED_TRACE(list);
    ExpectError(Get(absl::StrCat(list, "?limit=501"), admin_), 400,
                "invalid_argument", "limit");
    ExpectError(Get(absl::StrCat(list, "?cursor=bad"), admin_), 400,
                "invalid_argument", "cursor");
    Reply page = Get(list, admin_);
    EXPECT_EQ(page.status, 200) << page.Describe();
    EXPECT_EQ(page.json["limit"], 50);
  }
}

// --- Connectors and sync runs

TEST_F(RestServerTest, ConnectorSecretIsWriteOnlyAndEncryptedAtRest) {
  const std::string kSecret = "s3cr3t-Pa55word-do-not-leak";
  const std::string kNested = "nested-client-secret-9f8e7d";
  Json body = CsvConnectorBody("vault-hr", WriteCsv("vault.csv", 2));
  body["auth_config"] = {{"password", kSecret},
                         {"oauth", {{"client_secret", kNested}}}};
  Reply created = Post("/api/v1/connectors", admin_, body,
                       {{"Idempotency-Key", "create-vault-hr"}});
  ASSERT_EQ(created.status, 201) << created.Describe();
  const int64_t id = created.json["id"].get<int64_t>();
  EXPECT_EQ(created.json["auth_config_set"], true);
  EXPECT_FALSE(created.json.contains("auth_config")) << created.body;
  EXPECT_EQ(created.json["config"]["path"], body["config"]["path"]);

  // Replayed, read, listed, tested, synced, audited: never the secret.
  Reply replay = Post("/api/v1/connectors", admin_, body,
                      {{"Idempotency-Key", "create-vault-hr"}});
  EXPECT_EQ(replay.Header("Idempotent-Replayed"), "true");
  Reply read = Get(IdPath("/api/v1/connectors", id), admin_);
  EXPECT_EQ(read.json["auth_config_set"], true);
  Reply test = Post(IdPath("/api/v1/connectors", id, "/test"), admin_);
  EXPECT_EQ(test.status, 200) << test.Describe();
  EXPECT_EQ(test.json["ok"], true) << test.body;  // The seal opens.
  Json run = StartSync(admin_, id);
  EXPECT_EQ(WaitForRun(admin_, run["id"].get<int64_t>())["status"],
            "succeeded");
  Reply rotated = Patch(IdPath("/api/v1/connectors", id), admin_,
                        {{"auth_config", {{"password", kSecret + "-2"}}}});
  EXPECT_EQ(rotated.status, 200) << rotated.Describe();
  EXPECT_EQ(rotated.json["auth_config_set"], true);
  for (const Reply& r :
       {created, replay, read, test, rotated, Get("/api/v1/connectors", admin_),
        Get(IdPath("/api/v1/connectors", id, "/runs"), admin_),
        Get("/api/v1/audit-events?limit=500", admin_)}) {
    EXPECT_EQ(r.status / 100, 2) << r.Describe();
    EXPECT_THAT(r.body, Not(HasSubstr(kSecret)));
    EXPECT_THAT(r.body, Not(HasSubstr(kNested)));
    EXPECT_THAT(r.body, Not(HasSubstr("s3cr3t")));
  }

  // The store's files hold no plaintext secret either.
  workers_->WaitIdle();
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_->path())) {
    if (!absl::StartsWith(entry.path().filename().string(), "store.db")) {
      continue;
    }
    ++files;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find("s3cr3t"), std::string::npos) << entry.path();
    EXPECT_EQ(bytes.find(kNested), std::string::npos) << entry.path();
  }
  EXPECT_GE(files, 1);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM connectors WHERE id=", id,
                               " AND length(auth_config) > 0")),
            1);

  // An empty auth_config clears the secret.
  Reply cleared = Patch(IdPath("/api/v1/connectors", id), admin_,
                        {{"auth_config", Json::object()}});
  EXPECT_EQ(cleared.status, 200) << cleared.Describe();
  EXPECT_EQ(cleared.json["auth_config_set"], false);
  EXPECT_EQ(
      Get(IdPath("/api/v1/connectors", id), admin_).json["auth_config_set"],
      false);
}

TEST_F(RestServerTest, ConnectorConfigErrorsNameTheKeyAndChangeNothing) {
  const std::string path = WriteCsv("cfg.csv", 2);
  const int64_t id = CreateCsvConnector(admin_, "cfg-hr", path);
  const Json original = Get(IdPath("/api/v1/connectors", id), admin_).json;

  auto before = RowCounts();
  ExpectError(Patch(IdPath("/api/v1/connectors", id), admin_,
                    {{"config", {{"path", path}, {"colour", "blue"}}}}),
              400, "invalid_argument", "colour");
  ExpectError(Patch(IdPath("/api/v1/connectors", id), admin_,
                    {{"config", {{"path", path}, {"delimiter", ";;"}}}}),
              400, "invalid_argument", "delimiter");
  ExpectError(Patch(IdPath("/api/v1/connectors", id), admin_,
                    {{"config", {{"delimiter", ";"}}}}),
              400, "invalid_argument", "path");
  ExpectError(Patch(IdPath("/api/v1/connectors", id), admin_,
                    {{"deletion_threshold", 1.5}}),
              400, "invalid_argument", "deletion_threshold");
  ExpectError(
      Patch(IdPath("/api/v1/connectors", id), admin_, {{"mode", "carrier"}}),
      400, "invalid_argument", "mode");
  ExpectError(Post("/api/v1/connectors", admin_,
                   {{"business_id", "x"},
                    {"type", "csv"},
                    {"config", {{"path", path}, {"bogus_key", 1}}}}),
              400, "invalid_argument", "bogus_key");
  ExpectError(Post("/api/v1/connectors", admin_,
                   {{"business_id", "bad id!"},
                    {"type", "csv"},
                    {"config", {{"path", path}}}}),
              400, "invalid_argument", "business_id");
  ExpectError(Post("/api/v1/connectors", admin_, CsvConnectorBody("api", path)),
              400, "invalid_argument", "reserved");
  ExpectError(Post("/api/v1/connectors", admin_,
                   {{"business_id", "x"},
                    {"type", "no-such-type"},
                    {"config", Json::object()}}),
              400, "invalid_argument", "no-such-type");
  ExpectError(
      Post("/api/v1/connectors", admin_, CsvConnectorBody("cfg-hr", path)), 409,
      "already_exists", "cfg-hr");
  EXPECT_EQ(RowCounts(), before);
  EXPECT_EQ(Get(IdPath("/api/v1/connectors", id), admin_).json, original);

  // A valid change goes through.
  Reply ok = Patch(IdPath("/api/v1/connectors", id), admin_,
                   {{"config", {{"path", path}, {"delimiter", ","}}},
                    {"deletion_threshold", 0.5}});
  ASSERT_EQ(ok.status, 200) << ok.Describe();
  EXPECT_EQ(ok.json["config"]["delimiter"], ",");
  EXPECT_EQ(ok.json["deletion_threshold"], 0.5);
}

TEST_F(RestServerTest, DeleteConnectorRemovesItWithItsIdentitiesAndRuns) {
  const int64_t keep =
      CreateCsvConnector(admin_, "keep-hr", WriteCsv("keep.csv", 4, 100));
  const int64_t gone =
      CreateCsvConnector(admin_, "gone-hr", WriteCsv("gone.csv", 5));
  const int64_t keep_run = StartSync(admin_, keep)["id"].get<int64_t>();
  const int64_t gone_run = StartSync(admin_, gone)["id"].get<int64_t>();
  ASSERT_EQ(WaitForRun(admin_, keep_run)["status"], "succeeded");
  ASSERT_EQ(WaitForRun(admin_, gone_run)["status"], "succeeded");
  ASSERT_EQ(Get("/api/v1/identities?source=gone-hr", admin_).json["total"], 5);

  Reply deleted = Delete(IdPath("/api/v1/connectors", gone), admin_);
  ASSERT_EQ(deleted.status, 200) << deleted.Describe();
  EXPECT_EQ(deleted.json, Json({{"id", gone}, {"deleted", true}}));

  ExpectError(Get(IdPath("/api/v1/connectors", gone), admin_), 404,
              "not_found");
  ExpectError(Get(IdPath("/api/v1/sync-runs", gone_run), admin_), 404,
              "not_found");
  ExpectError(Get(IdPath("/api/v1/connectors", gone, "/runs"), admin_), 404,
              "not_found");
  EXPECT_EQ(
      Get("/api/v1/identities?source=gone-hr&include_inactive=true", admin_)
          .json["total"],
      0);
  EXPECT_EQ(Count(absl::StrCat(
                "SELECT count(*) FROM identities WHERE connector_id=", gone)),
            0);
  EXPECT_EQ(Count(absl::StrCat(
                "SELECT count(*) FROM sync_runs WHERE connector_id=", gone)),
            0);
  ExpectError(Delete(IdPath("/api/v1/connectors", gone), admin_), 404,
              "not_found");
  // The other connector is untouched.
  EXPECT_EQ(Get("/api/v1/identities?source=keep-hr", admin_).json["total"], 4);
  EXPECT_EQ(Get(IdPath("/api/v1/sync-runs", keep_run), admin_).status, 200);
  EXPECT_EQ(Get("/api/v1/connectors", admin_).json["total"], 1);
}

TEST_F(RestServerTest, OneRunPerConnectorAndARunningSyncCanBeCancelled) {
  // Both sync workers (2, as in main.cc) are kept busy with big runs, so the
  // run under test waits in the queue: it stays active however long the
  // requests below take (an API write can wait for the running syncs'
  // commit groups).
  constexpr int kRows = 300000;
  const std::string csv = WriteCsv("big.csv", kRows);
  std::vector<int64_t> busy;
  for (const char* name : {"busy-1", "busy-2"}) {
    const int64_t connector = CreateCsvConnector(admin_, name, csv);
    busy.push_back(StartSync(admin_, connector)["id"].get<int64_t>());
  }
  const int64_t id = CreateCsvConnector(admin_, "big-hr", csv);
  Json run = StartSync(admin_, id, {{"chunk_size", 100}});
  const int64_t run_id = run["id"].get<int64_t>();
  EXPECT_EQ(run["status"], "running");
  EXPECT_EQ(run["chunk_size"], 100);

  // While it is active: a second sync and a delete are refused, and the run
  // is cancelled.
  Reply second =
      Post(IdPath("/api/v1/connectors", id, "/sync"), admin_, Json::object());
  Reply deleted = Delete(IdPath("/api/v1/connectors", id), admin_);
  Reply cancel = Post(IdPath("/api/v1/sync-runs", run_id, "/cancel"), admin_);
  ExpectError(second, 409, "failed_precondition", "active run");
  ExpectError(deleted, 409, "failed_precondition", "active run");
  ASSERT_EQ(cancel.status, 202) << cancel.Describe();
  EXPECT_EQ(cancel.json["id"], run_id);
  for (int64_t other : busy) {
    Reply r = Post(IdPath("/api/v1/sync-runs", other, "/cancel"), admin_);
    EXPECT_TRUE(r.status == 202 || r.status == 409) << r.Describe();
    WaitForRun(admin_, other);
  }
  Json ended = WaitForRun(admin_, run_id);
  EXPECT_EQ(ended["status"], "cancelled") << ended.dump();
  EXPECT_LT(ended["processed"].get<int64_t>(), kRows);
  EXPECT_TRUE(ended["finished_at"].is_string());
  EXPECT_EQ(ended["deleted"], 0);
  // The refused requests wrote nothing: one run, the connector still there,
  // and only the start and the cancel audited.
  EXPECT_EQ(Count(absl::StrCat(
                "SELECT count(*) FROM sync_runs WHERE connector_id=", id)),
            1);
  EXPECT_EQ(Get(IdPath("/api/v1/connectors", id), admin_).status, 200);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM audit_events WHERE "
                               "(action LIKE 'sync.%' AND resource_id='",
                               run_id, "') OR action='connector.delete'")),
            2);

  ExpectError(Post(IdPath("/api/v1/sync-runs", run_id, "/cancel"), admin_), 409,
              "failed_precondition", "already ended");
  Reply runs = Get(IdPath("/api/v1/connectors", id, "/runs"), admin_);
  ASSERT_EQ(runs.status, 200) << runs.Describe();
  ASSERT_EQ(runs.json["total"], 1);
  EXPECT_EQ(runs.json["items"][0]["status"], "cancelled");
  // The connector takes a new run once the last one ended.
  const int64_t again =
      StartSync(admin_, id, {{"max_records", 10}})["id"].get<int64_t>();
  Json cut = WaitForRun(admin_, again);
  EXPECT_EQ(cut["status"], "succeeded") << cut.dump();
  EXPECT_EQ(cut["cut"], true);
}

// --- Live progress over Server-Sent Events

TEST_F(RestServerTest, SyncProgressStreamsAsServerSentEvents) {
  constexpr int kRows = 20000;
  const int64_t id =
      CreateCsvConnector(admin_, "sse-hr", WriteCsv("sse.csv", kRows));
  const int64_t run_id =
      StartSync(admin_, id, {{"chunk_size", 100}})["id"].get<int64_t>();
  int status = 0;
  std::vector<SseEvent> events = ReadEvents(
      IdPath("/api/v1/sync-runs", run_id, "/events"), admin_, &status);
  ASSERT_EQ(status, 200);
  ASSERT_FALSE(events.empty());

  std::vector<int64_t> processed;
  int ends = 0;
  for (size_t i = 0; i < events.size(); ++i) {
    const SseEvent& e = events[i];
    SCOPED_TRACE(absl::StrCat("event ", i, ": ", e.event, " ", e.data.dump()));
    EXPECT_EQ(e.id, absl::StrCat(i + 1));
    ASSERT_TRUE(e.data.is_object());
    EXPECT_EQ(e.data["id"], run_id);
    if (e.event == "run") {
      EXPECT_EQ(ends, 0) << "a run event after the end";
      EXPECT_EQ(e.data["status"], "running");
      processed.push_back(e.data["processed"].get<int64_t>());
    } else {
      EXPECT_EQ(e.event, "end");
      ++ends;
    }
  }
  EXPECT_EQ(ends, 1);
  ASSERT_FALSE(processed.empty()) << "no 'run' event before the end";
  EXPECT_TRUE(std::is_sorted(processed.begin(), processed.end()));
  EXPECT_GT(processed.back(), processed.front())
      << "the counts never grew while streaming (" << processed.size()
      << " run events)";

  const Json end = events.back().data;
  EXPECT_EQ(events.back().event, "end");
  EXPECT_EQ(end["status"], "succeeded");
  EXPECT_EQ(end["processed"], kRows);
  EXPECT_EQ(end["created"], kRows);
  EXPECT_EQ(end["chunks"], kRows / 100);
  EXPECT_TRUE(end["finished_at"].is_string());
  Reply final_state = Get(IdPath("/api/v1/sync-runs", run_id), admin_);
  EXPECT_EQ(final_state.json, end);
  EXPECT_EQ(Get("/api/v1/identities?source=sse-hr", admin_).json["total"],
            kRows);
}

TEST_F(RestServerTest, EventsOfAFinishedRunAreOneEndEvent) {
  const int64_t id =
      CreateCsvConnector(admin_, "done-hr", WriteCsv("done.csv", 3));
  const int64_t run_id = StartSync(admin_, id)["id"].get<int64_t>();
  const Json done = WaitForRun(admin_, run_id);
  ASSERT_EQ(done["status"], "succeeded");
  int status = 0;
  std::vector<SseEvent> events = ReadEvents(
      IdPath("/api/v1/sync-runs", run_id, "/events"), admin_, &status);
  EXPECT_EQ(status, 200);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].event, "end");
  EXPECT_EQ(events[0].id, "1");
  EXPECT_EQ(events[0].data, done);
}

TEST_F(RestServerTest, EventsOfAnotherTenantsRunAreNotFound) {
  const int64_t id =
      CreateCsvConnector(admin_, "mine-hr", WriteCsv("mine.csv", 3));
  const int64_t run_id = StartSync(admin_, id)["id"].get<int64_t>();
  WaitForRun(admin_, run_id);
  const std::string other = Bootstrap("globex");
  Reply r = Get(IdPath("/api/v1/sync-runs", run_id, "/events"), other);
  ExpectError(r, 404, "not_found");
  EXPECT_THAT(r.body, Not(HasSubstr("mine-hr")));
  ExpectError(Get("/api/v1/sync-runs/123456789/events", admin_), 404,
              "not_found");
  ExpectError(Get("/api/v1/sync-runs/abc/events", admin_), 404, "not_found");
}

// --- Audit

TEST_F(RestServerTest, EveryWriteIsAuditedWithActorResourceAndRequestId) {
  const httplib::Headers mine = {{"X-Request-Id", "hr-pipeline-42"}};
  Reply created =
      Post("/api/v1/identities", admin_,
           {{"external_id", "A-1"}, {"email", "a1@example.com"}}, mine);
  ASSERT_EQ(created.status, 201) << created.Describe();
  EXPECT_EQ(created.Header("X-Request-Id"), "hr-pipeline-42");
  const int64_t identity = created.json["id"].get<int64_t>();
  ASSERT_EQ(Patch(IdPath("/api/v1/identities", identity), admin_,
                  {{"job_title", "Engineer"}})
                .status,
            200);
  ASSERT_EQ(Post(IdPath("/api/v1/identities", identity, "/deactivate"), admin_)
                .status,
            200);
  const int64_t connector =
      CreateCsvConnector(admin_, "audit-hr", WriteCsv("audit.csv", 2));
  ASSERT_EQ(Patch(IdPath("/api/v1/connectors", connector), admin_,
                  {{"deletion_threshold", 0.3}})
                .status,
            200);
  const int64_t run = StartSync(admin_, connector)["id"].get<int64_t>();
  WaitForRun(admin_, run);
  int64_t token_id = 0;
  CreateToken(admin_, "dashboards", "auditor", &token_id);
  ASSERT_EQ(Post(IdPath("/api/v1/tokens", token_id, "/revoke"), admin_).status,
            200);
  ASSERT_EQ(Delete(IdPath("/api/v1/connectors", connector), admin_).status,
            200);
  // Reads and refused writes leave no audit event.
  Get("/api/v1/identities", admin_);
  CreateIdentity(admin_, "");

  std::vector<Json> events = ListAll("/api/v1/audit-events", admin_);
  std::vector<std::string> actions;
  for (const Json& e : events) actions.push_back(e["action"]);
  EXPECT_EQ(actions, std::vector<std::string>(
                         {"token.create", "identity.create", "identity.update",
                          "identity.deactivate", "connector.create",
                          "connector.update", "sync.start", "token.create",
                          "token.revoke", "connector.delete"}));
  ASSERT_GE(events.size(), 2u);
  EXPECT_EQ(events[0]["actor"], "idsync-dispatcher bootstrap");
  EXPECT_EQ(events[1]["request_id"], "hr-pipeline-42");
  EXPECT_EQ(events[1]["resource_id"], absl::StrCat(identity));
  EXPECT_EQ(events[1]["details"]["external_id"], "A-1");
  EXPECT_THAT(events[1]["actor"].get<std::string>(),
              ::testing::MatchesRegex("bootstrap-admin \\(token [0-9]+\\)"));

  Reply filtered = Get("/api/v1/audit-events?action=token.create", admin_);
  ASSERT_EQ(filtered.status, 200) << filtered.Describe();
  EXPECT_EQ(filtered.json["total"], 2);
  for (const Json& e : filtered.json["items"]) {
    EXPECT_EQ(e["action"], "token.create");
  }
  // TearDown matches every write above to its event by X-Request-Id.
}

// --- Unknown routes

TEST_F(RestServerTest, UnknownPathIsAJson404) {
  for (const char* path :
       {"/api/v1/nope", "/api/v2/identities", "/", "/api/v1/identities/1/x",
        "/api/v1/identities/abc", "/api/v1/identities/-3",
        "/api/v1/identities/99999999999999999999"}) {
    SCOPED_TRACE(path);
    ExpectError(Get(path, admin_), 404, "not_found");
  }
}

TEST_F(RestServerTest, WrongMethodIsAJsonError) {
  ASSERT_EQ(CreateIdentity(admin_, "M-1").status, 201);
  const auto before = RowCounts();
  for (const auto& [method, path] :
       std::vector<std::pair<std::string, std::string>>{
           {"PUT", "/api/v1/identities"},
           {"DELETE", "/api/v1/identities"},
           {"DELETE", "/api/v1/identities/1"},
           {"PUT", "/api/v1/identities/1"},
           {"POST", "/health"},
           {"PATCH", "/api/v1/tokens"},
           {"GET", "/api/v1/identities/1/deactivate"}}) {
    SCOPED_TRACE(method + " " + path);
    Reply r = Send(method, path, admin_, method == "GET" ? "" : "{}");
    EXPECT_TRUE(r.status == 404 || r.status == 405) << r.Describe();
    ASSERT_TRUE(r.json.is_object()) << r.Describe();
    EXPECT_EQ(r.json["request_id"], r.Header("X-Request-Id"));
    EXPECT_TRUE(r.json.contains("code") && r.json.contains("message") &&
                r.json.contains("details"))
        << r.body;
  }
  EXPECT_EQ(RowCounts(), before);
}

}  // namespace
}  // namespace idsync::testing
