#include "agents/state_files.h"

#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "agents/token_file.h"
#include "connector/config.h"
#include "connector/status_macros.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/util/json_util.h"

namespace idsync {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

// Not "agent.json": that is what operators call the config, often kept in
// the same directory.
constexpr char kRegistrationFile[] = "registration.json";
constexpr char kStatusFile[] = "agent-status.json";

std::string Rfc3339(absl::Time t) {
  return absl::FormatTime(absl::RFC3339_sec, t, absl::UTCTimeZone());
}

absl::Time ParseTime(const std::string& text) {
  absl::Time t = absl::UnixEpoch();
  std::string ignored;
  if (!absl::ParseTime(absl::RFC3339_full, text, &t, &ignored)) {
    return absl::UnixEpoch();
  }
  return t;
}

void Set(Struct& s, const std::string& key, const std::string& v) {
  (*s.mutable_fields())[key].set_string_value(v);
}
void Set(Struct& s, const std::string& key, int64_t v) {
  (*s.mutable_fields())[key].set_number_value(static_cast<double>(v));
}
void SetBool(Struct& s, const std::string& key, bool v) {
  (*s.mutable_fields())[key].set_bool_value(v);
}

std::string ToJson(const Struct& s) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(s, &out, options);
  return out;
}

absl::StatusOr<Struct> ReadJsonFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::stringstream text;
  text << in.rdbuf();
  Struct s;
  auto parsed = google::protobuf::util::JsonStringToMessage(text.str(), &s);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, " is not JSON"));
  }
  return s;
}

absl::Status WriteFileAtomically(const std::string& dir,
                                 const std::string& name,
                                 const std::string& content) {
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    std::filesystem::create_directories(dir, ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot create ", dir, ": ", ec.message()));
    }
    chmod(dir.c_str(), 0700);
  }
  static std::atomic<int> counter{0};
  const std::string path = absl::StrCat(dir, "/", name);
  const std::string tmp = absl::StrCat(path, ".tmp-", getpid(), "-", counter++);
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << content << "\n";
    out.close();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::InternalError(absl::StrCat("cannot write ", tmp));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int e = errno;
    std::remove(tmp.c_str());
    return absl::InternalError(
        absl::StrCat("cannot rename into ", path, ": ", std::strerror(e)));
  }
  return absl::OkStatus();
}

}  // namespace

std::string RegistrationFilePath(const std::string& state_dir) {
  return absl::StrCat(state_dir, "/", kRegistrationFile);
}

std::string StatusFilePath(const std::string& state_dir) {
  return absl::StrCat(state_dir, "/", kStatusFile);
}

absl::Status WriteRegistrationFile(const std::string& state_dir,
                                   const RegistrationInfo& info) {
  Struct s;
  Set(s, "agent_id", info.agent_id);
  Set(s, "name", info.name);
  Set(s, "dispatcher", info.dispatcher);
  Set(s, "registered_at", Rfc3339(info.registered_at));
  return WriteFileAtomically(state_dir, kRegistrationFile, ToJson(s));
}

absl::StatusOr<RegistrationInfo> ReadRegistrationFile(
    const std::string& state_dir) {
  const std::string path = RegistrationFilePath(state_dir);
  IDSYNC_ASSIGN_OR_RETURN(Struct s, ReadJsonFile(path));
  ConfigReader r(s, path);
  RegistrationInfo info;
  IDSYNC_ASSIGN_OR_RETURN(info.agent_id,
                          r.Int("agent_id", 0, 0, int64_t{1} << 53));
  IDSYNC_ASSIGN_OR_RETURN(info.name, r.String("name", ""));
  IDSYNC_ASSIGN_OR_RETURN(info.dispatcher, r.String("dispatcher", ""));
  IDSYNC_ASSIGN_OR_RETURN(std::string at, r.String("registered_at", ""));
  info.registered_at = ParseTime(at);
  return info;
}

absl::Status WriteStatusFile(const std::string& state_dir,
                             const AgentStatus& status) {
  Struct s;
  Set(s, "pid", status.pid);
  Set(s, "dispatcher", status.dispatcher);
  SetBool(s, "running", status.running);
  SetBool(s, "connected", status.connected);
  Set(s, "since", Rfc3339(status.since));
  Set(s, "agent_id", status.agent_id);
  Set(s, "name", status.name);
  Set(s, "last_error", status.last_error);
  Set(s, "updated", Rfc3339(status.updated));
  Set(s, "runs_in_progress", static_cast<int64_t>(status.runs.size()));
  google::protobuf::ListValue* runs =
      (*s.mutable_fields())["runs"].mutable_list_value();
  for (const RunStatus& run : status.runs) {
    Struct r;
    Set(r, "run_id", run.run_id);
    Set(r, "assignment", run.assignment);
    Set(r, "connector", run.connector);
    Set(r, "type", run.type);
    Set(r, "chunks_sent", run.chunks_sent);
    Set(r, "chunks_acked", run.chunks_acked);
    SetBool(r, "stopping", run.stopping);
    *runs->add_values()->mutable_struct_value() = std::move(r);
  }
  return WriteFileAtomically(state_dir, kStatusFile, ToJson(s));
}

absl::StatusOr<AgentStatus> ReadStatusFile(const std::string& state_dir) {
  const std::string path = StatusFilePath(state_dir);
  IDSYNC_ASSIGN_OR_RETURN(Struct s, ReadJsonFile(path));
  ConfigReader r(s, path);
  constexpr int64_t kMax = int64_t{1} << 53;
  AgentStatus status;
  IDSYNC_ASSIGN_OR_RETURN(status.pid, r.Int("pid", 0, 0, kMax));
  IDSYNC_ASSIGN_OR_RETURN(status.dispatcher, r.String("dispatcher", ""));
  IDSYNC_ASSIGN_OR_RETURN(status.running, r.Bool("running", false));
  IDSYNC_ASSIGN_OR_RETURN(status.connected, r.Bool("connected", false));
  IDSYNC_ASSIGN_OR_RETURN(std::string since, r.String("since", ""));
  status.since = ParseTime(since);
  IDSYNC_ASSIGN_OR_RETURN(status.agent_id, r.Int("agent_id", 0, 0, kMax));
  IDSYNC_ASSIGN_OR_RETURN(status.name, r.String("name", ""));
  IDSYNC_ASSIGN_OR_RETURN(status.last_error, r.String("last_error", ""));
  IDSYNC_ASSIGN_OR_RETURN(std::string updated, r.String("updated", ""));
  status.updated = ParseTime(updated);
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::ListValue* runs,
                          r.List("runs"));
  if (runs != nullptr) {
    for (const Value& v : runs->values()) {
      if (v.kind_case() != Value::kStructValue) continue;
      ConfigReader rr(v.struct_value(), path + ": runs");
      RunStatus run;
      IDSYNC_ASSIGN_OR_RETURN(run.run_id, rr.Int("run_id", 0, 0, kMax));
      IDSYNC_ASSIGN_OR_RETURN(run.assignment, rr.Int("assignment", 0, 0, kMax));
      IDSYNC_ASSIGN_OR_RETURN(run.connector, rr.String("connector", ""));
      IDSYNC_ASSIGN_OR_RETURN(run.type, rr.String("type", ""));
      IDSYNC_ASSIGN_OR_RETURN(run.chunks_sent,
                              rr.Int("chunks_sent", 0, 0, kMax));
      IDSYNC_ASSIGN_OR_RETURN(run.chunks_acked,
                              rr.Int("chunks_acked", 0, 0, kMax));
      IDSYNC_ASSIGN_OR_RETURN(run.stopping, rr.Bool("stopping", false));
      status.runs.push_back(std::move(run));
    }
  }
  return status;
}

bool ProcessAlive(int64_t pid) {
  if (pid <= 0) return false;
  return kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM;
}

StatusReport CheckAgentStatus(const std::string& token_file,
                              const std::string& state_dir) {
  StatusReport report;
  auto token = ReadTokenFile(token_file);
  report.registered = token.ok();
  report.registered_detail =
      token.ok() ? absl::StrCat("token file ", token_file)
      : absl::IsNotFound(token.status())
          ? absl::StrCat("no token file at ", token_file,
                         " (run `idsync-agent register`)")
          : std::string(token.status().message());
  auto registration = ReadRegistrationFile(state_dir);
  if (registration.ok()) report.registration = *std::move(registration);

  auto status = ReadStatusFile(state_dir);
  if (!status.ok()) {
    report.connected_detail = "the agent is not running (no status file)";
    return report;
  }
  report.status = *std::move(status);
  const AgentStatus& s = *report.status;
  report.agent_alive = s.running && ProcessAlive(s.pid);
  if (!report.agent_alive) {
    report.connected_detail =
        s.running
            ? absl::StrCat("the agent is not running (pid ", s.pid, " is gone)")
            : "the agent has stopped";
  } else if (s.connected) {
    report.connected = true;
    report.connected_detail =
        absl::StrCat("to ", s.dispatcher, " since ", Rfc3339(s.since));
  } else {
    report.connected_detail = absl::StrCat(
        "the agent (pid ", s.pid, ") is reconnecting to ", s.dispatcher,
        s.last_error.empty() ? ""
                             : absl::StrCat("; last error: ", s.last_error));
  }
  return report;
}

std::string FormatStatusText(const StatusReport& report) {
  std::string out =
      absl::StrCat("registered: ", report.registered ? "yes" : "no", " (",
                   report.registered_detail, ")\n");
  if (report.registration.has_value()) {
    absl::StrAppend(&out, "agent:      ", report.registration->agent_id,
                    report.registration->name.empty()
                        ? ""
                        : absl::StrCat(" \"", report.registration->name, "\""),
                    " at ", report.registration->dispatcher, "\n");
  }
  absl::StrAppend(&out, "connected:  ", report.connected ? "yes" : "no", " (",
                  report.connected_detail, ")\n");
  if (report.agent_alive) {
    absl::StrAppend(&out, "runs:       ", report.status->runs.size(),
                    " in progress\n");
    for (const RunStatus& run : report.status->runs) {
      absl::StrAppend(&out, "  run ", run.run_id, " (", run.connector, ", ",
                      run.type, "): ", run.chunks_sent, " chunks sent, ",
                      run.chunks_acked, " acknowledged",
                      run.stopping ? ", stopping" : "", "\n");
    }
  }
  return out;
}

std::string FormatStatusJson(const StatusReport& report) {
  Struct s;
  SetBool(s, "registered", report.registered);
  Set(s, "registered_detail", report.registered_detail);
  SetBool(s, "connected", report.connected);
  Set(s, "connected_detail", report.connected_detail);
  if (report.registration.has_value()) {
    Set(s, "agent_id", report.registration->agent_id);
    Set(s, "name", report.registration->name);
  }
  if (report.status.has_value()) {
    const AgentStatus& st = *report.status;
    SetBool(s, "running", report.agent_alive);
    Set(s, "pid", st.pid);
    Set(s, "dispatcher", st.dispatcher);
    Set(s, "since", Rfc3339(st.since));
    if (st.agent_id != 0) Set(s, "agent_id", st.agent_id);
    Set(s, "last_error", st.last_error);
    Set(s, "runs_in_progress",
        report.agent_alive ? static_cast<int64_t>(st.runs.size()) : 0);
  } else {
    SetBool(s, "running", false);
  }
  return ToJson(s);
}

}  // namespace idsync
