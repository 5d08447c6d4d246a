#include "dispatcher/api/json_mapping.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/strip.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "connector/status_macros.h"
#include "connector/text.h"
#include "google/protobuf/struct.pb.h"
#include "google/protobuf/timestamp.pb.h"
#include "google/protobuf/util/time_util.h"
#include "idsync/v1/control_plane.pb.h"

namespace idsync {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::util::TimeUtil;

bool IsTimestamp(const Descriptor* d) {
  return d->full_name() == "google.protobuf.Timestamp";
}
bool IsStruct(const Descriptor* d) {
  return d->full_name() == "google.protobuf.Struct";
}

// --- Struct <-> JSON
// -------------------------------------------------------------

void JsonToValue(const nlohmann::json& j, google::protobuf::Value* v);

void JsonToStruct(const nlohmann::json& j, google::protobuf::Struct* s) {
  for (const auto& [key, value] : j.items()) {
    JsonToValue(value, &(*s->mutable_fields())[key]);
  }
}

void JsonToValue(const nlohmann::json& j, google::protobuf::Value* v) {
  if (j.is_boolean()) {
    v->set_bool_value(j.get<bool>());
  } else if (j.is_number()) {
    v->set_number_value(j.get<double>());
  } else if (j.is_string()) {
    v->set_string_value(j.get<std::string>());
  } else if (j.is_object()) {
    JsonToStruct(j, v->mutable_struct_value());
  } else if (j.is_array()) {
    for (const auto& item : j)
      JsonToValue(item, v->mutable_list_value()->add_values());
  } else {
    v->set_null_value(google::protobuf::NULL_VALUE);
  }
}

// --- Output
// -------------------------------------------------------------------

void AppendString(absl::string_view text, std::string* out) {
  // Stored text is valid UTF-8; should corrupt bytes ever appear, they are
  // replaced rather than emitted as invalid JSON.
  // Checked only once a non-ASCII byte shows up: most text is ASCII.
  int valid = -1;
  out->push_back('"');
  size_t run = 0;  // Start of the bytes that need no escaping.
  for (size_t i = 0; i < text.size(); ++i) {
    const auto u = static_cast<unsigned char>(text[i]);
    if (u >= 0x20 && u != '"' && u != '\\' && u < 0x80) continue;
    if (u >= 0x80) {
      if (valid < 0) valid = IsValidUtf8(text) ? 1 : 0;
      if (valid == 1) continue;
    }
    out->append(text.data() + run, i - run);
    run = i + 1;
    switch (u) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      default:
        if (u < 0x20) {
          absl::StrAppend(out, "\\u00", absl::Hex(u, absl::kZeroPad2));
        } else {
          out->append("\\ufffd");
        }
    }
  }
  out->append(text.data() + run, text.size() - run);
  out->push_back('"');
}

// RFC 3339 in UTC with microseconds, written directly (the API prints three
// per record).
void AppendTimestamp(const google::protobuf::Timestamp& ts, std::string* out) {
  const absl::Time t =
      absl::FromUnixSeconds(ts.seconds()) + absl::Nanoseconds(ts.nanos());
  const absl::CivilSecond c = absl::ToCivilSecond(t, absl::UTCTimeZone());
  char buf[40];
  auto put = [&buf](int pos, int64_t value, int width) {
    for (int k = width - 1; k >= 0; --k, value /= 10) {
      buf[pos + k] = static_cast<char>('0' + value % 10);
    }
  };
  if (c.year() < 0 || c.year() > 9999) {
    AppendString(TimeUtil::ToString(ts), out);
    return;
  }
  put(1, c.year(), 4);
  buf[0] = '"';
  buf[5] = '-';
  put(6, c.month(), 2);
  buf[8] = '-';
  put(9, c.day(), 2);
  buf[11] = 'T';
  put(12, c.hour(), 2);
  buf[14] = ':';
  put(15, c.minute(), 2);
  buf[17] = ':';
  put(18, c.second(), 2);
  buf[20] = '.';
  put(21, ts.nanos() / 1000, 6);
  buf[27] = 'Z';
  buf[28] = '"';
  out->append(buf, 29);
}

void AppendDouble(double d, std::string* out) {
  if (!std::isfinite(d)) {
    out->append("null");
    return;
  }
  char buf[32];
  auto result = std::to_chars(buf, buf + sizeof(buf), d);  // Shortest form.
  out->append(buf, result.ptr);
}

void AppendValue(const google::protobuf::Value& v, std::string* out);

void AppendStruct(const google::protobuf::Struct& s, std::string* out) {
  std::vector<const std::string*> keys;
  for (const auto& [key, value] : s.fields()) keys.push_back(&key);
  std::sort(keys.begin(), keys.end(),
            [](const std::string* a, const std::string* b) { return *a < *b; });
  out->push_back('{');
  for (size_t i = 0; i < keys.size(); ++i) {
    if (i > 0) out->push_back(',');
    AppendString(*keys[i], out);
    out->push_back(':');
    AppendValue(s.fields().at(*keys[i]), out);
  }
  out->push_back('}');
}

void AppendValue(const google::protobuf::Value& v, std::string* out) {
  switch (v.kind_case()) {
    case google::protobuf::Value::kBoolValue:
      out->append(v.bool_value() ? "true" : "false");
      return;
    case google::protobuf::Value::kNumberValue:
      AppendDouble(v.number_value(), out);
      return;
    case google::protobuf::Value::kStringValue:
      AppendString(v.string_value(), out);
      return;
    case google::protobuf::Value::kStructValue:
      AppendStruct(v.struct_value(), out);
      return;
    case google::protobuf::Value::kListValue: {
      out->push_back('[');
      const auto& values = v.list_value().values();
      for (int i = 0; i < values.size(); ++i) {
        if (i > 0) out->push_back(',');
        AppendValue(values[i], out);
      }
      out->push_back(']');
      return;
    }
    default:
      out->append("null");
  }
}

void AppendMessage(const Message& m, std::string* out);

void AppendField(const Message& m, const FieldDescriptor* f, int index,
                 std::string* out) {
  const Reflection* r = m.GetReflection();
  const bool repeated = f->is_repeated();
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      absl::StrAppend(
          out, repeated ? r->GetRepeatedInt32(m, f, index) : r->GetInt32(m, f));
      return;
    case FieldDescriptor::CPPTYPE_INT64:
      absl::StrAppend(
          out, repeated ? r->GetRepeatedInt64(m, f, index) : r->GetInt64(m, f));
      return;
    case FieldDescriptor::CPPTYPE_UINT32:
      absl::StrAppend(out, repeated ? r->GetRepeatedUInt32(m, f, index)
                                    : r->GetUInt32(m, f));
      return;
    case FieldDescriptor::CPPTYPE_UINT64:
      absl::StrAppend(out, repeated ? r->GetRepeatedUInt64(m, f, index)
                                    : r->GetUInt64(m, f));
      return;
    case FieldDescriptor::CPPTYPE_DOUBLE:
      AppendDouble(
          repeated ? r->GetRepeatedDouble(m, f, index) : r->GetDouble(m, f),
          out);
      return;
    case FieldDescriptor::CPPTYPE_FLOAT:
      AppendDouble(
          repeated ? r->GetRepeatedFloat(m, f, index) : r->GetFloat(m, f), out);
      return;
    case FieldDescriptor::CPPTYPE_BOOL:
      out->append(
          (repeated ? r->GetRepeatedBool(m, f, index) : r->GetBool(m, f))
              ? "true"
              : "false");
      return;
    case FieldDescriptor::CPPTYPE_ENUM:
      AppendString(repeated ? r->GetRepeatedEnum(m, f, index)->name()
                            : r->GetEnum(m, f)->name(),
                   out);
      return;
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      AppendString(repeated
                       ? r->GetRepeatedStringReference(m, f, index, &scratch)
                       : r->GetStringReference(m, f, &scratch),
                   out);
      return;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      AppendMessage(
          repeated ? r->GetRepeatedMessage(m, f, index) : r->GetMessage(m, f),
          out);
      return;
  }
}

// The records' `attributes`, read as a map: reading a map through
// reflection (the repeated entry view) makes protobuf build an entry message
// per element, which dominated list pages. Null for other maps.
const google::protobuf::Map<std::string, std::string>* RecordAttributes(
    const Message& m, const FieldDescriptor* f) {
  if (f->name() != "attributes") return nullptr;
  const Descriptor* d = m.GetDescriptor();
  if (d == v1::Identity::descriptor()) {
    return &static_cast<const v1::Identity&>(m).attributes();
  }
  if (d == v1::Account::descriptor()) {
    return &static_cast<const v1::Account&>(m).attributes();
  }
  if (d == v1::Entitlement::descriptor()) {
    return &static_cast<const v1::Entitlement&>(m).attributes();
  }
  if (d == v1::Grant::descriptor()) {
    return &static_cast<const v1::Grant&>(m).attributes();
  }
  return nullptr;
}

// Sorted keys, so equal maps print equally.
void AppendMap(const Message& m, const FieldDescriptor* f, std::string* out) {
  const Descriptor* e = f->message_type();
  const FieldDescriptor* key_field = e->FindFieldByName("key");
  const FieldDescriptor* value_field = e->FindFieldByName("value");
  const Reflection* r = m.GetReflection();
  auto key = [out](size_t k, absl::string_view name) {
    if (k > 0) out->push_back(',');
    AppendString(name, out);
    out->push_back(':');
  };
  out->push_back('{');
  if (const auto* attributes = RecordAttributes(m, f)) {
    std::vector<std::pair<absl::string_view, absl::string_view>> entries(
        attributes->begin(), attributes->end());
    std::sort(entries.begin(), entries.end());
    for (size_t k = 0; k < entries.size(); ++k) {
      key(k, entries[k].first);
      AppendString(entries[k].second, out);
    }
  } else {
    std::vector<std::pair<std::string, int>> entries;
    for (int k = 0; k < r->FieldSize(m, f); ++k) {
      const Message& entry = r->GetRepeatedMessage(m, f, k);
      entries.emplace_back(entry.GetReflection()->GetString(entry, key_field),
                           k);
    }
    std::sort(entries.begin(), entries.end());
    for (size_t k = 0; k < entries.size(); ++k) {
      key(k, entries[k].first);
      AppendField(r->GetRepeatedMessage(m, f, entries[k].second), value_field,
                  0, out);
    }
  }
  out->push_back('}');
}

void AppendMessage(const Message& m, std::string* out) {
  const Descriptor* d = m.GetDescriptor();
  if (IsTimestamp(d)) {
    AppendTimestamp(static_cast<const google::protobuf::Timestamp&>(m), out);
    return;
  }
  if (IsStruct(d)) {
    AppendStruct(static_cast<const google::protobuf::Struct&>(m), out);
    return;
  }
  const Reflection* r = m.GetReflection();
  out->push_back('{');
  bool first = true;
  auto key = [&](const FieldDescriptor* f) {
    if (!first) out->push_back(',');
    first = false;
    AppendString(f->name(), out);
    out->push_back(':');
  };
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    if (f->is_map()) {
      key(f);
      AppendMap(m, f, out);
    } else if (f->is_repeated()) {
      key(f);
      out->push_back('[');
      for (int k = 0; k < r->FieldSize(m, f); ++k) {
        if (k > 0) out->push_back(',');
        AppendField(m, f, k, out);
      }
      out->push_back(']');
    } else if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
      if (r->HasField(m, f)) {
        key(f);
        AppendField(m, f, 0, out);
      } else if (IsTimestamp(f->message_type())) {
        key(f);
        out->append("null");
      }
    } else if (!f->has_presence() || r->HasField(m, f)) {
      key(f);
      AppendField(m, f, 0, out);
    }
  }
  out->push_back('}');
}

// --- Input
// -----------------------------------------------------------------------

absl::Status Bad(const std::string& path, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("'", path, "' ", what));
}

absl::Status SetScalar(const nlohmann::json& j, const FieldDescriptor* f,
                       const std::string& path, Message* m) {
  const Reflection* r = m->GetReflection();
  const bool repeated = f->is_repeated();
  auto integer = [&](int64_t min, int64_t max, int64_t* out) -> absl::Status {
    if (j.is_number_integer()) {
      if (j.is_number_unsigned() && j.get<uint64_t>() > uint64_t(max)) {
        return Bad(path, "is out of range");
      }
      *out = j.get<int64_t>();
    } else if (j.is_number_float() &&
               std::trunc(j.get<double>()) == j.get<double>() &&
               std::fabs(j.get<double>()) < 9.007199254740992e15) {
      *out = static_cast<int64_t>(j.get<double>());
    } else {
      return Bad(path, "must be an integer");
    }
    if (*out < min || *out > max) return Bad(path, "is out of range");
    return absl::OkStatus();
  };
  int64_t i = 0;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      IDSYNC_RETURN_IF_ERROR(integer(std::numeric_limits<int32_t>::min(),
                                     std::numeric_limits<int32_t>::max(), &i));
      repeated ? r->AddInt32(m, f, static_cast<int32_t>(i))
               : r->SetInt32(m, f, static_cast<int32_t>(i));
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_INT64:
      IDSYNC_RETURN_IF_ERROR(integer(std::numeric_limits<int64_t>::min(),
                                     std::numeric_limits<int64_t>::max(), &i));
      repeated ? r->AddInt64(m, f, i) : r->SetInt64(m, f, i);
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_DOUBLE:
      if (!j.is_number()) return Bad(path, "must be a number");
      repeated ? r->AddDouble(m, f, j.get<double>())
               : r->SetDouble(m, f, j.get<double>());
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_BOOL:
      if (!j.is_boolean()) return Bad(path, "must be true or false");
      repeated ? r->AddBool(m, f, j.get<bool>())
               : r->SetBool(m, f, j.get<bool>());
      return absl::OkStatus();
    case FieldDescriptor::CPPTYPE_STRING: {
      if (!j.is_string()) return Bad(path, "must be a string");
      const std::string& s = j.get_ref<const std::string&>();
      repeated ? r->AddString(m, f, s) : r->SetString(m, f, s);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_ENUM: {
      if (!j.is_string()) return Bad(path, "must be a string");
      const auto* value = f->enum_type()->FindValueByName(j.get<std::string>());
      if (value == nullptr) return Bad(path, "is not a known value");
      repeated ? r->AddEnum(m, f, value) : r->SetEnum(m, f, value);
      return absl::OkStatus();
    }
    case FieldDescriptor::CPPTYPE_MESSAGE: {
      Message* sub = repeated ? r->AddMessage(m, f) : r->MutableMessage(m, f);
      const Descriptor* d = f->message_type();
      if (IsTimestamp(d)) {
        if (!j.is_string() ||
            !TimeUtil::FromString(
                j.get<std::string>(),
                static_cast<google::protobuf::Timestamp*>(sub))) {
          return Bad(path, "must be an RFC 3339 time");
        }
        return absl::OkStatus();
      }
      if (IsStruct(d)) {
        if (!j.is_object()) return Bad(path, "must be an object");
        JsonToStruct(j, static_cast<google::protobuf::Struct*>(sub));
        return absl::OkStatus();
      }
      if (!j.is_object()) return Bad(path, "must be an object");
      return FromJson(j, sub);
    }
    default:
      return Bad(path, "has a type this API does not accept");
  }
}

// The deepest nesting of arrays and objects in JSON text, counted on the
// text without recursion (a recursive walk of the parsed tree overflowed the
// stack on 100,000 '['), and before the parser builds a tree of that depth.
// Stops at the first level past `limit`.
int NestingDepth(absl::string_view text, int limit) {
  int depth = 0;
  bool in_string = false, escaped = false;
  for (const char c : text) {
    if (in_string) {
      if (escaped) {
        escaped = false;
      } else if (c == '\\') {
        escaped = true;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > limit) return depth;
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return 0;
}

}  // namespace

std::string ToJsonString(const Message& message) {
  std::string out;
  // About the serialized size, so the text grows without reallocating.
  out.reserve(message.ByteSizeLong() * 2 + 256);
  AppendMessage(message, &out);
  return out;
}

absl::Status FromJson(const nlohmann::json& json, Message* message) {
  if (!json.is_object())
    return absl::InvalidArgumentError("the body must be a JSON object");
  const Descriptor* d = message->GetDescriptor();
  const Reflection* r = message->GetReflection();
  for (const auto& [key, value] : json.items()) {
    const FieldDescriptor* f = d->FindFieldByName(key);
    if (f == nullptr) f = d->FindFieldByCamelcaseName(key);
    if (f == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown field '", Excerpt(key, 64), "'"));
    }
    if (value.is_null()) continue;  // Same as absent.
    if (f->is_map()) {
      if (!value.is_object()) return Bad(key, "must be an object");
      const FieldDescriptor* vf = f->message_type()->FindFieldByName("value");
      for (const auto& [k, v] : value.items()) {
        Message* entry = r->AddMessage(message, f);
        entry->GetReflection()->SetString(
            entry, f->message_type()->FindFieldByName("key"), k);
        IDSYNC_RETURN_IF_ERROR(
            SetScalar(v, vf, absl::StrCat(key, ".", Excerpt(k, 64)), entry));
      }
    } else if (f->is_repeated()) {
      if (!value.is_array()) return Bad(key, "must be an array");
      for (const auto& item : value) {
        IDSYNC_RETURN_IF_ERROR(SetScalar(item, f, key, message));
      }
    } else {
      IDSYNC_RETURN_IF_ERROR(SetScalar(value, f, key, message));
    }
  }
  return absl::OkStatus();
}

absl::Status ParseJson(absl::string_view text, Message* message) {
  message->Clear();
  if (NestingDepth(text, kMaxJsonDepth) > kMaxJsonDepth) {
    return absl::InvalidArgumentError(
        absl::StrCat("the body nests deeper than ", kMaxJsonDepth, " levels"));
  }
  nlohmann::json json = nlohmann::json::parse(text.begin(), text.end(), nullptr,
                                              /*allow_exceptions=*/false);
  if (json.is_discarded()) {
    return absl::InvalidArgumentError(
        "the body is not valid JSON (or not valid UTF-8)");
  }
  return FromJson(json, message);
}

absl::Status SetFieldFromString(const std::string& name,
                                absl::string_view value, Message* message) {
  const FieldDescriptor* f = message->GetDescriptor()->FindFieldByName(name);
  if (f == nullptr || f->is_repeated() ||
      f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE) {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown parameter '", Excerpt(name, 64), "'"));
  }
  nlohmann::json j;
  switch (f->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
    case FieldDescriptor::CPPTYPE_INT64: {
      int64_t i = 0;
      if (!absl::SimpleAtoi(value, &i)) {
        // Digits that do not fit (2^63) are an integer, just too large.
        const absl::string_view digits = absl::StripPrefix(value, "-");
        const bool integer =
            !digits.empty() &&
            std::all_of(digits.begin(), digits.end(), absl::ascii_isdigit);
        return Bad(name, integer ? "is out of range" : "must be an integer");
      }
      j = i;
      break;
    }
    case FieldDescriptor::CPPTYPE_DOUBLE: {
      double d = 0;
      if (!absl::SimpleAtod(value, &d)) return Bad(name, "must be a number");
      j = d;
      break;
    }
    case FieldDescriptor::CPPTYPE_BOOL:
      if (value != "true" && value != "false") {
        return Bad(name, "must be true or false");
      }
      j = value == "true";
      break;
    default:
      j = std::string(value);
  }
  if (j.is_string() && !IsValidUtf8(j.get<std::string>())) {
    return Bad(name, "is not valid UTF-8");
  }
  return SetScalar(j, f, name, message);
}

nlohmann::json SchemaOf(const Descriptor* d, bool response,
                        std::set<std::string>* referenced) {
  auto scalar = [&](const FieldDescriptor* f) -> nlohmann::json {
    switch (f->cpp_type()) {
      case FieldDescriptor::CPPTYPE_INT32:
        return {{"type", "integer"}, {"format", "int32"}};
      case FieldDescriptor::CPPTYPE_INT64:
        return {{"type", "integer"}, {"format", "int64"}};
      case FieldDescriptor::CPPTYPE_DOUBLE:
      case FieldDescriptor::CPPTYPE_FLOAT:
        return {{"type", "number"}};
      case FieldDescriptor::CPPTYPE_BOOL:
        return {{"type", "boolean"}};
      case FieldDescriptor::CPPTYPE_ENUM: {
        nlohmann::json values = nlohmann::json::array();
        for (int i = 0; i < f->enum_type()->value_count(); ++i) {
          values.push_back(f->enum_type()->value(i)->name());
        }
        return {{"type", "string"}, {"enum", values}};
      }
      case FieldDescriptor::CPPTYPE_MESSAGE: {
        const Descriptor* m = f->message_type();
        if (IsTimestamp(m)) {
          return {
              {"type", "string"}, {"format", "date-time"}, {"nullable", true}};
        }
        if (IsStruct(m)) {
          return {{"type", "object"}, {"additionalProperties", true}};
        }
        referenced->insert(m->name());
        return {{"$ref", absl::StrCat("#/components/schemas/", m->name())}};
      }
      default:
        return {{"type", "string"}};
    }
  };
  nlohmann::json properties = nlohmann::json::object();
  nlohmann::json required = nlohmann::json::array();
  for (int i = 0; i < d->field_count(); ++i) {
    const FieldDescriptor* f = d->field(i);
    nlohmann::json schema;
    bool always = true;
    if (f->is_map()) {
      schema = {{"type", "object"},
                {"additionalProperties",
                 scalar(f->message_type()->FindFieldByName("value"))}};
    } else if (f->is_repeated()) {
      schema = {{"type", "array"}, {"items", scalar(f)}};
    } else {
      schema = scalar(f);
      always = f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE ||
               IsTimestamp(f->message_type());
      always = always && !f->has_presence();
      if (f->cpp_type() == FieldDescriptor::CPPTYPE_MESSAGE &&
          IsTimestamp(f->message_type())) {
        always = true;  // Printed as null when unset.
      }
    }
    properties[f->name()] = schema;
    if (response && always) required.push_back(f->name());
  }
  nlohmann::json out = {{"type", "object"},
                        {"properties", properties},
                        {"additionalProperties", false}};
  if (!required.empty()) out["required"] = required;
  return out;
}

}  // namespace idsync
