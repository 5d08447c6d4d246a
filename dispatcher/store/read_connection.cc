#include "dispatcher/store/read_connection.h"

#include "connector/status_macros.h"

namespace idsync {
namespace {

constexpr size_t kMaxStatements = 128;
constexpr size_t kMaxTotals = 1024;

}  // namespace

absl::StatusOr<std::unique_ptr<ReadConnection>> ReadConnection::Open(
    const std::string& path) {
  IDSYNC_ASSIGN_OR_RETURN(SqliteDb db, OpenSqlite(path, /*read_only=*/true));
  return std::unique_ptr<ReadConnection>(new ReadConnection(std::move(db)));
}

absl::StatusOr<Statement*> ReadConnection::Prepare(const std::string& sql) {
  auto it = statements_.find(sql);
  if (it == statements_.end()) {
    if (statements_.size() >= kMaxStatements) statements_.clear();
    IDSYNC_ASSIGN_OR_RETURN(Statement s, Statement::Prepare(db_.get(), sql));
    it = statements_.emplace(sql, std::make_unique<Statement>(std::move(s)))
             .first;
  }
  it->second->Reset();
  return it->second.get();
}

absl::Status ReadConnection::Refresh() {
  IDSYNC_ASSIGN_OR_RETURN(Statement * version, Prepare("PRAGMA data_version"));
  IDSYNC_ASSIGN_OR_RETURN(bool row, version->Step());
  const int64_t now = row ? version->Int(0) : -1;
  version->Reset();
  if (now != data_version_) {
    totals_.clear();
    data_version_ = now;
  }
  return absl::OkStatus();
}

absl::StatusOr<std::optional<int64_t>> ReadConnection::CachedTotal(
    const std::string& key) {
  IDSYNC_RETURN_IF_ERROR(Refresh());
  auto it = totals_.find(key);
  if (it == totals_.end()) return std::nullopt;
  return it->second;
}

void ReadConnection::StoreTotal(const std::string& key, int64_t total) {
  if (totals_.size() >= kMaxTotals) totals_.clear();
  totals_[key] = total;
}

}  // namespace idsync
