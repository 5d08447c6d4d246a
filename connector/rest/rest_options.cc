#include "connector/rest/rest_options.h"

#include <algorithm>
#include <set>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "connector/config.h"
#include "connector/http/source_http.h"
#include "connector/status_macros.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;
using idsync::v1::RecordKind;

const std::set<std::string>& FieldsOf(RecordKind kind) {
  static const auto* identity = new std::set<std::string>{
      "external_id", "email",        "first_name",
      "last_name",   "department",   "manager_external_id",
      "status",      "display_name", "job_title",
      "username"};  // username: the account of a with_accounts stream.
  static const auto* account = new std::set<std::string>{
      "external_id", "identity_external_id", "username",
      "email",       "display_name",         "status"};
  static const auto* entitlement =
      new std::set<std::string>{"external_id", "name", "description", "type"};
  static const auto* grant = new std::set<std::string>{
      "account_external_id", "entitlement_external_id"};
  switch (kind) {
    case idsync::v1::RECORD_KIND_IDENTITY:
      return *identity;
    case idsync::v1::RECORD_KIND_ACCOUNT:
      return *account;
    case idsync::v1::RECORD_KIND_ENTITLEMENT:
      return *entitlement;
    default:
      return *grant;
  }
}

absl::Status Invalid(absl::string_view where, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(where, ": ", what));
}

// A JSON pointer (RFC 6901): "" or "/a/b", with ~0 and ~1 escapes only.
absl::StatusOr<std::string> Pointer(const ConfigReader& r,
                                    absl::string_view where,
                                    absl::string_view key, bool required) {
  IDSYNC_ASSIGN_OR_RETURN(std::string p,
                          required ? r.RequiredString(key) : r.String(key, ""));
  if (p.empty()) {
    if (!required) return p;
    return Invalid(where, absl::StrCat("'", key, "' must not be empty"));
  }
  try {
    nlohmann::json::json_pointer check(p);
    (void)check;
  } catch (const nlohmann::json::exception&) {
    return Invalid(where, absl::StrCat("'", key,
                                       "' must be a JSON pointer like "
                                       "\"/items\" or \"/user/id\""));
  }
  return p;
}

absl::StatusOr<RestField> ParseField(const Value& v, const std::string& where,
                                     absl::string_view name) {
  RestField f;
  const std::string here = absl::StrCat(where, ".fields.", name);
  if (v.kind_case() == Value::kStringValue) {
    Struct s;
    (*s.mutable_fields())["pointer"] = v;
    ConfigReader r(s, here);
    IDSYNC_ASSIGN_OR_RETURN(f.pointer, Pointer(r, here, "pointer", true));
    return f;
  }
  if (v.kind_case() != Value::kStructValue) {
    return Invalid(here, "must be a JSON pointer or {pointer, values}");
  }
  ConfigReader r(v.struct_value(), here);
  IDSYNC_RETURN_IF_ERROR(r.CheckKnownKeys({"pointer", "values"}));
  IDSYNC_ASSIGN_OR_RETURN(f.pointer, Pointer(r, here, "pointer", true));
  IDSYNC_ASSIGN_OR_RETURN(const Struct* values, r.Object("values"));
  if (values != nullptr) {
    ConfigReader vr(*values, absl::StrCat(here, ".values"));
    for (const auto& [from, unused] : values->fields()) {
      IDSYNC_ASSIGN_OR_RETURN(f.values[from], vr.RequiredString(from));
    }
  }
  return f;
}

absl::Status ParsePagination(const ConfigReader& r, const std::string& where,
                             RestPagination& p) {
  IDSYNC_RETURN_IF_ERROR(r.CheckKnownKeys(
      {"style", "page_param", "first_page", "offset_param", "limit_param",
       "limit", "cursor_param", "next_cursor", "max_page", "total"}));
  IDSYNC_ASSIGN_OR_RETURN(std::string style, r.RequiredString("style"));
  using S = RestPagination::Style;
  if (style == "none") {
    p.style = S::kNone;
  } else if (style == "page") {
    p.style = S::kPage;
  } else if (style == "offset") {
    p.style = S::kOffset;
  } else if (style == "cursor") {
    p.style = S::kCursor;
  } else if (style == "link") {
    p.style = S::kLink;
  } else {
    return Invalid(where,
                   "'style' must be one of none, page, offset, cursor, link");
  }
  IDSYNC_ASSIGN_OR_RETURN(p.page_param, r.String("page_param", "page"));
  IDSYNC_ASSIGN_OR_RETURN(p.first_page, r.Int("first_page", 1, 0, 1));
  IDSYNC_ASSIGN_OR_RETURN(p.offset_param, r.String("offset_param", "offset"));
  IDSYNC_ASSIGN_OR_RETURN(p.limit_param, r.String("limit_param", "limit"));
  IDSYNC_ASSIGN_OR_RETURN(p.limit, r.Int("limit", 100, 1, 10000));
  IDSYNC_ASSIGN_OR_RETURN(p.cursor_param, r.String("cursor_param", "cursor"));
  IDSYNC_ASSIGN_OR_RETURN(
      p.next_cursor, Pointer(r, where, "next_cursor", p.style == S::kCursor));
  IDSYNC_ASSIGN_OR_RETURN(p.max_page, Pointer(r, where, "max_page", false));
  IDSYNC_ASSIGN_OR_RETURN(p.total, Pointer(r, where, "total", false));
  return absl::OkStatus();
}

absl::StatusOr<RestStream> ParseStream(const Value& v, const std::string& base,
                                       size_t index) {
  RestStream s;
  std::string where = absl::StrCat("rest config: streams[", index, "]");
  if (v.kind_case() != Value::kStructValue) {
    return Invalid(where, "must be an object");
  }
  ConfigReader r(v.struct_value(), where);
  IDSYNC_RETURN_IF_ERROR(
      r.CheckKnownKeys({"name", "kind", "accounts", "entitlement_type", "path",
                        "url", "method", "query", "records", "fields",
                        "attributes", "pagination", "incremental"}));
  IDSYNC_ASSIGN_OR_RETURN(
      s.name, r.String("name", absl::StrCat("streams[", index, "]")));
  IDSYNC_ASSIGN_OR_RETURN(std::string kind, r.RequiredString("kind"));
  if (kind == "identities") {
    s.kind = idsync::v1::RECORD_KIND_IDENTITY;
  } else if (kind == "accounts") {
    s.kind = idsync::v1::RECORD_KIND_ACCOUNT;
  } else if (kind == "entitlements") {
    s.kind = idsync::v1::RECORD_KIND_ENTITLEMENT;
  } else if (kind == "grants") {
    s.kind = idsync::v1::RECORD_KIND_GRANT;
  } else {
    return Invalid(where,
                   "'kind' must be identities, accounts, entitlements or "
                   "grants");
  }
  IDSYNC_ASSIGN_OR_RETURN(s.with_accounts, r.Bool("accounts", false));
  if (s.with_accounts && s.kind != idsync::v1::RECORD_KIND_IDENTITY) {
    return Invalid(where, "'accounts' applies to identities streams only");
  }
  IDSYNC_ASSIGN_OR_RETURN(s.entitlement_type,
                          r.String("entitlement_type", "group"));
  IDSYNC_ASSIGN_OR_RETURN(std::string path, r.String("path", ""));
  IDSYNC_ASSIGN_OR_RETURN(std::string url, r.String("url", ""));
  if (path.empty() == url.empty()) {
    return Invalid(where, "give exactly one of 'path' and 'url'");
  }
  if (!url.empty()) {
    s.url = url;
  } else {
    if (base.empty()) return Invalid(where, "'path' needs a 'base_url'");
    if (!absl::StartsWith(path, "/")) {
      return Invalid(where, "'path' must start with '/'");
    }
    s.url = absl::StrCat(base, path);
  }
  if (!absl::StartsWith(s.url, "https://") &&
      !absl::StartsWith(s.url, "http://")) {
    return Invalid(where, "the stream's URL must be http:// or https://");
  }
  if (s.url.find_first_of("?#") != std::string::npos) {
    return Invalid(where, "put query parameters in 'query', not the URL");
  }
  IDSYNC_ASSIGN_OR_RETURN(s.method, r.String("method", "GET"));
  if (s.method != "GET" && s.method != "POST") {
    return Invalid(where, "'method' must be GET or POST");
  }
  IDSYNC_ASSIGN_OR_RETURN(const Struct* query, r.Object("query"));
  if (query != nullptr) {
    ConfigReader qr(*query, absl::StrCat(where, ".query"));
    for (const auto& [name, unused] : query->fields()) {
      IDSYNC_ASSIGN_OR_RETURN(std::string value, qr.RequiredString(name));
      s.query.emplace_back(name, std::move(value));
    }
    // Map order is unspecified: requests (and their signatures) must not vary.
    std::sort(s.query.begin(), s.query.end());
  }
  IDSYNC_ASSIGN_OR_RETURN(s.records, Pointer(r, where, "records", false));

  IDSYNC_ASSIGN_OR_RETURN(const Struct* fields, r.Object("fields"));
  if (fields == nullptr) return Invalid(where, "'fields' is required");
  const std::set<std::string>& allowed = FieldsOf(s.kind);
  for (const auto& [name, value] : fields->fields()) {
    if (allowed.count(name) == 0) {
      return Invalid(
          where,
          absl::StrCat("fields: '", name.substr(0, 64), "' is not a field of ",
                       kind, " (known: ", absl::StrJoin(allowed, ", "), ")"));
    }
    IDSYNC_ASSIGN_OR_RETURN(s.fields[name], ParseField(value, where, name));
  }
  const bool is_grant = s.kind == idsync::v1::RECORD_KIND_GRANT;
  for (const char* need :
       is_grant ? std::vector<const char*>{"account_external_id",
                                           "entitlement_external_id"}
                : std::vector<const char*>{"external_id"}) {
    if (s.fields.count(need) == 0) {
      return Invalid(where, absl::StrCat("fields: '", need, "' is required"));
    }
  }
  IDSYNC_ASSIGN_OR_RETURN(std::string attributes,
                          r.String("attributes", "rest"));
  if (attributes != "rest" && attributes != "none") {
    return Invalid(where, "'attributes' must be \"rest\" or \"none\"");
  }
  s.rest_to_attributes = attributes == "rest";

  IDSYNC_ASSIGN_OR_RETURN(const Struct* pagination, r.Object("pagination"));
  if (pagination != nullptr) {
    const std::string pw = absl::StrCat(where, ".pagination");
    IDSYNC_RETURN_IF_ERROR(
        ParsePagination(ConfigReader(*pagination, pw), pw, s.pagination));
  }
  IDSYNC_ASSIGN_OR_RETURN(const Struct* incremental, r.Object("incremental"));
  if (incremental != nullptr) {
    const std::string iw = absl::StrCat(where, ".incremental");
    ConfigReader ir(*incremental, iw);
    IDSYNC_RETURN_IF_ERROR(ir.CheckKnownKeys({"param", "watermark"}));
    IDSYNC_ASSIGN_OR_RETURN(s.incremental_param, ir.RequiredString("param"));
    IDSYNC_ASSIGN_OR_RETURN(s.watermark, Pointer(ir, iw, "watermark", true));
  }
  return s;
}

}  // namespace

absl::StatusOr<RestOptions> ParseRestOptions(const Struct& config) {
  const std::string where = "rest config";
  ConfigReader r(config, where);
  IDSYNC_RETURN_IF_ERROR(r.CheckKnownKeys(
      {"base_url", "max_pages", "streams", IDSYNC_HTTP_SOURCE_KEYS}));
  RestOptions o;
  IDSYNC_ASSIGN_OR_RETURN(std::string base, r.String("base_url", ""));
  while (absl::EndsWith(base, "/")) base.pop_back();
  IDSYNC_RETURN_IF_ERROR(ParseHttpSourceOptions(r, where, o.http, o.headers));
  IDSYNC_ASSIGN_OR_RETURN(o.max_pages,
                          r.Int("max_pages", 1000000, 1, 100000000));
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::ListValue* streams,
                          r.List("streams"));
  if (streams == nullptr || streams->values_size() == 0) {
    return Invalid(where, "'streams' must list at least one stream");
  }
  for (int i = 0; i < streams->values_size(); ++i) {
    IDSYNC_ASSIGN_OR_RETURN(RestStream s,
                            ParseStream(streams->values(i), base, i));
    o.streams.push_back(std::move(s));
  }
  return o;
}

}  // namespace idsync
