// The agent's configuration: a JSON file (`idsync-agent --config FILE`),
// overridden by flags. Connectors configured here, with their secrets, stay
// on the agent: when the dispatcher assigns a run of one of them, the local
// settings win (PrepareRun). Errors name the key, never a value.
// Thread-compatible (plain data and functions).
//
// {
//   "dispatcher": "host:port",
//   "token_file": "...",          default $IDSYNC_AGENT_TOKEN_FILE or
//                                 ~/.config/idsync/agent.token
//   "state_dir": "...",           default: the token file's directory
//   "capacity": 2,                runs at once, 1..64
//   "accept_dispatcher_configs": false,  also run connectors the dispatcher
//                                 defines (default: only those below)
//   "import_dir": "...",          the only files those may read
//   "tls": {"ca_file": "...", "client_cert": "...", "client_key": "...",
//           "insecure": false, "insecure_allow_remote": false},
//   "connectors": {"<business_id>": {"type": "csv", "config": {...},
//                                    "auth_config": {...}}}
// }
#ifndef IDSYNC_AGENTS_AGENT_CONFIG_H_
#define IDSYNC_AGENTS_AGENT_CONFIG_H_

#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "connector/registry.h"
#include "google/protobuf/struct.pb.h"
#include "idsync/v1/agent.pb.h"

namespace idsync {

inline constexpr int kDefaultAgentCapacity = 2;
inline constexpr int kMaxAgentCapacity = 64;

struct TlsOptions {
  std::string ca_file;      // PEM roots; empty: the system's.
  std::string client_cert;  // PEM chain for mTLS; with client_key.
  std::string client_key;   // PEM key for mTLS; never logged.
  // Plaintext, for development. Refused unless the dispatcher is a loopback
  // address (127.0.0.0/8, ::1, localhost) or insecure_allow_remote is set.
  bool insecure = false;
  bool insecure_allow_remote = false;
};

// A connector configured on the agent.
struct LocalConnector {
  std::string type;
  google::protobuf::Struct config;  // Overrides the dispatcher's keys.
  bool has_auth_config = false;
  google::protobuf::Struct auth_config;  // Replaces the dispatcher's.
};

// Keyed by connector business id.
using LocalConnectors = std::map<std::string, LocalConnector>;

struct AgentConfig {
  std::string dispatcher;  // host:port
  std::string token_file;
  std::string state_dir;
  int capacity = kDefaultAgentCapacity;
  // Also run connectors defined only at the dispatcher. Off by default: the
  // dispatcher's config (which a tenant admin writes) would decide what the
  // agent reads from inside the firewall. When on, those connectors read
  // files only under import_dir (none without it) and no secret files.
  bool accept_dispatcher_configs = false;
  std::string import_dir;
  TlsOptions tls;
  LocalConnectors connectors;
};

// Parses the JSON text of a config file. `where` names it in errors.
absl::StatusOr<AgentConfig> ParseAgentConfig(absl::string_view json,
                                             absl::string_view where);
absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path);

// Fills an empty token_file (DefaultTokenFile) and state_dir (the token
// file's directory).
absl::Status FillDefaultPaths(AgentConfig& config);

// kInvalidArgument naming the first local connector whose type is not in
// `types` (the types this agent has built in).
absl::Status CheckLocalConnectorTypes(const LocalConnectors& connectors,
                                      const std::vector<std::string>& types);

// What one assigned run needs: the connector to build and the request.
struct PreparedRun {
  std::string type;
  ConnectorSpec spec;
  idsync::v1::SyncRequest request;
};

// Whether the agent runs connectors the dispatcher defines, and the files
// they may read.
struct DispatcherConfigs {
  bool accept = false;
  std::string import_dir;  // "": no files.
};

// Applies the local config to an assignment. If `local` has the assigned
// business id, its type must equal the assigned type (kFailedPrecondition
// otherwise) and its `auth_config`, when given, replaces the request's; its
// config is the connector's, and the dispatcher's keys are merged under it
// only when `dispatcher.accept`. A connector not in `local` is
// kPermissionDenied unless `dispatcher.accept`. Whatever the dispatcher's
// keys decide runs confined to `dispatcher.import_dir` (no secret files); a
// connector configured wholly here reads what the agent's user can.
absl::StatusOr<PreparedRun> PrepareRun(
    const LocalConnectors& local, const idsync::v1::AssignRun& assign,
    const DispatcherConfigs& dispatcher = {});

}  // namespace idsync

#endif  // IDSYNC_AGENTS_AGENT_CONFIG_H_
