// Small text checks shared by connectors. Protobuf string fields must hold
// valid UTF-8, so every connector validates what it reads from a source.
#ifndef IDSYNC_CONNECTOR_TEXT_H_
#define IDSYNC_CONNECTOR_TEXT_H_

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"

namespace idsync {

// True if `text` is well-formed UTF-8 (no overlongs, surrogates or code
// points above U+10FFFF).
bool IsValidUtf8(absl::string_view text);

// A short, printable rendering of untrusted text for error messages: at most
// `max_bytes` of input, non-printable bytes hex-escaped.
std::string Excerpt(absl::string_view text, size_t max_bytes = 40);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_TEXT_H_
