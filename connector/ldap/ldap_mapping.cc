#include "connector/ldap/ldap_mapping.h"

#include <ldap.h>

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "connector/text.h"

namespace idsync {
namespace {

using idsync::v1::RemoteIdentity;

// Characters that never need escaping or space handling in a DN.
bool IsPlainDnChar(char c) {
  return absl::ascii_isalnum(c) || c == '.' || c == '_' || c == '@' || c == '-';
}

// A DN of plain `type=value` RDNs only: lower-casing is its normal form.
bool NormalizePlainDn(absl::string_view dn, std::string* out) {
  out->resize(dn.size());
  bool in_value = false;
  size_t component_start = 0;
  for (size_t i = 0; i < dn.size(); ++i) {
    const char c = dn[i];
    if (c == '=') {
      if (in_value || i == component_start) return false;
      in_value = true;
    } else if (c == ',') {
      if (!in_value || dn[i - 1] == '=') return false;
      in_value = false;
      component_start = i + 1;
    } else if (!IsPlainDnChar(c)) {
      return false;
    }
    (*out)[i] = absl::ascii_tolower(c);
  }
  return in_value && dn.back() != '=';
}

void LowerBerval(berval& bv) {
  for (ber_len_t i = 0; i < bv.bv_len; ++i) {
    bv.bv_val[i] = absl::ascii_tolower(bv.bv_val[i]);
  }
}

// Parses `dn` with libldap (LDAPv3 or v2 syntax). nullptr if invalid.
LDAPDN ParseDn(absl::string_view dn) {
  berval bv;
  bv.bv_val = const_cast<char*>(dn.data());
  bv.bv_len = dn.size();
  LDAPDN parsed = nullptr;
  if (ldap_bv2dn(&bv, &parsed, LDAP_DN_FORMAT_LDAP) != LDAP_SUCCESS) {
    return nullptr;
  }
  return parsed;
}

absl::string_view First(const LdapEntry& e, const std::vector<int>& slots) {
  for (int s : slots) {
    if (!e.values[s].empty()) return e.values[s][0];
  }
  return {};
}

// "a, b" for an error message.
std::string Names(const AttributeSlots& slots, const std::vector<int>& which) {
  std::vector<std::string> names;
  for (int s : which) names.push_back(slots.names()[s]);
  return absl::StrJoin(names, " or ");
}

}  // namespace

bool NormalizeDn(absl::string_view dn, std::string* out) {
  if (dn.empty()) return false;
  if (NormalizePlainDn(dn, out)) return true;
  LDAPDN parsed = ParseDn(dn);
  if (parsed == nullptr || parsed[0] == nullptr) {
    if (parsed != nullptr) ldap_dnfree(parsed);
    return false;
  }
  for (LDAPRDN* rdn = parsed; *rdn != nullptr; ++rdn) {
    int count = 0;
    for (LDAPAVA** ava = *rdn; *ava != nullptr; ++ava, ++count) {
      LowerBerval((*ava)->la_attr);
      if (((*ava)->la_flags & LDAP_AVA_BINARY) == 0) {
        LowerBerval((*ava)->la_value);
      }
    }
    // A multi-valued RDN names the same entry in any order.
    std::sort(*rdn, *rdn + count, [](const LDAPAVA* a, const LDAPAVA* b) {
      return absl::string_view(a->la_attr.bv_val, a->la_attr.bv_len) <
             absl::string_view(b->la_attr.bv_val, b->la_attr.bv_len);
    });
  }
  char* text = nullptr;
  const int rc =
      ldap_dn2str(parsed, &text, LDAP_DN_FORMAT_LDAPV3 | LDAP_DN_PRETTY);
  ldap_dnfree(parsed);
  if (rc != LDAP_SUCCESS || text == nullptr) return false;
  out->assign(text);
  ldap_memfree(text);
  return true;
}

std::optional<std::string> RdnValue(absl::string_view dn,
                                    absl::string_view attribute) {
  const absl::string_view first = dn.substr(0, dn.find(','));
  const size_t eq = first.find('=');
  if (eq != absl::string_view::npos &&
      first.find_first_of("\\+\"#<>; ") == absl::string_view::npos) {
    if (!absl::EqualsIgnoreCase(first.substr(0, eq), attribute) ||
        eq + 1 == first.size()) {
      return std::nullopt;
    }
    return std::string(first.substr(eq + 1));
  }
  LDAPDN parsed = ParseDn(dn);
  if (parsed == nullptr) return std::nullopt;
  std::optional<std::string> value;
  LDAPRDN rdn = parsed[0];
  if (rdn != nullptr && rdn[0] != nullptr && rdn[1] == nullptr &&
      (rdn[0]->la_flags & LDAP_AVA_BINARY) == 0 &&
      absl::EqualsIgnoreCase(
          absl::string_view(rdn[0]->la_attr.bv_val, rdn[0]->la_attr.bv_len),
          attribute)) {
    value.emplace(rdn[0]->la_value.bv_val, rdn[0]->la_value.bv_len);
  }
  ldap_dnfree(parsed);
  return value;
}

int AttributeSlots::Add(absl::string_view name) {
  const std::string key = absl::AsciiStrToLower(name);
  auto [it, inserted] = index_.emplace(key, static_cast<int>(names_.size()));
  if (inserted) names_.emplace_back(name);
  return it->second;
}

std::vector<int> AttributeSlots::AddAll(const std::vector<std::string>& names) {
  std::vector<int> out;
  for (const std::string& n : names) out.push_back(Add(n));
  return out;
}

int AttributeSlots::Find(absl::string_view name) const {
  char lower[128];
  if (name.size() > sizeof(lower)) return -1;
  for (size_t i = 0; i < name.size(); ++i) {
    lower[i] = absl::ascii_tolower(name[i]);
  }
  auto it = index_.find(absl::string_view(lower, name.size()));
  return it == index_.end() ? -1 : it->second;
}

void LdapEntry::Reset(size_t slots) {
  dn = {};
  values.resize(slots);
  for (auto& v : values) v.clear();
  ranged.clear();
}

bool ParseRange(absl::string_view description, absl::string_view* base,
                int64_t* low, int64_t* high) {
  const size_t semi = description.find(";range=");
  if (semi == absl::string_view::npos) return false;
  const absl::string_view range = description.substr(semi + 7);
  const size_t dash = range.find('-');
  if (dash == absl::string_view::npos) return false;
  if (!absl::SimpleAtoi(range.substr(0, dash), low)) return false;
  const absl::string_view end = range.substr(dash + 1);
  if (end == "*") {
    *high = -1;
  } else if (!absl::SimpleAtoi(end, high)) {
    return false;
  }
  *base = description.substr(0, semi);
  return true;
}

LdapUserMapper::LdapUserMapper(const LdapUserMapping& mapping,
                               AttributeSlots& slots)
    : slots_(slots) {
  id_ = slots.AddAll(mapping.external_id);
  username_ = slots.AddAll(mapping.username);
  email_ = slots.AddAll(mapping.email);
  display_name_ = slots.AddAll(mapping.display_name);
  manager_ = slots.AddAll(mapping.manager);
  status_ = slots.AddAll(mapping.status);
  fields_ = {
      {slots.AddAll(mapping.first_name), &RemoteIdentity::mutable_first_name},
      {slots.AddAll(mapping.last_name), &RemoteIdentity::mutable_last_name},
      {slots.AddAll(mapping.department), &RemoteIdentity::mutable_department},
      {slots.AddAll(mapping.job_title), &RemoteIdentity::mutable_job_title},
  };
  for (const std::string& a : mapping.attributes) {
    attributes_.emplace_back(a, slots.Add(a));
  }
  status_is_uac_ =
      mapping.status.size() == 1 &&
      absl::EqualsIgnoreCase(mapping.status[0], "userAccountControl");
  if (mapping.external_id.size() == 1) single_id_ = mapping.external_id[0];
}

absl::string_view LdapUserMapper::ManagerDn(const LdapEntry& entry) const {
  return First(entry, manager_);
}

absl::string_view LdapUserMapper::IdentityId(const LdapEntry& entry) const {
  return First(entry, id_);
}

std::string LdapUserMapper::Map(const LdapEntry& entry,
                                absl::string_view dn_key,
                                idsync::v1::RemoteIdentity* identity,
                                idsync::v1::RemoteAccount* account) const {
  std::string problem;
  // Copies a value if it is valid UTF-8; notes the first one that is not.
  auto valid = [&](absl::string_view value, int slot) {
    if (IsValidUtf8(value)) return true;
    if (problem.empty()) {
      problem = absl::StrCat("attribute ", slots_.names()[slot],
                             " is not valid UTF-8");
    }
    return false;
  };
  auto first = [&](const std::vector<int>& which) -> absl::string_view {
    for (int s : which) {
      if (!entry.values[s].empty()) {
        return valid(entry.values[s][0], s) ? entry.values[s][0]
                                            : absl::string_view();
      }
    }
    return {};
  };

  account->mutable_external_id()->assign(dn_key.data(), dn_key.size());
  const absl::string_view id = first(id_);
  const absl::string_view username = first(username_);
  const absl::string_view email = first(email_);
  const absl::string_view display_name = first(display_name_);
  std::string status = "active";
  if (const absl::string_view raw = first(status_); !raw.empty()) {
    int64_t flags = 0;
    if (status_is_uac_ && absl::SimpleAtoi(raw, &flags)) {
      status = (flags & 0x2) != 0 ? "disabled" : "active";  // ACCOUNTDISABLE
    } else {
      status = std::string(raw);
    }
  }
  // Assigned in place: the records may be recycled ones whose strings keep
  // their buffers.
  auto set = [](std::string* field, absl::string_view value) {
    field->assign(value.data(), value.size());
  };
  set(account->mutable_username(), username);
  set(account->mutable_email(), email);
  set(account->mutable_display_name(), display_name);
  set(account->mutable_status(), status);

  set(identity->mutable_external_id(), id);
  set(identity->mutable_email(), email);
  set(identity->mutable_display_name(), display_name);
  set(identity->mutable_status(), status);
  for (const Field& f : fields_) set((identity->*f.identity)(), first(f.slots));
  for (const auto& [name, slot] : attributes_) {
    const auto& values = entry.values[slot];
    if (values.empty()) continue;
    bool ok = true;
    for (absl::string_view v : values) ok = ok && valid(v, slot);
    if (ok) {
      (*identity->mutable_attributes())[name] = absl::StrJoin(values, "\n");
    }
  }
  if (id.empty() && problem.empty()) {
    problem = absl::StrCat("no ", Names(slots_, id_), " attribute");
  }
  if (problem.empty()) {
    account->mutable_identity_external_id()->assign(id.data(), id.size());
  }
  return problem;
}

LdapGroupMapper::LdapGroupMapper(const LdapGroupMapping& mapping,
                                 AttributeSlots& slots)
    : slots_(slots) {
  name_ = slots.AddAll(mapping.name);
  description_ = slots.AddAll(mapping.description);
  member_ = slots.AddAll(mapping.member);
  member_uid_ = slots.AddAll(mapping.member_uid);
  for (const std::string& a : mapping.attributes) {
    attributes_.emplace_back(a, slots.Add(a));
  }
}

std::string LdapGroupMapper::Map(
    const LdapEntry& entry, absl::string_view dn_key,
    idsync::v1::RemoteEntitlement* entitlement) const {
  std::string problem;
  auto valid = [&](absl::string_view value, int slot) {
    if (IsValidUtf8(value)) return true;
    if (problem.empty()) {
      problem = absl::StrCat("attribute ", slots_.names()[slot],
                             " is not valid UTF-8");
    }
    return false;
  };
  auto first = [&](const std::vector<int>& which) -> absl::string_view {
    for (int s : which) {
      if (!entry.values[s].empty()) {
        return valid(entry.values[s][0], s) ? entry.values[s][0]
                                            : absl::string_view();
      }
    }
    return {};
  };
  entitlement->set_external_id(std::string(dn_key));
  entitlement->set_type("group");
  entitlement->set_name(std::string(first(name_)));
  entitlement->set_description(std::string(first(description_)));
  for (const auto& [name, slot] : attributes_) {
    const auto& values = entry.values[slot];
    if (values.empty()) continue;
    bool ok = true;
    for (absl::string_view v : values) ok = ok && valid(v, slot);
    if (ok) {
      (*entitlement->mutable_attributes())[name] = absl::StrJoin(values, "\n");
    }
  }
  return problem;
}

absl::StatusOr<absl::Time> ParseGeneralizedTime(absl::string_view text) {
  auto bad = [&]() {
    return absl::InvalidArgumentError(
        absl::StrCat("not a generalized time: '", Excerpt(text), "'"));
  };
  auto number = [&](size_t pos, size_t len, int64_t* out) {
    if (pos + len > text.size()) return false;
    for (size_t i = pos; i < pos + len; ++i) {
      if (!absl::ascii_isdigit(text[i])) return false;
    }
    return absl::SimpleAtoi(text.substr(pos, len), out);
  };
  int64_t year, month, day, hour, minute = 0, second = 0;
  if (!number(0, 4, &year) || !number(4, 2, &month) || !number(6, 2, &day) ||
      !number(8, 2, &hour)) {
    return bad();
  }
  size_t pos = 10;
  if (number(pos, 2, &minute)) {
    pos += 2;
    if (number(pos, 2, &second)) pos += 2;
  }
  if (pos < text.size() && (text[pos] == '.' || text[pos] == ',')) {
    ++pos;
    const size_t start = pos;
    while (pos < text.size() && absl::ascii_isdigit(text[pos])) ++pos;
    if (pos == start) return bad();
  }
  int64_t offset_minutes = 0;
  if (pos < text.size() && text[pos] == 'Z') {
    ++pos;
  } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
    const int sign = text[pos] == '-' ? -1 : 1;
    int64_t oh = 0, om = 0;
    if (!number(pos + 1, 2, &oh)) return bad();
    pos += 3;
    if (number(pos, 2, &om)) pos += 2;
    offset_minutes = sign * (oh * 60 + om);
  } else {
    return bad();  // Local time without a zone is ambiguous.
  }
  if (pos != text.size() || month < 1 || month > 12 || day < 1 || day > 31 ||
      hour > 23 || minute > 59 || second > 60) {
    return bad();
  }
  const absl::CivilSecond civil(year, month, day, hour, minute,
                                std::min<int64_t>(second, 59));
  if (civil.day() != day) return bad();  // e.g. February 30.
  return absl::FromCivil(civil, absl::UTCTimeZone()) -
         absl::Minutes(offset_minutes);
}

std::string FormatGeneralizedTime(absl::Time time) {
  return absl::FormatTime("%Y%m%d%H%M%SZ", time, absl::UTCTimeZone());
}

std::string EncodeSyncToken(absl::Time watermark) {
  return absl::StrCat("ldap1:", FormatGeneralizedTime(watermark));
}

absl::StatusOr<std::optional<absl::Time>> DecodeSyncToken(
    absl::string_view token) {
  if (token.empty()) return std::nullopt;
  if (!absl::StartsWith(token, "ldap1:")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the sync token '", Excerpt(token),
        "' was not written by the ldap connector; run a full sync"));
  }
  auto time = ParseGeneralizedTime(token.substr(6));
  if (!time.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "malformed ldap sync token '", Excerpt(token), "'; run a full sync"));
  }
  return *time;
}

std::optional<absl::Time> NextWatermark(std::optional<absl::Time> newest_seen,
                                        absl::Time walk_start,
                                        absl::Duration overlap,
                                        std::optional<absl::Time> previous) {
  if (!newest_seen.has_value()) return previous;
  const absl::Time start =
      absl::FromUnixSeconds(absl::ToUnixSeconds(walk_start)) - overlap;
  const absl::Time after_newest =
      absl::FromUnixSeconds(absl::ToUnixSeconds(*newest_seen)) +
      absl::Seconds(1);
  absl::Time next = std::min(start, after_newest);
  if (previous.has_value()) next = std::max(next, *previous);
  return next;
}

}  // namespace idsync
