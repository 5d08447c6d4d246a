// Small pieces every gRPC client in idsync needs (the agent's spine channel,
// the remote connector): HOST:PORT parsing, the loopback test that decides
// whether plaintext is allowed, PEM files for TLS, and status conversion.
// Thread-safe (plain functions).
#ifndef IDSYNC_CONNECTOR_GRPC_UTIL_H_
#define IDSYNC_CONNECTOR_GRPC_UTIL_H_

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "connector/file_access.h"

namespace grpc {
class Status;
}  // namespace grpc

namespace idsync {

struct HostPort {
  std::string host;  // Without brackets for IPv6.
  int port = 0;
};

// "host:port" or "[ipv6]:port". `what` names the value in the error, e.g.
// "dispatcher address".
absl::StatusOr<HostPort> ParseHostPort(absl::string_view address,
                                       absl::string_view what);

// localhost, 127.0.0.0/8, ::1 (and ::ffff:127.0.0.0/104).
bool IsLoopbackHost(absl::string_view host);

// The text of a PEM file; `option` names the setting in errors, which never
// hold file contents (key material).
absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        absl::string_view option);
// The same, opened through `files` (a connector's FileAccess).
absl::StatusOr<std::string> ReadPemFile(const FileAccess& files,
                                        const std::string& path,
                                        absl::string_view option);

// gRPC 1.51 has no conversion; the codes share their numbers and names.
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_GRPC_UTIL_H_
