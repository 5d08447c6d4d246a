// JSON <-> proto for the REST facade, by reflection over the same
// descriptors the OpenAPI document is generated from:
//  - proto field names; 64-bit integers as JSON numbers (not strings);
//  - output: every scalar, list and map present, defaults included;
//    Timestamps as RFC 3339 (null when unset); Structs as JSON objects;
//    other unset messages left out;
//  - input: strict types (a bool is true/false, never "yes"), unknown
//    fields refused, nesting bounded; errors name the field.
// Thread-safe (stateless).
#ifndef IDSYNC_DISPATCHER_API_JSON_MAPPING_H_
#define IDSYNC_DISPATCHER_API_JSON_MAPPING_H_

#include <set>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"
#include "nlohmann/json.hpp"

namespace idsync {

inline constexpr int kMaxJsonDepth = 32;

// The message as JSON text, written straight into a string (no tree):
// list responses are the API's hot path.
std::string ToJsonString(const google::protobuf::Message& message);

// Parses a JSON object into `message` (which is cleared first).
// kInvalidArgument naming the problem.
absl::Status ParseJson(absl::string_view text,
                       google::protobuf::Message* message);
absl::Status FromJson(const nlohmann::json& json,
                      google::protobuf::Message* message);

// Sets one field from a query-string value ("true"/"false", numbers, text).
absl::Status SetFieldFromString(const std::string& name,
                                absl::string_view value,
                                google::protobuf::Message* message);

// The OpenAPI 3.0 schema of a message; nested messages become $refs into
// components/schemas, whose names are added to `*referenced`. With
// `response`, fields always present are listed as required.
nlohmann::json SchemaOf(const google::protobuf::Descriptor* descriptor,
                        bool response, std::set<std::string>* referenced);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_API_JSON_MAPPING_H_
