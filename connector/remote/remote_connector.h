// The "remote" connector: a connector in another process, in any language,
// that serves the idsync.v1.Connector gRPC service (connector.proto). Sync is
// a server stream of chunks followed by exactly one result; the client checks
// that order, the chunk sequence and sizes, and stops a stream that goes
// quiet for longer than idle_timeout_seconds. Plaintext is allowed only to a
// loopback address or a unix socket; anything else needs TLS (optionally
// mTLS). The run's auth_config is passed on in the SyncRequest: the remote
// process owns those secrets. See docs/connectors/remote.md.
#ifndef IDSYNC_CONNECTOR_REMOTE_REMOTE_CONNECTOR_H_
#define IDSYNC_CONNECTOR_REMOTE_REMOTE_CONNECTOR_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "connector/registry.h"
#include "google/protobuf/struct.pb.h"

namespace idsync {

struct RemoteOptions {
  // A gRPC target: HOST:PORT, [IPv6]:PORT or unix:/path.
  std::string address;
  bool tls = false;
  std::string ca_file;    // PEM roots; empty: the system's.
  std::string cert_file;  // mTLS client chain, with key_file.
  std::string key_file;
  std::string server_name;  // TLS name override, e.g. for an IP address.
  // Plaintext to a non-loopback address (development only).
  bool insecure_allow_remote = false;
  absl::Duration call_timeout = absl::Seconds(30);  // Describe, Test.
  absl::Duration idle_timeout = absl::Minutes(5);   // Between Sync messages.
  int max_message_bytes = 16 << 20;
};

// Errors name the key ("remote config: ...") and never echo values.
absl::StatusOr<RemoteOptions> ParseRemoteOptions(
    const google::protobuf::Struct& config);

absl::StatusOr<std::unique_ptr<Connector>> CreateRemoteConnector(
    const ConnectorSpec& spec);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_REMOTE_REMOTE_CONNECTOR_H_
