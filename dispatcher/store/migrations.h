// The store's schema as numbered migrations, applied in order at start-up.
// PRAGMA user_version holds how many have been applied. Never edit a
// migration that has shipped; add a new one.
#ifndef IDSYNC_DISPATCHER_STORE_MIGRATIONS_H_
#define IDSYNC_DISPATCHER_STORE_MIGRATIONS_H_

#include <sqlite3.h>

#include "absl/status/status.h"

namespace idsync {

// Applies the migrations `db` lacks, each in its own transaction. Fails if
// the file was written by a newer idsync.
// `up_to` stops after that many migrations (tests of one migration); -1 for
// all.
absl::Status Migrate(sqlite3* db, int64_t up_to = -1);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_MIGRATIONS_H_
