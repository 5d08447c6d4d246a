// Webhooks and progress callbacks end to end: the real idsync-dispatcher
// binary, its REST API, and a real receiver verifying Standard Webhooks
// signatures with the npm standardwebhooks package
// (tests/integration/webhooks/receiver.mjs). The HR joiner flow, a
// dispatcher killed with SIGKILL between commit and delivery, and a sync
// whose callback receiver is slow.
#include <signal.h>

#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "connector/http/http_client.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/integration/dispatcher_fixture.h"
#include "tests/testing/node_server.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::idsync::testing::NodeServer;
using Json = nlohmann::json;

constexpr char kReceiver[] = "tests/integration/webhooks/receiver.mjs";

class WebhooksE2eTest : public testing::DispatcherTest {
 protected:
  void SetUp() override {
    auto receiver = NodeServer::Start(kReceiver, {});
    ASSERT_TRUE(receiver.ok()) << receiver.status();
    receiver_ = *std::move(receiver);
    dispatcher_args_ = {"--allow-private-callbacks"};
    DispatcherTest::SetUp();
  }

  // Registers a webhook for `types` at the receiver and gives the receiver
  // its secret.
  void Subscribe(const std::vector<std::string>& types) {
    Json created =
        Ok("POST", "/api/v1/webhooks",
           {{"url", receiver_->url() + "/hooks"}, {"event_types", types}});
    const std::string secret = created["secret"].get<std::string>();
    ASSERT_TRUE(receiver_
                    ->Control("POST", "/__control/secret",
                              Json{{"secret", secret}}.dump())
                    .ok());
  }
  void SetCallbackSecret() {
    Json s = Ok("GET", "/api/v1/callback-secret");
    ASSERT_TRUE(receiver_
                    ->Control("POST", "/__control/secret",
                              Json{{"secret", s["secret"]}}.dump())
                    .ok());
  }
  Json WaitDelivered(int count, int timeout_ms = 20000) {
    auto r =
        receiver_->Control("GET", absl::StrCat("/__control/wait?count=", count,
                                               "&timeout_ms=", timeout_ms));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? Json::parse(*r)["events"] : Json::array();
  }
  void Behave(const std::string& json) {
    ASSERT_TRUE(receiver_->Control("POST", "/__control/behaviour", json).ok());
  }
  Json Joiner(const std::string& id) {
    return Ok("POST", "/api/v1/identities",
              {{"external_id", id},
               {"email", id + "@example.com"},
               {"first_name", "New"},
               {"last_name", "Hire"},
               {"department", "Sales"}},
              {{"Idempotency-Key", "hr-" + id}});
  }

  std::unique_ptr<NodeServer> receiver_;
};

TEST_F(WebhooksE2eTest, JoinerWebhookArrivesSignedOnceEvenWhenTheHrRetries) {
  Subscribe({"identity.created"});
  for (int i = 0; i < 5; ++i) Joiner(absl::StrCat("J", i));
  Joiner("J0");  // The HR system retries: same Idempotency-Key.
  const Json delivered = WaitDelivered(5);
  ASSERT_EQ(delivered.size(), 5u) << delivered.dump();
  for (int i = 0; i < 5; ++i) {
    const Json& e = delivered[i];
    EXPECT_TRUE(e["signature_valid"].get<bool>()) << e.dump();
    EXPECT_EQ(e["body"]["type"], "identity.created");
    EXPECT_EQ(e["body"]["data"]["items"][0]["external_id"],
              absl::StrCat("J", i));
  }
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(WaitDelivered(6, 100).size(), 5u) << "the retry created nothing";
}

TEST_F(WebhooksE2eTest, KilledBetweenCommitAndDeliveryDeliversAfterRestart) {
  Subscribe({"identity.created"});
  Behave(R"({"hang": true})");  // Deliveries get stuck in flight.
  Joiner("crash-1");
  auto events = receiver_->Control("GET", "/__control/events");
  for (int i = 0;
       i < 100 && events.ok() && Json::parse(*events)["events"].empty(); ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    events = receiver_->Control("GET", "/__control/events");
  }
  dispatcher_->Kill(SIGKILL);
  dispatcher_->Wait();
  dispatcher_.reset();
  Behave("{}");
  StartDispatcher();
  const Json delivered = WaitDelivered(1);
  ASSERT_EQ(delivered.size(), 1u);
  EXPECT_EQ(delivered[0]["body"]["data"]["items"][0]["external_id"], "crash-1");
  EXPECT_TRUE(delivered[0]["signature_valid"].get<bool>());
}

TEST_F(WebhooksE2eTest, SlowCallbackReceiverDoesNotHoldTheSyncBack) {
  SetCallbackSecret();
  const std::string csv = ImportPath("hr.csv");
  {
    std::ofstream out(csv);
    out << "external_id,email,first_name,last_name,department\n";
    for (int i = 0; i < 30000; ++i) {
      out << "E" << i << ",e" << i << "@example.com,F" << i << ",L" << i
          << ",Sales\n";
    }
  }
  Json connector =
      Ok("POST", "/api/v1/connectors",
         {{"business_id", "hr"}, {"type", "csv"}, {"config", {{"path", csv}}}});
  Behave(R"({"slow_ms": 5000})");
  const absl::Time start = absl::Now();
  Json run = Ok(
      "POST",
      absl::StrCat("/api/v1/connectors/", connector["id"].dump(), "/sync"),
      {{"chunk_size", 500}, {"callback_url", receiver_->url() + "/progress"}});
  std::string status = "running";
  while (status == "running" && absl::Now() - start < absl::Seconds(60)) {
    absl::SleepFor(absl::Milliseconds(20));
    status = Ok("GET",
                absl::StrCat("/api/v1/sync-runs/", run["id"].dump()))["status"]
                 .get<std::string>();
  }
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(status, "succeeded");
  // One slow answer takes 5 s; a sync that waited for even one would take
  // longer than that.
  EXPECT_LT(took, absl::Seconds(5)) << "the sync waited for its receiver";
  Behave("{}");
  // The final callback still arrives (after the slow in-flight one).
  const Json delivered = WaitDelivered(2);
  ASSERT_GE(delivered.size(), 1u);
  bool final_seen = false;
  for (const Json& e : delivered) {
    EXPECT_TRUE(e["signature_valid"].get<bool>()) << e.dump();
    if (e["body"]["status"] == "succeeded") {
      final_seen = true;
      EXPECT_EQ(e["body"]["processed"], 30000);
    }
  }
  EXPECT_TRUE(final_seen) << delivered.dump();
}

}  // namespace
}  // namespace idsync
