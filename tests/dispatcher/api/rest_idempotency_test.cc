// Idempotency-Key and the per-token rate limit, over real HTTP.
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/blocking_counter.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/dispatcher/api/api_fixture.h"

namespace idsync::testing {
namespace {

using IdempotencyTest = ApiTest;
using RateLimitTest = ApiTest;

httplib::Headers Key(const std::string& key) {
  return {{"Idempotency-Key", key}};
}

TEST_F(IdempotencyTest, SameKeyAndBodyReplaysTheStoredResponse) {
  const Json joiner = {{"external_id", "I-1"}, {"email", "i1@example.com"}};
  Reply first = Post("/api/v1/identities", admin_, joiner, Key("joiner-I-1"));
  ASSERT_EQ(first.status, 201) << first.Describe();
  EXPECT_FALSE(first.HasHeader("Idempotent-Replayed"));
  const auto after_first = RowCounts();

  for (int i = 0; i < 3; ++i) {
    Reply again = Post("/api/v1/identities", admin_, joiner, Key("joiner-I-1"));
    EXPECT_EQ(again.status, 201) << again.Describe();
    EXPECT_EQ(again.Header("Idempotent-Replayed"), "true");
    EXPECT_EQ(again.body, first.body);
    EXPECT_TRUE(
        absl::StartsWith(again.Header("Content-Type"), "application/json"));
  }
  EXPECT_EQ(RowCounts(), after_first);
  EXPECT_EQ(Count("SELECT count(*) FROM identities WHERE external_id='I-1'"),
            1);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM audit_events WHERE "
                               "action='identity.create' AND resource_id='",
                               first.json["id"].get<int64_t>(), "'")),
            1);

  // A sync start (202) replays too: one run.
  const int64_t connector =
      CreateCsvConnector(admin_, "idem-hr", WriteCsv("idem.csv", 5));
  Reply start = Post(absl::StrCat("/api/v1/connectors/", connector, "/sync"),
                     admin_, Json::object(), Key("nightly-2024-05-01"));
  ASSERT_EQ(start.status, 202) << start.Describe();
  WaitForRun(admin_, start.json["id"].get<int64_t>());
  Reply replay = Post(absl::StrCat("/api/v1/connectors/", connector, "/sync"),
                      admin_, Json::object(), Key("nightly-2024-05-01"));
  EXPECT_EQ(replay.status, 202) << replay.Describe();
  EXPECT_EQ(replay.Header("Idempotent-Replayed"), "true");
  EXPECT_EQ(replay.body, start.body);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM sync_runs WHERE "
                               "connector_id=",
                               connector)),
            1);
  // Without a key the same request runs again.
  EXPECT_EQ(StartSync(admin_, connector)["status"], "running");
}

TEST_F(IdempotencyTest, SameKeyWithADifferentRequestIs422AndWritesNothing) {
  ASSERT_EQ(
      Post("/api/v1/identities", admin_, {{"external_id", "I-2"}}, Key("k-422"))
          .status,
      201);
  const auto before = RowCounts();
  ExpectError(Post("/api/v1/identities", admin_, {{"external_id", "I-3"}},
                   Key("k-422")),
              422, "invalid_argument", "different request");
  EXPECT_EQ(RowCounts(), before);
  EXPECT_EQ(Count("SELECT count(*) FROM identities WHERE external_id='I-3'"),
            0);

  // The same body to another path is another request.
  const int64_t first =
      CreateCsvConnector(admin_, "first-hr", WriteCsv("first.csv", 2));
  const int64_t second =
      CreateCsvConnector(admin_, "second-hr", WriteCsv("second.csv", 2));
  Reply started = Post(absl::StrCat("/api/v1/connectors/", first, "/sync"),
                       admin_, Json::object(), Key("k-sync"));
  ASSERT_EQ(started.status, 202) << started.Describe();
  WaitForRun(admin_, started.json["id"].get<int64_t>());
  const auto before_sync = RowCounts();
  ExpectError(Post(absl::StrCat("/api/v1/connectors/", second, "/sync"), admin_,
                   Json::object(), Key("k-sync")),
              422, "invalid_argument", "different request");
  EXPECT_EQ(RowCounts(), before_sync);
  EXPECT_EQ(Count(absl::StrCat(
                "SELECT count(*) FROM sync_runs WHERE connector_id=", second)),
            0);
}

TEST_F(IdempotencyTest, FailedRequestsDoNotStoreTheKey) {
  const std::string key = "joiner-I-4";
  const std::string count_key = absl::StrCat(
      "SELECT count(*) FROM idempotency_keys WHERE key='", key, "'");
  ASSERT_EQ(CreateIdentity(admin_, "taken").status, 201);
  const auto before = RowCounts();
  // Refused while parsing, by the service's checks, and as a conflict.
  ExpectError(Post("/api/v1/identities", admin_,
                   {{"external_id", "I-4"}, {"colour", "red"}}, Key(key)),
              400, "invalid_argument", "colour");
  ExpectError(Post("/api/v1/identities", admin_,
                   {{"external_id", "I-4"}, {"email", "nope"}}, Key(key)),
              400, "invalid_argument", "email");
  ExpectError(
      Post("/api/v1/identities", admin_, {{"external_id", "taken"}}, Key(key)),
      409, "already_exists");
  EXPECT_EQ(Count(count_key), 0);
  EXPECT_EQ(RowCounts(), before);

  // The corrected request with the same key runs, then replays.
  const Json fixed = {{"external_id", "I-4"}, {"email", "i4@example.com"}};
  Reply ok = Post("/api/v1/identities", admin_, fixed, Key(key));
  ASSERT_EQ(ok.status, 201) << ok.Describe();
  EXPECT_FALSE(ok.HasHeader("Idempotent-Replayed"));
  EXPECT_EQ(Count(count_key), 1);
  Reply replay = Post("/api/v1/identities", admin_, fixed, Key(key));
  EXPECT_EQ(replay.Header("Idempotent-Replayed"), "true");
  EXPECT_EQ(replay.body, ok.body);
}

TEST_F(IdempotencyTest, KeysArePerTenant) {
  const std::string globex = Bootstrap("globex");
  const Json body = {{"external_id", "I-5"}};
  Reply acme = Post("/api/v1/identities", admin_, body, Key("shared-key"));
  ASSERT_EQ(acme.status, 201) << acme.Describe();
  Reply other = Post("/api/v1/identities", globex, body, Key("shared-key"));
  ASSERT_EQ(other.status, 201) << other.Describe();
  EXPECT_FALSE(other.HasHeader("Idempotent-Replayed"));
  EXPECT_NE(other.json["id"], acme.json["id"]);
  EXPECT_EQ(Count("SELECT count(*) FROM identities WHERE external_id='I-5'"),
            2);
  // Each tenant replays its own.
  Reply acme_again =
      Post("/api/v1/identities", admin_, body, Key("shared-key"));
  EXPECT_EQ(acme_again.Header("Idempotent-Replayed"), "true");
  EXPECT_EQ(acme_again.body, acme.body);
  Reply other_again =
      Post("/api/v1/identities", globex, body, Key("shared-key"));
  EXPECT_EQ(other_again.Header("Idempotent-Replayed"), "true");
  EXPECT_EQ(other_again.body, other.body);
}

TEST_F(IdempotencyTest, MalformedKeysAreRefused) {
  const auto before = RowCounts();
  ExpectError(Post("/api/v1/identities", admin_, {{"external_id", "I-6"}},
                   Key(std::string(256, 'k'))),
              400, "invalid_argument", "Idempotency-Key");
  ExpectError(Post("/api/v1/identities", admin_, {{"external_id", "I-6"}},
                   Key("with space")),
              400, "invalid_argument", "Idempotency-Key");
  EXPECT_EQ(RowCounts(), before);
}

// 50 requests with one key and body, released at once: one execution; each
// answer is the original 201, a replay of it, or 409 while it is in flight.
TEST_F(IdempotencyTest, FiftyConcurrentRequestsWithOneKeyExecuteOnce) {
  constexpr int kThreads = 50;
  const std::string body =
      Json({{"external_id", "C-1"}, {"department", "Race"}}).dump();
  std::vector<Reply> replies(kThreads);
  absl::BlockingCounter ready(kThreads);
  absl::Notification go;
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      auto client = Client();
      httplib::Headers headers = {{"Authorization", "Bearer " + admin_},
                                  {"Idempotency-Key", "race-C-1"}};
      ready.DecrementCount();
      go.WaitForNotification();
      httplib::Result r =
          client->Post("/api/v1/identities", headers, body, "application/json");
      Reply& reply = replies[i];
      if (!r) {
        reply.error = httplib::to_string(r.error());
        return;
      }
      reply.status = r->status;
      reply.body = r->body;
      reply.headers = r->headers;
      reply.json = Json::parse(reply.body, nullptr, false);
    });
  }
  ready.Wait();
  go.Notify();
  for (std::thread& t : threads) t.join();

  int created = 0, replayed = 0, in_flight = 0;
  std::set<std::string> bodies;
  for (const Reply& r : replies) {
    SCOPED_TRACE(r.Describe());
    if (r.status == 201) {
      bodies.insert(r.body);
      if (r.Header("Idempotent-Replayed") == "true") {
        ++replayed;
      } else {
        ++created;
        Remember("POST", "/api/v1/identities", admin_, r);
      }
    } else {
      ExpectError(r, 409, "aborted", "in progress");
      ++in_flight;
    }
  }
  EXPECT_EQ(created, 1);
  EXPECT_EQ(created + replayed + in_flight, kThreads);
  EXPECT_EQ(bodies.size(), 1u) << "replays differ from the original";
  EXPECT_EQ(Count("SELECT count(*) FROM identities WHERE external_id='C-1'"),
            1);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE "
                  "action='identity.create'"),
            1);
  EXPECT_EQ(Count("SELECT count(*) FROM idempotency_keys WHERE "
                  "key='race-C-1' AND state='done'"),
            1);
  // Afterwards every retry is a replay.
  Reply late =
      Send("POST", "/api/v1/identities", admin_, body, Key("race-C-1"));
  EXPECT_EQ(late.status, 201);
  EXPECT_EQ(late.Header("Idempotent-Replayed"), "true");
}

// A stored response is replayed only to a caller who may make the request:
// an auditor repeating an admin's request (key and body) is refused, and does
// not receive what the admin's request returned.
TEST_F(IdempotencyTest, AReplayIsOnlyForCallersAllowedToMakeTheRequest) {
  const std::string auditor = CreateToken(admin_, "dashboards", "auditor");
  const Json body = {{"name", "deploy-bot"}, {"role", "admin"}};
  Reply created =
      Post("/api/v1/tokens", admin_, body, Key("create-deploy-bot-token"));
  ASSERT_EQ(created.status, 201) << created.Describe();
  const std::string secret = created.json["secret"].get<std::string>();
  ASSERT_FALSE(secret.empty());

  Reply replay =
      Post("/api/v1/tokens", auditor, body, Key("create-deploy-bot-token"));
  ExpectError(replay, 403, "permission_denied");
  EXPECT_THAT(replay.body, ::testing::Not(::testing::HasSubstr(secret)));
  // The same for another write.
  Reply joiner = Post("/api/v1/identities", admin_, {{"external_id", "I-9"}},
                      Key("joiner-I-9"));
  ASSERT_EQ(joiner.status, 201);
  ExpectError(Post("/api/v1/identities", auditor, {{"external_id", "I-9"}},
                   Key("joiner-I-9")),
              403, "permission_denied");
}

// Token secrets are shown once and stored hashed, also when the request
// that created one carried an Idempotency-Key.
TEST_F(IdempotencyTest, TokenSecretsAreNotStoredInPlaintext) {
  Reply created = Post("/api/v1/tokens", admin_,
                       {{"name", "ci"}, {"role", "admin"}}, Key("create-ci"));
  ASSERT_EQ(created.status, 201) << created.Describe();
  const std::string secret = created.json["secret"].get<std::string>();
  ASSERT_TRUE(absl::StartsWith(secret, "idsync_svc_"));
  // The random part: the prefix alone is stored on purpose.
  const std::string random = secret.substr(15);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir_->path())) {
    if (!absl::StartsWith(entry.path().filename().string(), "store.db")) {
      continue;
    }
    ++files;
    std::ifstream in(entry.path(), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(in)),
                            std::istreambuf_iterator<char>());
    EXPECT_EQ(bytes.find(random), std::string::npos)
        << "the token secret is in " << entry.path();
  }
  EXPECT_GE(files, 1);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM idempotency_keys WHERE "
                               "instr(response, '",
                               random, "') > 0")),
            0);
  EXPECT_EQ(Count("SELECT count(*) FROM idempotency_keys"), 1);
  // So a replay returns the token without its secret.
  Reply replay = Post("/api/v1/tokens", admin_,
                      {{"name", "ci"}, {"role", "admin"}}, Key("create-ci"));
  EXPECT_EQ(replay.status, 201) << replay.Describe();
  EXPECT_EQ(replay.Header("Idempotent-Replayed"), "true");
  EXPECT_EQ(replay.json["token"], created.json["token"]);
  EXPECT_EQ(replay.json.value("secret", "?"), "");
  EXPECT_EQ(Count("SELECT count(*) FROM tokens WHERE name='ci'"), 1);
}

// --- Rate limit

struct Tally {
  int ok = 0;
  int limited = 0;
  int other = 0;
};

// Sends `n` GETs with `token` from `threads` threads (keep-alive clients).
// Checks the rate-limit headers of each answer.
Tally Fire(int port, const std::string& token, int n, int threads) {
  absl::Mutex mu;
  Tally tally;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      httplib::Client client("127.0.0.1", port);
      client.set_keep_alive(true);
      client.set_read_timeout(30, 0);
      const httplib::Headers headers = {{"Authorization", "Bearer " + token}};
      for (int i = t; i < n; i += threads) {
        httplib::Result r = client.Get("/api/v1/identities?limit=1", headers);
        absl::MutexLock lock(&mu);
        if (!r) {
          ++tally.other;
          ADD_FAILURE() << "transport error " << r.error();
          continue;
        }
        EXPECT_EQ(r->get_header_value("RateLimit-Limit"), "200");
        int64_t remaining = -1;
        EXPECT_TRUE(absl::SimpleAtoi(r->get_header_value("RateLimit-Remaining"),
                                     &remaining));
        EXPECT_GE(remaining, 0);
        EXPECT_LT(remaining, 200);
        if (r->status == 200) {
          ++tally.ok;
          continue;
        }
        if (r->status != 429) {
          ++tally.other;
          ADD_FAILURE() << r->status << " " << r->body;
          continue;
        }
        ++tally.limited;
        int64_t retry = 0, reset = 0;
        EXPECT_TRUE(
            absl::SimpleAtoi(r->get_header_value("Retry-After"), &retry))
            << "Retry-After: '" << r->get_header_value("Retry-After") << "'";
        EXPECT_GE(retry, 1);
        EXPECT_TRUE(
            absl::SimpleAtoi(r->get_header_value("RateLimit-Reset"), &reset));
        EXPECT_GE(reset, 1);
        EXPECT_EQ(remaining, 0);
        const Json body = Json::parse(r->body, nullptr, false);
        EXPECT_EQ(body.value("code", ""), "resource_exhausted") << r->body;
        EXPECT_EQ(body.value("request_id", ""),
                  r->get_header_value("X-Request-Id"));
      }
    });
  }
  for (std::thread& t : pool) t.join();
  return tally;
}

TEST_F(RateLimitTest, AThousandInstantRequestsAdmitExactlyTheBurst) {
  const std::string fresh = CreateToken(admin_, "dashboard", "auditor");
  ASSERT_FALSE(fresh.empty());
  advance_clock_ = false;  // Time stands still from here.

  Tally burst = Fire(port_, fresh, 1000, 8);
  EXPECT_EQ(burst.ok, 200);
  EXPECT_EQ(burst.limited, 800);
  EXPECT_EQ(burst.other, 0);

  // One second refills 100 (100/s).
  clock_.Advance(absl::Seconds(1));
  Tally refill = Fire(port_, fresh, 150, 4);
  EXPECT_EQ(refill.ok, 100);
  EXPECT_EQ(refill.limited, 50);

  // Another token has its own bucket.
  Reply other = Get("/api/v1/identities", admin_);
  EXPECT_EQ(other.status, 200) << other.Describe();
  EXPECT_EQ(other.Header("RateLimit-Remaining"), "199");
  // And a limited token is refused on every route, writes included, before
  // anything is written.
  const auto before = RowCounts();
  Reply write = Send("POST", "/api/v1/tokens", fresh,
                     Json({{"name", "x"}, {"role", "admin"}}).dump());
  ExpectError(write, 429, "resource_exhausted");
  EXPECT_FALSE(write.Header("Retry-After").empty());
  EXPECT_EQ(RowCounts(), before);
}

}  // namespace
}  // namespace idsync::testing
