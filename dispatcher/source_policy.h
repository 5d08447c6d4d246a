// SourcePolicy: what the connectors a tenant admin configures through the
// API may reach on the dispatcher's host. A tenant admin is not the host's
// operator, so:
//  - files only in the tenant's own import directory, IMPORT_DIR/<tenant>
//    (--import-dir; none without it), and no secret files at all (secrets
//    come from auth_config);
//  - connections only to public addresses, plus the networks the operator
//    lists for the tenant (--tenant-source-cidrs), or anywhere with
//    --allow-private-sources.
// Thread-safe.
#ifndef IDSYNC_DISPATCHER_SOURCE_POLICY_H_
#define IDSYNC_DISPATCHER_SOURCE_POLICY_H_

#include <map>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "connector/registry.h"
#include "dispatcher/store/store.h"

namespace idsync {

struct SourcePolicyOptions {
  std::string import_dir;  // An existing directory; "": no files.
  bool allow_private_sources = false;
  // Networks each tenant's sources may reach besides public addresses, by
  // tenant name.
  std::map<std::string, std::vector<IpNetwork>> tenant_networks;
};

class SourcePolicy {
 public:
  // kInvalidArgument when the import directory is not an existing directory.
  // `store` (tenant names) must outlive the policy.
  static absl::StatusOr<std::unique_ptr<SourcePolicy>> Create(
      Store& store, SourcePolicyOptions options);

  // Parses "TENANT=CIDR[,CIDR...]" (the --tenant-source-cidrs flag) into
  // `*networks`. kInvalidArgument naming the problem.
  static absl::Status ParseTenantNetworks(
      absl::string_view flag,
      std::map<std::string, std::vector<IpNetwork>>* networks);

  // What the tenant's connectors may reach. Errors of the store.
  absl::StatusOr<SourceAccess> For(int64_t tenant_id);

  // The tenant's import directory (created, mode 0700, when `create`).
  // kFailedPrecondition when the dispatcher has no import directory or the
  // tenant's name cannot be a directory name.
  absl::StatusOr<std::string> TenantDir(int64_t tenant_id, bool create);

  bool has_import_dir() const { return !options_.import_dir.empty(); }

 private:
  SourcePolicy(Store& store, SourcePolicyOptions options)
      : store_(store), options_(std::move(options)) {}
  absl::StatusOr<std::string> TenantName(int64_t tenant_id);

  Store& store_;
  const SourcePolicyOptions options_;
  absl::Mutex mu_;
  // Tenant names never change.
  absl::flat_hash_map<int64_t, std::string> names_ ABSL_GUARDED_BY(mu_);
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_SOURCE_POLICY_H_
