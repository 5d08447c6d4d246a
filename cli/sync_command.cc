#include "cli/sync_command.h"

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "cli/progress_bar.h"
#include "connector/registry.h"
#include "connector/status_macros.h"
#include "dispatcher/connector_dispatcher.h"
#include "dispatcher/store/sqlite_store.h"
#include "dispatcher/sync_engine.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

constexpr int64_t kMaxConfigBytes = 1 << 20;

// A JSON object from `path` ("what" names it in errors; contents are never
// echoed, they may be secrets).
absl::StatusOr<nlohmann::json> ReadJsonObject(const std::string& path,
                                              absl::string_view what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read ", what, " file '", path, "'"));
  }
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (static_cast<int64_t>(text.size()) > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " file '", path, "' is larger than 1 MiB"));
  }
  nlohmann::json j =
      nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " file '", path, "' is not a JSON object"));
  }
  return j;
}

// The connector config: the --config file's object, with --file as "path".
absl::StatusOr<std::string> BuildConfig(const SyncCommandOptions& o) {
  nlohmann::json config = nlohmann::json::object();
  if (!o.config_file.empty()) {
    IDSYNC_ASSIGN_OR_RETURN(config, ReadJsonObject(o.config_file, "config"));
  }
  if (!o.file.empty()) config["path"] = o.file;
  return config.dump();
}

absl::StatusOr<google::protobuf::Struct> BuildAuthConfig(
    const SyncCommandOptions& o) {
  google::protobuf::Struct auth;
  if (o.auth_config_file.empty()) return auth;
  IDSYNC_ASSIGN_OR_RETURN(nlohmann::json j,
                          ReadJsonObject(o.auth_config_file, "auth config"));
  if (!google::protobuf::util::JsonStringToMessage(j.dump(), &auth).ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "auth config file '", o.auth_config_file, "' is not a JSON object"));
  }
  return auth;
}

void PrintSummary(const RunRow& run, double seconds,
                  const std::vector<idsync::v1::Reject>& rejects, bool json) {
  if (json) {
    nlohmann::json out = {
        {"run_id", run.id},
        {"status", std::string(RunStatusName(run.status))},
        {"processed", run.processed},
        {"created", run.created},
        {"updated", run.updated},
        {"unchanged", run.unchanged},
        {"deleted", run.deleted},
        {"rejected", run.rejected},
        {"seconds", seconds},
        {"resumed", run.resumes > 0},
    };
    if (!run.error.empty()) out["error"] = run.error;
    if (!run.deletion_note.empty()) out["deletion_note"] = run.deletion_note;
    nlohmann::json sample = nlohmann::json::array();
    for (const auto& r : rejects) {
      sample.push_back({{"location", r.location()},
                        {"external_id", r.external_id()},
                        {"reason", r.reason()}});
    }
    if (!sample.empty()) out["rejects_sample"] = sample;
    std::cout << out.dump(-1, ' ', false,
                          nlohmann::json::error_handler_t::replace)
              << std::endl;
    return;
  }
  std::printf(
      "run %lld %s in %.2fs%s: %lld processed, %lld created, %lld updated, "
      "%lld unchanged, %lld deleted, %lld rejected (%.0f records/s)\n",
      static_cast<long long>(run.id),
      std::string(RunStatusName(run.status)).c_str(), seconds,
      run.resumes > 0
          ? " (resumed an interrupted run, with its original options)"
          : "",
      static_cast<long long>(run.processed),
      static_cast<long long>(run.created), static_cast<long long>(run.updated),
      static_cast<long long>(run.unchanged),
      static_cast<long long>(run.deleted), static_cast<long long>(run.rejected),
      seconds > 0 ? run.processed / seconds : 0.0);
  if (!run.deletion_note.empty() && run.deletion_note != run.error) {
    std::printf("  %s\n", run.deletion_note.c_str());
  }
  for (const auto& r : rejects) {
    std::printf("  rejected %s%s%s: %s\n", r.location().c_str(),
                r.external_id().empty() ? "" : " ", r.external_id().c_str(),
                r.reason().c_str());
  }
  if (run.rejected > static_cast<int64_t>(rejects.size())) {
    std::printf("  ... and %lld more rejects\n",
                static_cast<long long>(run.rejected - rejects.size()));
  }
}

absl::StatusOr<RunRow> Sync(const SyncCommandOptions& o, Store& store,
                            ProgressBar* bar) {
  IDSYNC_ASSIGN_OR_RETURN(int64_t tenant, store.EnsureTenant(o.tenant));
  ConnectorRow row;
  row.tenant_id = tenant;
  row.business_id = o.connector.empty() ? o.type : o.connector;
  row.type = o.type;
  IDSYNC_ASSIGN_OR_RETURN(row.config_json, BuildConfig(o));
  IDSYNC_ASSIGN_OR_RETURN(google::protobuf::Struct auth, BuildAuthConfig(o));
  ConnectorRegistry registry;
  RegisterBuiltinConnectors(registry);
  ConnectorDispatcher dispatcher(registry, Clock::Real());
  // Validate the config before the connector is stored.
  IDSYNC_RETURN_IF_ERROR(dispatcher.ConnectorFor(row, auth).status());
  IDSYNC_ASSIGN_OR_RETURN(row, store.UpsertConnector(row));
  IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<Connector> connector,
                          dispatcher.ConnectorFor(row, auth));
  SyncOptions options;
  options.auth_config = auth;
  options.incremental = o.incremental;
  options.chunk_size = o.chunk_size;
  options.max_records = o.max_records;
  if (o.deletion_threshold_percent.has_value()) {
    options.deletion_threshold = *o.deletion_threshold_percent / 100;
  }
  SyncEngineOptions engine_options;
  engine_options.max_group_records = o.commit_records;
  SyncEngine engine(store, Clock::Real(), engine_options);
  ProgressFn progress;
  if (bar != nullptr) {
    progress = [bar](const RunRow& run) { bar->Update(run, absl::Now()); };
  }
  return engine.Run(*connector, row, options, progress);
}

}  // namespace

int RunSyncCommand(const SyncCommandOptions& o) {
  const absl::Time start = absl::Now();
  auto store = SqliteStore::Open({o.db});
  if (!store.ok()) {
    std::cerr << "idsync sync: " << store.status().message() << "\n";
    return kSyncNotStarted;
  }
  std::unique_ptr<ProgressBar> bar;
  if (isatty(STDERR_FILENO)) bar = std::make_unique<ProgressBar>(stderr, start);
  absl::StatusOr<RunRow> run = Sync(o, **store, bar.get());
  if (bar != nullptr) bar->Finish();
  if (!run.ok()) {
    std::cerr << "idsync sync: " << run.status().message() << "\n";
    return kSyncNotStarted;
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  auto rejects = (*store)->ListRejects(run->tenant_id, run->id, 5);
  PrintSummary(*run, seconds,
               rejects.ok() ? *rejects : std::vector<idsync::v1::Reject>{},
               o.json);
  if (run->status != RunStatus::kSucceeded) {
    std::cerr << "idsync sync: run " << run->id << " failed: " << run->error
              << "\n";
    return kSyncRunFailed;
  }
  return kSyncOk;
}

}  // namespace idsync
