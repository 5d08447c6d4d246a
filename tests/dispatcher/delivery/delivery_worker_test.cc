// The outbox and DeliveryWorker against a real webhook receiver
// (tests/integration/webhooks/receiver.mjs, which verifies signatures with
// the npm standardwebhooks package), on an injected clock so the retry
// schedule is checked exactly: events written with their change (and never
// for a rolled-back one), batched for syncs, signed, delivered once in
// order, retried, dead-lettered, replayed, 410 and Retry-After honoured.
#include "dispatcher/delivery/delivery_worker.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "connector/status_macros.h"
#include "dispatcher/store/outbox.h"
#include "dispatcher/store/sqlite_store.h"
#include "dispatcher/sync_engine.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fake_clock.h"
#include "tests/testing/node_server.h"
#include "tests/testing/scripted_connector.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::idsync::testing::NodeServer;
using ::testing::HasSubstr;

constexpr char kReceiver[] = "tests/integration/webhooks/receiver.mjs";

class DeliveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tmp_ = std::make_unique<testing::ScopedTestDir>("delivery");
    db_ = tmp_->File("store.db");
    StoreOptions o;
    o.path = db_;
    o.clock = &clock_;
    auto store = SqliteStore::Open(o);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto box = SecretBox::FromKey(std::string(32, 'k'));
    ASSERT_TRUE(box.ok());
    box_ = std::make_unique<SecretBox>(*box);
    auto tenant = store_->EnsureTenant("acme");
    ASSERT_TRUE(tenant.ok());
    tenant_ = *tenant;
    secret_ = NewSigningSecret();
    auto receiver = NodeServer::Start(kReceiver, {"--secret", secret_});
    ASSERT_TRUE(receiver.ok()) << receiver.status();
    receiver_ = *std::move(receiver);
    SetVerifyClock();
  }

  // The receiver verifies timestamps against our injected clock.
  void SetVerifyClock() {
    ASSERT_TRUE(
        receiver_
            ->Control("POST", "/__control/clock",
                      absl::StrCat(
                          "{\"now\":", absl::ToUnixSeconds(clock_.Now()), "}"))
            .ok());
  }
  void Advance(absl::Duration d) {
    clock_.Advance(d);
    SetVerifyClock();
  }

  DeliveryWorker Worker(DeliveryOptions options = {}) {
    options.allow_private = true;
    return DeliveryWorker(*store_, *box_, clock_, std::move(options));
  }

  int64_t AddWebhook(std::vector<std::string> types,
                     const std::string& path = "/hook") {
    int64_t id = 0;
    EXPECT_TRUE(store_
                    ->Write([&](WriteTxn& txn) -> absl::Status {
                      WebhookRow w;
                      w.tenant_id = tenant_;
                      w.url = receiver_->url() + path;
                      w.event_types = types;
                      IDSYNC_ASSIGN_OR_RETURN(id, txn.InsertWebhook(w));
                      return txn.SetWebhookSecret(
                          tenant_, id,
                          box_->Seal(secret_, absl::StrCat("webhook:", id)));
                    })
                    .ok());
    return id;
  }

  // An identity created the way the API creates one; `fail` rolls back.
  absl::Status CreateIdentity(const std::string& external_id,
                              bool fail = false) {
    return store_->Write([&](WriteTxn& txn) -> absl::Status {
      IDSYNC_ASSIGN_OR_RETURN(int64_t api, txn.ApiConnector(tenant_));
      idsync::v1::RemoteIdentity person;
      person.set_external_id(external_id);
      person.set_email(external_id + "@example.com");
      IDSYNC_RETURN_IF_ERROR(txn.InsertRecord(tenant_, api,
                                              idsync::v1::RECORD_KIND_IDENTITY,
                                              person, 1)
                                 .status());
      if (fail) return absl::AbortedError("the caller changed its mind");
      return absl::OkStatus();
    });
  }

  std::vector<DeliveryRow> Deliveries(int64_t webhook) {
    ListQuery q;
    q.tenant_id = tenant_;
    q.limit = 1000;
    std::vector<DeliveryRow> rows;
    EXPECT_TRUE(store_->ListDeliveries(q, webhook, &rows).ok());
    return rows;
  }
  nlohmann::json Received(const char* which = "events") {
    auto r = receiver_->Control("GET", absl::StrCat("/__control/", which));
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? nlohmann::json::parse(*r)["events"]
                  : nlohmann::json::array();
  }
  void Behave(const std::string& json) {
    ASSERT_TRUE(receiver_->Control("POST", "/__control/behaviour", json).ok());
  }
  int64_t Count(const std::string& sql) {
    auto v = testing::QueryInt(db_, sql);
    EXPECT_TRUE(v.ok()) << v.status();
    return v.ok() ? *v : -1;
  }

  testing::FakeClock clock_{
      absl::FromUnixSeconds(absl::ToUnixSeconds(absl::Now()))};
  std::unique_ptr<testing::ScopedTestDir> tmp_;
  std::string db_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<SecretBox> box_;
  int64_t tenant_ = 0;
  std::string secret_;
  std::unique_ptr<NodeServer> receiver_;
};

TEST_F(DeliveryTest, CommittedChangeIsDeliveredSignedAndRolledBackOneNever) {
  const int64_t hook = AddWebhook({"identity.created"});
  EXPECT_EQ(Count("SELECT count(*) FROM webhooks WHERE enabled=1 AND "
                  "event_types='[\"identity.created\"]'"),
            1);
  EXPECT_EQ(Count("SELECT count(*) FROM webhooks"), 1);
  {
    auto st = CreateIdentity("joiner-1");
    EXPECT_TRUE(st.ok()) << st;
  }
  EXPECT_EQ(Count("SELECT count(*) FROM identities"), 1);
  EXPECT_FALSE(CreateIdentity("joiner-2", /*fail=*/true).ok());
  EXPECT_EQ(Count("SELECT count(*) FROM outbox"), 1);

  DeliveryWorker worker = Worker();
  auto sent = worker.RunOnce();
  ASSERT_TRUE(sent.ok()) << sent.status();
  EXPECT_EQ(*sent, 1);
  const nlohmann::json events = Received();
  ASSERT_EQ(events.size(), 1u) << events.dump();
  const nlohmann::json& e = events[0];
  EXPECT_TRUE(e["signature_valid"].get<bool>()) << e.dump();
  EXPECT_EQ(e["body"]["type"], "identity.created");
  EXPECT_EQ(e["body"]["data"]["source"], "api");
  EXPECT_EQ(e["body"]["data"]["items"][0]["external_id"], "joiner-1");
  EXPECT_EQ(e["body"]["data"]["items"][0]["email"], "joiner-1@example.com");
  EXPECT_THAT(e["id"].get<std::string>(), HasSubstr("msg_"));

  const std::vector<DeliveryRow> rows = Deliveries(hook);
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].state, "delivered");
  EXPECT_EQ(rows[0].attempts, 1);
  EXPECT_EQ(rows[0].last_status, 200);
  EXPECT_EQ(*worker.RunOnce(), 0) << "delivered once";
}

TEST_F(DeliveryTest, UnsubscribedEventsWriteNothing) {
  AddWebhook({"sync.*"});
  ASSERT_TRUE(CreateIdentity("nobody-listens").ok());
  EXPECT_EQ(Count("SELECT count(*) FROM outbox"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM deliveries"), 0);
}

TEST_F(DeliveryTest, FailuresAreRetriedOnTheScheduleThenDeliveredOnce) {
  const int64_t hook = AddWebhook({"identity.*"});
  ASSERT_TRUE(CreateIdentity("p1").ok());
  Behave(R"({"fail": 3, "fail_status": 500})");
  DeliveryWorker worker = Worker();
  const std::vector<absl::Duration> schedule = DeliveryOptions().schedule;
  for (int attempt = 1; attempt <= 3; ++attempt) {
    ASSERT_EQ(*worker.RunOnce(), 1) << "attempt " << attempt;
    const DeliveryRow row = Deliveries(hook)[0];
    EXPECT_EQ(row.state, "pending");
    EXPECT_EQ(row.attempts, attempt);
    EXPECT_EQ(row.last_status, 500);
    const absl::Duration wait = row.next_attempt_at - clock_.Now();
    EXPECT_GE(wait, schedule[attempt - 1] * 0.8) << "attempt " << attempt;
    EXPECT_LE(wait, schedule[attempt - 1] * 1.2) << "attempt " << attempt;
    // Not due yet: nothing is sent early.
    Advance(wait - absl::Seconds(1));
    EXPECT_EQ(*worker.RunOnce(), 0);
    Advance(absl::Seconds(1));
  }
  ASSERT_EQ(*worker.RunOnce(), 1);
  EXPECT_EQ(Deliveries(hook)[0].state, "delivered");
  const nlohmann::json delivered = Received("delivered");
  ASSERT_EQ(delivered.size(), 1u);
  const nlohmann::json all = Received();
  ASSERT_EQ(all.size(), 4u);
  for (const auto& e : all) {
    EXPECT_EQ(e["id"], all[0]["id"]) << "the id is stable across retries";
    EXPECT_TRUE(e["signature_valid"].get<bool>());
  }
}

TEST_F(DeliveryTest, FiveAttemptsThenDeadLetterThenReplay) {
  const int64_t hook = AddWebhook({"*"});
  ASSERT_TRUE(CreateIdentity("p1").ok());
  Behave(R"({"hang": true})");
  DeliveryOptions options;
  options.timeout = absl::Milliseconds(300);
  DeliveryWorker worker = Worker(options);
  for (int attempt = 1; attempt <= kMaxDeliveryAttempts; ++attempt) {
    ASSERT_EQ(*worker.RunOnce(), 1);
    Advance(absl::Hours(6));
  }
  EXPECT_EQ(*worker.RunOnce(), 0) << "no sixth attempt";
  DeliveryRow row = Deliveries(hook)[0];
  EXPECT_EQ(row.state, "dead");
  EXPECT_EQ(row.attempts, kMaxDeliveryAttempts);
  EXPECT_THAT(row.last_error, HasSubstr("timed out"));
  EXPECT_EQ(Received().size(), 5u);

  Behave("{}");
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) {
                    return txn.ReplayDelivery(tenant_, hook, row.id);
                  })
                  .ok());
  ASSERT_EQ(*worker.RunOnce(), 1);
  EXPECT_EQ(Deliveries(hook)[0].state, "delivered");
  EXPECT_EQ(Received("delivered").size(), 1u);
}

TEST_F(DeliveryTest, EventsOfAnEndpointGoInOrderBehindAFailure) {
  const int64_t hook = AddWebhook({"identity.created"});
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(CreateIdentity(absl::StrCat("p", i)).ok());
  }
  Behave(R"({"fail": 1})");
  DeliveryWorker worker = Worker();
  ASSERT_EQ(*worker.RunOnce(), 1);
  EXPECT_EQ(*worker.RunOnce(), 0) << "later events wait for the first";
  Advance(absl::Minutes(2));
  for (int i = 0; i < 3; ++i) ASSERT_EQ(*worker.RunOnce(), 1);
  const nlohmann::json delivered = Received("delivered");
  ASSERT_EQ(delivered.size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(delivered[i]["body"]["data"]["items"][0]["external_id"],
              absl::StrCat("p", i));
  }
  for (const DeliveryRow& r : Deliveries(hook)) EXPECT_EQ(r.state, "delivered");
}

TEST_F(DeliveryTest, GoneDisablesTheWebhookAndRetryAfterIsHonoured) {
  const int64_t gone = AddWebhook({"identity.created"}, "/gone");
  ASSERT_TRUE(CreateIdentity("p1").ok());
  Behave(R"({"gone": true})");
  DeliveryWorker worker = Worker();
  ASSERT_EQ(*worker.RunOnce(), 1);
  EXPECT_EQ(Deliveries(gone)[0].state, "dead");
  auto row = store_->GetWebhook(tenant_, gone);
  ASSERT_TRUE(row.ok());
  EXPECT_FALSE(row->enabled);
  EXPECT_THAT(row->disabled_reason, HasSubstr("410"));
  ASSERT_TRUE(CreateIdentity("p2").ok());
  EXPECT_EQ(Count("SELECT count(*) FROM deliveries"), 1)
      << "a disabled webhook gets no new events";

  const int64_t busy = AddWebhook({"identity.created"}, "/busy");
  ASSERT_TRUE(CreateIdentity("p3").ok());
  Behave(R"({"fail": 1, "fail_status": 429, "retry_after": "120"})");
  ASSERT_EQ(*worker.RunOnce(), 1);
  const DeliveryRow r = Deliveries(busy)[0];
  EXPECT_EQ(r.last_status, 429);
  EXPECT_EQ(r.next_attempt_at - clock_.Now(), absl::Seconds(120));
}

TEST_F(DeliveryTest, RedirectsAreNotFollowedAndPrivateTargetsRefused) {
  const int64_t hook = AddWebhook({"identity.created"});
  ASSERT_TRUE(CreateIdentity("p1").ok());
  Behave(
      absl::StrCat(R"({"redirect": ")", receiver_->url(), R"(/elsewhere"})"));
  DeliveryWorker worker = Worker();
  ASSERT_EQ(*worker.RunOnce(), 1);
  DeliveryRow r = Deliveries(hook)[0];
  EXPECT_EQ(r.state, "pending");
  EXPECT_EQ(r.last_status, 302);
  EXPECT_THAT(r.last_error, HasSubstr("redirect"));
  EXPECT_EQ(Received().size(), 1u) << "nothing followed the redirect";

  Advance(absl::Hours(1));
  DeliveryOptions strict;
  DeliveryWorker guarded(*store_, *box_, clock_, strict);  // No private IPs.
  ASSERT_EQ(*guarded.RunOnce(), 1);
  r = Deliveries(hook)[0];
  EXPECT_THAT(r.last_error, HasSubstr("non-public address"));
  EXPECT_EQ(Received().size(), 1u);
}

TEST_F(DeliveryTest, SyncChangesAreBatchedWithRunEventsAndFinalCallback) {
  AddWebhook({"identity.created", "sync.started", "sync.completed"});
  ASSERT_TRUE(
      store_
          ->Write([&](WriteTxn& txn) {
            return txn
                .SetCallbackSecret(
                    tenant_,
                    box_->Seal(secret_, absl::StrCat("callback:", tenant_)))
                .status();
          })
          .ok());
  ConnectorRow row;
  row.tenant_id = tenant_;
  row.business_id = "hr";
  row.type = "csv";
  row.config_json = "{}";
  auto saved = store_->UpsertConnector(row);
  ASSERT_TRUE(saved.ok()) << saved.status();
  testing::ScriptedConnector connector(
      testing::Chunked(testing::People(0, 1234), 100));
  SyncOptions options;
  options.callback_url = receiver_->url() + "/progress";
  SyncEngine engine(*store_, clock_);
  auto run = engine.Run(connector, *saved, options, nullptr);
  ASSERT_TRUE(run.ok()) << run.status();
  ASSERT_EQ(run->status, RunStatus::kSucceeded) << run->error;

  // 1,234 creations in one commit group: 3 events of at most 500 items.
  EXPECT_EQ(Count("SELECT count(*) FROM outbox WHERE type='identity.created'"),
            3);
  EXPECT_EQ(Count("SELECT sum(json_extract(data, '$.count')) FROM outbox "
                  "WHERE type='identity.created'"),
            1234);
  EXPECT_EQ(Count("SELECT count(*) FROM deliveries WHERE webhook_id IS NULL"),
            1);

  DeliveryWorker worker = Worker();
  int rounds = 0;
  while (*worker.RunOnce() > 0) ++rounds;
  EXPECT_EQ(rounds, 5) << "one delivery per endpoint per pass, in order";
  std::vector<std::string> types;
  nlohmann::json progress;
  for (const auto& e : Received("delivered")) {
    EXPECT_TRUE(e["signature_valid"].get<bool>()) << e.dump();
    if (e["path"] == "/progress") {
      progress = e["body"];
    } else {
      types.push_back(e["body"]["type"].get<std::string>());
    }
  }
  EXPECT_EQ(types, (std::vector<std::string>{
                       "sync.started", "identity.created", "identity.created",
                       "identity.created", "sync.completed"}));
  EXPECT_EQ(progress["status"], "succeeded") << progress.dump();
  EXPECT_EQ(progress["processed"], 1234);
  EXPECT_EQ(progress["run_id"], run->id);
}

}  // namespace
}  // namespace idsync
