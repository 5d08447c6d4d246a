#include "dispatcher/sync_workers.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "connector/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace idsync {
namespace {

// Stands in for a connector that could not be built, so the run it was
// created for ends failed with the reason, through the usual path.
class BrokenConnector final : public Connector {
 public:
  explicit BrokenConnector(absl::Status status) : status_(std::move(status)) {}
  absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override {
    return status_;
  }
  absl::Status TestConnection() override { return status_; }
  absl::Status Sync(const idsync::v1::SyncRequest&, RecordSink&) override {
    return status_;
  }

 private:
  const absl::Status status_;
};

}  // namespace

std::string AuthContext(const ConnectorRow& row) {
  return absl::StrCat("connector:", row.tenant_id, ":", row.id);
}

SyncWorkers::SyncWorkers(Store& store, const ConnectorRegistry& registry,
                         const SecretBox& secrets, Clock& clock,
                         RunProgress& progress, Metrics& metrics,
                         Options options)
    : store_(store),
      secrets_(secrets),
      progress_(progress),
      metrics_(metrics),
      dispatcher_(registry, clock),
      engine_(store, clock, options.engine) {
  dispatcher_.set_agent_hub(options.agents);
  dispatcher_.set_source_policy(options.sources);
  const int n = options.max_concurrent < 1 ? 1 : options.max_concurrent;
  for (int i = 0; i < n; ++i) threads_.emplace_back([this] { Work(); });
}

SyncWorkers::~SyncWorkers() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    queue_.clear();
  }
  for (std::thread& t : threads_) t.join();
}

absl::StatusOr<google::protobuf::Struct> SyncWorkers::AuthConfig(
    const ConnectorRow& row) {
  google::protobuf::Struct auth;
  if (!row.has_auth) return auth;
  IDSYNC_ASSIGN_OR_RETURN(std::string sealed,
                          store_.ConnectorAuth(row.tenant_id, row.id));
  if (sealed.empty()) return auth;
  IDSYNC_ASSIGN_OR_RETURN(std::string json,
                          secrets_.Open(sealed, AuthContext(row)));
  if (!google::protobuf::util::JsonStringToMessage(json, &auth).ok()) {
    return absl::DataLossError("stored auth_config is not a JSON object");
  }
  return auth;
}

absl::Status SyncWorkers::Test(const ConnectorRow& row) {
  IDSYNC_ASSIGN_OR_RETURN(google::protobuf::Struct auth, AuthConfig(row));
  IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<Connector> connector,
                          dispatcher_.ConnectorFor(row, auth));
  return connector->TestConnection();
}

absl::StatusOr<RunRow> SyncWorkers::Start(
    const ConnectorRow& row, const SyncOptions& options,
    const std::function<absl::Status(const RunRow&, WriteTxn&)>& in_txn) {
  Job job;
  job.row = row;
  job.cancel = std::make_shared<std::atomic<bool>>(false);
  // Reserved before the row exists, so nobody takes it for abandoned.
  job.reservation.emplace(SyncEngine::Reserve());
  RunRow run;
  run.tenant_id = row.tenant_id;
  run.connector_id = row.id;
  run.incremental = options.incremental;
  run.chunk_size = options.chunk_size;
  run.max_records = options.max_records;
  run.deletion_threshold =
      options.deletion_threshold.value_or(row.deletion_threshold);
  run.callback_url = options.callback_url;
  run.owner = job.reservation->owner();
  IDSYNC_RETURN_IF_ERROR(store_.Write([&](WriteTxn& txn) -> absl::Status {
    run.started_at = run.updated_at = txn.now();
    IDSYNC_ASSIGN_OR_RETURN(run, txn.InsertRun(run));
    return in_txn(run, txn);
  }));
  job.run = run;
  job.run_id = run.id;
  progress_.Publish(run, /*done=*/false);
  absl::MutexLock lock(&mu_);
  active_[run.id] = job.cancel;
  queue_.push_back(std::move(job));
  return run;
}

absl::Status SyncWorkers::Cancel(int64_t run_id) {
  absl::MutexLock lock(&mu_);
  auto it = active_.find(run_id);
  if (it == active_.end()) {
    return absl::NotFoundError(
        absl::StrCat("sync run ", run_id, " is not running here"));
  }
  *it->second = true;
  return absl::OkStatus();
}

absl::StatusOr<int> SyncWorkers::ResumeInterrupted() {
  IDSYNC_ASSIGN_OR_RETURN(std::vector<RunRow> runs, store_.RunningRuns());
  int queued = 0;
  for (const RunRow& run : runs) {
    absl::StatusOr<ConnectorRow> row =
        store_.GetConnector(run.tenant_id, run.connector_id);
    if (!row.ok()) continue;
    Job job;
    job.row = *row;
    job.run_id = run.id;
    job.cancel = std::make_shared<std::atomic<bool>>(false);
    absl::MutexLock lock(&mu_);
    if (active_.contains(run.id)) continue;  // Ours, executing.
    active_[run.id] = job.cancel;
    queue_.push_back(std::move(job));
    ++queued;
  }
  return queued;
}

void SyncWorkers::WaitIdle() {
  absl::MutexLock lock(&mu_);
  auto idle = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return queue_.empty() && busy_ == 0;
  };
  mu_.Await(absl::Condition(&idle));
}

void SyncWorkers::Work() {
  while (true) {
    Job job;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !queue_.empty();
      };
      mu_.Await(absl::Condition(&ready));
      if (stopping_) return;
      job = std::move(queue_.front());
      queue_.pop_front();
      ++busy_;
    }
    Execute(job);
    absl::MutexLock lock(&mu_);
    active_.erase(job.run_id);
    --busy_;
  }
}

void SyncWorkers::Execute(Job& job) {
  SyncOptions options;
  options.cancel = job.cancel;
  std::unique_ptr<Connector> connector;
  absl::StatusOr<google::protobuf::Struct> auth = AuthConfig(job.row);
  if (auth.ok()) {
    options.auth_config = *auth;
    absl::StatusOr<std::unique_ptr<Connector>> built =
        dispatcher_.ConnectorFor(job.row, *auth);
    if (built.ok()) connector = *std::move(built);
    if (!built.ok()) auth = built.status();
  }
  if (connector == nullptr) {
    connector = std::make_unique<BrokenConnector>(auth.status());
  }
  ProgressFn publish = [this](const RunRow& run) {
    progress_.Publish(run, /*done=*/false);
  };
  absl::StatusOr<RunRow> result =
      job.run.has_value()
          ? engine_.Execute(*connector, job.row, *job.run, options, publish)
          : engine_.Run(*connector, job.row, options, publish);
  if (result.ok()) {
    progress_.Publish(*result, /*done=*/true);
    metrics_.CountRun(*result);
  } else if (job.run.has_value()) {
    // The store could not record the end; the run stays running and is
    // resumed by the next start-up. Watchers learn it stopped here.
    RunRow stopped = *job.run;
    stopped.error = std::string(result.status().message());
    progress_.Publish(stopped, /*done=*/true);
  }
}

}  // namespace idsync
