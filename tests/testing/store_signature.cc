#include "tests/testing/store_signature.h"

#include <sodium.h>
#include <sqlite3.h>

#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace idsync::testing {
namespace {

struct Db {
  sqlite3* db = nullptr;
  ~Db() { sqlite3_close_v2(db); }
};

absl::Status Open(const std::string& path, int flags, Db* out) {
  if (sqlite3_open_v2(path.c_str(), &out->db, flags, nullptr) != SQLITE_OK) {
    return absl::InternalError(
        absl::StrCat("open ", path, ": ", sqlite3_errmsg(out->db)));
  }
  sqlite3_busy_timeout(out->db, 10000);
  return absl::OkStatus();
}

// Columns that say nothing about the content.
bool Ignored(const std::string& column) {
  return column == "id" || column == "created_at" || column == "updated_at" ||
         column == "deleted_at" || column == "last_run_id";
}

}  // namespace

absl::StatusOr<StoreSignature> SignStore(const std::string& db_path) {
  Db db;
  if (auto s = Open(db_path, SQLITE_OPEN_READONLY, &db); !s.ok()) return s;
  StoreSignature out;
  {
    sqlite3_stmt* check = nullptr;
    sqlite3_prepare_v2(db.db, "PRAGMA integrity_check", -1, &check, nullptr);
    std::string result;
    if (sqlite3_step(check) == SQLITE_ROW) {
      result = reinterpret_cast<const char*>(sqlite3_column_text(check, 0));
    }
    sqlite3_finalize(check);
    if (result != "ok") {
      return absl::DataLossError(absl::StrCat("integrity_check: ", result));
    }
  }
  const std::map<std::string, std::string> keys = {
      {"identities", "tenant_id, connector_id, external_id"},
      {"accounts", "tenant_id, connector_id, external_id"},
      {"entitlements", "tenant_id, connector_id, external_id"},
      {"grants",
       "tenant_id, connector_id, account_external_id, "
       "entitlement_external_id"},
      {"identity_keys", "tenant_id, connector_id, external_id"},
      {"account_keys", "tenant_id, connector_id, external_id"},
      {"entitlement_keys", "tenant_id, connector_id, external_id"},
      {"grant_keys",
       "tenant_id, connector_id, account_external_id, "
       "entitlement_external_id"}};
  for (const auto& [table, key] : keys) {
    sqlite3_stmt* stmt = nullptr;
    // Record tables mark deletion with a time, key tables with a flag.
    const bool key_table = absl::EndsWith(table, "_keys");
    const std::string sql = absl::StrCat(
        "SELECT *", key_table ? "" : ", deleted_at IS NOT NULL AS is_deleted",
        " FROM ", table, " ORDER BY ", key);
    if (sqlite3_prepare_v2(db.db, sql.c_str(), -1, &stmt, nullptr) !=
        SQLITE_OK) {
      return absl::InternalError(sqlite3_errmsg(db.db));
    }
    crypto_generichash_state state;
    crypto_generichash_init(&state, nullptr, 0, 32);
    TableSignature sig;
    const int columns = sqlite3_column_count(stmt);
    while (sqlite3_step(stmt) == SQLITE_ROW) {
      ++sig.rows;
      std::vector<std::string> values;
      for (int c = 0; c < columns; ++c) {
        const std::string name = sqlite3_column_name(stmt, c);
        if (Ignored(name)) continue;
        const unsigned char* text = sqlite3_column_text(stmt, c);
        values.push_back(absl::StrCat(
            name, "=",
            text == nullptr
                ? "NULL"
                : std::string(reinterpret_cast<const char*>(text))));
        if ((name == "deleted" || name == "is_deleted") &&
            sqlite3_column_int(stmt, c) == 1) {
          ++sig.deleted;
        }
      }
      const std::string row = absl::StrJoin(values, "\x1f") + "\x1e";
      crypto_generichash_update(
          &state, reinterpret_cast<const unsigned char*>(row.data()),
          row.size());
    }
    sqlite3_finalize(stmt);
    unsigned char digest[32];
    crypto_generichash_final(&state, digest, sizeof(digest));
    sig.digest = absl::BytesToHexString(absl::string_view(
        reinterpret_cast<const char*>(digest), sizeof(digest)));
    out[table] = sig;
  }
  return out;
}

std::string DebugString(const StoreSignature& signature) {
  std::string out;
  for (const auto& [table, sig] : signature) {
    absl::StrAppend(&out, table, ": ", sig.rows, " rows, ", sig.deleted,
                    " deleted, ", sig.digest.substr(0, 16), "\n");
  }
  return out;
}

absl::StatusOr<int64_t> QueryInt(const std::string& db_path,
                                 const std::string& sql) {
  Db db;
  if (auto s = Open(db_path, SQLITE_OPEN_READONLY, &db); !s.ok()) return s;
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db.db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    return absl::InvalidArgumentError(sqlite3_errmsg(db.db));
  }
  int64_t value = 0;
  const bool row = sqlite3_step(stmt) == SQLITE_ROW;
  if (row) value = sqlite3_column_int64(stmt, 0);
  sqlite3_finalize(stmt);
  if (!row) return absl::NotFoundError(absl::StrCat("no row: ", sql));
  return value;
}

absl::Status ExecSql(const std::string& db_path, const std::string& sql) {
  Db db;
  if (auto s = Open(db_path, SQLITE_OPEN_READWRITE, &db); !s.ok()) return s;
  char* err = nullptr;
  if (sqlite3_exec(db.db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string message = err != nullptr ? err : "?";
    sqlite3_free(err);
    return absl::InternalError(message);
  }
  return absl::OkStatus();
}

}  // namespace idsync::testing
