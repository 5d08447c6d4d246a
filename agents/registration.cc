#include "agents/registration.h"

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agents/spine_channel.h"
#include "agents/token_file.h"
#include "connector/status_macros.h"
#include "idsync/v1/agent.grpc.pb.h"
#include "spdlog/spdlog.h"

namespace idsync {

absl::StatusOr<RegistrationInfo> RegisterAgent(const RegisterOptions& options) {
  if (options.registration_token.empty()) {
    return absl::InvalidArgumentError("the registration token is empty");
  }
  if (!IsValidTokenText(options.registration_token)) {
    return absl::InvalidArgumentError(
        "the registration token holds characters a token cannot have");
  }
  IDSYNC_RETURN_IF_ERROR(PrepareTokenFile(options.token_file, options.force));
  IDSYNC_ASSIGN_OR_RETURN(auto credentials,
                          SpineCredentials(options.dispatcher, options.tls));
  auto channel =
      CreateSpineChannel(options.dispatcher, credentials, BackoffOptions());
  auto stub = idsync::v1::AgentSpine::NewStub(channel);

  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  context.set_wait_for_ready(true);  // Ride out a slow first connect.
  idsync::v1::RegisterAgentRequest request;
  request.set_registration_token(options.registration_token);
  request.set_name(options.name);
  idsync::v1::RegisterAgentResponse response;
  spdlog::info("registering with {}", options.dispatcher);
  grpc::Status rpc = stub->Register(&context, request, &response);
  if (!rpc.ok()) {
    absl::Status s = FromGrpcStatus(rpc);
    return absl::Status(s.code(),
                        absl::StrCat("registration with ", options.dispatcher,
                                     " failed: ", s.message()));
  }
  if (!IsValidTokenText(response.agent_token())) {
    return absl::InternalError(
        "the dispatcher answered without a usable agent token");
  }
  IDSYNC_RETURN_IF_ERROR(WriteTokenFile(options.token_file,
                                        response.agent_token(), options.force));
  RegistrationInfo info;
  info.agent_id = response.agent_id();
  info.name = response.name();
  info.dispatcher = options.dispatcher;
  info.registered_at = absl::Now();
  if (absl::Status s = WriteRegistrationFile(options.state_dir, info);
      !s.ok()) {
    // The token is saved, which is what matters; status shows less.
    spdlog::warn("cannot record the registration: {}",
                 std::string(s.message()));
  }
  spdlog::info("registered as agent {} ({}); token saved to {}", info.agent_id,
               info.name, options.token_file);
  return info;
}

}  // namespace idsync
