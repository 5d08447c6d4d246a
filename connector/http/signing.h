// Digests for request signing (source HMAC auth) and, later, for signing
// webhooks: thin wrappers over libsodium.
#ifndef IDSYNC_CONNECTOR_HTTP_SIGNING_H_
#define IDSYNC_CONNECTOR_HTTP_SIGNING_H_

#include <string>

#include "absl/strings/string_view.h"

namespace idsync {

// HMAC-SHA256 of `data` under `key` (any length), as 32 raw bytes.
std::string HmacSha256(absl::string_view key, absl::string_view data);

// SHA-256 of `data` as 64 lower-case hex digits.
std::string Sha256Hex(absl::string_view data);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_HTTP_SIGNING_H_
