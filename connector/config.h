// ConfigReader: typed, validated access to a connector's configuration (a
// JSON object held as google.protobuf.Struct). Every error names the key and
// what was expected, and never echoes the value (it may be a secret).
// Thread-compatible; borrows the Struct, which must outlive the reader.
#ifndef IDSYNC_CONNECTOR_CONFIG_H_
#define IDSYNC_CONNECTOR_CONFIG_H_

#include <cstdint>
#include <initializer_list>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/struct.pb.h"

namespace idsync {

class ConfigReader {
 public:
  // `where` prefixes error messages, e.g. "csv config".
  ConfigReader(const google::protobuf::Struct& config, std::string where);

  bool Has(absl::string_view key) const;
  absl::StatusOr<std::string> RequiredString(absl::string_view key) const;
  absl::StatusOr<std::string> String(absl::string_view key,
                                     std::string fallback) const;
  absl::StatusOr<int64_t> Int(absl::string_view key, int64_t fallback,
                              int64_t min, int64_t max) const;
  absl::StatusOr<bool> Bool(absl::string_view key, bool fallback) const;
  // nullptr when absent; an error when present but not an object.
  absl::StatusOr<const google::protobuf::Struct*> Object(
      absl::string_view key) const;
  // nullptr when absent; an error when present but not a list.
  absl::StatusOr<const google::protobuf::ListValue*> List(
      absl::string_view key) const;
  // Fails on the first key not in `known`, listing the known ones.
  absl::Status CheckKnownKeys(
      std::initializer_list<absl::string_view> known) const;

 private:
  const google::protobuf::Value* Find(absl::string_view key) const;
  absl::Status WrongType(absl::string_view key, absl::string_view want) const;

  const google::protobuf::Struct& config_;
  const std::string where_;
};

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_CONFIG_H_
