// idsync-dispatcher: the control plane. `idsync-dispatcher --help`.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "connector/rate_limiter.h"
#include "connector/registry.h"
#include "connector/status_macros.h"
#include "dispatcher/agents/agent_hub.h"
#include "dispatcher/api/control_plane_service.h"
#include "dispatcher/api/grpc_service.h"
#include "dispatcher/api/rest_server.h"
#include "dispatcher/delivery/delivery_worker.h"
#include "dispatcher/delivery/progress_callbacks.h"
#include "dispatcher/metrics.h"
#include "dispatcher/run_progress.h"
#include "dispatcher/scheduler.h"
#include "dispatcher/secrets.h"
#include "dispatcher/store/sqlite_store.h"
#include "dispatcher/sync_workers.h"
#include "spdlog/spdlog.h"

namespace {

constexpr char kVersion[] = "0.1.0";

struct ServeOptions {
  std::string db = "idsync.db";
  std::string http_listen = "127.0.0.1:8080";
  std::string grpc_listen = "127.0.0.1:50051";
  std::string key_file;  // Default: DB.key, created if missing.
  int max_concurrent_syncs = 2;
  int shutdown_grace_seconds = 30;
  double rate_limit = 100;  // Requests per second per token.
  double rate_burst = 200;
  int http_threads = 16;
  bool allow_private_callbacks = false;  // Webhooks/callbacks to private IPs.
  int agent_timeout_seconds = 180;       // A run's agent may be away this long.
  std::string grpc_tls_cert, grpc_tls_key, grpc_client_ca;  // PEM files.
  int delivery_threads = 4;
};

bool SplitHostPort(const std::string& listen, std::string* host, int* port) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return false;
  *host = listen.substr(0, colon);
  try {
    *port = std::stoi(listen.substr(colon + 1));
  } catch (...) {
    return false;
  }
  return !host->empty() && *port >= 0 && *port <= 65535;
}

int Bootstrap(const std::string& db, const std::string& tenant) {
  auto store = idsync::SqliteStore::Open({db});
  if (!store.ok()) {
    std::cerr << "idsync-dispatcher: " << store.status().message() << "\n";
    return 2;
  }
  auto token = idsync::ControlPlaneService::Bootstrap(**store, tenant);
  if (!token.ok()) {
    std::cerr << "idsync-dispatcher bootstrap: " << token.status().message()
              << "\n";
    return 1;
  }
  std::cerr << "Created tenant '" << tenant << "' and its first admin token. "
            << "It is shown only this once; keep it in a secret store:\n";
  std::cout << *token << std::endl;
  return 0;
}

absl::StatusOr<std::string> ReadPem(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read PEM file '", path, "'"));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// TLS for the gRPC port (the control plane and the agent spine) when a
// certificate is given; with --grpc-client-ca, clients (agents) must
// present a certificate it signed (mTLS). Plaintext otherwise.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> GrpcCredentials(
    const ServeOptions& o) {
  if (o.grpc_tls_cert.empty() != o.grpc_tls_key.empty()) {
    return absl::InvalidArgumentError(
        "--grpc-tls-cert and --grpc-tls-key go together");
  }
  if (o.grpc_tls_cert.empty()) {
    if (!o.grpc_client_ca.empty()) {
      return absl::InvalidArgumentError("--grpc-client-ca needs TLS");
    }
    return grpc::InsecureServerCredentials();
  }
  grpc::SslServerCredentialsOptions ssl;
  grpc::SslServerCredentialsOptions::PemKeyCertPair pair;
  IDSYNC_ASSIGN_OR_RETURN(pair.cert_chain, ReadPem(o.grpc_tls_cert));
  IDSYNC_ASSIGN_OR_RETURN(pair.private_key, ReadPem(o.grpc_tls_key));
  ssl.pem_key_cert_pairs.push_back(std::move(pair));
  if (!o.grpc_client_ca.empty()) {
    IDSYNC_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadPem(o.grpc_client_ca));
    ssl.client_certificate_request =
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
  }
  return grpc::SslServerCredentials(ssl);
}

int Serve(const ServeOptions& o) {
  // Signals are taken by sigwait below, not by whichever thread they hit.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  std::string http_host, grpc_host;
  int http_port = 0, grpc_port = 0;
  if (!SplitHostPort(o.http_listen, &http_host, &http_port) ||
      !SplitHostPort(o.grpc_listen, &grpc_host, &grpc_port)) {
    std::cerr << "idsync-dispatcher: listen addresses are HOST:PORT\n";
    return 2;
  }
  auto store = idsync::SqliteStore::Open({o.db});
  if (!store.ok()) {
    std::cerr << "idsync-dispatcher: " << store.status().message() << "\n";
    return 2;
  }
  const std::string key_file = o.key_file.empty() ? o.db + ".key" : o.key_file;
  auto secrets =
      idsync::SecretBox::FromKeyFile(key_file, /*create=*/o.key_file.empty());
  if (!secrets.ok()) {
    std::cerr << "idsync-dispatcher: " << secrets.status().message() << "\n";
    return 2;
  }
  idsync::ConnectorRegistry registry;
  idsync::RegisterBuiltinConnectors(registry);
  idsync::RunProgress progress;
  idsync::Metrics metrics;
  idsync::DeliveryOptions delivery_options;
  delivery_options.allow_private = o.allow_private_callbacks;
  delivery_options.threads = o.delivery_threads;
  idsync::DeliveryWorker delivery(**store, *secrets, idsync::Clock::Real(),
                                  delivery_options);
  idsync::ProgressCallbacks callbacks(**store, *secrets, idsync::Clock::Real(),
                                      delivery_options);
  progress.SetListener([&callbacks](const idsync::RunRow& run, bool done) {
    callbacks.Update(run, done);
  });
  idsync::AgentHubOptions hub_options;
  hub_options.agent_timeout = absl::Seconds(o.agent_timeout_seconds);
  idsync::AgentHub agents(**store, idsync::Clock::Real(), hub_options);
  idsync::SyncWorkers::Options worker_options;
  worker_options.max_concurrent = o.max_concurrent_syncs;
  worker_options.agents = &agents;
  auto workers = std::make_unique<idsync::SyncWorkers>(
      **store, registry, *secrets, idsync::Clock::Real(), progress, metrics,
      worker_options);
  idsync::ControlPlaneServiceOptions service_options;
  service_options.allow_private_callbacks = o.allow_private_callbacks;
  service_options.agents = &agents;
  idsync::ControlPlaneService service(**store, registry, *secrets, *workers,
                                      service_options);
  idsync::RateLimiter limiter(idsync::Clock::Real(), o.rate_limit,
                              o.rate_burst);

  idsync::RestServerOptions rest_options;
  rest_options.host = http_host;
  rest_options.port = http_port;
  rest_options.version = kVersion;
  rest_options.threads = o.http_threads;
  idsync::RestServer rest(service, **store, progress, metrics, limiter,
                          rest_options);
  if (absl::Status s = rest.Start(); !s.ok()) {
    std::cerr << "idsync-dispatcher: " << s.message() << "\n";
    return 2;
  }

  idsync::ControlPlaneGrpc grpc_service(service, **store, progress, limiter);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  // Exclusive port: with SO_REUSEPORT a second dispatcher would share it.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  int bound_grpc_port = 0;
  // Agents ping every 30 s (agents/); accept pings every 10 s without calls
  // so a healthy idle agent is never sent GOAWAY "too_many_pings".
  builder.AddChannelArgument(
      GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MAX_PING_STRIKES, 0);
  // Chunks of up to 10,000 records can pass gRPC's default 4 MiB.
  builder.SetMaxReceiveMessageSize(64 << 20);
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> credentials =
      GrpcCredentials(o);
  if (!credentials.ok()) {
    std::cerr << "idsync-dispatcher: " << credentials.status().message()
              << "\n";
    return 2;
  }
  builder.AddListeningPort(o.grpc_listen, *credentials, &bound_grpc_port);
  builder.RegisterService(&grpc_service);
  builder.RegisterService(&agents);
  std::unique_ptr<grpc::Server> grpc_server = builder.BuildAndStart();
  if (grpc_server == nullptr || bound_grpc_port == 0) {
    std::cerr << "idsync-dispatcher: cannot listen on " << o.grpc_listen
              << "\n";
    return 2;
  }

  spdlog::info("idsync-dispatcher {} store={} http={}:{} grpc={}:{}", kVersion,
               o.db, http_host, rest.port(), grpc_host, bound_grpc_port);
  delivery.Start();
  if (auto resumed = workers->ResumeInterrupted();
      resumed.ok() && *resumed > 0) {
    spdlog::info("resuming {} interrupted sync run(s)", *resumed);
  }
  // After the resume, so a due tick sees the interrupted run as active.
  idsync::Scheduler scheduler(**store, *workers, idsync::Clock::Real());
  scheduler.Start(absl::Seconds(1));

  std::atomic<bool> stopping{false};
  std::thread maintenance([&] {
    while (!stopping) {
      for (int i = 0; i < 600 && !stopping; ++i)
        absl::SleepFor(absl::Milliseconds(100));
      (**store).ExpireIdempotent(absl::Hours(24)).IgnoreError();
      progress.Forget(absl::Minutes(10));
    }
  });

  int signal = 0;
  sigwait(&signals, &signal);
  spdlog::info("signal {}: stopping (grace {} s for running syncs)", signal,
               o.shutdown_grace_seconds);
  stopping = true;
  scheduler.Stop();
  rest.Stop();
  agents.Shutdown();  // Agent streams never end by themselves.
  grpc_server->Shutdown(absl::ToChronoTime(absl::Now() + absl::Seconds(5)));
  maintenance.join();
  absl::Notification idle;
  std::thread waiter([&] {
    workers->WaitIdle();
    idle.Notify();
  });
  if (!idle.WaitForNotificationWithTimeout(
          absl::Seconds(o.shutdown_grace_seconds))) {
    // Runs still going resume at the next start, from their last commit.
    spdlog::warn(
        "syncs still running after the grace period; they resume at "
        "the next start");
    std::_Exit(0);
  }
  waiter.join();
  workers.reset();
  delivery.Stop();
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"idsync-dispatcher: the idsync control plane (REST + gRPC)"};
  app.set_config("--config", "", "A TOML file with any of the options below");
  ServeOptions serve;
  int exit_code = 0;
  auto add_db = [&](CLI::App* cmd) {
    cmd->add_option("--db", serve.db, "Store file (SQLite), created if missing")
        ->capture_default_str();
  };
  CLI::App* serve_cmd =
      app.add_subcommand("serve", "Serve the API (the default)");
  for (CLI::App* cmd : {&app, serve_cmd}) {
    add_db(cmd);
    cmd->add_option("--http-listen", serve.http_listen, "REST/JSON address")
        ->capture_default_str();
    cmd->add_option("--grpc-listen", serve.grpc_listen, "gRPC address")
        ->capture_default_str();
    cmd->add_option("--key-file", serve.key_file,
                    "Key that encrypts secrets at rest (64 hex characters); "
                    "default DB.key, created on first start");
    cmd->add_option("--max-concurrent-syncs", serve.max_concurrent_syncs,
                    "Syncs running at once")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    cmd->add_option("--rate-limit", serve.rate_limit,
                    "API requests per second per token")
        ->check(CLI::Range(0.1, 1e6))
        ->capture_default_str();
    cmd->add_option("--rate-burst", serve.rate_burst,
                    "API requests a token may burst")
        ->check(CLI::Range(1.0, 1e7))
        ->capture_default_str();
    cmd->add_option("--http-threads", serve.http_threads,
                    "HTTP worker threads (each open event stream holds one)")
        ->check(CLI::Range(2, 1024))
        ->capture_default_str();
    cmd->add_flag("--allow-private-callbacks", serve.allow_private_callbacks,
                  "Allow webhook and callback URLs on loopback, private and "
                  "link-local addresses (tests, labs; never on a shared "
                  "network)");
    cmd->add_option("--agent-timeout", serve.agent_timeout_seconds,
                    "Seconds a run waits for its agent before it fails")
        ->check(CLI::Range(1, 86400))
        ->capture_default_str();
    cmd->add_option("--grpc-tls-cert", serve.grpc_tls_cert,
                    "PEM certificate chain: serve gRPC (API and agent spine) "
                    "over TLS");
    cmd->add_option("--grpc-tls-key", serve.grpc_tls_key,
                    "PEM private key of --grpc-tls-cert");
    cmd->add_option("--grpc-client-ca", serve.grpc_client_ca,
                    "PEM CA: require gRPC clients (agents) to present a "
                    "certificate it signed (mTLS)");
    cmd->add_option("--delivery-threads", serve.delivery_threads,
                    "Webhook endpoints served at once")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    cmd->add_option("--shutdown-grace", serve.shutdown_grace_seconds,
                    "Seconds to let running syncs finish on SIGTERM")
        ->check(CLI::Range(0, 3600))
        ->capture_default_str();
  }
  std::string tenant;
  CLI::App* bootstrap = app.add_subcommand(
      "bootstrap", "Create a tenant and print its first admin token, once");
  add_db(bootstrap);
  bootstrap->add_option("--tenant", tenant, "Tenant name")->required();
  bootstrap->callback([&] { exit_code = Bootstrap(serve.db, tenant); });
  serve_cmd->callback([&] { exit_code = Serve(serve); });
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  if (app.get_subcommands().empty()) exit_code = Serve(serve);
  return exit_code;
}
