// Secrets: API tokens and encryption of secrets at rest, on libsodium.
//
// Tokens are a recognisable prefix plus 32 random bytes (base64url), so
// secret scanners can spot them; only their SHA-256 is stored. Secrets at
// rest (connector auth_config) are sealed with XSalsa20-Poly1305 under a key
// the operator keeps in a file. Thread-safe.
#ifndef IDSYNC_DISPATCHER_SECRETS_H_
#define IDSYNC_DISPATCHER_SECRETS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace idsync {

inline constexpr absl::string_view kServiceTokenPrefix = "idsync_svc_";
inline constexpr absl::string_view kAgentTokenPrefix = "idsync_agt_";
inline constexpr absl::string_view kRegistrationTokenPrefix = "idsync_reg_";

// A new random token: `prefix` then 43 base64url characters.
std::string NewToken(absl::string_view prefix);

// The stored form of a token: SHA-256, 32 raw bytes.
std::string TokenHash(absl::string_view token);

// A webhook or callback signing secret in the Standard Webhooks format:
// "whsec_" then 32 random bytes in standard base64.
std::string NewSigningSecret();

// The HMAC key of a signing secret (the bytes after "whsec_");
// kInvalidArgument if it is not one.
absl::StatusOr<std::string> SigningKey(absl::string_view secret);

// Constant-time equality of two byte strings of any length.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

class SecretBox {
 public:
  // Reads the 32-byte key (64 hex characters) from `path`. With `create`, a
  // missing file is created with a new random key, mode 0600. Errors name the
  // path, never the key.
  static absl::StatusOr<SecretBox> FromKeyFile(const std::string& path,
                                               bool create);
  // For tests: a key from 32 raw bytes.
  static absl::StatusOr<SecretBox> FromKey(absl::string_view key);

  // nonce || ciphertext, bound to `context` (e.g. "connector:12") so a sealed
  // value cannot be moved to another row.
  std::string Seal(absl::string_view plaintext,
                   absl::string_view context) const;
  // kDataLoss if `sealed` was not sealed by this key for this context.
  absl::StatusOr<std::string> Open(absl::string_view sealed,
                                   absl::string_view context) const;

  // A keyed hash (BLAKE2b under a key derived for `context`), hex: for
  // fingerprints of data that may hold secrets, which an unkeyed hash in the
  // store would let anyone with the file test guesses against.
  std::string Mac(absl::string_view data, absl::string_view context) const;

 private:
  explicit SecretBox(std::string key) : key_(std::move(key)) {}
  std::string key_;  // 32 bytes.
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_SECRETS_H_
