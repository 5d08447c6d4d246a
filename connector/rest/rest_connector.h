// The "rest" connector: syncs from a JSON API by configuration alone. Each
// configured stream is walked page by page (page, offset, cursor or Link
// paging) through the shared HTTP client and auth modes (connector/http/),
// and its records are mapped by JSON pointers. See docs/connectors/rest.md.
//
// Resume tokens name the stream, the page and the records already sent from
// it, so an interrupted run re-reads at most one page. Incremental runs send
// the last run's watermark (the largest watermark field seen) as a query
// parameter. Any failed page fails the run: a partial read never deletes.
#ifndef IDSYNC_CONNECTOR_REST_REST_CONNECTOR_H_
#define IDSYNC_CONNECTOR_REST_REST_CONNECTOR_H_

#include <memory>

#include "absl/status/statusor.h"
#include "connector/registry.h"

namespace idsync {

absl::StatusOr<std::unique_ptr<Connector>> CreateRestConnector(
    const ConnectorSpec& spec);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_REST_REST_CONNECTOR_H_
