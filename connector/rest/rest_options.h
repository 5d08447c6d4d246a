// The "rest" connector's configuration: streams of JSON records, each with
// its URL, record path, field mapping and pagination. Parsed and checked
// once, when the connector is created; errors name the key, e.g.
// "rest config: streams[1].pagination.style must be one of ...".
// Reference: docs/connectors/rest.md. Plain data.
#ifndef IDSYNC_CONNECTOR_REST_REST_OPTIONS_H_
#define IDSYNC_CONNECTOR_REST_REST_OPTIONS_H_

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "connector/http/http_client.h"
#include "google/protobuf/struct.pb.h"
#include "idsync/v1/connector.pb.h"

namespace idsync {

// Where one record field comes from: a JSON pointer into the record, and an
// optional table that rewrites values (e.g. true -> "active").
struct RestField {
  std::string pointer;
  std::map<std::string, std::string> values;
};

struct RestPagination {
  enum class Style { kNone, kPage, kOffset, kCursor, kLink };
  Style style = Style::kNone;
  std::string page_param = "page";  // kPage
  int64_t first_page = 1;
  std::string offset_param = "offset";  // kOffset
  std::string limit_param = "limit";    // kPage, kOffset (empty: not sent)
  int64_t limit = 100;
  std::string cursor_param = "cursor";  // kCursor
  std::string next_cursor;              // kCursor: pointer into the body.
  // Optional stop rules (pointers into the body); an empty or short page
  // always stops kPage and kOffset.
  std::string max_page;
  std::string total;
};

struct RestStream {
  std::string name;  // For messages: "streams[0]" or the configured name.
  idsync::v1::RecordKind kind = idsync::v1::RECORD_KIND_UNSPECIFIED;
  bool with_accounts = false;    // Identities: also an account per identity.
  std::string entitlement_type;  // Entitlements: the "type" field.
  std::string url;               // base_url + path, or absolute.
  std::string method = "GET";
  std::vector<std::pair<std::string, std::string>> query;
  std::string records;  // Pointer to the array; "" = the body is the array.
  std::map<std::string, RestField> fields;  // Proto field name -> source.
  bool rest_to_attributes = true;           // Unmapped top-level members.
  RestPagination pagination;
  std::string incremental_param;  // Sent with the sync token, if any.
  std::string watermark;          // Pointer to the record's change time.
};

struct RestOptions {
  HttpClientOptions http;
  HttpHeaders headers;          // Sent on every request.
  int64_t max_pages = 1000000;  // Per stream; a safety stop.
  std::vector<RestStream> streams;
};

absl::StatusOr<RestOptions> ParseRestOptions(
    const google::protobuf::Struct& config);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_REST_REST_OPTIONS_H_
