// SqliteStore: the embedded default Store, one SQLite file in WAL mode.
// Store-level calls share one connection behind a mutex; each RunWriter opens
// its own connection so a long run never blocks readers.
#ifndef IDSYNC_DISPATCHER_STORE_SQLITE_STORE_H_
#define IDSYNC_DISPATCHER_STORE_SQLITE_STORE_H_

#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "dispatcher/store/sqlite_util.h"
#include "dispatcher/store/store.h"

namespace idsync {

struct StoreOptions {
  std::string path;  // Created (with its schema) if missing.
};

class SqliteStore final : public Store {
 public:
  // Opens the file and applies pending migrations.
  static absl::StatusOr<std::unique_ptr<SqliteStore>> Open(
      const StoreOptions& options);

  absl::StatusOr<int64_t> EnsureTenant(absl::string_view name) override;
  absl::StatusOr<ConnectorRow> UpsertConnector(
      const ConnectorRow& connector) override;
  absl::StatusOr<ConnectorRow> GetConnector(int64_t tenant_id,
                                            int64_t id) override;
  absl::StatusOr<RunRow> CreateRun(const RunRow& run) override;
  absl::StatusOr<RunRow> GetRun(int64_t tenant_id, int64_t id) override;
  absl::StatusOr<std::optional<RunRow>> ActiveRun(
      int64_t tenant_id, int64_t connector_id) override;
  absl::Status ClaimRun(int64_t tenant_id, int64_t run_id,
                        absl::string_view expected_owner,
                        absl::string_view new_owner) override;
  absl::StatusOr<std::vector<SeenDelta>> LoadSeen(int64_t run_id) override;
  absl::StatusOr<std::vector<idsync::v1::Reject>> ListRejects(
      int64_t tenant_id, int64_t run_id, int limit) override;
  absl::Status FinishRun(const RunRow& run) override;
  absl::StatusOr<std::unique_ptr<RunWriter>> OpenRunWriter(
      const RunRow& run) override;

 private:
  SqliteStore(std::string path, SqliteDb db)
      : path_(std::move(path)), db_(std::move(db)) {}
  absl::StatusOr<std::optional<RunRow>> QueryRun(absl::string_view where,
                                                 int64_t a, int64_t b)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Constant after construction.
  const std::string path_;

  absl::Mutex mu_;
  SqliteDb db_ ABSL_GUARDED_BY(mu_);
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_SQLITE_STORE_H_
