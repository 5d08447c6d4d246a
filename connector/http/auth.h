// Source authentication, chosen by `auth_config.type`: bearer, api_key,
// basic, oauth2_client_credentials, oauth2_password, or none; any of them
// may add HMAC request signing (`auth_config.hmac`). See
// docs/connectors/rest.md for the keys. Secrets never appear in errors.
#ifndef IDSYNC_CONNECTOR_HTTP_AUTH_H_
#define IDSYNC_CONNECTOR_HTTP_AUTH_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "connector/http/http_client.h"
#include "google/protobuf/struct.pb.h"

namespace idsync {

class Authenticator {
 public:
  virtual ~Authenticator() = default;
  // Adds credentials (and a signature) to `request`; may fetch a token.
  virtual absl::Status Apply(HttpRequest& request) = 0;
  // After a 401: forgets the cached token and fetches a new one. False when
  // the mode has nothing to refresh (static credentials).
  virtual absl::StatusOr<bool> Refresh() { return false; }
};

// Builds the authenticator `auth_config` describes. Token requests go
// through `client`, which must outlive the result. kInvalidArgument names
// the bad key.
absl::StatusOr<std::unique_ptr<Authenticator>> CreateAuthenticator(
    const google::protobuf::Struct& auth_config, HttpClient& client);

// An HttpClient plus credentials: what a source connector talks through.
class AuthorizedClient {
 public:
  AuthorizedClient(std::unique_ptr<HttpClient> client,
                   std::unique_ptr<Authenticator> auth);

  // Sends with credentials and HttpClient::Send's retries. A 401 gets
  // exactly one credential refresh and one more try; a second 401 (or one
  // for static credentials) is returned to the caller.
  absl::StatusOr<HttpResponse> Send(HttpRequest request);

  HttpClient& http() { return *client_; }

 private:
  std::unique_ptr<HttpClient> client_;
  std::unique_ptr<Authenticator> auth_;
};

// Builds an AuthorizedClient from `auth_config`.
absl::StatusOr<std::unique_ptr<AuthorizedClient>> CreateAuthorizedClient(
    HttpClientOptions options, const google::protobuf::Struct& auth_config);

// The URLs `auth_config` makes requests to (an OAuth2 token_url or issuer),
// for an address check at create; empty for the other modes.
std::vector<std::string> AuthUrls(const google::protobuf::Struct& auth_config);

// Forgets every cached OAuth2 token (tests).
void ClearOAuth2TokenCache();

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_HTTP_AUTH_H_
