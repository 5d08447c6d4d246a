// Fuzzes token parsing: the input is an Authorization header for
// ControlPlaneService::Authenticate (REST and gRPC both call it), checked
// against a real SqliteStore in shared-cache memory (a "file:...?mode=memory"
// URI: nothing touches the disk) that holds one token of each kind. The same
// bytes go to the other token parsers: SigningKey (whsec_ secrets),
// IsValidTokenText (agent tokens) and ConstantTimeEquals.
//
// The Idempotency-Key check is inline in RestServer's request handler and
// ControlPlaneGrpc::Write (no function of its own), so it is not reached here.
//
// Invariants checked: only a header carrying an unrevoked service token
// authenticates, as that token's caller; SigningKey round-trips;
// ConstantTimeEquals is equality.
#include <sqlite3.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "agents/token_file.h"
#include "connector/clock.h"
#include "connector/registry.h"
#include "dispatcher/api/control_plane_service.h"
#include "dispatcher/metrics.h"
#include "dispatcher/run_progress.h"
#include "dispatcher/secrets.h"
#include "dispatcher/store/sqlite_store.h"
#include "dispatcher/sync_workers.h"
#include "tests/fuzz/fuzz_util.h"

namespace idsync {
namespace {

using fuzz::Check;

struct Known {
  std::string secret;
  const char* kind;
  const char* role;
  bool revoked;
  int64_t id = 0;
};

struct World {
  std::unique_ptr<SqliteStore> store;
  ConnectorRegistry registry;
  std::unique_ptr<SecretBox> secrets;
  RunProgress progress;
  Metrics metrics;
  std::unique_ptr<SyncWorkers> workers;
  std::unique_ptr<ControlPlaneService> service;
  std::vector<Known> tokens;
};

World& TheWorld() {
  static World* w = [] {
    // URI file names, for the shared in-memory database; before any other
    // SQLite call in this process.
    Check(sqlite3_config(SQLITE_CONFIG_URI, 1) == SQLITE_OK,
          "SQLite URI names are unavailable");
    auto* w = new World;
    StoreOptions options;
    options.path = "file:idsync_api_token_fuzz?mode=memory&cache=shared";
    auto store = SqliteStore::Open(options);
    Check(store.ok(), "the in-memory store did not open");
    w->store = *std::move(store);
    auto box = SecretBox::FromKey(std::string(32, 'k'));
    Check(box.ok(), "SecretBox::FromKey failed");
    w->secrets = std::make_unique<SecretBox>(*std::move(box));
    SyncWorkers::Options worker_options;
    worker_options.max_concurrent = 1;
    w->workers = std::make_unique<SyncWorkers>(
        *w->store, w->registry, *w->secrets, Clock::Real(), w->progress,
        w->metrics, worker_options);
    w->service = std::make_unique<ControlPlaneService>(
        *w->store, w->registry, *w->secrets, *w->workers);
    const std::string pad(40, 'Q');
    w->tokens = {
        {absl::StrCat(kServiceTokenPrefix, "admin", pad), "service", "admin",
         false},
        {absl::StrCat(kServiceTokenPrefix, "audit", pad), "service", "auditor",
         false},
        {absl::StrCat(kServiceTokenPrefix, "revkd", pad), "service", "admin",
         true},
        {absl::StrCat(kAgentTokenPrefix, "agent", pad), "agent", "agent",
         false},
        {absl::StrCat(kRegistrationTokenPrefix, "regis", pad), "registration",
         "agent", false},
    };
    auto tenant = w->store->EnsureTenant("fuzz");
    Check(tenant.ok(), "EnsureTenant failed");
    for (Known& k : w->tokens) {
      Check(w->store
                ->Write([&](WriteTxn& txn) -> absl::Status {
                  TokenRow row;
                  row.tenant_id = *tenant;
                  row.name = k.secret.substr(11, 5);
                  row.kind = k.kind;
                  row.role = k.role;
                  row.prefix = k.secret.substr(0, 15);
                  auto id = txn.InsertToken(row, TokenHash(k.secret));
                  if (!id.ok()) return id.status();
                  k.id = *id;
                  return k.revoked ? txn.RevokeToken(*tenant, k.id)
                                   : absl::OkStatus();
                })
                .ok(),
            "inserting a token failed");
    }
    return w;
  }();
  return *w;
}

void FuzzAuthorization(absl::string_view header) {
  World& w = TheWorld();
  absl::StatusOr<Caller> caller =
      w.service->Authenticate(header, "fuzz-request");
  if (!caller.ok()) {
    Check(absl::IsUnauthenticated(caller.status()) ||
              absl::IsPermissionDenied(caller.status()),
          "Authenticate failed with neither 401 nor 403");
    return;
  }
  bool found = false;
  for (const Known& k : w.tokens) {
    if (k.id != caller->token_id) continue;
    found = true;
    Check(std::string(k.kind) == "service" && !k.revoked,
          "a revoked or non-service token authenticated");
    Check(absl::StrContains(header, k.secret),
          "a header authenticated as a token it does not carry");
    Check(caller->role == k.role, "the caller got another token's role");
  }
  Check(found, "Authenticate returned an unknown token");
}

void FuzzSecrets(absl::string_view bytes) {
  absl::StatusOr<std::string> key = SigningKey(bytes);
  if (key.ok()) {
    Check(key->size() >= 16, "a signing key shorter than 16 bytes");
    absl::StatusOr<std::string> again =
        SigningKey(absl::StrCat("whsec_", absl::Base64Escape(*key)));
    Check(again.ok() && *again == *key, "a signing key does not round-trip");
  }
  if (IsValidTokenText(bytes)) {
    for (char c : bytes) Check(c > 0x20 && c < 0x7f, "a token byte slipped");
  }
  const absl::string_view a = bytes.substr(0, bytes.size() / 2);
  const absl::string_view b = bytes.substr(bytes.size() / 2);
  Check(ConstantTimeEquals(a, b) == (a == b), "ConstantTimeEquals != ==");
  Check(ConstantTimeEquals(a, a), "ConstantTimeEquals(a, a) is false");
}

}  // namespace
}  // namespace idsync

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const absl::string_view bytes(reinterpret_cast<const char*>(data), size);
  idsync::FuzzAuthorization(bytes);
  idsync::FuzzSecrets(bytes);
  return 0;
}
