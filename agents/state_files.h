// The agent's files in its state directory, none of them secret:
//   registration.json  what `register` learnt (agent id, name, dispatcher)
//   agent-status.json  kept up to date by a running agent (pid, connected,
//                      since, last error, runs in progress)
// and the `idsync-agent status` report built from them and the token file.
// Thread-compatible (plain functions).
#ifndef IDSYNC_AGENTS_STATE_FILES_H_
#define IDSYNC_AGENTS_STATE_FILES_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace idsync {

struct RegistrationInfo {
  int64_t agent_id = 0;
  std::string name;
  std::string dispatcher;
  absl::Time registered_at = absl::UnixEpoch();
};

struct RunStatus {
  int64_t run_id = 0;
  int64_t assignment = 0;
  std::string connector;  // Business id.
  std::string type;
  int64_t chunks_sent = 0;
  int64_t chunks_acked = 0;
  bool stopping = false;  // Cancelled, superseded or its stream was lost.
};

struct AgentStatus {
  int64_t pid = 0;
  std::string dispatcher;
  bool running = true;  // False once the agent has stopped.
  bool connected = false;
  absl::Time since = absl::UnixEpoch();  // When `connected` last changed.
  int64_t agent_id = 0;
  std::string name;
  std::string last_error;
  std::vector<RunStatus> runs;
  absl::Time updated = absl::UnixEpoch();
};

std::string RegistrationFilePath(const std::string& state_dir);
std::string StatusFilePath(const std::string& state_dir);

// Atomic (temporary file, then rename); creates `state_dir` (0700) if
// missing.
absl::Status WriteRegistrationFile(const std::string& state_dir,
                                   const RegistrationInfo& info);
absl::StatusOr<RegistrationInfo> ReadRegistrationFile(
    const std::string& state_dir);
absl::Status WriteStatusFile(const std::string& state_dir,
                             const AgentStatus& status);
absl::StatusOr<AgentStatus> ReadStatusFile(const std::string& state_dir);

// True if a process with this id exists (kill(pid, 0)).
bool ProcessAlive(int64_t pid);

// What `idsync-agent status` reports.
struct StatusReport {
  bool registered = false;
  std::string registered_detail;  // Why not, or the token file.
  bool connected = false;
  std::string connected_detail;
  std::optional<RegistrationInfo> registration;
  std::optional<AgentStatus> status;  // When the status file was readable.
  bool agent_alive = false;           // status->pid is a live process.
};

StatusReport CheckAgentStatus(const std::string& token_file,
                              const std::string& state_dir);
std::string FormatStatusText(const StatusReport& report);
std::string FormatStatusJson(const StatusReport& report);

}  // namespace idsync

#endif  // IDSYNC_AGENTS_STATE_FILES_H_
