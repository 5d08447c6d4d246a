// The "csv" connector: an RFC 4180 HR feed, one identity per row.
//
// Config (JSON object):
//   path             required; the file to read
//   mapping          optional {"Header": "field"}; field is one of
//                    external_id, email, first_name, last_name, display_name,
//                    department, job_title, manager_external_id, status,
//                    "attributes.NAME", or "" to drop the column. Headers not
//                    mapped use built-in aliases (employee_id -> external_id,
//                    ...); anything else goes to attributes under its header.
//   delimiter        optional, one character (default ",")
//   max_field_bytes  optional, default 65536: a longer field rejects the row
//   max_record_bytes optional, default 16 MiB: a longer record fails the run
//
// Resumable: each chunk's resume token is the byte offset of the record
// boundary after it, plus the file's size and mtime; a token for a file that
// has since changed is refused with kFailedPrecondition.
#ifndef IDSYNC_CONNECTOR_CSV_CSV_CONNECTOR_H_
#define IDSYNC_CONNECTOR_CSV_CSV_CONNECTOR_H_

#include <memory>

#include "absl/status/statusor.h"
#include "connector/registry.h"

namespace idsync {

absl::StatusOr<std::unique_ptr<Connector>> CreateCsvConnector(
    const ConnectorSpec& spec);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_CSV_CSV_CONNECTOR_H_
