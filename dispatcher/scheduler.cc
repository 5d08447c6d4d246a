#include "dispatcher/scheduler.h"

#include <iostream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "connector/status_macros.h"
#include "dispatcher/cron.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

// How far the catch-up walks a cron schedule's missed times before it
// settles for "now" (a per-minute cron down for ~70 days).
constexpr int kMaxMissedWalk = 100000;

// What is due for one connector at one tick.
struct Due {
  std::optional<absl::Time> incremental;  // The latest missed due time.
  std::optional<absl::Time> full;
};

absl::StatusOr<std::optional<CronSchedule>> FullCron(
    const ConnectorSchedule& schedule) {
  if (schedule.full_cron.empty()) return std::nullopt;
  IDSYNC_ASSIGN_OR_RETURN(
      CronSchedule cron,
      CronSchedule::Parse(schedule.full_cron, schedule.time_zone));
  return cron;
}

absl::StatusOr<Due> DueAt(const ConnectorSchedule& schedule, absl::Time since,
                          absl::Time now) {
  IDSYNC_ASSIGN_OR_RETURN(NextRuns next, NextScheduledRuns(schedule, since));
  Due due;
  if (next.incremental.has_value() && *next.incremental <= now) {
    const absl::Duration every = absl::Minutes(schedule.incremental_minutes);
    absl::Duration rest;  // IDivDuration needs somewhere to put it.
    due.incremental =
        *next.incremental +
        every * absl::IDivDuration(now - *next.incremental, every, &rest);
  }
  if (next.full.has_value() && *next.full <= now) {
    // Parsed again only when a full run is due (checked when stored).
    IDSYNC_ASSIGN_OR_RETURN(std::optional<CronSchedule> cron,
                            FullCron(schedule));
    absl::Time t = *next.full;
    for (int i = 0; i < kMaxMissedWalk; ++i) {
      absl::Time after = cron->Next(t);
      if (after > now) break;
      t = i + 1 == kMaxMissedWalk ? now : after;
    }
    due.full = t;
  }
  return due;
}

AuditEntry SchedulerAudit(const ConnectorRow& row, std::string action,
                          const nlohmann::json& details) {
  AuditEntry e;
  e.tenant_id = row.tenant_id;
  e.actor = "scheduler";
  e.action = std::move(action);
  e.resource_type = "connector";
  e.resource_id = absl::StrCat(row.id);
  e.details_json = details.dump();
  return e;
}

}  // namespace

absl::Status CheckSchedule(const ConnectorSchedule& schedule) {
  if (schedule.incremental_minutes < 0 ||
      schedule.incremental_minutes > kMaxIncrementalMinutes) {
    return absl::InvalidArgumentError(absl::StrCat(
        "'schedule.incremental_every_minutes' must be between 0 (none) and ",
        kMaxIncrementalMinutes));
  }
  if (schedule.full_cron.empty() && !schedule.time_zone.empty()) {
    return absl::InvalidArgumentError(
        "'schedule.time_zone' is for 'schedule.full_cron', which is empty");
  }
  absl::StatusOr<std::optional<CronSchedule>> cron = FullCron(schedule);
  if (!cron.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("'schedule.full_cron': ", cron.status().message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<NextRuns> NextScheduledRuns(const ConnectorSchedule& schedule,
                                           absl::Time since) {
  NextRuns next;
  if (schedule.incremental_minutes > 0) {
    next.incremental = schedule.incremental_handled_at.value_or(since) +
                       absl::Minutes(schedule.incremental_minutes);
  }
  IDSYNC_ASSIGN_OR_RETURN(std::optional<CronSchedule> cron, FullCron(schedule));
  if (cron.has_value()) {
    next.full = cron->Next(schedule.full_handled_at.value_or(since));
  }
  return next;
}

Scheduler::Scheduler(Store& store, SyncWorkers& workers, Clock& clock)
    : store_(store), workers_(workers), clock_(clock) {}

Scheduler::~Scheduler() { Stop(); }

absl::StatusOr<Scheduler::TickReport> Scheduler::Tick() {
  IDSYNC_ASSIGN_OR_RETURN(std::vector<ConnectorRow> rows,
                          store_.ScheduledConnectors());
  TickReport report;
  const absl::Time now = clock_.Now();
  for (const ConnectorRow& row : rows) Handle(row, now, report);
  return report;
}

void Scheduler::Handle(const ConnectorRow& row, absl::Time now,
                       TickReport& report) {
  auto fail = [&](const absl::Status& status) {
    ++report.failed;
    report.last_error =
        absl::StrCat("connector ", row.id, ": ", status.message());
  };
  absl::StatusOr<Due> due = DueAt(row.schedule, row.updated_at, now);
  if (!due.ok()) return fail(due.status());
  if (!due->incremental.has_value() && !due->full.has_value()) return;

  const bool full = due->full.has_value();
  const absl::Time due_at = full ? *due->full : *due->incremental;
  nlohmann::json details = {
      {"kind", full ? "full" : "incremental"},
      {"due_at",
       absl::FormatTime("%Y-%m-%d%ET%H:%M:%SZ", due_at, absl::UTCTimeZone())}};
  auto mark = [&](WriteTxn& txn) {
    return txn.MarkScheduleHandled(row.tenant_id, row.id, due->incremental,
                                   due->full);
  };
  SyncOptions options;
  options.incremental = !full;
  absl::StatusOr<RunRow> run = workers_.Start(
      row, options, [&](const RunRow& created, WriteTxn& txn) -> absl::Status {
        IDSYNC_RETURN_IF_ERROR(mark(txn));
        details["run_id"] = created.id;
        return txn.Audit(SchedulerAudit(row, "sync.scheduled", details));
      });
  if (run.ok()) {
    ++report.started;
    return;
  }
  if (!absl::IsFailedPrecondition(run.status())) return fail(run.status());
  // One run per connector: this due time is skipped, and says so.
  absl::StatusOr<std::optional<RunRow>> active =
      store_.ActiveRun(row.tenant_id, row.id);
  details["reason"] = "the connector has an active run";
  if (active.ok() && active->has_value()) {
    details["active_run_id"] = (*active)->id;
  }
  absl::Status skipped = store_.Write([&](WriteTxn& txn) -> absl::Status {
    IDSYNC_RETURN_IF_ERROR(mark(txn));
    return txn.Audit(SchedulerAudit(row, "sync.schedule_skipped", details));
  });
  if (!skipped.ok()) return fail(skipped);
  ++report.skipped;
}

void Scheduler::Start(absl::Duration every) {
  thread_ = std::thread([this, every] {
    absl::MutexLock lock(&mu_);
    while (!stopping_) {
      mu_.Unlock();
      absl::StatusOr<TickReport> report = Tick();
      if (!report.ok()) {
        std::cerr << "idsync-dispatcher: scheduler: "
                  << report.status().message() << "\n";
      } else if (report->failed > 0) {
        std::cerr << "idsync-dispatcher: scheduler: " << report->failed
                  << " due sync(s) not started, retrying: "
                  << report->last_error << "\n";
      }
      mu_.Lock();
      mu_.AwaitWithTimeout(absl::Condition(&stopping_), every);
    }
  });
}

void Scheduler::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

}  // namespace idsync
