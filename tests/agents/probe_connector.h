// "probe": a connector for agent tests that shows what it was given. Each
// identity carries the connector's config (string values) as attributes and
// the request's auth_config keys as "auth.KEY", so a test can see which
// settings won. Config: chunks (default 3), per_chunk (default 1),
// pad_bytes (an attribute that large), fail (a message: fail with it after
// the chunks). Resume token "probe:N" restarts after chunk N.
#ifndef IDSYNC_TESTS_AGENTS_PROBE_CONNECTOR_H_
#define IDSYNC_TESTS_AGENTS_PROBE_CONNECTOR_H_

#include <memory>
#include <string>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "connector/chunk_writer.h"
#include "connector/config.h"
#include "connector/registry.h"
#include "connector/status_macros.h"

namespace idsync::testing {

class ProbeConnector final : public Connector {
 public:
  explicit ProbeConnector(ConnectorSpec spec) : spec_(std::move(spec)) {}

  absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override {
    idsync::v1::ConnectorInfo info;
    info.set_type("probe");
    return info;
  }
  absl::Status TestConnection() override { return absl::OkStatus(); }

  absl::Status Sync(const idsync::v1::SyncRequest& request,
                    RecordSink& sink) override {
    ConfigReader r(spec_.config, "probe config");
    IDSYNC_ASSIGN_OR_RETURN(int64_t chunks, r.Int("chunks", 3, 0, 1000000));
    IDSYNC_ASSIGN_OR_RETURN(int64_t per_chunk, r.Int("per_chunk", 1, 1, 1000));
    IDSYNC_ASSIGN_OR_RETURN(int64_t pad, r.Int("pad_bytes", 0, 0, 1 << 26));
    IDSYNC_ASSIGN_OR_RETURN(std::string fail, r.String("fail", ""));
    int64_t start = 0;
    absl::string_view token = request.resume_token();
    if (!token.empty() && (!absl::ConsumePrefix(&token, "probe:") ||
                           !absl::SimpleAtoi(token, &start))) {
      return absl::InvalidArgumentError("bad probe resume token");
    }
    ChunkWriter writer(sink, static_cast<int>(per_chunk));
    for (int64_t c = start + 1; c <= chunks; ++c) {
      for (int64_t i = 0; i < per_chunk; ++i) {
        idsync::v1::RemoteIdentity* id = writer.AddIdentity();
        id->set_external_id(absl::StrCat("p", c, "-", i));
        auto& attrs = *id->mutable_attributes();
        for (const auto& [k, v] : spec_.config.fields()) {
          if (v.has_string_value()) attrs[k] = v.string_value();
        }
        for (const auto& [k, v] : request.auth_config().fields()) {
          attrs[absl::StrCat("auth.", k)] =
              v.has_string_value() ? v.string_value() : "?";
        }
        if (pad > 0) attrs["pad"] = std::string(static_cast<size_t>(pad), 'x');
      }
      IDSYNC_RETURN_IF_ERROR(writer.Flush(absl::StrCat("probe:", c)));
    }
    if (!fail.empty()) return absl::UnavailableError(fail);
    sink.SetNextSyncToken("probe-next");
    return absl::OkStatus();
  }

 private:
  const ConnectorSpec spec_;
};

// The built-in connectors plus "probe".
inline void RegisterTestConnectors(ConnectorRegistry& registry) {
  RegisterBuiltinConnectors(registry);
  (void)registry.Register("probe",
                          [](const ConnectorSpec& spec)
                              -> absl::StatusOr<std::unique_ptr<Connector>> {
                            return std::make_unique<ProbeConnector>(spec);
                          });
}

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_AGENTS_PROBE_CONNECTOR_H_
