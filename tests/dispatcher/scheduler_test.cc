// The scheduler on an injected clock, with the real store, sync workers and
// CSV connector: due syncs start, a due tick during an active run is skipped
// and recorded, downtime catches up once, and due times survive a restart
// because they come from the store.
#include "dispatcher/scheduler.h"

#include <algorithm>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "connector/registry.h"
#include "dispatcher/metrics.h"
#include "dispatcher/run_progress.h"
#include "dispatcher/secrets.h"
#include "dispatcher/store/sqlite_store.h"
#include "dispatcher/sync_workers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using testing::FakeClock;
using ::testing::HasSubstr;

absl::Time Utc(int y, int mo, int d, int h, int mi) {
  return absl::FromCivil(absl::CivilMinute(y, mo, d, h, mi),
                         absl::UTCTimeZone());
}

class SchedulerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<testing::ScopedTestDir>("scheduler");
    csv_ = dir_->File("hr.csv");
    std::ofstream(csv_) << "employee_id,email,first_name,last_name\n"
                           "e1,a@example.com,Ada,Lovelace\n"
                           "e2,b@example.com,Bob,Builder\n";
    OpenStore();
    auto secrets = SecretBox::FromKey("0123456789abcdef0123456789abcdef");
    ASSERT_TRUE(secrets.ok()) << secrets.status();
    secrets_.emplace(*std::move(secrets));
    RegisterBuiltinConnectors(registry_);
    StartWorkers();
    auto tenant = store_->EnsureTenant("acme");
    ASSERT_TRUE(tenant.ok());
    ConnectorRow row;
    row.tenant_id = *tenant;
    row.business_id = "hr";
    row.type = "csv";
    row.config_json = absl::StrCat(R"({"path": ")", csv_, R"("})");
    auto created = store_->UpsertConnector(row);
    ASSERT_TRUE(created.ok()) << created.status();
    connector_ = *created;
  }
  void TearDown() override { StopWorkers(); }

  void OpenStore() {
    auto store = SqliteStore::Open({dir_->File("store.db"), &clock_});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  void StartWorkers() {
    workers_ = std::make_unique<SyncWorkers>(*store_, registry_, *secrets_,
                                             clock_, progress_, metrics_,
                                             SyncWorkers::Options());
    scheduler_ = std::make_unique<Scheduler>(*store_, *workers_, clock_);
  }
  void StopWorkers() {
    scheduler_.reset();
    if (workers_ != nullptr) workers_->WaitIdle();
    workers_.reset();
  }

  // Sets the schedule as the API does: handled "now".
  void SetSchedule(int minutes, const std::string& cron,
                   const std::string& tz = "") {
    ConnectorSchedule s;
    s.incremental_minutes = minutes;
    s.full_cron = cron;
    s.time_zone = tz;
    ASSERT_TRUE(CheckSchedule(s).ok()) << CheckSchedule(s);
    s.incremental_handled_at = s.full_handled_at = clock_.Now();
    ASSERT_TRUE(store_
                    ->Write([&](WriteTxn& txn) {
                      return txn.SetSchedule(connector_.tenant_id,
                                             connector_.id, s);
                    })
                    .ok());
  }

  Scheduler::TickReport Tick() {
    auto report = scheduler_->Tick();
    EXPECT_TRUE(report.ok()) << report.status();
    workers_->WaitIdle();
    return report.value_or(Scheduler::TickReport());
  }

  std::vector<RunRow> Runs() {
    ListQuery q;
    q.tenant_id = connector_.tenant_id;
    q.limit = 100;
    std::vector<RunRow> runs;
    EXPECT_TRUE(store_->ListRuns(q, &runs).ok());
    std::sort(runs.begin(), runs.end(),
              [](const RunRow& a, const RunRow& b) { return a.id < b.id; });
    return runs;
  }
  std::vector<v1::AuditEvent> Audit(const std::string& action) {
    ListQuery q;
    q.tenant_id = connector_.tenant_id;
    q.limit = 100;
    std::vector<v1::AuditEvent> all, out;
    EXPECT_TRUE(store_->ListAudit(q, &all).ok());
    for (auto& e : all) {
      if (e.action() == action) out.push_back(e);
    }
    return out;
  }
  NextRuns Next() {
    auto row = store_->GetConnector(connector_.tenant_id, connector_.id);
    EXPECT_TRUE(row.ok());
    auto next = NextScheduledRuns(row->schedule, row->updated_at);
    EXPECT_TRUE(next.ok()) << next.status();
    return next.value_or(NextRuns());
  }

  FakeClock clock_{Utc(2027, 1, 15, 10, 0)};
  std::unique_ptr<testing::ScopedTestDir> dir_;
  std::string csv_;
  std::unique_ptr<SqliteStore> store_;
  std::optional<SecretBox> secrets_;
  ConnectorRegistry registry_;
  RunProgress progress_;
  Metrics metrics_;
  std::unique_ptr<SyncWorkers> workers_;
  std::unique_ptr<Scheduler> scheduler_;
  ConnectorRow connector_;
};

TEST_F(SchedulerTest, IncrementalEveryNMinutes) {
  SetSchedule(15, "");
  EXPECT_EQ(Next().incremental, Utc(2027, 1, 15, 10, 15));
  EXPECT_FALSE(Next().full.has_value());
  clock_.Advance(absl::Minutes(14));
  EXPECT_EQ(Tick().started, 0);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(Tick().started, 1);
  EXPECT_EQ(Tick().started, 0) << "once per due time";
  clock_.Advance(absl::Minutes(15));
  EXPECT_EQ(Tick().started, 1);
  std::vector<RunRow> runs = Runs();
  ASSERT_EQ(runs.size(), 2u);
  for (const RunRow& r : runs) {
    EXPECT_TRUE(r.incremental);
    EXPECT_EQ(r.status, RunStatus::kSucceeded) << r.error;
  }
  EXPECT_EQ(Audit("sync.scheduled").size(), 2u);
  EXPECT_EQ(Next().incremental, Utc(2027, 1, 15, 10, 45));
}

TEST_F(SchedulerTest, FullOnCronInItsTimeZone) {
  // 02:00 in Berlin is 01:00 UTC in winter.
  SetSchedule(0, "0 2 * * *", "Europe/Berlin");
  EXPECT_EQ(Next().full, Utc(2027, 1, 16, 1, 0));
  clock_.Advance(Utc(2027, 1, 16, 0, 59) - clock_.Now());
  EXPECT_EQ(Tick().started, 0);
  clock_.Advance(absl::Minutes(1));
  EXPECT_EQ(Tick().started, 1);
  std::vector<RunRow> runs = Runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_FALSE(runs[0].incremental);
  EXPECT_EQ(Next().full, Utc(2027, 1, 17, 1, 0));
}

TEST_F(SchedulerTest, FullWinsWhenBothAreDue) {
  SetSchedule(60, "0 * * * *");  // Both due at 11:00.
  clock_.Advance(absl::Hours(1));
  Scheduler::TickReport r = Tick();
  EXPECT_EQ(r.started, 1);
  std::vector<RunRow> runs = Runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_FALSE(runs[0].incremental);
  EXPECT_EQ(Tick().started, 0) << "the incremental was covered";
  EXPECT_EQ(Next().incremental, Utc(2027, 1, 15, 12, 0));
}

TEST_F(SchedulerTest, DueDuringAnActiveRunIsSkippedAndRecorded) {
  SetSchedule(10, "");
  RunRow active;
  active.tenant_id = connector_.tenant_id;
  active.connector_id = connector_.id;
  active.owner = "someone-else";
  auto created = store_->CreateRun(active);
  ASSERT_TRUE(created.ok()) << created.status();
  clock_.Advance(absl::Minutes(10));
  Scheduler::TickReport r = Tick();
  EXPECT_EQ(r.started, 0);
  EXPECT_EQ(r.skipped, 1);
  std::vector<v1::AuditEvent> skipped = Audit("sync.schedule_skipped");
  ASSERT_EQ(skipped.size(), 1u);
  EXPECT_EQ(skipped[0].actor(), "scheduler");
  const auto& details = skipped[0].details().fields();
  EXPECT_EQ(details.at("kind").string_value(), "incremental");
  EXPECT_EQ(details.at("active_run_id").number_value(), created->id);
  EXPECT_EQ(Runs().size(), 1u) << "no second run";
  EXPECT_EQ(Tick().skipped, 0) << "the skipped due time is handled";
  EXPECT_EQ(Next().incremental, Utc(2027, 1, 15, 10, 20));
}

TEST_F(SchedulerTest, DowntimeCatchesUpOnceAndRestartsForgetNothing) {
  SetSchedule(10, "*/30 * * * *");
  StopWorkers();
  store_.reset();
  // Down for five hours and a bit: 30 incrementals and 10 fulls missed.
  clock_.Advance(absl::Hours(5) + absl::Minutes(7));
  OpenStore();
  StartWorkers();
  Scheduler::TickReport r = Tick();
  EXPECT_EQ(r.started, 1);
  EXPECT_EQ(Tick().started, 0);
  ASSERT_EQ(Runs().size(), 1u);
  EXPECT_FALSE(Runs()[0].incremental);
  // The next due times follow the last missed ones, not the downtime.
  EXPECT_EQ(Next().incremental, Utc(2027, 1, 15, 15, 10));
  EXPECT_EQ(Next().full, Utc(2027, 1, 15, 15, 30));

  // A restart right after changes nothing: the due times are in the store.
  StopWorkers();
  store_.reset();
  OpenStore();
  StartWorkers();
  EXPECT_EQ(Tick().started, 0);
  clock_.Advance(absl::Minutes(3));  // 15:10
  EXPECT_EQ(Tick().started, 1);
  ASSERT_EQ(Runs().size(), 2u);
  EXPECT_TRUE(Runs()[1].incremental);
}

TEST_F(SchedulerTest, ScheduleRemovedStopsRuns) {
  SetSchedule(5, "");
  SetSchedule(0, "");
  clock_.Advance(absl::Hours(1));
  EXPECT_EQ(Tick().started, 0);
  EXPECT_TRUE(Runs().empty());
}

TEST(CheckScheduleTest, RejectsWhatCannotRun) {
  auto check = [](int minutes, std::string cron, std::string tz) {
    ConnectorSchedule s;
    s.incremental_minutes = minutes;
    s.full_cron = std::move(cron);
    s.time_zone = std::move(tz);
    return CheckSchedule(s);
  };
  EXPECT_TRUE(check(0, "", "").ok());
  EXPECT_TRUE(check(1, "0 2 * * *", "America/New_York").ok());
  EXPECT_THAT(check(-1, "", "").message(), HasSubstr("incremental_every"));
  EXPECT_THAT(check(kMaxIncrementalMinutes + 1, "", "").message(),
              HasSubstr("between 0 (none) and 10080"));
  EXPECT_THAT(check(0, "61 * * * *", "").message(),
              HasSubstr("'schedule.full_cron': cron: minute"));
  EXPECT_THAT(check(0, "0 0 30 2 *", "").message(), HasSubstr("full_cron"));
  EXPECT_THAT(check(0, "0 2 * * *", "Mars/Base").message(),
              HasSubstr("Mars/Base"));
  EXPECT_THAT(check(5, "", "UTC").message(), HasSubstr("'schedule.time_zone'"));
}

}  // namespace
}  // namespace idsync
