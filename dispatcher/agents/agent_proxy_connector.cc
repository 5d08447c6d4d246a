#include "dispatcher/agents/agent_proxy_connector.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "dispatcher/agents/agent_run_channel.h"
#include "google/protobuf/util/json_util.h"

namespace idsync {
namespace {

class AgentProxyConnector final : public Connector {
 public:
  AgentProxyConnector(AgentHub& hub, ConnectorRow row)
      : hub_(hub), row_(std::move(row)) {}

  absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override {
    idsync::v1::ConnectorInfo info;
    info.set_type(row_.type);
    info.set_version("agent");
    info.add_capabilities("agent");
    return info;
  }

  absl::Status TestConnection() override {
    return absl::FailedPreconditionError(
        "testing agent connectors from the dispatcher is not supported");
  }

  absl::Status Sync(const idsync::v1::SyncRequest& request,
                    RecordSink& sink) override {
    google::protobuf::Struct config;
    if (!google::protobuf::util::JsonStringToMessage(row_.config_json, &config)
             .ok()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "connector '", row_.business_id, "': config is not a JSON object"));
    }
    std::unique_ptr<AgentRunChannel> channel =
        hub_.OpenRun(row_.tenant_id, row_.agent);
    std::string resume = request.resume_token();
    bool taken = false;  // Chunks reached the sink.
    while (true) {
      idsync::v1::SyncRequest assigned = request;
      assigned.set_resume_token(resume);
      absl::Status assigned_ok =
          channel->Assign(row_.business_id, row_.type, config, assigned);
      if (!assigned_ok.ok()) return assigned_ok;
      bool lost = false;
      while (!lost) {
        idsync::v1::SyncChunk chunk;
        idsync::v1::RunDone done;
        switch (channel->Next(&chunk, &done, absl::Seconds(1))) {
          case AgentRunChannel::Kind::kChunk: {
            const int64_t sequence = chunk.sequence();
            std::string token = chunk.resume_token();
            if (absl::Status s = sink.Write(std::move(chunk)); !s.ok()) {
              channel->Cancel(std::string(s.message()));
              return s;
            }
            // A chunk the engine is done with is freed here, at the end of
            // this iteration, rather than on the engine's thread.
            sink.TakeSpent(&chunk);
            if (!token.empty()) resume = std::move(token);
            taken = true;
            channel->Ack(sequence);
            break;
          }
          case AgentRunChannel::Kind::kDone:
            if (done.code() != 0) {
              return absl::Status(static_cast<absl::StatusCode>(done.code()),
                                  absl::StrCat("agent: ", done.error()));
            }
            if (!done.next_sync_token().empty()) {
              sink.SetNextSyncToken(done.next_sync_token());
            }
            return absl::OkStatus();
          case AgentRunChannel::Kind::kLost:
            // Re-assign from the last chunk the engine took. A connector
            // without resume tokens would read its source again from the
            // start, which the engine would take as duplicates.
            if (resume.empty() && taken) {
              return absl::UnavailableError(absl::StrCat(
                  "the agent's stream dropped and connector type '", row_.type,
                  "' cannot resume within a run; sync again"));
            }
            lost = true;
            break;
          case AgentRunChannel::Kind::kTimeout:
            break;  // The hub's watchdog ends silent streams.
        }
      }
    }
  }

 private:
  AgentHub& hub_;
  const ConnectorRow row_;
};

}  // namespace

std::unique_ptr<Connector> MakeAgentProxyConnector(AgentHub& hub,
                                                   const ConnectorRow& row) {
  return std::make_unique<AgentProxyConnector>(hub, row);
}

}  // namespace idsync
