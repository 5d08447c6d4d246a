#include "dispatcher/connector_dispatcher.h"

#include "absl/strings/str_cat.h"
#include "connector/status_macros.h"
#include "connector/text.h"
#include "dispatcher/agents/agent_proxy_connector.h"
#include "dispatcher/source_policy.h"
#include "google/protobuf/util/json_util.h"

namespace idsync {

absl::StatusOr<std::unique_ptr<Connector>> ConnectorDispatcher::ConnectorFor(
    const ConnectorRow& row,
    const google::protobuf::Struct& auth_config) const {
  if (row.mode == "agent" && hub_ != nullptr) {
    if (!registry_.Types().empty()) {
      bool known = false;
      for (const std::string& t : registry_.Types()) known |= t == row.type;
      if (!known) {
        return absl::InvalidArgumentError(
            absl::StrCat("connector '", row.business_id, "': unknown type '",
                         Excerpt(row.type), "'"));
      }
    }
    return MakeAgentProxyConnector(*hub_, row);
  }
  if (row.mode != "hosted") {
    return absl::UnimplementedError(
        absl::StrCat("connector '", row.business_id, "': mode '",
                     Excerpt(row.mode), "' is not available in this build"));
  }
  ConnectorSpec spec;
  spec.business_id = row.business_id;
  spec.clock = &clock_;
  spec.auth_config = auth_config;
  if (sources_ != nullptr) {
    IDSYNC_ASSIGN_OR_RETURN(spec.access, sources_->For(row.tenant_id));
  }
  auto parsed = google::protobuf::util::JsonStringToMessage(row.config_json,
                                                            &spec.config);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "connector '", row.business_id, "': config is not a JSON object: ",
        std::string(parsed.message().data(), parsed.message().size())));
  }
  return registry_.Create(row.type, spec);
}

}  // namespace idsync
