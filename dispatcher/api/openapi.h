// The OpenAPI 3.0 document of the REST API, built from the route table
// (rest_routes.h) and the proto messages, plus the endpoints outside it.
#ifndef IDSYNC_DISPATCHER_API_OPENAPI_H_
#define IDSYNC_DISPATCHER_API_OPENAPI_H_

#include <string>

#include "nlohmann/json.hpp"

namespace idsync {

nlohmann::json OpenApiDocument(const std::string& version);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_API_OPENAPI_H_
