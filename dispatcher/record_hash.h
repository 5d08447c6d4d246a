// The content hash behind change detection: a stable 64-bit digest of a
// record's deterministic serialization (BLAKE2b; map entries sorted), equal
// for equal records across runs, processes and builds. Thread-safe.
#ifndef IDSYNC_DISPATCHER_RECORD_HASH_H_
#define IDSYNC_DISPATCHER_RECORD_HASH_H_

#include <cstdint>
#include <string>

#include "google/protobuf/message.h"

namespace idsync {

// `*scratch` is reused between calls and holds the serialized record after
// the call (so callers can check its size).
uint64_t ContentHash(const google::protobuf::Message& record,
                     std::string* scratch);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_RECORD_HASH_H_
