// Who owns a running sync: "pid:start_time" of a process on this host. The
// store is a local SQLite file (WAL needs one host), so a run whose owner
// process is gone was interrupted and may be resumed at once, without waiting
// for a lease to expire.
#ifndef IDSYNC_DISPATCHER_PROCESS_IDENTITY_H_
#define IDSYNC_DISPATCHER_PROCESS_IDENTITY_H_

#include <string>

#include "absl/strings/string_view.h"

namespace idsync {

std::string CurrentProcessIdentity();

// False when the process named by `identity` ("pid:start", possibly followed
// by ":suffix") no longer exists, or its pid was reused by another process.
// Malformed identities count as gone.
bool IsProcessAlive(absl::string_view identity);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_PROCESS_IDENTITY_H_
