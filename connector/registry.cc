#include "connector/registry.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace idsync {

absl::Status ConnectorRegistry::Register(std::string type,
                                         ConnectorFactory factory) {
  auto [it, inserted] = factories_.emplace(std::move(type), std::move(factory));
  if (!inserted) {
    return absl::AlreadyExistsError(
        absl::StrCat("connector type '", it->first, "' is already registered"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<Connector>> ConnectorRegistry::Create(
    absl::string_view type, const ConnectorSpec& spec) const {
  auto it = factories_.find(type);
  if (it == factories_.end()) {
    return absl::NotFoundError(
        absl::StrCat("unknown connector type '", type.substr(0, 64),
                     "' (known: ", absl::StrJoin(Types(), ", "), ")"));
  }
  return it->second(spec);
}

std::vector<std::string> ConnectorRegistry::Types() const {
  std::vector<std::string> types;
  for (const auto& [type, factory] : factories_) types.push_back(type);
  return types;
}

}  // namespace idsync
