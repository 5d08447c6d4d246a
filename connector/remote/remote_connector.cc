#include "connector/remote/remote_connector.h"

#include <grpcpp/client_context.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>
#include <netdb.h>

#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "connector/config.h"
#include "connector/grpc_util.h"
#include "connector/http/address_policy.h"
#include "connector/status_macros.h"
#include "idsync/v1/connector.grpc.pb.h"

namespace idsync {
namespace {

using idsync::v1::SyncEvent;

constexpr absl::string_view kWhere = "remote config";

// Cancels `context` when Kick() has not been called for `idle`: a remote
// process that stops sending without closing its stream (hung, or a network
// path that dropped silently) must not hold the run forever.
class IdleWatchdog {
 public:
  IdleWatchdog(grpc::ClientContext* context, absl::Duration idle)
      : context_(context), idle_(idle), thread_([this] { Watch(); }) {}
  ~IdleWatchdog() {
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
    }
    thread_.join();
  }
  void Kick() {
    absl::MutexLock lock(&mu_);
    ++kicks_;
  }
  bool fired() {
    absl::MutexLock lock(&mu_);
    return fired_;
  }

 private:
  void Watch() {
    absl::MutexLock lock(&mu_);
    while (!done_) {
      int64_t seen = kicks_;
      auto changed = [this, seen]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return done_ || kicks_ != seen;
      };
      if (!mu_.AwaitWithTimeout(absl::Condition(&changed), idle_)) {
        fired_ = true;
        context_->TryCancel();
        return;
      }
    }
  }

  grpc::ClientContext* const context_;
  const absl::Duration idle_;
  absl::Mutex mu_;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
  bool fired_ ABSL_GUARDED_BY(mu_) = false;
  int64_t kicks_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread thread_;  // Last: starts after the fields above exist.
};

class RemoteConnector : public Connector {
 public:
  // `target` is what the channel dials: the configured address, or the
  // addresses it resolved to when they had to be checked.
  RemoteConnector(RemoteOptions options,
                  std::shared_ptr<grpc::ChannelCredentials> credentials,
                  google::protobuf::Struct auth_config,
                  const std::string& target)
      : options_(std::move(options)), auth_config_(std::move(auth_config)) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(options_.max_message_bytes);
    args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
    args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "idsync-remote");
    if (target != options_.address) {
      // Dialled by address: the server is still named as configured (HTTP/2
      // :authority, TLS name check).
      args.SetString(GRPC_ARG_DEFAULT_AUTHORITY, options_.address);
      if (options_.server_name.empty()) {
        absl::StatusOr<HostPort> hp = ParseHostPort(options_.address, kWhere);
        if (hp.ok()) args.SetSslTargetNameOverride(hp->host);
      }
    }
    if (!options_.server_name.empty()) {
      args.SetSslTargetNameOverride(options_.server_name);
    }
    stub_ = idsync::v1::Connector::NewStub(
        grpc::CreateCustomChannel(target, credentials, args));
  }

  absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override {
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + options_.call_timeout));
    idsync::v1::ConnectorInfo info;
    grpc::Status s = stub_->Describe(&context, {}, &info);
    if (!s.ok()) return CallError("Describe", s);
    return info;
  }

  absl::Status TestConnection() override {
    grpc::ClientContext context;
    context.set_deadline(
        absl::ToChronoTime(absl::Now() + options_.call_timeout));
    idsync::v1::TestConnectionRequest request;
    *request.mutable_auth_config() = auth_config_;
    idsync::v1::TestConnectionResponse response;
    grpc::Status s = stub_->TestConnection(&context, request, &response);
    if (!s.ok()) return CallError("TestConnection", s);
    if (!response.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("remote connector at ", options_.address,
                       ": connection test failed: ", response.error()));
    }
    return absl::OkStatus();
  }

  absl::Status Sync(const idsync::v1::SyncRequest& request,
                    RecordSink& sink) override {
    idsync::v1::SyncRequest call = request;
    *call.mutable_auth_config() = RunAuthConfig(request, auth_config_);
    grpc::ClientContext context;
    absl::Status failure;  // Ours: a broken protocol or the sink's "stop".
    bool got_result = false;
    idsync::v1::SyncResult result;
    grpc::Status finished;
    bool idle = false;
    {
      IdleWatchdog watchdog(&context, options_.idle_timeout);
      std::unique_ptr<grpc::ClientReader<SyncEvent>> reader =
          stub_->Sync(&context, call);
      SyncEvent event;
      int64_t last_sequence = 0;
      while (failure.ok() && reader->Read(&event)) {
        watchdog.Kick();
        if (got_result) {
          failure = Broken("sent a message after its result");
        } else if (event.has_result()) {
          got_result = true;
          result = std::move(*event.mutable_result());
        } else if (event.has_chunk()) {
          failure = CheckChunk(event.chunk(), last_sequence);
          last_sequence = event.chunk().sequence();
          if (failure.ok())
            failure = sink.Write(std::move(*event.mutable_chunk()));
        } else {
          failure = Broken("sent an event with neither a chunk nor a result");
        }
      }
      if (!failure.ok()) context.TryCancel();
      finished = reader->Finish();
      idle = watchdog.fired();
    }
    if (!failure.ok()) return failure;
    if (idle) {
      return absl::DeadlineExceededError(absl::StrCat(
          "remote connector at ", options_.address, " sent nothing for ",
          absl::FormatDuration(options_.idle_timeout),
          " (idle_timeout_seconds); the run stops"));
    }
    if (!finished.ok()) return CallError("Sync", finished);
    if (!got_result) return Broken("ended its stream without a result");
    if (!result.success()) {
      return absl::AbortedError(absl::StrCat(
          "remote connector at ", options_.address, " reported a failed sync: ",
          result.error().empty() ? "(no reason given)" : result.error()));
    }
    if (!result.next_sync_token().empty()) {
      sink.SetNextSyncToken(result.next_sync_token());
    }
    return absl::OkStatus();
  }

 private:
  absl::Status CheckChunk(const idsync::v1::SyncChunk& chunk,
                          int64_t last_sequence) const {
    if (chunk.sequence() <= last_sequence) {
      return Broken(absl::StrCat("sent chunk ", chunk.sequence(), " after ",
                                 last_sequence, " (sequences must increase)"));
    }
    const int64_t records = chunk.identities_size() + chunk.accounts_size() +
                            chunk.entitlements_size() + chunk.grants_size() +
                            chunk.deletions_size();
    if (records > kMaxChunkSize) {
      return Broken(absl::StrCat("sent a chunk of ", records,
                                 " records; the most is ", kMaxChunkSize));
    }
    return absl::OkStatus();
  }

  absl::Status Broken(absl::string_view what) const {
    return absl::DataLossError(
        absl::StrCat("remote connector at ", options_.address,
                     " broke the Connector protocol: it ", what));
  }

  absl::Status CallError(absl::string_view rpc, const grpc::Status& s) const {
    std::string prefix =
        absl::StrCat("remote connector at ", options_.address, ": ", rpc);
    switch (s.error_code()) {
      case grpc::StatusCode::RESOURCE_EXHAUSTED:
        return absl::ResourceExhaustedError(absl::StrCat(
            prefix, " failed: ", s.error_message(),
            " (a message over max_message_mb, or the remote's own limit)"));
      case grpc::StatusCode::UNAVAILABLE:
        return absl::UnavailableError(
            absl::StrCat(prefix, ": cannot reach it: ", s.error_message()));
      case grpc::StatusCode::DEADLINE_EXCEEDED:
        return absl::DeadlineExceededError(
            absl::StrCat(prefix, " took longer than call_timeout_seconds"));
      case grpc::StatusCode::UNIMPLEMENTED:
        return absl::UnimplementedError(absl::StrCat(
            prefix,
            " is not implemented there: is it an idsync.v1.Connector "
            "service?"));
      default: {
        absl::Status status = FromGrpcStatus(s);
        return absl::Status(
            status.code(), absl::StrCat(prefix, " failed: ", status.message()));
      }
    }
  }

  const RemoteOptions options_;
  const google::protobuf::Struct auth_config_;
  std::unique_ptr<idsync::v1::Connector::Stub> stub_;
};

absl::Status CheckPlaintextTarget(const RemoteOptions& o) {
  if (absl::StartsWith(o.address, "unix:")) return absl::OkStatus();
  IDSYNC_ASSIGN_OR_RETURN(HostPort target,
                          ParseHostPort(o.address, "remote config: address"));
  if (IsLoopbackHost(target.host) || o.insecure_allow_remote) {
    return absl::OkStatus();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "remote config: plaintext is only for a connector on loopback or a "
      "unix socket, not '",
      target.host.substr(0, 200),
      "': add a \"tls\" object, or insecure_allow_remote for development"));
}

// The channel target for `o.address` under `policy`: the address itself when
// anything goes; else its host is checked and resolved here, and the channel
// dials only the allowed addresses found ("ipv4:10.0.0.1:443,..."), so a DNS
// answer that changes later cannot lead it elsewhere.
absl::StatusOr<std::string> PinnedTarget(const RemoteOptions& o,
                                         const AddressPolicy& policy) {
  if (policy.any()) return o.address;
  if (absl::StartsWith(o.address, "unix:")) {
    return absl::InvalidArgumentError(
        "remote config: address: unix sockets are not accepted here (they "
        "are files on the dispatcher host); give HOST:PORT");
  }
  IDSYNC_ASSIGN_OR_RETURN(HostPort hp, ParseHostPort(o.address, kWhere));
  const std::string host = hp.host.find(':') != std::string::npos
                               ? absl::StrCat("[", hp.host, "]")
                               : hp.host;
  absl::Status allowed =
      policy.CheckHost(host, "remote config: address host", false);
  if (!allowed.ok()) return allowed;  // kInvalidArgument, as for rest and scim.
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (getaddrinfo(hp.host.c_str(), nullptr, &hints, &found) != 0) {
    return absl::UnavailableError(absl::StrCat("remote config: address host '",
                                               hp.host.substr(0, 200),
                                               "' does not resolve"));
  }
  std::string v4, v6;
  for (const addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    if (!policy.Allows(ai->ai_addr)) {
      freeaddrinfo(found);
      return absl::InvalidArgumentError(
          "remote config: address host is a loopback/private address");
    }
    const std::string a = AddressToString(ai->ai_addr);
    if (ai->ai_family == AF_INET) {
      absl::StrAppend(&v4, v4.empty() ? "" : ",", a, ":", hp.port);
    } else if (ai->ai_family == AF_INET6) {
      absl::StrAppend(&v6, v6.empty() ? "" : ",", "[", a, "]:", hp.port);
    }
  }
  freeaddrinfo(found);
  // gRPC takes one family per target; IPv4 when there is any.
  if (!v4.empty()) return absl::StrCat("ipv4:", v4);
  return absl::StrCat("ipv6:", v6);
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> Credentials(
    const RemoteOptions& o, const FileAccess& files) {
  if (!o.tls) {
    IDSYNC_RETURN_IF_ERROR(CheckPlaintextTarget(o));
    return grpc::InsecureChannelCredentials();
  }
  grpc::SslCredentialsOptions ssl;
  if (!o.ca_file.empty()) {
    IDSYNC_ASSIGN_OR_RETURN(
        ssl.pem_root_certs,
        ReadPemFile(files, o.ca_file, "remote config: tls.ca_file"));
  }
  if (!o.cert_file.empty()) {
    if (!files.secret_files()) {
      return absl::InvalidArgumentError(
          "remote config: tls.cert_file and tls.key_file (a client key) are "
          "not accepted here; run the connector from an agent's own config "
          "for mTLS");
    }
    IDSYNC_ASSIGN_OR_RETURN(
        ssl.pem_cert_chain,
        ReadPemFile(files, o.cert_file, "remote config: tls.cert_file"));
    IDSYNC_ASSIGN_OR_RETURN(
        ssl.pem_private_key,
        ReadPemFile(files, o.key_file, "remote config: tls.key_file"));
  }
  return grpc::SslCredentials(ssl);
}

}  // namespace

absl::StatusOr<RemoteOptions> ParseRemoteOptions(
    const google::protobuf::Struct& config) {
  ConfigReader r(config, std::string(kWhere));
  IDSYNC_RETURN_IF_ERROR(r.CheckKnownKeys(
      {"address", "tls", "insecure_allow_remote", "call_timeout_seconds",
       "idle_timeout_seconds", "max_message_mb"}));
  RemoteOptions o;
  IDSYNC_ASSIGN_OR_RETURN(o.address, r.RequiredString("address"));
  if (!absl::StartsWith(o.address, "unix:")) {
    IDSYNC_RETURN_IF_ERROR(
        ParseHostPort(o.address, "remote config: address").status());
  } else if (o.address.size() <= 5) {
    return absl::InvalidArgumentError(
        "remote config: address 'unix:' needs a socket path");
  }
  IDSYNC_ASSIGN_OR_RETURN(o.insecure_allow_remote,
                          r.Bool("insecure_allow_remote", false));
  IDSYNC_ASSIGN_OR_RETURN(int64_t call,
                          r.Int("call_timeout_seconds", 30, 1, 3600));
  IDSYNC_ASSIGN_OR_RETURN(int64_t idle,
                          r.Int("idle_timeout_seconds", 300, 1, 86400));
  IDSYNC_ASSIGN_OR_RETURN(int64_t mb, r.Int("max_message_mb", 16, 1, 256));
  o.call_timeout = absl::Seconds(call);
  o.idle_timeout = absl::Seconds(idle);
  o.max_message_bytes = static_cast<int>(mb << 20);
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* tls, r.Object("tls"));
  if (tls != nullptr) {
    o.tls = true;
    ConfigReader t(*tls, "remote config: tls");
    IDSYNC_RETURN_IF_ERROR(
        t.CheckKnownKeys({"ca_file", "cert_file", "key_file", "server_name"}));
    IDSYNC_ASSIGN_OR_RETURN(o.ca_file, t.String("ca_file", ""));
    IDSYNC_ASSIGN_OR_RETURN(o.cert_file, t.String("cert_file", ""));
    IDSYNC_ASSIGN_OR_RETURN(o.key_file, t.String("key_file", ""));
    IDSYNC_ASSIGN_OR_RETURN(o.server_name, t.String("server_name", ""));
    if (o.cert_file.empty() != o.key_file.empty()) {
      return absl::InvalidArgumentError(
          "remote config: tls.cert_file and tls.key_file go together (mTLS)");
    }
  }
  return o;
}

absl::StatusOr<std::unique_ptr<Connector>> CreateRemoteConnector(
    const ConnectorSpec& spec) {
  IDSYNC_ASSIGN_OR_RETURN(RemoteOptions options,
                          ParseRemoteOptions(spec.config));
  IDSYNC_ASSIGN_OR_RETURN(std::shared_ptr<grpc::ChannelCredentials> credentials,
                          Credentials(options, *spec.access.files));
  IDSYNC_ASSIGN_OR_RETURN(std::string target,
                          PinnedTarget(options, *spec.access.addresses));
  return std::make_unique<RemoteConnector>(
      std::move(options), std::move(credentials), spec.auth_config, target);
}

}  // namespace idsync
