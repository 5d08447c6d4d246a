// The agent's gRPC channel to the dispatcher's spine: address checks, TLS
// (server certificate, optional client certificate for mTLS, plaintext only
// on loopback unless explicitly allowed) and the channel arguments both
// sides agree on. Thread-safe (plain functions).
#ifndef IDSYNC_AGENTS_SPINE_CHANNEL_H_
#define IDSYNC_AGENTS_SPINE_CHANNEL_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "agents/agent_config.h"
#include "agents/backoff.h"
#include "connector/grpc_util.h"

namespace grpc {
class Channel;
class ChannelCredentials;
class Status;
}  // namespace grpc

namespace idsync {

// Keepalive on the spine. Both sides must agree, or the dispatcher closes a
// healthy agent's connection with GOAWAY "too_many_pings":
//   agent (client):      GRPC_ARG_KEEPALIVE_TIME_MS 30000,
//                        GRPC_ARG_KEEPALIVE_TIMEOUT_MS 10000,
//                        GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS 1,
//                        GRPC_ARG_HTTP2_MAX_PINGS_WITHOUT_DATA 0
//   dispatcher (server): GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS
//                        10000, GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS 1
// The agent pings every 30 s, three times slower than the server allows.
inline constexpr int kSpineKeepaliveTimeMs = 30000;
inline constexpr int kSpineKeepaliveTimeoutMs = 10000;
inline constexpr int kSpineKeepalivePermitWithoutCalls = 1;
inline constexpr int kSpineMaxPingsWithoutData = 0;  // Unlimited.

using DispatcherAddress = HostPort;

// "host:port" or "[ipv6]:port".
absl::StatusOr<DispatcherAddress> ParseDispatcherAddress(
    absl::string_view address);

// Credentials for `dispatcher` under `tls`: reads the PEM files; refuses
// plaintext to a non-loopback host unless tls.insecure_allow_remote.
// Errors name the option or the file, never key material.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> SpineCredentials(
    const std::string& dispatcher, const TlsOptions& tls);

// A new channel with the spine's keepalive settings and gRPC's own
// reconnect backoff set from `backoff`. Each has its own subchannels, so a
// fresh channel connects at once whatever an earlier one went through.
std::shared_ptr<grpc::Channel> CreateSpineChannel(
    const std::string& dispatcher,
    const std::shared_ptr<grpc::ChannelCredentials>& credentials,
    const BackoffOptions& backoff);

}  // namespace idsync

#endif  // IDSYNC_AGENTS_SPINE_CHANNEL_H_
