// Fuzzes the "rest" connector's configuration (connector/rest/rest_options.h):
// the input is the config JSON, parsed the way the dispatcher stores it (a
// google.protobuf.Struct), then ParseRestOptions and CreateRestConnector.
//
// The record mapping (JSON record -> RemoteIdentity etc.) lives in
// RestConnector's private members and runs only on HTTP responses, so it is
// not reachable here without a socket.
//
// Invariants checked: an accepted config has a stream, every stream URL is
// http(s) without query, and every JSON pointer it accepted is one
// nlohmann::json_pointer takes (the connector builds them without a check).
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/strings/match.h"
#include "connector/rest/rest_connector.h"
#include "connector/rest/rest_options.h"
#include "google/protobuf/util/json_util.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_util.h"

namespace idsync {
namespace {

using fuzz::Check;

bool IsPointer(const std::string& p) {
  try {
    nlohmann::json::json_pointer check(p);
    return true;
  } catch (const nlohmann::json::exception&) {
    return false;
  }
}

void CheckOptions(const RestOptions& o) {
  Check(!o.streams.empty(), "accepted a config without streams");
  Check(o.max_pages >= 1, "max_pages below 1");
  for (const RestStream& s : o.streams) {
    Check(absl::StartsWith(s.url, "http://") ||
              absl::StartsWith(s.url, "https://"),
          "accepted a stream URL that is not http(s)");
    Check(s.url.find_first_of("?#") == std::string::npos,
          "accepted a stream URL with a query or fragment");
    Check(s.method == "GET" || s.method == "POST", "accepted another method");
    Check(IsPointer(s.records), "accepted a bad records pointer");
    Check(IsPointer(s.watermark), "accepted a bad watermark pointer");
    Check(IsPointer(s.pagination.next_cursor) &&
              IsPointer(s.pagination.max_page) && IsPointer(s.pagination.total),
          "accepted a bad pagination pointer");
    for (const auto& [name, field] : s.fields) {
      Check(!field.pointer.empty() && IsPointer(field.pointer),
            "accepted a bad field pointer");
    }
    Check(s.pagination.limit >= 1, "accepted a page limit below 1");
  }
}

}  // namespace
}  // namespace idsync

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  idsync::ConnectorSpec spec;
  const std::string text(reinterpret_cast<const char*>(data), size);
  if (!google::protobuf::util::JsonStringToMessage(text, &spec.config).ok()) {
    return 0;
  }
  absl::StatusOr<idsync::RestOptions> options =
      idsync::ParseRestOptions(spec.config);
  if (options.ok()) idsync::CheckOptions(*options);
  auto connector = idsync::CreateRestConnector(spec);
  idsync::fuzz::Check(connector.ok() == options.ok(),
                      "CreateRestConnector and ParseRestOptions disagree");
  if (connector.ok()) {
    idsync::fuzz::Check((*connector)->Describe().ok(), "Describe failed");
  }
  return 0;
}
