// `idsync-agent register`: exchanges a one-time registration token (created
// by an admin through the API) for an agent token over AgentSpine.Register,
// and saves the agent token with mode 0600. Neither token is ever logged.
// Thread-compatible.
#ifndef IDSYNC_AGENTS_REGISTRATION_H_
#define IDSYNC_AGENTS_REGISTRATION_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agents/agent_config.h"
#include "agents/state_files.h"

namespace idsync {

struct RegisterOptions {
  std::string dispatcher;  // host:port
  TlsOptions tls;
  std::string registration_token;  // Secret.
  std::string name;                // Empty: the registration token's name.
  std::string token_file;          // Where the agent token goes.
  std::string state_dir;           // Where registration.json goes.
  bool force = false;              // Replace an existing token file.
  absl::Duration timeout = absl::Seconds(30);
};

// Registers this agent. The token file is checked before the registration
// token is spent: kAlreadyExists if it exists and !force. The dispatcher's
// refusal comes back with its code (kUnauthenticated for a bad, used or
// expired registration token). Also writes state_dir/registration.json (agent
// id, name, dispatcher: nothing secret).
absl::StatusOr<RegistrationInfo> RegisterAgent(const RegisterOptions& options);

}  // namespace idsync

#endif  // IDSYNC_AGENTS_REGISTRATION_H_
