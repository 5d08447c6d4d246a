#include "agents/spine_channel.h"

#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace idsync {
namespace {

int Ms(absl::Duration d) {
  return static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1, 24 * 3600 * 1000));
}

}  // namespace

absl::StatusOr<DispatcherAddress> ParseDispatcherAddress(
    absl::string_view address) {
  return ParseHostPort(address, "dispatcher address");
}

absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> SpineCredentials(
    const std::string& dispatcher, const TlsOptions& tls) {
  auto address = ParseDispatcherAddress(dispatcher);
  if (!address.ok()) return address.status();
  if (tls.insecure) {
    if (!tls.ca_file.empty() || !tls.client_cert.empty() ||
        !tls.client_key.empty()) {
      return absl::InvalidArgumentError(
          "--insecure (plaintext) cannot be combined with --ca-file, "
          "--client-cert or --client-key");
    }
    if (!IsLoopbackHost(address->host) && !tls.insecure_allow_remote) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--insecure (plaintext) is only for a dispatcher on loopback "
          "(127.0.0.0/8, ::1, localhost), not '",
          address->host.substr(0, 200),
          "': the agent token and your directory's data would cross the "
          "network unencrypted. Use TLS, or add --insecure-allow-remote "
          "for a development setup"));
    }
    return grpc::InsecureChannelCredentials();
  }
  if (tls.client_cert.empty() != tls.client_key.empty()) {
    return absl::InvalidArgumentError(
        "--client-cert and --client-key go together (mTLS)");
  }
  grpc::SslCredentialsOptions ssl;
  if (!tls.ca_file.empty()) {
    auto roots = ReadPemFile(tls.ca_file, "--ca-file");
    if (!roots.ok()) return roots.status();
    ssl.pem_root_certs = *std::move(roots);
  }
  if (!tls.client_cert.empty()) {
    auto cert = ReadPemFile(tls.client_cert, "--client-cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadPemFile(tls.client_key, "--client-key");
    if (!key.ok()) return key.status();
    ssl.pem_cert_chain = *std::move(cert);
    ssl.pem_private_key = *std::move(key);
  }
  return grpc::SslCredentials(ssl);
}

std::shared_ptr<grpc::Channel> CreateSpineChannel(
    const std::string& dispatcher,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const BackoffOptions& backoff) {
  grpc::ChannelArguments args;
  // See the constants in spine_channel.h for what the dispatcher allows.
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, kSpineKeepaliveTimeMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, kSpineKeepaliveTimeoutMs);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS,
              kSpineKeepalivePermitWithoutCalls);
  args.SetInt(GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA, kSpineMaxPingsWithoutData);
  // The agent's reconnect loop decides when to try again; gRPC's own
  // backoff (used only within one channel) follows the same curve.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, Ms(backoff.initial));
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, Ms(backoff.initial));
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, Ms(backoff.max));
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  args.SetString(GRPC_ARG_PRIMARY_USER_AGENT_STRING, "idsync-agent");
  return grpc::CreateCustomChannel(dispatcher, credentials, args);
}

}  // namespace idsync
