// The "ldap" connector's configuration: parsed and checked once, when the
// connector is created. See docs/connectors/ldap.md for the reference.
// Plain data; thread-compatible.
#ifndef IDSYNC_CONNECTOR_LDAP_LDAP_OPTIONS_H_
#define IDSYNC_CONNECTOR_LDAP_LDAP_OPTIONS_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "google/protobuf/struct.pb.h"

namespace idsync {

// Where each identity/account field comes from. A list names attributes
// tried in order: the first one the entry has wins.
struct LdapUserMapping {
  std::vector<std::string> external_id;  // The identity's id.
  std::vector<std::string> username;
  std::vector<std::string> email;
  std::vector<std::string> first_name;
  std::vector<std::string> last_name;
  std::vector<std::string> display_name;
  std::vector<std::string> department;
  std::vector<std::string> job_title;
  // DN-valued; becomes the manager's identity id.
  std::vector<std::string> manager;
  // userAccountControl is decoded (disabled bit -> "disabled"), any other
  // attribute is copied; no attribute or no value gives "active".
  std::vector<std::string> status;
  // Copied to identity.attributes under their configured names.
  std::vector<std::string> attributes;
};

struct LdapGroupMapping {
  std::vector<std::string> name;
  std::vector<std::string> description;
  std::vector<std::string> member;      // DN-valued: member, uniqueMember.
  std::vector<std::string> member_uid;  // posixGroup: user names (memberUid).
  std::vector<std::string> attributes;  // Copied to entitlement.attributes.
};

struct LdapOptions {
  std::string preset;  // "inetorgperson" or "active_directory".
  std::string url;     // ldap://host[:port] or ldaps://host[:port]
  bool start_tls = false;
  std::string ca_file;  // PEM bundle; empty: the system's trust store.
  std::string bind_dn;  // Empty: anonymous bind.
  std::string bind_password_file;
  std::string user_base;
  std::string user_filter;
  std::string group_base;  // Empty: groups are not synced.
  std::string group_filter;
  LdapUserMapping user;
  LdapGroupMapping group;
  int page_size = 1000;
  int timeout_seconds = 60;
  int incremental_overlap_seconds = 60;
};

// Parses and checks the connector config. Errors are kInvalidArgument and
// name the key; values are never echoed.
absl::StatusOr<LdapOptions> ParseLdapOptions(
    const google::protobuf::Struct& config);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_LDAP_LDAP_OPTIONS_H_
