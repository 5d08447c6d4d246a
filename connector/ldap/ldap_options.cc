#include "connector/ldap/ldap_options.h"

#include <ldap.h>

#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "connector/config.h"
#include "connector/status_macros.h"

namespace idsync {
namespace {

constexpr char kWhere[] = "ldap config";

absl::Status Invalid(absl::string_view key, absl::string_view what) {
  return absl::InvalidArgumentError(
      absl::StrCat(kWhere, ": '", key, "' ", what));
}

// An attribute type: a name (letters, digits, '-') or a numeric OID.
bool IsAttributeName(absl::string_view name) {
  if (name.empty() || name.size() > 128) return false;
  if (absl::ascii_isdigit(name[0])) {
    for (char c : name) {
      if (!absl::ascii_isdigit(c) && c != '.') return false;
    }
    return true;
  }
  if (!absl::ascii_isalpha(name[0])) return false;
  for (char c : name) {
    if (!absl::ascii_isalnum(c) && c != '-') return false;
  }
  return true;
}

// A list of attribute names from a string ("" is none) or an array.
absl::StatusOr<std::vector<std::string>> AttributeList(
    const google::protobuf::Value& value, const std::string& key) {
  std::vector<std::string> out;
  auto add = [&](const google::protobuf::Value& v) -> absl::Status {
    if (v.kind_case() != google::protobuf::Value::kStringValue) {
      return Invalid(key, "must be an attribute name or a list of them");
    }
    if (v.string_value().empty()) return absl::OkStatus();
    if (!IsAttributeName(v.string_value())) {
      return Invalid(key, "names something that is not an attribute type");
    }
    out.push_back(v.string_value());
    return absl::OkStatus();
  };
  if (value.kind_case() == google::protobuf::Value::kListValue) {
    if (value.list_value().values_size() > 64) {
      return Invalid(key, "lists more than 64 attributes");
    }
    for (const auto& v : value.list_value().values()) {
      IDSYNC_RETURN_IF_ERROR(add(v));
    }
  } else if (value.kind_case() != google::protobuf::Value::kNullValue) {
    IDSYNC_RETURN_IF_ERROR(add(value));
  }
  return out;
}

// Overrides fields of a mapping from a config object. `fields` pairs each
// key with the list it sets.
absl::Status ApplyMapping(
    const google::protobuf::Struct* object, absl::string_view object_key,
    std::initializer_list<
        std::pair<absl::string_view, std::vector<std::string>*>>
        fields) {
  if (object == nullptr) return absl::OkStatus();
  for (const auto& [key, value] : object->fields()) {
    const std::string full = absl::StrCat(object_key, ".", key.substr(0, 64));
    std::vector<std::string>* target = nullptr;
    std::string known;
    for (const auto& [name, list] : fields) {
      if (name == key) target = list;
      absl::StrAppend(&known, known.empty() ? "" : ", ", name);
    }
    if (target == nullptr) {
      return Invalid(full,
                     absl::StrCat("is not a known field (known: ", known, ")"));
    }
    IDSYNC_ASSIGN_OR_RETURN(*target, AttributeList(value, full));
  }
  return absl::OkStatus();
}

absl::Status CheckFilter(absl::string_view key, absl::string_view filter) {
  if (filter.empty() || filter.size() > 4096 || filter.front() != '(' ||
      filter.back() != ')') {
    return Invalid(key,
                   "must be an LDAP filter in parentheses, e.g. "
                   "(objectClass=inetOrgPerson)");
  }
  int depth = 0;
  for (char c : filter) {
    if (c == '(') ++depth;
    if (c == ')' && --depth < 0) break;
    if (c == '\0') depth = -1;
  }
  if (depth != 0) return Invalid(key, "has unbalanced parentheses");
  return absl::OkStatus();
}

absl::Status CheckDn(absl::string_view key, const std::string& dn) {
  if (dn.size() > 4096) return Invalid(key, "is longer than 4096 bytes");
  LDAPDN parsed = nullptr;
  if (ldap_str2dn(dn.c_str(), &parsed, LDAP_DN_FORMAT_LDAP) != LDAP_SUCCESS) {
    return Invalid(key, "is not a valid DN");
  }
  ldap_dnfree(parsed);
  return absl::OkStatus();
}

void SetInetOrgPerson(LdapOptions& o) {
  o.user_filter = "(objectClass=inetOrgPerson)";
  o.group_filter =
      "(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)"
      "(objectClass=posixGroup))";
  o.user = LdapUserMapping{
      /*external_id=*/{"uid"},
      /*username=*/{"uid"},
      /*email=*/{"mail"},
      /*first_name=*/{"givenName"},
      /*last_name=*/{"sn"},
      /*display_name=*/{"displayName", "cn"},
      /*department=*/{"departmentNumber", "ou"},
      /*job_title=*/{"title"},
      /*manager=*/{"manager"},
      /*status=*/{},
      /*attributes=*/{"employeeNumber"},
  };
  o.group = LdapGroupMapping{
      /*name=*/{"cn"},
      /*description=*/{"description"},
      /*member=*/{"member", "uniqueMember"},
      /*member_uid=*/{"memberUid"},
      /*attributes=*/{},
  };
}

void SetActiveDirectory(LdapOptions& o) {
  o.user_filter = "(&(objectCategory=person)(objectClass=user))";
  o.group_filter = "(objectClass=group)";
  o.user = LdapUserMapping{
      /*external_id=*/{"sAMAccountName"},
      /*username=*/{"sAMAccountName"},
      /*email=*/{"mail", "userPrincipalName"},
      /*first_name=*/{"givenName"},
      /*last_name=*/{"sn"},
      /*display_name=*/{"displayName", "cn"},
      /*department=*/{"department"},
      /*job_title=*/{"title"},
      /*manager=*/{"manager"},
      /*status=*/{"userAccountControl"},
      /*attributes=*/{"userPrincipalName", "employeeID"},
  };
  o.group = LdapGroupMapping{
      /*name=*/{"cn"},
      /*description=*/{"description"},
      /*member=*/{"member"},
      /*member_uid=*/{},
      /*attributes=*/{},
  };
}

}  // namespace

absl::StatusOr<LdapOptions> ParseLdapOptions(
    const google::protobuf::Struct& config) {
  ConfigReader cfg(config, kWhere);
  IDSYNC_RETURN_IF_ERROR(cfg.CheckKnownKeys(
      {"preset", "url", "start_tls", "ca_file", "bind_dn", "bind_password_file",
       "user_base", "user_filter", "group_base", "group_filter", "mapping",
       "group_mapping", "page_size", "timeout_seconds",
       "incremental_overlap_seconds"}));
  LdapOptions o;
  IDSYNC_ASSIGN_OR_RETURN(o.preset, cfg.String("preset", "inetorgperson"));
  if (o.preset == "inetorgperson") {
    SetInetOrgPerson(o);
  } else if (o.preset == "active_directory") {
    SetActiveDirectory(o);
  } else {
    return Invalid("preset",
                   "must be \"inetorgperson\" or \"active_directory\"");
  }

  IDSYNC_ASSIGN_OR_RETURN(o.url, cfg.RequiredString("url"));
  {
    const std::string lower = absl::AsciiStrToLower(o.url);
    LDAPURLDesc* desc = nullptr;
    if (!(absl::StartsWith(lower, "ldap://") ||
          absl::StartsWith(lower, "ldaps://")) ||
        o.url.size() > 1024 ||
        ldap_url_parse(o.url.c_str(), &desc) != LDAP_URL_SUCCESS) {
      return Invalid("url",
                     "must be ldap://HOST[:PORT] or ldaps://HOST[:PORT]");
    }
    const bool has_dn = desc->lud_dn != nullptr && desc->lud_dn[0] != '\0';
    ldap_free_urldesc(desc);
    if (has_dn) {
      return Invalid("url", "must not name a DN; set user_base instead");
    }
  }
  IDSYNC_ASSIGN_OR_RETURN(o.start_tls, cfg.Bool("start_tls", false));
  if (o.start_tls && absl::StartsWith(absl::AsciiStrToLower(o.url), "ldaps")) {
    return Invalid("start_tls",
                   "applies to ldap:// only (ldaps:// is TLS already)");
  }
  IDSYNC_ASSIGN_OR_RETURN(o.ca_file, cfg.String("ca_file", ""));
  IDSYNC_ASSIGN_OR_RETURN(o.bind_dn, cfg.String("bind_dn", ""));
  if (!o.bind_dn.empty()) IDSYNC_RETURN_IF_ERROR(CheckDn("bind_dn", o.bind_dn));
  IDSYNC_ASSIGN_OR_RETURN(o.bind_password_file,
                          cfg.String("bind_password_file", ""));
  if (!o.bind_password_file.empty() && o.bind_dn.empty()) {
    return Invalid("bind_password_file", "needs bind_dn");
  }

  IDSYNC_ASSIGN_OR_RETURN(o.user_base, cfg.RequiredString("user_base"));
  if (o.user_base.empty()) return Invalid("user_base", "must not be empty");
  IDSYNC_RETURN_IF_ERROR(CheckDn("user_base", o.user_base));
  IDSYNC_ASSIGN_OR_RETURN(o.user_filter,
                          cfg.String("user_filter", o.user_filter));
  IDSYNC_RETURN_IF_ERROR(CheckFilter("user_filter", o.user_filter));
  IDSYNC_ASSIGN_OR_RETURN(o.group_base, cfg.String("group_base", ""));
  if (!o.group_base.empty()) {
    IDSYNC_RETURN_IF_ERROR(CheckDn("group_base", o.group_base));
  }
  IDSYNC_ASSIGN_OR_RETURN(o.group_filter,
                          cfg.String("group_filter", o.group_filter));
  IDSYNC_RETURN_IF_ERROR(CheckFilter("group_filter", o.group_filter));

  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* mapping,
                          cfg.Object("mapping"));
  LdapUserMapping& u = o.user;
  IDSYNC_RETURN_IF_ERROR(ApplyMapping(mapping, "mapping",
                                      {{"external_id", &u.external_id},
                                       {"username", &u.username},
                                       {"email", &u.email},
                                       {"first_name", &u.first_name},
                                       {"last_name", &u.last_name},
                                       {"display_name", &u.display_name},
                                       {"department", &u.department},
                                       {"job_title", &u.job_title},
                                       {"manager", &u.manager},
                                       {"status", &u.status},
                                       {"attributes", &u.attributes}}));
  if (u.external_id.empty()) {
    return Invalid("mapping.external_id", "must name at least one attribute");
  }
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* group_mapping,
                          cfg.Object("group_mapping"));
  LdapGroupMapping& g = o.group;
  IDSYNC_RETURN_IF_ERROR(ApplyMapping(group_mapping, "group_mapping",
                                      {{"name", &g.name},
                                       {"description", &g.description},
                                       {"member", &g.member},
                                       {"member_uid", &g.member_uid},
                                       {"attributes", &g.attributes}}));

  IDSYNC_ASSIGN_OR_RETURN(int64_t page_size,
                          cfg.Int("page_size", 1000, 1, 10000));
  o.page_size = static_cast<int>(page_size);
  IDSYNC_ASSIGN_OR_RETURN(int64_t timeout,
                          cfg.Int("timeout_seconds", 60, 1, 3600));
  o.timeout_seconds = static_cast<int>(timeout);
  IDSYNC_ASSIGN_OR_RETURN(int64_t overlap,
                          cfg.Int("incremental_overlap_seconds", 60, 0, 86400));
  o.incremental_overlap_seconds = static_cast<int>(overlap);
  return o;
}

}  // namespace idsync
