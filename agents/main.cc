// idsync-agent: the on-prem agent. `idsync-agent --help`.
#include <signal.h>

#include <cstdlib>
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "agents/agent_config.h"
#include "agents/registration.h"
#include "agents/spine_client.h"
#include "agents/state_files.h"
#include "agents/token_file.h"
#include "spdlog/sinks/stdout_color_sinks.h"
#include "spdlog/spdlog.h"

namespace {

// Flags shared by the commands; empty or false: not given.
struct CommonFlags {
  std::string config;
  std::string dispatcher;
  std::string token_file;
  std::string state_dir;
  std::string ca_file;
  std::string client_cert;
  std::string client_key;
  bool insecure = false;
  bool insecure_allow_remote = false;
  int capacity = 0;
  bool local_connectors_only = false;
  bool accept_dispatcher_configs = false;
  std::string import_dir;
};

void AddPathFlags(CLI::App* cmd, CommonFlags& f) {
  cmd->add_option("--config", f.config,
                  "Agent config, a JSON file (see docs/agent.md); flags "
                  "override it");
  cmd->add_option("--token-file", f.token_file,
                  "Agent token file (default: $IDSYNC_AGENT_TOKEN_FILE or "
                  "~/.config/idsync/agent.token)");
  cmd->add_option(
      "--state-dir", f.state_dir,
      "Directory for registration.json and agent-status.json (default: "
      "the token file's directory)");
}

void AddConnectFlags(CLI::App* cmd, CommonFlags& f) {
  cmd->add_option("--dispatcher", f.dispatcher,
                  "The dispatcher's gRPC address, HOST:PORT");
  cmd->add_option("--ca-file", f.ca_file,
                  "PEM CA certificates to verify the dispatcher (default: "
                  "the system's)");
  cmd->add_option("--client-cert", f.client_cert,
                  "PEM client certificate chain, for mTLS (with --client-key)");
  cmd->add_option("--client-key", f.client_key,
                  "PEM client private key, for mTLS (with --client-cert)");
  cmd->add_flag("--insecure", f.insecure,
                "FOR DEVELOPMENT ONLY: plaintext gRPC, no TLS. Refused unless "
                "the dispatcher is on loopback (127.0.0.0/8, ::1, localhost)");
  cmd->add_flag("--insecure-allow-remote", f.insecure_allow_remote,
                "FOR DEVELOPMENT ONLY: allow --insecure to a dispatcher that "
                "is not on loopback (the token and your data then cross the "
                "network unencrypted)");
}

// The config file, then the flags over it, then the default paths.
absl::StatusOr<idsync::AgentConfig> ResolveConfig(const CommonFlags& f) {
  idsync::AgentConfig config;
  if (!f.config.empty()) {
    auto loaded = idsync::LoadAgentConfig(f.config);
    if (!loaded.ok()) return loaded.status();
    config = *std::move(loaded);
  }
  auto set = [](std::string& dst, const std::string& src) {
    if (!src.empty()) dst = src;
  };
  set(config.dispatcher, f.dispatcher);
  set(config.token_file, f.token_file);
  set(config.state_dir, f.state_dir);
  set(config.tls.ca_file, f.ca_file);
  set(config.tls.client_cert, f.client_cert);
  set(config.tls.client_key, f.client_key);
  if (f.insecure) config.tls.insecure = true;
  if (f.insecure_allow_remote) config.tls.insecure_allow_remote = true;
  if (f.capacity > 0) config.capacity = f.capacity;
  if (f.local_connectors_only) config.accept_dispatcher_configs = false;
  if (f.accept_dispatcher_configs) config.accept_dispatcher_configs = true;
  set(config.import_dir, f.import_dir);
  absl::Status s = idsync::FillDefaultPaths(config);
  if (!s.ok()) return s;
  return config;
}

int Fail(absl::string_view command, const absl::Status& status, int code) {
  std::cerr << "idsync-agent " << command << ": " << status.message() << "\n";
  return code;
}

int Register(const CommonFlags& flags, std::string registration_token,
             const std::string& name, bool force) {
  auto config = ResolveConfig(flags);
  if (!config.ok()) return Fail("register", config.status(), 2);
  if (config->dispatcher.empty()) {
    return Fail("register",
                absl::InvalidArgumentError(
                    "no dispatcher: give --dispatcher HOST:PORT"),
                2);
  }
  if (registration_token == "-") {
    std::getline(std::cin, registration_token);
    registration_token =
        std::string(absl::StripAsciiWhitespace(registration_token));
  }
  idsync::RegisterOptions options;
  options.dispatcher = config->dispatcher;
  options.tls = config->tls;
  options.registration_token = std::move(registration_token);
  options.name = name;
  options.token_file = config->token_file;
  options.state_dir = config->state_dir;
  options.force = force;
  auto info = idsync::RegisterAgent(options);
  if (!info.ok()) {
    const bool usage = absl::IsAlreadyExists(info.status()) ||
                       absl::IsInvalidArgument(info.status()) ||
                       absl::IsFailedPrecondition(info.status());
    return Fail("register", info.status(), usage ? 2 : 1);
  }
  std::cout << "Registered agent " << info->agent_id << " (" << info->name
            << ") with " << info->dispatcher << ".\n"
            << "Agent token saved to " << config->token_file
            << " (mode 0600). Start it with: idsync-agent run"
            << (flags.config.empty() ? "" : " --config " + flags.config)
            << "\n";
  return 0;
}

int RunAgent(const CommonFlags& flags, int shutdown_grace_seconds) {
  // Signals are taken by sigwait below, not by whichever thread they hit;
  // block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  auto config = ResolveConfig(flags);
  if (!config.ok()) return Fail("run", config.status(), 2);
  auto token = idsync::ReadTokenFile(config->token_file);
  if (!token.ok()) {
    return Fail("run",
                absl::Status(token.status().code(),
                             absl::StrCat(token.status().message(),
                                          absl::IsNotFound(token.status())
                                              ? " (run `idsync-agent "
                                                "register` first)"
                                              : "")),
                2);
  }
  if (config->dispatcher.empty()) {
    // Where `register` went, if nothing else says.
    auto registration = idsync::ReadRegistrationFile(config->state_dir);
    if (registration.ok()) config->dispatcher = registration->dispatcher;
  }
  if (config->dispatcher.empty()) {
    return Fail("run",
                absl::InvalidArgumentError(
                    "no dispatcher: give --dispatcher HOST:PORT or "
                    "\"dispatcher\" in the config"),
                2);
  }
  idsync::SpineClientOptions options;
  options.dispatcher = config->dispatcher;
  options.tls = config->tls;
  options.token = *std::move(token);
  options.capacity = config->capacity;
  options.connectors = config->connectors;
  options.dispatcher_configs.accept = config->accept_dispatcher_configs;
  options.dispatcher_configs.import_dir = config->import_dir;
  options.state_dir = config->state_dir;
  auto client = idsync::SpineClient::Create(std::move(options));
  if (!client.ok()) return Fail("run", client.status(), 2);
  (*client)->Start();

  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("signal {}: stopping (grace {} s for running syncs)", signal,
               shutdown_grace_seconds);
  (*client)->Stop();
  if (!(*client)->WaitIdle(absl::Seconds(shutdown_grace_seconds))) {
    // The dispatcher re-assigns them, with a resume token, to whoever
    // connects next.
    spdlog::warn("runs still going after the grace period; leaving them");
    std::_Exit(0);
  }
  client->reset();
  spdlog::info("stopped");
  return 0;
}

int Status(const CommonFlags& flags, bool json) {
  auto config = ResolveConfig(flags);
  if (!config.ok()) return Fail("status", config.status(), 2);
  idsync::StatusReport report =
      idsync::CheckAgentStatus(config->token_file, config->state_dir);
  std::cout << (json ? idsync::FormatStatusJson(report)
                     : idsync::FormatStatusText(report));
  if (json) std::cout << "\n";
  return report.registered && report.connected ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "idsync-agent: the on-prem idsync agent. It dials out to the "
      "dispatcher's gRPC port (it needs no inbound port) and runs syncs of "
      "sources behind your firewall."};
  app.set_version_flag("--version", std::string(idsync::AgentVersion()));
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error"}))
      ->capture_default_str();
  int exit_code = 0;
  CommonFlags flags;

  std::string registration_token, name;
  bool force = false;
  CLI::App* reg = app.add_subcommand(
      "register",
      "Exchange a one-time registration token (created by an admin through "
      "the API) for this agent's token, saved with mode 0600");
  AddPathFlags(reg, flags);
  AddConnectFlags(reg, flags);
  reg->add_option("--registration-token", registration_token,
                  "The one-time registration token; \"-\" reads it from "
                  "standard input")
      ->envname("IDSYNC_REGISTRATION_TOKEN")
      ->required();
  reg->add_option("--name", name,
                  "The agent's name in the API (default: the registration "
                  "token's)");
  reg->add_flag("--force", force, "Replace an existing token file");
  reg->callback(
      [&] { exit_code = Register(flags, registration_token, name, force); });

  int shutdown_grace = 10;
  CLI::App* run = app.add_subcommand(
      "run",
      "Connect to the dispatcher and run the syncs it assigns; reconnect "
      "forever");
  AddPathFlags(run, flags);
  AddConnectFlags(run, flags);
  run->add_option("--capacity", flags.capacity,
                  "Syncs run at once (default 2, or the config's)")
      ->check(CLI::Range(1, idsync::kMaxAgentCapacity));
  run->add_flag("--local-connectors-only", flags.local_connectors_only,
                "Run only the connectors configured in --config (the "
                "default); overrides the config's accept_dispatcher_configs");
  run->add_flag("--accept-dispatcher-configs", flags.accept_dispatcher_configs,
                "Also run connectors defined only at the dispatcher (their "
                "files confined to --import-dir)");
  run->add_option("--import-dir", flags.import_dir,
                  "The only directory whose files connectors defined at the "
                  "dispatcher may read");
  run->add_option("--shutdown-grace", shutdown_grace,
                  "Seconds SIGTERM waits for running syncs to stop")
      ->check(CLI::Range(0, 3600))
      ->capture_default_str();
  run->callback([&] { exit_code = RunAgent(flags, shutdown_grace); });

  bool json = false;
  CLI::App* status = app.add_subcommand(
      "status",
      "Say whether this agent is registered and connected (exit 0 when both)");
  AddPathFlags(status, flags);
  status->add_flag("--json", json, "Print JSON");
  status->callback([&] { exit_code = Status(flags, json); });

  // Logs go to stderr; stdout is for what a command prints.
  spdlog::set_default_logger(spdlog::stderr_color_mt("idsync-agent"));
  app.parse_complete_callback(
      [&] { spdlog::set_level(spdlog::level::from_str(log_level)); });
  CLI11_PARSE(app, argc, argv);
  return exit_code;
}
