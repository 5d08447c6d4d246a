// ConnectorRegistry: creates connectors by type name ("csv", "ldap", ...).
// Filled explicitly by RegisterBuiltinConnectors (static self-registration is
// dropped from static libraries). Register before use; Create is then safe to
// call from several threads.
#ifndef IDSYNC_CONNECTOR_REGISTRY_H_
#define IDSYNC_CONNECTOR_REGISTRY_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "connector/clock.h"
#include "connector/connector.h"
#include "connector/file_access.h"
#include "connector/http/address_policy.h"
#include "google/protobuf/struct.pb.h"

namespace idsync {

// What a connector may reach on the host that runs it. The operator's own
// configs (the CLI, an agent's local connectors) reach anything the process
// can; the dispatcher confines connectors a tenant admin configures through
// the API to the tenant's import directory and to public addresses (plus
// the operator's per-tenant allow list).
struct SourceAccess {
  std::shared_ptr<const FileAccess> files = HostFiles();
  std::shared_ptr<const AddressPolicy> addresses = AddressPolicy::Any();
};

// What a factory gets to build one configured connector.
struct ConnectorSpec {
  std::string business_id;
  google::protobuf::Struct config;  // Non-secret settings.
  // Secrets (passwords, client secrets), for TestConnection; Sync gets them
  // again in SyncRequest.auth_config. Never log them.
  google::protobuf::Struct auth_config;
  Clock* clock = &Clock::Real();  // Must outlive the connector.
  // Every file and address the connector uses goes through this; a factory
  // refuses a config naming what it does not allow.
  SourceAccess access;
};

using ConnectorFactory =
    std::function<absl::StatusOr<std::unique_ptr<Connector>>(
        const ConnectorSpec&)>;

class ConnectorRegistry {
 public:
  // Fails with kAlreadyExists if `type` is taken.
  absl::Status Register(std::string type, ConnectorFactory factory);
  // kNotFound for an unknown type; the factory's error for a bad config.
  absl::StatusOr<std::unique_ptr<Connector>> Create(
      absl::string_view type, const ConnectorSpec& spec) const;
  std::vector<std::string> Types() const;

 private:
  std::map<std::string, ConnectorFactory, std::less<>> factories_;
};

// Registers every connector type built into this binary.
void RegisterBuiltinConnectors(ConnectorRegistry& registry);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_REGISTRY_H_
