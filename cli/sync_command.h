// `idsync sync`: one hosted sync of a connector into a store, from the
// command line.
#ifndef IDSYNC_CLI_SYNC_COMMAND_H_
#define IDSYNC_CLI_SYNC_COMMAND_H_

#include <cstdint>
#include <optional>
#include <string>

namespace idsync {

struct SyncCommandOptions {
  std::string type = "csv";
  std::string file;         // For file connectors: becomes config "path".
  std::string config_file;  // A JSON object with the connector's config.
  // A JSON object with the connector's secrets (auth_config); never stored.
  std::string auth_config_file;
  std::string db = "idsync.db";
  std::string tenant = "default";
  std::string connector;  // Defaults to the type.
  int32_t chunk_size = 1000;
  int64_t commit_records = 50000;  // Records per transaction, at most.
  std::optional<int64_t> max_records;
  std::optional<double> deletion_threshold_percent;
  bool incremental = false;
  bool json = false;
};

// Exit codes: 0 the run succeeded, 1 the run failed, 2 it could not start.
enum SyncExit { kSyncOk = 0, kSyncRunFailed = 1, kSyncNotStarted = 2 };

// Runs the sync; prints progress to stderr (on a terminal) and a summary to
// stdout (JSON with options.json), errors to stderr.
int RunSyncCommand(const SyncCommandOptions& options);

}  // namespace idsync

#endif  // IDSYNC_CLI_SYNC_COMMAND_H_
