// StoreSignature: what a store holds, independent of when and by which run
// it was written: per record table, the row count and a digest of every row
// ordered by key (all columns but ids, timestamps and run ids; deletion as a
// flag). Two stores with equal signatures hold the same records.
#ifndef IDSYNC_TESTS_TESTING_STORE_SIGNATURE_H_
#define IDSYNC_TESTS_TESTING_STORE_SIGNATURE_H_

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace idsync::testing {

struct TableSignature {
  int64_t rows = 0;
  int64_t deleted = 0;
  std::string digest;  // Hex.
  bool operator==(const TableSignature& o) const {
    return rows == o.rows && deleted == o.deleted && digest == o.digest;
  }
};

// Table name -> signature, for identities, accounts, entitlements, grants.
using StoreSignature = std::map<std::string, TableSignature>;

// Reads `db_path` (read-only). Also runs PRAGMA integrity_check and fails if
// it is not "ok".
absl::StatusOr<StoreSignature> SignStore(const std::string& db_path);

std::string DebugString(const StoreSignature& signature);

// Runs one SQL query returning a single integer (e.g. a count).
absl::StatusOr<int64_t> QueryInt(const std::string& db_path,
                                 const std::string& sql);
// Runs SQL statements that return nothing.
absl::Status ExecSql(const std::string& db_path, const std::string& sql);

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_TESTING_STORE_SIGNATURE_H_
