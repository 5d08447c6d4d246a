// idsync-dispatcher: the control plane. `idsync-dispatcher --help`.
#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/ascii.h"
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
#include "dispatcher/source_policy.h"
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
  int http_io_threads = 2;
  int http_header_timeout_seconds = 10;
  int http_body_timeout_seconds = 30;
  int http_max_connections = 10000;
  int http_max_connections_per_address = 128;
  int64_t max_upload_mb = 1024;
  std::string metrics_listen = "127.0.0.1:9464";  // "": none.
  std::string metrics_token_file;  // /metrics on the API port with it.
  bool metrics_tenant_labels = false;
  std::string import_dir;  // Tenants' files: IMPORT_DIR/<tenant>/.
  bool allow_private_sources = false;
  std::vector<std::string> tenant_source_cidrs;  // TENANT=CIDR,...
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

// The API connections the process can hold: the open-file limit is raised
// to its hard limit, and `wanted` is cut to what it leaves after a reserve
// for the store, gRPC, connectors and uploads (a connection past it would
// fail with EMFILE, and so would everything else).
int ConnectionBudget(int wanted) {
  constexpr rlim_t kReserve = 512;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return wanted;
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  // Each upload holds two descriptors; a connection one.
  const rlim_t room = limit.rlim_cur > 2 * kReserve ? limit.rlim_cur - kReserve
                                                    : limit.rlim_cur / 2;
  if (static_cast<rlim_t>(wanted) <= room) return wanted;
  spdlog::warn(
      "--http-max-connections {} is more than the open-file limit ({}) "
      "leaves room for; using {} (raise LimitNOFILE / ulimit -n)",
      wanted, static_cast<uint64_t>(limit.rlim_cur),
      static_cast<uint64_t>(room));
  return static_cast<int>(room);
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
  idsync::SourcePolicyOptions source_options;
  source_options.import_dir = o.import_dir;
  source_options.allow_private_sources = o.allow_private_sources;
  for (const std::string& flag : o.tenant_source_cidrs) {
    if (absl::Status s = idsync::SourcePolicy::ParseTenantNetworks(
            flag, &source_options.tenant_networks);
        !s.ok()) {
      std::cerr << "idsync-dispatcher: " << s.message() << "\n";
      return 2;
    }
  }
  auto sources = idsync::SourcePolicy::Create(**store, source_options);
  if (!sources.ok()) {
    std::cerr << "idsync-dispatcher: " << sources.status().message() << "\n";
    return 2;
  }
  std::string metrics_token;
  if (!o.metrics_token_file.empty()) {
    auto token = ReadPem(o.metrics_token_file);  // Any text file.
    if (!token.ok() || absl::StripAsciiWhitespace(*token).size() < 16) {
      std::cerr << "idsync-dispatcher: --metrics-token-file must hold a "
                   "token of at least 16 characters\n";
      return 2;
    }
    metrics_token = std::string(absl::StripAsciiWhitespace(*token));
  }
  std::string metrics_host;
  int metrics_port = 0;
  if (!o.metrics_listen.empty() &&
      !SplitHostPort(o.metrics_listen, &metrics_host, &metrics_port)) {
    std::cerr << "idsync-dispatcher: --metrics-listen is HOST:PORT\n";
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
  idsync::Metrics metrics({/*tenant_labels=*/o.metrics_tenant_labels});
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
  worker_options.sources = sources->get();
  auto workers = std::make_unique<idsync::SyncWorkers>(
      **store, registry, *secrets, idsync::Clock::Real(), progress, metrics,
      worker_options);
  idsync::ControlPlaneServiceOptions service_options;
  service_options.allow_private_callbacks = o.allow_private_callbacks;
  service_options.agents = &agents;
  service_options.sources = sources->get();
  service_options.metrics = &metrics;
  idsync::ControlPlaneService service(**store, registry, *secrets, *workers,
                                      service_options);
  idsync::RateLimiter limiter(idsync::Clock::Real(), o.rate_limit,
                              o.rate_burst);

  idsync::RestServerOptions rest_options;
  rest_options.http.host = http_host;
  rest_options.http.port = http_port;
  rest_options.http.worker_threads = o.http_threads;
  rest_options.http.io_threads = o.http_io_threads;
  rest_options.http.header_timeout =
      absl::Seconds(o.http_header_timeout_seconds);
  rest_options.http.body_timeout = absl::Seconds(o.http_body_timeout_seconds);
  rest_options.http.max_connections = ConnectionBudget(o.http_max_connections);
  rest_options.http.max_connections_per_address =
      o.http_max_connections_per_address;
  rest_options.max_upload_bytes = static_cast<uint64_t>(o.max_upload_mb) << 20;
  rest_options.version = kVersion;
  rest_options.metrics_token = metrics_token;
  idsync::RestServer rest(service, **store, progress, metrics, limiter,
                          rest_options);
  if (absl::Status s = rest.Start(); !s.ok()) {
    std::cerr << "idsync-dispatcher: " << s.message() << "\n";
    return 2;
  }
  std::unique_ptr<idsync::MetricsServer> metrics_server;
  if (!o.metrics_listen.empty()) {
    idsync::HttpServerOptions m;
    m.host = metrics_host;
    m.port = metrics_port;
    m.io_threads = 1;
    m.worker_threads = 1;
    m.max_connections = 64;
    m.max_connections_per_address = 16;
    metrics_server = std::make_unique<idsync::MetricsServer>(metrics, m);
    if (absl::Status s = metrics_server->Start(); !s.ok()) {
      std::cerr << "idsync-dispatcher: --metrics-listen: " << s.message()
                << "\n";
      return 2;
    }
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

  spdlog::info(
      "idsync-dispatcher {} store={} http={}:{} grpc={}:{} metrics={} "
      "import_dir={}",
      kVersion, o.db, http_host, rest.port(), grpc_host, bound_grpc_port,
      metrics_server == nullptr
          ? std::string("off")
          : absl::StrCat(metrics_host, ":", metrics_server->port()),
      o.import_dir.empty() ? std::string("none") : o.import_dir);
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
  if (metrics_server != nullptr) metrics_server->Stop();
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
                    "HTTP worker threads: run API handlers (slow clients and "
                    "event streams hold none)")
        ->check(CLI::Range(2, 1024))
        ->capture_default_str();
    cmd->add_option("--http-io-threads", serve.http_io_threads,
                    "Threads that read and write every HTTP connection")
        ->check(CLI::Range(1, 64))
        ->capture_default_str();
    cmd->add_option("--http-header-timeout", serve.http_header_timeout_seconds,
                    "Seconds a request header may take to arrive, in all")
        ->check(CLI::Range(1, 600))
        ->capture_default_str();
    cmd->add_option("--http-body-timeout", serve.http_body_timeout_seconds,
                    "Seconds a request body may take to arrive, in all "
                    "(uploads: the longest pause)")
        ->check(CLI::Range(1, 3600))
        ->capture_default_str();
    cmd->add_option("--http-max-connections", serve.http_max_connections,
                    "Open HTTP connections in all")
        ->check(CLI::Range(16, 1000000))
        ->capture_default_str();
    cmd->add_option("--http-max-connections-per-address",
                    serve.http_max_connections_per_address,
                    "Open HTTP connections from one client address")
        ->check(CLI::Range(1, 1000000))
        ->capture_default_str();
    cmd->add_option("--max-upload-mb", serve.max_upload_mb,
                    "Largest file a connector's file upload may carry, MiB")
        ->check(CLI::Range(1, 1 << 20))
        ->capture_default_str();
    cmd->add_option("--import-dir", serve.import_dir,
                    "Directory of the files connectors may read: each "
                    "tenant's own subdirectory DIR/<tenant> (uploads land "
                    "there); without it, API-made connectors read no files");
    cmd->add_flag("--allow-private-sources", serve.allow_private_sources,
                  "Let every tenant's hosted connectors reach loopback, "
                  "private and link-local addresses (single-tenant hosts, "
                  "labs)");
    cmd->add_option("--tenant-source-cidrs", serve.tenant_source_cidrs,
                    "TENANT=CIDR[,CIDR...]: networks one tenant's hosted "
                    "connectors may reach besides public addresses "
                    "(repeatable)");
    cmd->add_option("--metrics-listen", serve.metrics_listen,
                    "Address of the operator's /metrics (no token; \"\": "
                    "none)")
        ->capture_default_str();
    cmd->add_option("--metrics-token-file", serve.metrics_token_file,
                    "File holding an operator token that may read /metrics "
                    "on the API port too");
    cmd->add_flag("--metrics-tenant-labels", serve.metrics_tenant_labels,
                  "Label run and record counters with the tenant id");
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
