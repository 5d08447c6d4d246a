#include "connector/csv/csv_connector.h"
#include "connector/ldap/ldap_connector.h"
#include "connector/registry.h"
#include "connector/remote/remote_connector.h"
#include "connector/rest/rest_connector.h"
#include "connector/scim/scim_connector.h"

namespace idsync {

void RegisterBuiltinConnectors(ConnectorRegistry& registry) {
  // Types are distinct constants, so registration cannot fail.
  (void)registry.Register("csv", CreateCsvConnector);
  (void)registry.Register("ldap", CreateLdapConnector);
  (void)registry.Register("remote", CreateRemoteConnector);
  (void)registry.Register("rest", CreateRestConnector);
  (void)registry.Register("scim", CreateScimConnector);
}

}  // namespace idsync
