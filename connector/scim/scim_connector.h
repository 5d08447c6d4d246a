// The "scim" connector: reads a SCIM 2.0 service provider (RFC 7643/7644).
// /Users become identities and accounts (the enterprise extension's
// employeeNumber, department and manager mapped), /Groups become
// entitlements and their members grants. Pages are walked with startIndex
// and count until an empty page, so servers that return fewer resources than
// asked, or a totalResults that changes during the walk, lose nothing.
// Incremental runs filter on meta.lastModified when /ServiceProviderConfig
// says filtering is supported, else read everything. Requests go through
// connector/http/ (retries, Retry-After, auth modes from auth_config).
// See docs/connectors/scim.md.
#ifndef IDSYNC_CONNECTOR_SCIM_SCIM_CONNECTOR_H_
#define IDSYNC_CONNECTOR_SCIM_SCIM_CONNECTOR_H_

#include <memory>

#include "absl/status/statusor.h"
#include "connector/registry.h"

namespace idsync {

absl::StatusOr<std::unique_ptr<Connector>> CreateScimConnector(
    const ConnectorSpec& spec);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_SCIM_SCIM_CONNECTOR_H_
