#include "agents/agent_config.h"

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "agents/token_file.h"
#include "connector/config.h"
#include "connector/status_macros.h"
#include "google/protobuf/util/json_util.h"

namespace idsync {
namespace {

constexpr size_t kMaxConfigBytes = 1 << 20;

absl::StatusOr<TlsOptions> ParseTls(const google::protobuf::Struct& tls,
                                    const std::string& where) {
  ConfigReader r(tls, where);
  IDSYNC_RETURN_IF_ERROR(
      r.CheckKnownKeys({"ca_file", "client_cert", "client_key", "insecure",
                        "insecure_allow_remote"}));
  TlsOptions o;
  IDSYNC_ASSIGN_OR_RETURN(o.ca_file, r.String("ca_file", ""));
  IDSYNC_ASSIGN_OR_RETURN(o.client_cert, r.String("client_cert", ""));
  IDSYNC_ASSIGN_OR_RETURN(o.client_key, r.String("client_key", ""));
  IDSYNC_ASSIGN_OR_RETURN(o.insecure, r.Bool("insecure", false));
  IDSYNC_ASSIGN_OR_RETURN(o.insecure_allow_remote,
                          r.Bool("insecure_allow_remote", false));
  return o;
}

absl::StatusOr<LocalConnector> ParseConnector(const google::protobuf::Struct& c,
                                              const std::string& where) {
  ConfigReader r(c, where);
  IDSYNC_RETURN_IF_ERROR(r.CheckKnownKeys({"type", "config", "auth_config"}));
  LocalConnector local;
  IDSYNC_ASSIGN_OR_RETURN(local.type, r.RequiredString("type"));
  if (local.type.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": 'type' is empty"));
  }
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* config,
                          r.Object("config"));
  if (config != nullptr) local.config = *config;
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* auth,
                          r.Object("auth_config"));
  if (auth != nullptr) {
    local.has_auth_config = true;
    local.auth_config = *auth;
  }
  return local;
}

}  // namespace

absl::StatusOr<AgentConfig> ParseAgentConfig(absl::string_view json,
                                             absl::string_view where) {
  google::protobuf::Struct root;
  auto parsed = google::protobuf::util::JsonStringToMessage(
      google::protobuf::StringPiece(json.data(), json.size()), &root);
  if (!parsed.ok()) {
    // The parser quotes the text around the error, which may be a secret:
    // keep only its first line.
    std::string message(parsed.message().data(), parsed.message().size());
    message = message.substr(0, message.find('\n'));
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": not a JSON object: ", message));
  }
  const std::string w(where);
  ConfigReader r(root, w);
  IDSYNC_RETURN_IF_ERROR(
      r.CheckKnownKeys({"dispatcher", "token_file", "state_dir", "capacity",
                        "local_connectors_only", "accept_dispatcher_configs",
                        "import_dir", "tls", "connectors"}));
  AgentConfig config;
  IDSYNC_ASSIGN_OR_RETURN(config.dispatcher, r.String("dispatcher", ""));
  IDSYNC_ASSIGN_OR_RETURN(config.token_file, r.String("token_file", ""));
  IDSYNC_ASSIGN_OR_RETURN(config.state_dir, r.String("state_dir", ""));
  IDSYNC_ASSIGN_OR_RETURN(
      int64_t capacity,
      r.Int("capacity", kDefaultAgentCapacity, 1, kMaxAgentCapacity));
  config.capacity = static_cast<int>(capacity);
  IDSYNC_ASSIGN_OR_RETURN(config.accept_dispatcher_configs,
                          r.Bool("accept_dispatcher_configs", false));
  // The earlier opt-out, kept: "local_connectors_only": false opts in.
  IDSYNC_ASSIGN_OR_RETURN(bool local_only,
                          r.Bool("local_connectors_only", true));
  if (!local_only) config.accept_dispatcher_configs = true;
  IDSYNC_ASSIGN_OR_RETURN(config.import_dir, r.String("import_dir", ""));
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* tls, r.Object("tls"));
  if (tls != nullptr) {
    IDSYNC_ASSIGN_OR_RETURN(config.tls, ParseTls(*tls, w + ": tls"));
  }
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* connectors,
                          r.Object("connectors"));
  if (connectors != nullptr) {
    for (const auto& [id, value] : connectors->fields()) {
      const std::string cw = absl::StrCat(w, ": connectors.", id.substr(0, 64));
      if (id.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(w, ": connectors: a business id is empty"));
      }
      if (value.kind_case() != google::protobuf::Value::kStructValue) {
        return absl::InvalidArgumentError(
            absl::StrCat(cw, " must be an object"));
      }
      IDSYNC_ASSIGN_OR_RETURN(config.connectors[id],
                              ParseConnector(value.struct_value(), cw));
    }
  }
  return config;
}

absl::StatusOr<AgentConfig> LoadAgentConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat("cannot read config file ", path));
  }
  std::string text(kMaxConfigBytes + 1, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<size_t>(in.gcount()));
  if (text.size() > kMaxConfigBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("config file ", path, " is larger than 1 MiB"));
  }
  return ParseAgentConfig(text, path);
}

absl::Status FillDefaultPaths(AgentConfig& config) {
  if (config.token_file.empty()) {
    IDSYNC_ASSIGN_OR_RETURN(config.token_file, DefaultTokenFile());
  }
  if (config.state_dir.empty()) {
    config.state_dir =
        std::filesystem::path(config.token_file).parent_path().string();
    if (config.state_dir.empty()) config.state_dir = ".";
  }
  return absl::OkStatus();
}

absl::Status CheckLocalConnectorTypes(const LocalConnectors& connectors,
                                      const std::vector<std::string>& types) {
  for (const auto& [id, local] : connectors) {
    bool known = false;
    for (const std::string& t : types) known = known || t == local.type;
    if (!known) {
      return absl::InvalidArgumentError(absl::StrCat(
          "connectors.", id.substr(0, 64), ": type '", local.type.substr(0, 64),
          "' is not built into this agent (known: ", absl::StrJoin(types, ", "),
          ")"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<PreparedRun> PrepareRun(const LocalConnectors& local,
                                       const idsync::v1::AssignRun& assign,
                                       const DispatcherConfigs& dispatcher) {
  PreparedRun run;
  run.type = assign.connector_type();
  run.request = assign.request();
  std::string id = assign.connector_business_id();
  if (id.empty()) id = assign.request().connector_business_id();
  if (run.type.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "run ", assign.run_id(), ": the assignment names no connector type"));
  }
  run.request.set_connector_business_id(id);
  run.spec.business_id = id;
  auto it = local.find(id);
  if (it == local.end() && !dispatcher.accept) {
    return absl::PermissionDeniedError(absl::StrCat(
        "connector '", id.substr(0, 64),
        "' is not configured on this agent, which runs only its own "
        "connectors (set accept_dispatcher_configs to run the dispatcher's)"));
  }
  // Keys the dispatcher decides, if any survive the local ones.
  bool dispatcher_keys = false;
  if (dispatcher.accept) {
    run.spec.config = assign.config();
    dispatcher_keys = !run.spec.config.fields().empty();
  }
  if (it != local.end()) {
    const LocalConnector& l = it->second;
    if (l.type != run.type) {
      return absl::FailedPreconditionError(absl::StrCat(
          "connector '", id.substr(0, 64),
          "' is configured on this agent with type '", l.type.substr(0, 64),
          "' but the dispatcher assigned type '", run.type.substr(0, 64),
          "'; make them agree"));
    }
    for (const auto& [key, value] : l.config.fields()) {
      (*run.spec.config.mutable_fields())[key] = value;
    }
    dispatcher_keys = false;
    for (const auto& [key, value] : run.spec.config.fields()) {
      dispatcher_keys = dispatcher_keys || !l.config.fields().contains(key);
    }
    if (l.has_auth_config) {
      // The agent's own credentials go only where the agent's own config
      // points: a target the dispatcher chose would receive them.
      for (const char* key : {"url", "base_url", "address", "streams"}) {
        if (run.spec.config.fields().contains(key) &&
            !l.config.fields().contains(key)) {
          return absl::PermissionDeniedError(absl::StrCat(
              "connector '", id.substr(0, 64),
              "': the dispatcher's config "
              "sets '",
              key,
              "', which this agent's config does not pin, and "
              "the agent's own auth_config is sent only where its own config "
              "points: pin '",
              key, "' under connectors.", id.substr(0, 64)));
        }
      }
      *run.request.mutable_auth_config() = l.auth_config;
    }
  }
  // A connector the agent does not configure is the dispatcher's, whatever
  // its config holds.
  if (dispatcher_keys || it == local.end()) {
    run.spec.access.files =
        dispatcher.import_dir.empty()
            ? NoFiles(
                  "the agent has no import_dir for connectors the "
                  "dispatcher configures")
            : ConfinedFiles(dispatcher.import_dir);
  }
  run.spec.auth_config = run.request.auth_config();
  return run;
}

}  // namespace idsync
