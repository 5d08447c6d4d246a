// The content hash behind change detection: a stable 64-bit digest of a
// record's deterministic serialization (BLAKE2b; map entries sorted), equal
// for equal records across runs, processes and builds. Thread-safe.
#ifndef IDSYNC_DISPATCHER_RECORD_HASH_H_
#define IDSYNC_DISPATCHER_RECORD_HASH_H_

#include <cstdint>
#include <string>
#include <vector>

#include "google/protobuf/message.h"
#include "idsync/v1/connector.pb.h"

namespace idsync {

// `*scratch` is reused between calls and holds the serialized record after
// the call (so callers can check its size).
uint64_t ContentHash(const google::protobuf::Message& record,
                     std::string* scratch);

// A record's content hash and serialized size.
struct RecordDigest {
  uint64_t hash = 0;
  size_t bytes = 0;
};

// The digests of a chunk's records in the order the engine applies them:
// identities, accounts, entitlements, grants.
void DigestRecords(const idsync::v1::SyncChunk& chunk,
                   std::vector<RecordDigest>* digests, std::string* scratch);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_RECORD_HASH_H_
