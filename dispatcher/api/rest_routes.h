// The REST routes of the control plane: one table drives the routing, the
// request building and the OpenAPI document, so the document describes what
// the server really does. The endpoints outside the table (health, metrics,
// OpenAPI, event streams, file uploads) are RestServer's own.
#ifndef IDSYNC_DISPATCHER_API_REST_ROUTES_H_
#define IDSYNC_DISPATCHER_API_REST_ROUTES_H_

#include <array>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "dispatcher/api/control_plane_service.h"
#include "google/protobuf/message.h"

namespace idsync {

using RouteHandler =
    std::function<absl::StatusOr<std::unique_ptr<google::protobuf::Message>>(
        ControlPlaneService&, const Caller&, const google::protobuf::Message&,
        const BeforeCommit&)>;

// kWrite: admin-only change, audited, Idempotency-Key honoured.
enum class Access { kRead, kWrite, kAction };

struct Route {
  const char* method;
  const char* path;  // "{id}", then at most one more "{name}" parameter.
  const char* operation_id;
  const char* summary;
  const char* tag;
  const google::protobuf::Descriptor* request;
  const google::protobuf::Descriptor* response;
  int status;
  Access access;
  const char* path_field;  // Request field set from {id}; nullptr if none.
  bool body;               // The request comes as a JSON body.
  RouteHandler handler;
  // Request field set from the path's second parameter; nullptr if none.
  const char* second_path_field = nullptr;
};

// Every route of the table.
const std::vector<Route>& Routes();

// The names of a path template's parameters, in order ("id", "delivery_id").
std::vector<std::string> PathParameters(absl::string_view path);

// Whether `path` fits `pattern` ("/api/v1/webhooks/{id}/deliveries"), with
// the text of each parameter in `*params`.
bool MatchPath(absl::string_view pattern, absl::string_view path,
               std::vector<absl::string_view>* params);

// The route for `method` and `path`, with its parameters; nullptr when none.
// `*path_known` says whether some route has this path (for 405 vs 404).
const Route* FindRoute(absl::string_view method, absl::string_view path,
                       std::vector<absl::string_view>* params,
                       bool* path_known);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_API_REST_ROUTES_H_
