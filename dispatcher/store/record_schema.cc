#include "dispatcher/store/record_schema.h"

#include <algorithm>
#include <cstdio>

namespace idsync {

using idsync::v1::RecordKind;

const std::vector<KindSchema>& AllKinds() {
  static const auto* kinds = new std::vector<KindSchema>{
      {idsync::v1::RECORD_KIND_IDENTITY,
       "identities",
       "identity_keys",
       "identity",
       1,
       {"external_id", "email", "first_name", "last_name", "display_name",
        "department", "job_title", "manager_external_id", "status"}},
      {idsync::v1::RECORD_KIND_ACCOUNT,
       "accounts",
       "account_keys",
       "account",
       1,
       {"external_id", "identity_external_id", "username", "email",
        "display_name", "status"}},
      {idsync::v1::RECORD_KIND_ENTITLEMENT,
       "entitlements",
       "entitlement_keys",
       "entitlement",
       1,
       {"external_id", "name", "description", "type"}},
      {idsync::v1::RECORD_KIND_GRANT,
       "grants",
       "grant_keys",
       "grant",
       2,
       {"account_external_id", "entitlement_external_id"}},
  };
  return *kinds;
}

const KindSchema& SchemaFor(RecordKind kind) {
  return AllKinds()[std::clamp(static_cast<int>(kind), 1, 4) - 1];
}

void ColumnValues(RecordKind kind, const google::protobuf::Message& record,
                  std::vector<absl::string_view>* values) {
  values->clear();
  switch (kind) {
    case idsync::v1::RECORD_KIND_ACCOUNT: {
      const auto& r = static_cast<const idsync::v1::RemoteAccount&>(record);
      *values = {r.external_id(), r.identity_external_id(), r.username(),
                 r.email(),       r.display_name(),         r.status()};
      return;
    }
    case idsync::v1::RECORD_KIND_ENTITLEMENT: {
      const auto& r = static_cast<const idsync::v1::RemoteEntitlement&>(record);
      *values = {r.external_id(), r.name(), r.description(), r.type()};
      return;
    }
    case idsync::v1::RECORD_KIND_GRANT: {
      const auto& r = static_cast<const idsync::v1::RemoteGrant&>(record);
      *values = {r.account_external_id(), r.entitlement_external_id()};
      return;
    }
    default: {
      const auto& r = static_cast<const idsync::v1::RemoteIdentity&>(record);
      *values = {r.external_id(),  r.email(),
                 r.first_name(),   r.last_name(),
                 r.display_name(), r.department(),
                 r.job_title(),    r.manager_external_id(),
                 r.status()};
      return;
    }
  }
}

const google::protobuf::Map<std::string, std::string>& Attributes(
    RecordKind kind, const google::protobuf::Message& record) {
  switch (kind) {
    case idsync::v1::RECORD_KIND_ACCOUNT:
      return static_cast<const idsync::v1::RemoteAccount&>(record).attributes();
    case idsync::v1::RECORD_KIND_ENTITLEMENT:
      return static_cast<const idsync::v1::RemoteEntitlement&>(record)
          .attributes();
    case idsync::v1::RECORD_KIND_GRANT:
      return static_cast<const idsync::v1::RemoteGrant&>(record).attributes();
    default:
      return static_cast<const idsync::v1::RemoteIdentity&>(record)
          .attributes();
  }
}

namespace {

void AppendJsonString(absl::string_view s, std::string* out) {
  out->push_back('"');
  for (char c : s) {
    switch (c) {
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
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out->append(buf);
        } else {
          out->push_back(c);  // UTF-8 passes through; it was validated.
        }
    }
  }
  out->push_back('"');
}

}  // namespace

std::string AttributesJson(
    const google::protobuf::Map<std::string, std::string>& attributes) {
  if (attributes.empty()) return "";
  std::vector<const google::protobuf::MapPair<std::string, std::string>*>
      sorted;
  sorted.reserve(attributes.size());
  for (const auto& kv : attributes) sorted.push_back(&kv);
  std::sort(sorted.begin(), sorted.end(),
            [](auto* a, auto* b) { return a->first < b->first; });
  std::string out = "{";
  for (const auto* kv : sorted) {
    if (out.size() > 1) out.push_back(',');
    AppendJsonString(kv->first, &out);
    out.push_back(':');
    AppendJsonString(kv->second, &out);
  }
  out.push_back('}');
  return out;
}

namespace {

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A JSON string at `*pos` (its opening quote) into `*out`; moves past it.
// Only escapes AttributesJson emits and the simple ones; \u only below
// U+0800 that is not a surrogate (anything else goes to the full parser).
bool ReadJsonString(absl::string_view json, size_t* pos, std::string* out) {
  size_t i = *pos;
  if (i >= json.size() || json[i] != '"') return false;
  ++i;
  out->clear();
  size_t run = i;
  while (i < json.size()) {
    const char c = json[i];
    if (c == '"') {
      out->append(json.data() + run, i - run);
      *pos = i + 1;
      return true;
    }
    if (static_cast<unsigned char>(c) < 0x20) return false;
    if (c != '\\') {
      ++i;
      continue;
    }
    out->append(json.data() + run, i - run);
    if (i + 1 >= json.size()) return false;
    const char e = json[i + 1];
    i += 2;
    switch (e) {
      case '"':
      case '\\':
      case '/':
        out->push_back(e);
        break;
      case 'n':
        out->push_back('\n');
        break;
      case 'r':
        out->push_back('\r');
        break;
      case 't':
        out->push_back('\t');
        break;
      case 'b':
        out->push_back('\b');
        break;
      case 'f':
        out->push_back('\f');
        break;
      case 'u': {
        if (i + 4 > json.size()) return false;
        int cp = 0;
        for (int k = 0; k < 4; ++k) {
          const int d = HexDigit(json[i + k]);
          if (d < 0) return false;
          cp = cp * 16 + d;
        }
        i += 4;
        if (cp < 0x80) {
          out->push_back(static_cast<char>(cp));
        } else if (cp < 0x800) {
          out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
          out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
        } else {
          return false;
        }
        break;
      }
      default:
        return false;
    }
    run = i;
  }
  return false;
}

}  // namespace

bool ParseAttributesJson(absl::string_view json,
                         google::protobuf::Map<std::string, std::string>* out) {
  if (json.size() < 2 || json.front() != '{' || json.back() != '}') {
    return false;
  }
  size_t pos = 1;
  std::string key, value;
  if (json.size() == 2) return true;
  while (true) {
    if (!ReadJsonString(json, &pos, &key)) return false;
    if (pos >= json.size() || json[pos] != ':') return false;
    ++pos;
    if (!ReadJsonString(json, &pos, &value)) return false;
    (*out)[key] = std::move(value);
    if (pos >= json.size()) return false;
    if (json[pos] == '}') return pos + 1 == json.size();
    if (json[pos] != ',') return false;
    ++pos;
  }
}

}  // namespace idsync
