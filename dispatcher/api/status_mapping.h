// The one place where absl::Status becomes an HTTP status, an API error code
// name, or a grpc::Status. gRPC 1.51 has no conversion; the codes share
// their numbers and names.
#ifndef IDSYNC_DISPATCHER_API_STATUS_MAPPING_H_
#define IDSYNC_DISPATCHER_API_STATUS_MAPPING_H_

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace grpc {
class Status;
}  // namespace grpc

namespace idsync {

int HttpStatus(absl::StatusCode code);
// "invalid_argument", "not_found", ...
absl::string_view ErrorCodeName(absl::StatusCode code);
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_API_STATUS_MAPPING_H_
