// Helpers shared by the fuzz targets: a check that reports and aborts (so
// libFuzzer and the replay test both see a crash), and the wire check every
// record a connector or an agent produces must pass.
#ifndef IDSYNC_TESTS_FUZZ_FUZZ_UTIL_H_
#define IDSYNC_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>

#include "absl/strings/string_view.h"
#include "google/protobuf/message.h"

namespace idsync::fuzz {

// Aborts with `what` when `ok` is false: a broken invariant is a finding.
inline void Check(bool ok, absl::string_view what) {
  if (ok) return;
  std::fprintf(stderr, "fuzz invariant broken: %.*s\n",
               static_cast<int>(what.size()), what.data());
  std::abort();
}

// True if `message` survives a serialize/parse round trip: proto3 string
// fields must hold valid UTF-8, or the peer (gRPC on the agent spine, the
// store's readers) refuses the whole message.
inline bool WireSafe(const google::protobuf::Message& message) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) return false;
  std::unique_ptr<google::protobuf::Message> copy(message.New());
  return copy->ParseFromString(bytes);
}

}  // namespace idsync::fuzz

#endif  // IDSYNC_TESTS_FUZZ_FUZZ_UTIL_H_
