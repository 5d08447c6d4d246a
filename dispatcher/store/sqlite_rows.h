// Mapping between SQLite rows and the store's row types, shared by the
// sync and the API halves of SqliteStore. Internal to dispatcher/store.
#ifndef IDSYNC_DISPATCHER_STORE_SQLITE_ROWS_H_
#define IDSYNC_DISPATCHER_STORE_SQLITE_ROWS_H_

#include <cstdint>
#include <optional>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "dispatcher/store/sqlite_util.h"
#include "dispatcher/store/store.h"

namespace idsync {

// Times are stored as unix microseconds.
int64_t Micros(absl::Time t);
absl::Time FromMicros(int64_t us);
// Binds Micros(*t), or NULL when there is no time.
void BindTime(Statement& s, int index, const std::optional<absl::Time>& t);

RunStatus ParseStatus(absl::string_view s);
absl::string_view PhaseName(RunPhase phase);
RunPhase ParsePhase(absl::string_view s);

// SELECT kRunColumns FROM sync_runs ... -> ReadRun.
extern const char kRunColumns[];
RunRow ReadRun(const Statement& s);
// kUpdateRunSql bound by BindRunUpdate writes a run's mutable columns.
extern const char kUpdateRunSql[];
void BindRunUpdate(Statement& s, const RunRow& run);
// Inserts a running run; returns its id. The one-active-run index makes it
// fail with kFailedPrecondition when the connector already has one.
absl::StatusOr<int64_t> InsertRunRow(sqlite3* db, const RunRow& run);

// SELECT kConnectorColumns FROM connectors ... -> ReadConnector.
extern const char kConnectorColumns[];
ConnectorRow ReadConnector(const Statement& s);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_SQLITE_ROWS_H_
