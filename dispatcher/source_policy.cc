#include "dispatcher/source_policy.h"

#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "connector/status_macros.h"
#include "connector/text.h"

namespace idsync {
namespace {

// A tenant name that is safe as one directory name.
bool IsDirectoryName(absl::string_view name) {
  if (name.empty() || name == "." || name == ".." || name.size() > 64) {
    return false;
  }
  for (char c : name) {
    if (!(absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.')) {
      return false;
    }
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<SourcePolicy>> SourcePolicy::Create(
    Store& store, SourcePolicyOptions options) {
  if (!options.import_dir.empty()) {
    char resolved[PATH_MAX];
    struct stat st;
    if (realpath(options.import_dir.c_str(), resolved) == nullptr ||
        stat(resolved, &st) != 0 || !S_ISDIR(st.st_mode)) {
      return absl::InvalidArgumentError(
          absl::StrCat("--import-dir '", options.import_dir,
                       "' is not an existing directory"));
    }
    options.import_dir = resolved;
  }
  return std::unique_ptr<SourcePolicy>(
      new SourcePolicy(store, std::move(options)));
}

absl::Status SourcePolicy::ParseTenantNetworks(
    absl::string_view flag,
    std::map<std::string, std::vector<IpNetwork>>* networks) {
  const size_t eq = flag.find('=');
  if (eq == absl::string_view::npos || eq == 0 || eq + 1 == flag.size()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--tenant-source-cidrs takes TENANT=CIDR[,CIDR...], not '",
                     Excerpt(flag, 100), "'"));
  }
  std::vector<IpNetwork>& list = (*networks)[std::string(flag.substr(0, eq))];
  for (absl::string_view cidr : absl::StrSplit(flag.substr(eq + 1), ',')) {
    absl::StatusOr<IpNetwork> n = ParseIpNetwork(cidr);
    if (!n.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--tenant-source-cidrs: ", n.status().message()));
    }
    list.push_back(*n);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> SourcePolicy::TenantName(int64_t tenant_id) {
  {
    absl::MutexLock lock(&mu_);
    auto it = names_.find(tenant_id);
    if (it != names_.end()) return it->second;
  }
  IDSYNC_ASSIGN_OR_RETURN(std::string name, store_.TenantName(tenant_id));
  absl::MutexLock lock(&mu_);
  names_[tenant_id] = name;
  return name;
}

absl::StatusOr<SourceAccess> SourcePolicy::For(int64_t tenant_id) {
  IDSYNC_ASSIGN_OR_RETURN(std::string name, TenantName(tenant_id));
  SourceAccess access;
  if (!options_.allow_private_sources) {
    auto it = options_.tenant_networks.find(name);
    access.addresses = AddressPolicy::PublicOnly(
        it == options_.tenant_networks.end() ? std::vector<IpNetwork>{}
                                             : it->second);
  }
  absl::StatusOr<std::string> dir = TenantDir(tenant_id, /*create=*/false);
  access.files = dir.ok() ? ConfinedFiles(*dir)
                          : NoFiles(std::string(dir.status().message()));
  return access;
}

absl::StatusOr<std::string> SourcePolicy::TenantDir(int64_t tenant_id,
                                                    bool create) {
  if (options_.import_dir.empty()) {
    return absl::FailedPreconditionError(
        "the dispatcher runs without --import-dir, so connectors read no "
        "files on its host");
  }
  IDSYNC_ASSIGN_OR_RETURN(std::string name, TenantName(tenant_id));
  if (!IsDirectoryName(name)) {
    return absl::FailedPreconditionError(
        "this tenant's name cannot name an import directory");
  }
  const std::string dir = absl::StrCat(options_.import_dir, "/", name);
  if (create && mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    return absl::InternalError(absl::StrCat(
        "cannot create the tenant's import directory: ", std::strerror(errno)));
  }
  return dir;
}

}  // namespace idsync
