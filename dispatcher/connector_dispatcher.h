// ConnectorDispatcher: turns a configured connector (a store row) into the
// Connector to call. Hosted connectors are built from the registry; agent
// connectors get an AgentProxyConnector with the same interface, so the
// sync engine never knows the difference. Thread-safe.
#ifndef IDSYNC_DISPATCHER_CONNECTOR_DISPATCHER_H_
#define IDSYNC_DISPATCHER_CONNECTOR_DISPATCHER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "connector/clock.h"
#include "connector/registry.h"
#include "dispatcher/store/store.h"

namespace idsync {

class AgentHub;
class SourcePolicy;

class ConnectorDispatcher {
 public:
  // `registry` and `clock` must outlive the dispatcher.
  ConnectorDispatcher(const ConnectorRegistry& registry, Clock& clock)
      : registry_(registry), clock_(clock) {}

  // Serves agent-mode connectors through `hub` (which must outlive this);
  // without one they are kUnimplemented.
  void set_agent_hub(AgentHub* hub) { hub_ = hub; }
  // Builds hosted connectors under what their tenant may reach (`policy`
  // must outlive this); without one they reach what the process can.
  void set_source_policy(SourcePolicy* policy) { sources_ = policy; }

  // kInvalidArgument for a bad config; kUnimplemented for modes this build
  // cannot serve.
  absl::StatusOr<std::unique_ptr<Connector>> ConnectorFor(
      const ConnectorRow& row,
      const google::protobuf::Struct& auth_config = {}) const;

 private:
  const ConnectorRegistry& registry_;
  Clock& clock_;
  AgentHub* hub_ = nullptr;
  SourcePolicy* sources_ = nullptr;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_CONNECTOR_DISPATCHER_H_
