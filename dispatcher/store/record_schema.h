// How each record kind maps onto its table: the key columns, the value
// columns in order, and the attributes map stored as a JSON object with
// sorted keys (so equal maps give equal text).
#ifndef IDSYNC_DISPATCHER_STORE_RECORD_SCHEMA_H_
#define IDSYNC_DISPATCHER_STORE_RECORD_SCHEMA_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "google/protobuf/map.h"
#include "google/protobuf/message.h"
#include "idsync/v1/connector.pb.h"

namespace idsync {

struct KindSchema {
  idsync::v1::RecordKind kind;
  const char* table;
  const char* key_table;  // Key -> (id, content_hash, deleted); see migrations.
  const char* singular;   // "identity", for messages.
  int key_columns;  // The first columns form the key (1, or 2 for grants).
  std::vector<const char*> columns;
};

// Identities, accounts, entitlements, grants: in this order.
const std::vector<KindSchema>& AllKinds();
const KindSchema& SchemaFor(idsync::v1::RecordKind kind);

// The record's column values in schema order. Views into `record`.
void ColumnValues(idsync::v1::RecordKind kind,
                  const google::protobuf::Message& record,
                  std::vector<absl::string_view>* values);

const google::protobuf::Map<std::string, std::string>& Attributes(
    idsync::v1::RecordKind kind, const google::protobuf::Message& record);

// A JSON object with sorted keys; "" for an empty map.
std::string AttributesJson(
    const google::protobuf::Map<std::string, std::string>& attributes);

// Reads what AttributesJson writes into `*out` (added to it). False, with
// `*out` unspecified, for anything else: callers fall back to a full JSON
// parser. The fast path matters: list pages read one per row.
bool ParseAttributesJson(absl::string_view json,
                         google::protobuf::Map<std::string, std::string>* out);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_RECORD_SCHEMA_H_
