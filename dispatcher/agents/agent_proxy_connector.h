// AgentProxyConnector: the Connector for a connector in agent mode. Sync()
// hands the run to an online agent bound to the connector and relays its
// chunks to the sink, so the sync engine cannot tell a hosted run from an
// agent run. Each chunk is acknowledged once the sink took it (the engine's
// bounded queue: backpressure reaches the agent through its window). Safety
// does not rest on the ack: the engine checkpoints committed chunks, and
// after a dropped stream the run is re-assigned from the last chunk the
// engine took, so nothing is lost or applied twice. A run whose agent stays
// away past the hub's agent_timeout fails with that reason.
#ifndef IDSYNC_DISPATCHER_AGENTS_AGENT_PROXY_CONNECTOR_H_
#define IDSYNC_DISPATCHER_AGENTS_AGENT_PROXY_CONNECTOR_H_

#include <memory>

#include "connector/connector.h"
#include "dispatcher/agents/agent_hub.h"
#include "dispatcher/store/store.h"

namespace idsync {

// `hub` must outlive the connector.
std::unique_ptr<Connector> MakeAgentProxyConnector(AgentHub& hub,
                                                   const ConnectorRow& row);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_AGENTS_AGENT_PROXY_CONNECTOR_H_
