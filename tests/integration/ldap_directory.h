// A generated directory for the ldap tests: users (inetOrgPerson, one in ten
// in a sub-OU, each with a manager), groups of the three kinds the connector
// reads (groupOfNames, groupOfUniqueNames, posixGroup) with memberships up
// to 5,000, one nested group, and a service account to bind as. Every entry
// carries its own modifyTimestamp (slapadd keeps it), all in the past and
// distinct, so incremental tests see exactly what they change.
#ifndef IDSYNC_TESTS_INTEGRATION_LDAP_DIRECTORY_H_
#define IDSYNC_TESTS_INTEGRATION_LDAP_DIRECTORY_H_

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

namespace idsync::testing {

inline constexpr char kServiceDn[] = "cn=sync,dc=example,dc=com";
inline constexpr char kServicePassword[] = "s3rvice-Pa55";
inline constexpr char kPeopleBase[] = "ou=people,dc=example,dc=com";
inline constexpr char kGroupBase[] = "ou=groups,dc=example,dc=com";

struct LdapDirectory {
  int users = 0;
  int groups = 0;
  std::string ldif;
  int64_t grants = 0;  // Distinct user memberships (nesting excluded).

  static std::string UserDn(int i) {
    return i % 10 == 9
               ? absl::StrCat("uid=user", i, ",ou=contractors,", kPeopleBase)
               : absl::StrCat("uid=user", i, ",", kPeopleBase);
  }
  static std::string GroupDn(int g) {
    return absl::StrCat("cn=group", g, ",", kGroupBase);
  }
  // Members of group g: `size` consecutive users from an offset.
  static int GroupSize(int g) {
    if (g == 0) return 5000;
    if (g == 1) return 4000;
    if (g == 2) return 3000;
    return 1 + (g * 37) % 150;
  }
};

inline std::string Timestamp(absl::Time t) {
  return absl::FormatTime("%Y%m%d%H%M%SZ", t, absl::UTCTimeZone());
}

// `service_hash` is the service account's userPassword (slappasswd).
inline LdapDirectory GenerateDirectory(int users, int groups,
                                       const std::string& service_hash) {
  LdapDirectory d;
  d.users = users;
  d.groups = groups;
  std::string& out = d.ldif;
  out.reserve(static_cast<size_t>(users) * 420 + 6000 * 60);
  absl::StrAppend(&out,
                  "dn: dc=example,dc=com\nobjectClass: dcObject\n"
                  "objectClass: organization\no: Example\ndc: example\n\n"
                  "dn: ",
                  kPeopleBase,
                  "\nobjectClass: organizationalUnit\nou: people\n\n"
                  "dn: ou=contractors,",
                  kPeopleBase,
                  "\nobjectClass: organizationalUnit\nou: contractors\n\n"
                  "dn: ",
                  kGroupBase,
                  "\nobjectClass: organizationalUnit\nou: groups\n\n"
                  "dn: ",
                  kServiceDn,
                  "\nobjectClass: applicationProcess\n"
                  "objectClass: simpleSecurityObject\ncn: sync\nuserPassword: ",
                  service_hash, "\n\n");
  const absl::Time base = absl::FromUnixSeconds(1672531200);  // 2023-01-01
  for (int i = 0; i < users; ++i) {
    const std::string ts = Timestamp(base + absl::Seconds(i));
    absl::StrAppend(&out, "dn: ", LdapDirectory::UserDn(i),
                    "\nobjectClass: inetOrgPerson\nuid: user", i, "\ncn: First",
                    i, " Last", i, "\ngivenName: First", i, "\nsn: Last", i,
                    "\nmail: user", i, "@example.com\ntitle: Engineer ", i % 7,
                    "\ndepartmentNumber: D", i % 20, "\nemployeeNumber: E",
                    100000 + i, "\n");
    if (i >= 8) {
      absl::StrAppend(&out, "manager: ", LdapDirectory::UserDn(i / 8), "\n");
    }
    absl::StrAppend(&out, "createTimestamp: ", ts, "\nmodifyTimestamp: ", ts,
                    "\n\n");
  }
  for (int g = 0; g < groups; ++g) {
    const int size = std::min(LdapDirectory::GroupSize(g), users);
    const int offset = (g * 131) % users;
    const std::string ts =
        Timestamp(base + absl::Hours(24 * 180) + absl::Seconds(g));
    absl::StrAppend(&out, "dn: ", LdapDirectory::GroupDn(g), "\ncn: group", g,
                    "\ndescription: Group number ", g, "\n");
    const int kind = g % 3;
    if (kind == 0) absl::StrAppend(&out, "objectClass: groupOfNames\n");
    if (kind == 1) absl::StrAppend(&out, "objectClass: groupOfUniqueNames\n");
    if (kind == 2) {
      absl::StrAppend(&out, "objectClass: posixGroup\ngidNumber: ", 10000 + g,
                      "\n");
    }
    for (int m = 0; m < size; ++m) {
      const int u = (offset + m) % users;
      if (kind == 0) {
        absl::StrAppend(&out, "member: ", LdapDirectory::UserDn(u), "\n");
      } else if (kind == 1) {
        absl::StrAppend(&out, "uniqueMember: ", LdapDirectory::UserDn(u), "\n");
      } else {
        absl::StrAppend(&out, "memberUid: user", u, "\n");
      }
    }
    d.grants += size;
    // Group 3 also holds group 4: nesting, not a grant.
    if (g == 3 && groups > 4) {
      absl::StrAppend(&out, "member: ", LdapDirectory::GroupDn(4), "\n");
    }
    absl::StrAppend(&out, "createTimestamp: ", ts, "\nmodifyTimestamp: ", ts,
                    "\n\n");
  }
  return d;
}

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_INTEGRATION_LDAP_DIRECTORY_H_
