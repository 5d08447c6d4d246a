// ChunkWriter: the helper connectors use to fill SyncChunks of the requested
// size and hand them to a RecordSink. Not thread-safe.
#ifndef IDSYNC_CONNECTOR_CHUNK_WRITER_H_
#define IDSYNC_CONNECTOR_CHUNK_WRITER_H_

#include <string>

#include "absl/status/status.h"
#include "connector/connector.h"

namespace idsync {

class ChunkWriter {
 public:
  // "*sink" must outlive this writer. chunk_size <= 0 means the default.
  ChunkWriter(RecordSink& sink, int chunk_size);

  idsync::v1::RemoteIdentity* AddIdentity() { return chunk_.add_identities(); }
  idsync::v1::RemoteAccount* AddAccount() { return chunk_.add_accounts(); }
  idsync::v1::RemoteEntitlement* AddEntitlement() {
    return chunk_.add_entitlements();
  }
  idsync::v1::RemoteGrant* AddGrant() { return chunk_.add_grants(); }
  idsync::v1::Deletion* AddDeletion() { return chunk_.add_deletions(); }
  idsync::v1::Reject* AddReject() { return chunk_.add_rejects(); }
  // Takes back the identity added last (kept cleared for reuse), e.g. one
  // that turned out to be a reject.
  void DropLastIdentity() { chunk_.mutable_identities()->RemoveLast(); }

  // Items (records, deletions, rejects) in the chunk being filled.
  int size() const;
  bool full() const { return size() >= chunk_size_; }
  int chunk_size() const { return chunk_size_; }

  // Sends the chunk being filled, if it holds anything. `resume_token` must
  // let a later run start right after the last item added.
  absl::Status Flush(std::string resume_token,
                     const idsync::v1::Progress& progress = {});

 private:
  RecordSink& sink_;
  const int chunk_size_;
  int64_t sequence_ = 0;
  idsync::v1::SyncChunk chunk_;
};

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_CHUNK_WRITER_H_
