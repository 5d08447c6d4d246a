// Fuzzes the agent spine's messages (proto/idsync/v1/agent.proto) as they
// arrive off the wire. The first byte picks the direction, the rest is the
// binary message:
//  - even: a DispatcherMessage, as the agent gets it. An assignment goes
//    through PrepareRun (agents/agent_config.h) with and without
//    local_connectors_only, and, for connector types whose creation does no
//    I/O (csv, ldap, rest, scim), through the registry as RunExecutor would.
//  - odd: an AgentMessage, as the dispatcher gets it. Chunk records go
//    through what the sync engine applies to each before the store (content
//    hash, column values, attributes JSON); a RunDone's code through the API
//    status mapping.
// The hub and the executor themselves sit on a gRPC stream and threads.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "agents/agent_config.h"
#include "agents/token_file.h"
#include "connector/registry.h"
#include "dispatcher/api/status_mapping.h"
#include "dispatcher/record_hash.h"
#include "dispatcher/store/record_schema.h"
#include "grpcpp/support/status.h"
#include "idsync/v1/agent.pb.h"
#include "nlohmann/json.hpp"
#include "tests/fuzz/fuzz_util.h"

namespace idsync {
namespace {

using fuzz::Check;
using idsync::v1::RecordKind;

const ConnectorRegistry& Registry() {
  static const ConnectorRegistry* registry = [] {
    auto* r = new ConnectorRegistry;
    RegisterBuiltinConnectors(*r);
    return r;
  }();
  return *registry;
}

// An agent's own config for one connector, as in agent_config_test.
const LocalConnectors& Local() {
  static const LocalConnectors* local = [] {
    auto* l = new LocalConnectors;
    LocalConnector& hr = (*l)["hr-csv"];
    hr.type = "csv";
    (*hr.config.mutable_fields())["path"].set_string_value("/srv/hr.csv");
    hr.has_auth_config = true;
    (*hr.auth_config.mutable_fields())["type"].set_string_value("none");
    return l;
  }();
  return *local;
}

void FuzzAssign(const idsync::v1::AssignRun& assign) {
  for (bool accept : {false, true}) {
    absl::StatusOr<PreparedRun> run =
        PrepareRun(Local(), assign, DispatcherConfigs{accept, ""});
    if (!run.ok()) continue;
    Check(run->type == assign.connector_type(), "PrepareRun changed the type");
    Check(run->request.connector_business_id() == run->spec.business_id,
          "PrepareRun: request and spec name different connectors");
    auto local = Local().find(run->spec.business_id);
    Check(accept || local != Local().end(),
          "a dispatcher connector ran without accept_dispatcher_configs");
    Check(local != Local().end() || !run->spec.access.files->secret_files(),
          "a dispatcher connector may read the agent's files");
    if (local != Local().end()) {
      for (const auto& [key, value] : local->second.config.fields()) {
        auto it = run->spec.config.fields().find(key);
        Check(it != run->spec.config.fields().end() &&
                  it->second.SerializeAsString() == value.SerializeAsString(),
              "a local config key did not win");
      }
    }
    static const std::vector<std::string> kPure = {"csv", "ldap", "rest",
                                                   "scim"};
    if (std::find(kPure.begin(), kPure.end(), run->type) != kPure.end()) {
      auto connector = Registry().Create(run->type, run->spec);
      if (connector.ok()) (void)(*connector)->Describe();
    }
  }
}

template <typename Record>
void FuzzRecord(RecordKind kind, const Record& record) {
  std::string scratch;
  const uint64_t hash = ContentHash(record, &scratch);
  // Map entries in another insertion order: the same record, the same hash.
  Record reordered = record;
  if (reordered.attributes_size() > 1) {
    std::vector<std::pair<std::string, std::string>> entries(
        record.attributes().begin(), record.attributes().end());
    std::reverse(entries.begin(), entries.end());
    reordered.clear_attributes();
    for (const auto& [k, v] : entries) (*reordered.mutable_attributes())[k] = v;
  }
  Check(ContentHash(reordered, &scratch) == hash,
        "the content hash depends on map order");
  std::vector<absl::string_view> values;
  ColumnValues(kind, record, &values);
  Check(values.size() == SchemaFor(kind).columns.size(),
        "column values do not match the schema");
  const std::string attributes = AttributesJson(Attributes(kind, record));
  if (attributes.empty()) {
    Check(record.attributes().empty(), "AttributesJson dropped attributes");
    return;
  }
  const nlohmann::json parsed =
      nlohmann::json::parse(attributes, nullptr, /*allow_exceptions=*/false);
  Check(parsed.is_object() &&
            parsed.size() == static_cast<size_t>(record.attributes_size()),
        "AttributesJson is not a JSON object of the attributes");
  for (const auto& [k, v] : record.attributes()) {
    auto it = parsed.find(k);
    Check(it != parsed.end() && it->is_string() &&
              it->template get<std::string>() == v,
          "AttributesJson changed an attribute");
  }
}

void FuzzChunk(const idsync::v1::SyncChunk& chunk) {
  for (const auto& r : chunk.identities()) {
    FuzzRecord(idsync::v1::RECORD_KIND_IDENTITY, r);
  }
  for (const auto& r : chunk.accounts()) {
    FuzzRecord(idsync::v1::RECORD_KIND_ACCOUNT, r);
  }
  for (const auto& r : chunk.entitlements()) {
    FuzzRecord(idsync::v1::RECORD_KIND_ENTITLEMENT, r);
  }
  for (const auto& r : chunk.grants()) {
    FuzzRecord(idsync::v1::RECORD_KIND_GRANT, r);
  }
}

void FuzzDone(const idsync::v1::RunDone& done) {
  // What AgentProxyConnector makes of it.
  const absl::Status status(static_cast<absl::StatusCode>(done.code()),
                            done.error());
  (void)HttpStatus(status.code());
  (void)ErrorCodeName(status.code());
  (void)ToGrpcStatus(status);
}

}  // namespace
}  // namespace idsync

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int body = static_cast<int>(size - 1);
  if (data[0] % 2 == 0) {
    idsync::v1::DispatcherMessage message;
    if (!message.ParseFromArray(data + 1, body)) return 0;
    if (message.has_assign()) idsync::FuzzAssign(message.assign());
    if (message.has_welcome()) {
      (void)idsync::IsValidTokenText(message.welcome().name());
    }
  } else {
    idsync::v1::AgentMessage message;
    if (!message.ParseFromArray(data + 1, body)) return 0;
    if (message.has_chunk()) idsync::FuzzChunk(message.chunk().chunk());
    if (message.has_done()) idsync::FuzzDone(message.done());
  }
  return 0;
}
