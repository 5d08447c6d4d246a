// Turning directory entries into records, without a server: DN
// normalisation, attribute slots, the user and group mappers, generalized
// time and the incremental watermark. Everything here is pure and
// thread-compatible, so it is unit-tested on its own.
#ifndef IDSYNC_CONNECTOR_LDAP_LDAP_MAPPING_H_
#define IDSYNC_CONNECTOR_LDAP_LDAP_MAPPING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "connector/ldap/ldap_options.h"
#include "idsync/v1/connector.pb.h"

namespace idsync {

// The key of a DN: attribute types and ASCII letters of values lower-cased,
// insignificant spaces dropped, escaping made canonical (RFC 4514), so two
// spellings of one entry's DN give the same key. False if `dn` is not a DN.
bool NormalizeDn(absl::string_view dn, std::string* out);

// The value of the DN's first RDN when it is a single `attribute=value`
// with that attribute type (case-insensitive), unescaped; nullopt otherwise.
std::optional<std::string> RdnValue(absl::string_view dn,
                                    absl::string_view attribute);

// The attributes a search asks for, each with a slot number. Names are
// matched case-insensitively; an attribute named twice gets one slot.
class AttributeSlots {
 public:
  int Add(absl::string_view name);
  std::vector<int> AddAll(const std::vector<std::string>& names);
  // The slot of `name` (any case), or -1.
  int Find(absl::string_view name) const;
  const std::vector<std::string>& names() const { return names_; }
  size_t size() const { return names_.size(); }

 private:
  std::vector<std::string> names_;
  absl::flat_hash_map<std::string, int> index_;  // Lower-case name -> slot.
};

// One entry as read: its DN and the values of each slot. The views point
// into the message being read and live as long as it.
struct LdapEntry {
  absl::string_view dn;
  std::vector<std::vector<absl::string_view>> values;  // By slot.
  // Slots whose values came back in ranges (Active Directory's MaxValRange),
  // with the first index not yet read.
  std::vector<std::pair<int, int64_t>> ranged;

  void Reset(size_t slots);
};

// "member;range=0-1499" -> base "member", low 0, high 1499 ('*' -> -1).
// False when the description has no range option.
bool ParseRange(absl::string_view description, absl::string_view* base,
                int64_t* low, int64_t* high);

// Users -> identities and accounts.
class LdapUserMapper {
 public:
  // Registers the attributes it reads in `slots`, which must outlive it.
  LdapUserMapper(const LdapUserMapping& mapping, AttributeSlots& slots);

  // Fills both records from `entry` (account external_id = `dn_key`). The
  // manager is left to the caller (see ManagerDn). Returns "" or why the
  // identity cannot be used (the account is still filled).
  std::string Map(const LdapEntry& entry, absl::string_view dn_key,
                  idsync::v1::RemoteIdentity* identity,
                  idsync::v1::RemoteAccount* account) const;

  // The manager's DN, or empty.
  absl::string_view ManagerDn(const LdapEntry& entry) const;
  // The identity id the entry yields (first external_id attribute present).
  absl::string_view IdentityId(const LdapEntry& entry) const;
  // The attribute a manager DN's RDN names the identity id by, when the id
  // has exactly one source attribute; empty otherwise.
  const std::string& single_id_attribute() const { return single_id_; }

 private:
  struct Field {
    std::vector<int> slots;
    std::string* (idsync::v1::RemoteIdentity::*identity)() = nullptr;
  };
  const AttributeSlots& slots_;
  std::vector<int> id_, username_, email_, display_name_, manager_, status_;
  std::vector<Field> fields_;  // Plain identity fields.
  std::vector<std::pair<std::string, int>> attributes_;  // Name, slot.
  bool status_is_uac_ = false;
  std::string single_id_;
};

// Groups -> entitlements; the caller turns members into grants.
class LdapGroupMapper {
 public:
  LdapGroupMapper(const LdapGroupMapping& mapping, AttributeSlots& slots);

  // Fills the entitlement (external_id = `dn_key`, type "group"). Returns ""
  // or why it cannot be used.
  std::string Map(const LdapEntry& entry, absl::string_view dn_key,
                  idsync::v1::RemoteEntitlement* entitlement) const;
  const std::vector<int>& member_slots() const { return member_; }
  const std::vector<int>& member_uid_slots() const { return member_uid_; }

 private:
  const AttributeSlots& slots_;
  std::vector<int> name_, description_, member_, member_uid_;
  std::vector<std::pair<std::string, int>> attributes_;
};

// Generalized time (RFC 4517): "YYYYMMDDHHMMSS[.fraction](Z|+hhmm|-hhmm)",
// minutes and seconds optional. Fractions are dropped (whole seconds).
absl::StatusOr<absl::Time> ParseGeneralizedTime(absl::string_view text);
std::string FormatGeneralizedTime(absl::Time time);

// The incremental sync token: "ldap1:" + generalized time. An empty token
// decodes to nullopt (sync everything).
std::string EncodeSyncToken(absl::Time watermark);
absl::StatusOr<std::optional<absl::Time>> DecodeSyncToken(
    absl::string_view token);

// The watermark for the next incremental run: every change stamped at or
// after it must be read again. Changes the walk may have missed are those
// made while it ran, so it never passes the walk's start (less `overlap`
// for clock skew between this host and the server); changes up to the
// newest stamp seen were all read, so it need not go below that stamp + 1 s.
// Never moves backwards from `previous`; nullopt when nothing is known.
std::optional<absl::Time> NextWatermark(std::optional<absl::Time> newest_seen,
                                        absl::Time walk_start,
                                        absl::Duration overlap,
                                        std::optional<absl::Time> previous);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_LDAP_LDAP_MAPPING_H_
