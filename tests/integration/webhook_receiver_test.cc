// Smoke test of the Standard Webhooks receiver that idsync's webhook and
// progress-callback delivery is tested against
// (tests/integration/webhooks/receiver.mjs, verifying with the
// `standardwebhooks` npm package): it starts with a secret, tells correctly
// signed deliveries from wrongly signed ones, records every attempt and
// follows the behaviours its README documents.
#include <ctime>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "connector/http/signing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/node_server.h"

namespace idsync {
namespace {

using ::idsync::testing::NodeServer;
using ::testing::HasSubstr;

constexpr char kScript[] = "tests/integration/webhooks/receiver.mjs";
// The example of the Standard Webhooks spec.
constexpr char kSecret[] = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
// Another key: base64 of "secret-of-someone-else".
constexpr char kOtherSecret[] = "whsec_c2VjcmV0LW9mLXNvbWVvbmUtZWxzZQ==";

// "v1,<base64 HMAC-SHA256 of {id}.{timestamp}.{body}>" under the key that
// `secret` (whsec_<base64>) holds.
std::string Sign(const std::string& secret, const std::string& id,
                 long long timestamp, const std::string& body) {
  std::string key;
  EXPECT_TRUE(absl::Base64Unescape(secret.substr(6), &key)) << secret;
  return absl::StrCat(
      "v1,", absl::Base64Escape(
                 HmacSha256(key, absl::StrCat(id, ".", timestamp, ".", body))));
}

std::vector<std::string> WebhookHeaders(const std::string& id, long long ts,
                                        const std::string& signature) {
  return {"webhook-id: " + id, absl::StrCat("webhook-timestamp: ", ts),
          "webhook-signature: " + signature, "User-Agent: idsync-test"};
}

std::unique_ptr<NodeServer> StartReceiver(std::vector<std::string> args) {
  auto server = NodeServer::Start(kScript, args);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

nlohmann::json Get(NodeServer& server, const std::string& path) {
  auto body = server.Control("GET", path);
  EXPECT_TRUE(body.ok()) << body.status();
  return body.ok() ? nlohmann::json::parse(*body) : nlohmann::json();
}

long long Now() { return static_cast<long long>(std::time(nullptr)); }

TEST(WebhookReceiverTest, OurSigningMatchesTheSpecExample) {
  EXPECT_EQ(Sign(kSecret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                 R"({"test": 2432232314})"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
}

TEST(WebhookReceiverTest, TellsGoodSignaturesFromBadOnes) {
  auto server = StartReceiver({"--secret", kSecret});
  ASSERT_NE(server, nullptr);
  const long long ts = Now();
  const std::string good_body = R"({"type":"sync.completed","data":{"n":1}})";
  auto good = server->Control(
      "POST", "/hooks/idsync?x=1", good_body,
      WebhookHeaders("msg_good", ts, Sign(kSecret, "msg_good", ts, good_body)));
  ASSERT_TRUE(good.ok()) << good.status();
  // Signed under another key: answered 200 all the same, recorded invalid.
  const std::string bad_body = R"({"type":"sync.failed"})";
  const std::vector<std::string> bad_headers = WebhookHeaders(
      "msg_bad", ts, Sign(kOtherSecret, "msg_bad", ts, bad_body));
  auto bad = server->Control("POST", "/hooks/idsync", bad_body, bad_headers);
  ASSERT_TRUE(bad.ok()) << bad.status();

  const nlohmann::json events = Get(*server, "/__control/events")["events"];
  ASSERT_EQ(events.size(), 2u) << events.dump();
  const nlohmann::json& g = events[0];
  EXPECT_EQ(g["seq"], 1);
  EXPECT_EQ(g["method"], "POST");
  EXPECT_EQ(g["path"], "/hooks/idsync?x=1");
  EXPECT_EQ(g["id"], "msg_good");
  EXPECT_EQ(g["timestamp"], ts);
  EXPECT_EQ(g["attempt"], 1);
  EXPECT_EQ(g["signature_valid"], true);
  EXPECT_EQ(g["hmac_valid"], true);
  EXPECT_TRUE(g["verify_error"].is_null());
  EXPECT_EQ(g["status"], 200);
  EXPECT_EQ(g["body"]["type"], "sync.completed");
  EXPECT_EQ(g["body_is_json"], true);
  EXPECT_EQ(g["headers"]["content-type"], "application/json");
  EXPECT_EQ(g["headers"]["user-agent"], "idsync-test");
  EXPECT_EQ(g["headers"]["webhook-id"], "msg_good");
  EXPECT_GE(g["received_at_ms"].get<long long>(), ts * 1000);
  const nlohmann::json& b = events[1];
  EXPECT_EQ(b["id"], "msg_bad");
  EXPECT_EQ(b["signature_valid"], false);
  EXPECT_EQ(b["hmac_valid"], false);
  EXPECT_EQ(b["verify_error"], "No matching signature found");

  // The secret can change at run time; a bad one is refused.
  auto set =
      server->Control("POST", "/__control/secret",
                      absl::StrCat(R"({"secret":")", kOtherSecret, R"("})"));
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_TRUE(server->Control("POST", "/__control/reset").ok());
  ASSERT_TRUE(
      server->Control("POST", "/hooks/idsync", bad_body, bad_headers).ok());
  EXPECT_EQ(Get(*server, "/__control/events")["events"][0]["signature_valid"],
            true);
  auto refused =
      server->Control("POST", "/__control/secret", R"({"secret":"whsec_abc"})");
  EXPECT_FALSE(refused.ok());
  EXPECT_THAT(refused.status().message(), HasSubstr("HTTP 400"));
}

TEST(WebhookReceiverTest, OldTimestampsFailUnlessTheVerifierClockIsSet) {
  auto server = StartReceiver({"--secret", kSecret});
  ASSERT_NE(server, nullptr);
  // The spec's example, signed in 2021: outside the package's 5 minutes.
  const std::string body = R"({"test": 2432232314})";
  const std::vector<std::string> headers =
      WebhookHeaders("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330,
                     "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
  ASSERT_TRUE(server->Control("POST", "/spec", body, headers).ok());
  ASSERT_TRUE(
      server->Control("POST", "/__control/clock", R"({"now":1614265400})")
          .ok());
  ASSERT_TRUE(server->Control("POST", "/spec", body, headers).ok());

  const nlohmann::json events = Get(*server, "/__control/events")["events"];
  ASSERT_EQ(events.size(), 2u) << events.dump();
  EXPECT_EQ(events[0]["signature_valid"], false);
  EXPECT_EQ(events[0]["hmac_valid"], true);
  EXPECT_EQ(events[0]["verify_error"], "Message timestamp too old");
  EXPECT_EQ(events[1]["signature_valid"], true);
  EXPECT_EQ(events[1]["attempt"], 2);
}

TEST(WebhookReceiverTest, FailsTheNextAttemptsThenDelivers) {
  auto server = StartReceiver({"--secret", kSecret});
  ASSERT_NE(server, nullptr);
  auto set = server->Control("POST", "/__control/behaviour",
                             R"({"fail":2,"retry_after":"3"})");
  ASSERT_TRUE(set.ok()) << set.status();
  EXPECT_EQ(nlohmann::json::parse(*set)["behaviour"]["fail"], 2);

  const long long ts = Now();
  const std::string body = R"({"type":"ping"})";
  const auto headers =
      WebhookHeaders("msg_retry", ts, Sign(kSecret, "msg_retry", ts, body));
  for (int i = 0; i < 2; ++i) {
    auto failed = server->Control("POST", "/hook", body, headers);
    ASSERT_FALSE(failed.ok());
    EXPECT_THAT(failed.status().message(), HasSubstr("HTTP 500"));
  }
  // No delivery yet: the long poll times out with an empty list.
  const nlohmann::json none =
      Get(*server, "/__control/wait?count=1&timeout_ms=50");
  EXPECT_EQ(none["timed_out"], true);
  EXPECT_TRUE(none["events"].empty());

  ASSERT_TRUE(server->Control("POST", "/hook", body, headers).ok());
  const nlohmann::json events = Get(*server, "/__control/events")["events"];
  ASSERT_EQ(events.size(), 3u) << events.dump();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(events[i]["attempt"], i + 1);
    EXPECT_EQ(events[i]["signature_valid"], true);
    EXPECT_EQ(events[i]["status"], i < 2 ? 500 : 200);
  }
  const nlohmann::json delivered =
      Get(*server, "/__control/delivered")["events"];
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0]["seq"], 3);
  const nlohmann::json waited =
      Get(*server, "/__control/wait?count=1&timeout_ms=5000");
  EXPECT_EQ(waited["timed_out"], false);
  EXPECT_EQ(waited["events"].size(), 1u);
  EXPECT_EQ(Get(*server, "/__control/behaviour")["behaviour"]["fail"], 0);
}

TEST(WebhookReceiverTest, BadArgumentsFailWithStderr) {
  auto server = NodeServer::Start(kScript, {"--secret", "whsec_abc"});
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("bad secret"));
}

}  // namespace
}  // namespace idsync
