// The "ldap" connector: users of an LDAP directory (OpenLDAP, Active
// Directory) become identities and accounts, groups become entitlements,
// memberships become grants. Reference: docs/connectors/ldap.md.
//
// Reads with paged results (RFC 2696) and streams entries into chunks as they
// arrive, so memory does not grow with the directory. Does not resume inside
// a walk (a paging cookie dies with its connection): every chunk carries an
// empty resume token, so a resumed run walks again from the start and the
// engine treats records its earlier session applied as re-reads.
// Incremental runs read entries with modifyTimestamp >= the sync token.
//
// The bind password comes from auth_config {"password": ...} (the request's,
// else the one the connector was created with), or from the file named by
// config "bind_password_file"; it never appears in an error.
#ifndef IDSYNC_CONNECTOR_LDAP_LDAP_CONNECTOR_H_
#define IDSYNC_CONNECTOR_LDAP_LDAP_CONNECTOR_H_

#include <memory>

#include "absl/status/statusor.h"
#include "connector/registry.h"

namespace idsync {

absl::StatusOr<std::unique_ptr<Connector>> CreateLdapConnector(
    const ConnectorSpec& spec);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_LDAP_LDAP_CONNECTOR_H_
