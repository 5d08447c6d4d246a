#include "connector/config.h"

#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace idsync {

using google::protobuf::Value;

ConfigReader::ConfigReader(const google::protobuf::Struct& config,
                           std::string where)
    : config_(config), where_(std::move(where)) {}

const Value* ConfigReader::Find(absl::string_view key) const {
  auto it = config_.fields().find(std::string(key));
  if (it == config_.fields().end() ||
      it->second.kind_case() == Value::kNullValue) {
    return nullptr;
  }
  return &it->second;
}

absl::Status ConfigReader::WrongType(absl::string_view key,
                                     absl::string_view want) const {
  return absl::InvalidArgumentError(
      absl::StrCat(where_, ": '", key, "' must be ", want));
}

bool ConfigReader::Has(absl::string_view key) const {
  return Find(key) != nullptr;
}

absl::StatusOr<std::string> ConfigReader::RequiredString(
    absl::string_view key) const {
  if (!Has(key)) {
    return absl::InvalidArgumentError(
        absl::StrCat(where_, ": '", key, "' is required"));
  }
  return String(key, "");
}

absl::StatusOr<std::string> ConfigReader::String(absl::string_view key,
                                                 std::string fallback) const {
  const Value* v = Find(key);
  if (v == nullptr) return fallback;
  if (v->kind_case() != Value::kStringValue) return WrongType(key, "a string");
  return v->string_value();
}

absl::StatusOr<int64_t> ConfigReader::Int(absl::string_view key,
                                          int64_t fallback, int64_t min,
                                          int64_t max) const {
  const Value* v = Find(key);
  if (v == nullptr) return fallback;
  const std::string range =
      absl::StrCat("an integer in [", min, ", ", max, "]");
  if (v->kind_case() != Value::kNumberValue) return WrongType(key, range);
  // Compare as integers: static_cast<double>(max) may round up (INT64_MAX
  // becomes 2^63), and converting a double outside int64_t is undefined.
  const double d = v->number_value();
  if (std::trunc(d) != d || d < -0x1p63 || d >= 0x1p63) {
    return WrongType(key, range);
  }
  const auto i = static_cast<int64_t>(d);
  if (i < min || i > max) return WrongType(key, range);
  return i;
}

absl::StatusOr<bool> ConfigReader::Bool(absl::string_view key,
                                        bool fallback) const {
  const Value* v = Find(key);
  if (v == nullptr) return fallback;
  if (v->kind_case() != Value::kBoolValue)
    return WrongType(key, "true or false");
  return v->bool_value();
}

absl::StatusOr<const google::protobuf::Struct*> ConfigReader::Object(
    absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return nullptr;
  if (v->kind_case() != Value::kStructValue) return WrongType(key, "an object");
  return &v->struct_value();
}

absl::StatusOr<const google::protobuf::ListValue*> ConfigReader::List(
    absl::string_view key) const {
  const Value* v = Find(key);
  if (v == nullptr) return nullptr;
  if (v->kind_case() != Value::kListValue) return WrongType(key, "a list");
  return &v->list_value();
}

absl::Status ConfigReader::CheckKnownKeys(
    std::initializer_list<absl::string_view> known) const {
  for (const auto& [key, value] : config_.fields()) {
    bool found = false;
    for (absl::string_view k : known) found = found || k == key;
    if (!found) {
      return absl::InvalidArgumentError(
          absl::StrCat(where_, ": unknown key '", key.substr(0, 64),
                       "' (known: ", absl::StrJoin(known, ", "), ")"));
    }
  }
  return absl::OkStatus();
}

}  // namespace idsync
