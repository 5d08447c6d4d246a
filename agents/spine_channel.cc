#include "agents/spine_channel.h"

#include <arpa/inet.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <grpcpp/support/channel_arguments.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace idsync {
namespace {

absl::StatusOr<std::string> ReadPem(const std::string& path,
                                    absl::string_view option) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::NotFoundError(absl::StrCat(option, ": cannot read ", path));
  }
  std::stringstream s;
  s << in.rdbuf();
  std::string pem = s.str();
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, ": ", path, " is not a PEM file"));
  }
  return pem;
}

int Ms(absl::Duration d) {
  return static_cast<int>(
      std::clamp<int64_t>(absl::ToInt64Milliseconds(d), 1, 24 * 3600 * 1000));
}

}  // namespace

absl::StatusOr<DispatcherAddress> ParseDispatcherAddress(
    absl::string_view address) {
  auto bad = [&]() {
    return absl::InvalidArgumentError(
        absl::StrCat("dispatcher address '", address.substr(0, 200),
                     "' is not HOST:PORT (or [IPv6]:PORT)"));
  };
  DispatcherAddress out;
  absl::string_view port;
  if (absl::ConsumePrefix(&address, "[")) {
    size_t close = address.find("]:");
    if (close == absl::string_view::npos) return bad();
    out.host = std::string(address.substr(0, close));
    port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == absl::string_view::npos) return bad();
    out.host = std::string(address.substr(0, colon));
    port = address.substr(colon + 1);
    // An IPv6 address needs brackets.
    if (out.host.find(':') != std::string::npos) return bad();
  }
  if (out.host.empty() || !absl::SimpleAtoi(port, &out.port) || out.port <= 0 ||
      out.port > 65535) {
    return bad();
  }
  return out;
}

bool IsLoopbackHost(absl::string_view host) {
  std::string h = absl::AsciiStrToLower(host);
  if (h == "localhost" || h == "localhost.") return true;
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (std::memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0) return true;
    // ::ffff:127.x.y.z
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0,    0,
                                              0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(v6.s6_addr, kMapped, sizeof(kMapped)) == 0 &&
           v6.s6_addr[12] == 127;
  }
  return false;
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
    auto roots = ReadPem(tls.ca_file, "--ca-file");
    if (!roots.ok()) return roots.status();
    ssl.pem_root_certs = *std::move(roots);
  }
  if (!tls.client_cert.empty()) {
    auto cert = ReadPem(tls.client_cert, "--client-cert");
    if (!cert.ok()) return cert.status();
    auto key = ReadPem(tls.client_key, "--client-key");
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

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace idsync
