// ChunkQueue: the bounded hand-off between a connector (producer thread) and
// the sync engine (consumer thread). Write blocks while `capacity` chunks
// wait, so a fast source never runs ahead of the store. Thread-safe.
#ifndef IDSYNC_DISPATCHER_CHUNK_QUEUE_H_
#define IDSYNC_DISPATCHER_CHUNK_QUEUE_H_

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "connector/connector.h"
#include "dispatcher/record_hash.h"

namespace idsync {

// A chunk and its records' digests, hashed on the producer's thread by Write
// so that the consumer (the store's writer, usually the slower side) only
// applies.
struct QueuedChunk {
  idsync::v1::SyncChunk chunk;
  std::vector<RecordDigest> digests;  // See DigestRecords for the order.
};

class ChunkQueue final : public RecordSink {
 public:
  explicit ChunkQueue(int capacity) : capacity_(capacity < 1 ? 1 : capacity) {}

  // Producer side.
  absl::Status Write(idsync::v1::SyncChunk chunk) override;
  void SetNextSyncToken(std::string token) override;
  bool TakeSpent(idsync::v1::SyncChunk* chunk) override;
  // The producer is done; `status` is what Connector::Sync returned.
  void Finish(absl::Status status);

  // Consumer side. The next chunk, or nullopt once the producer has finished
  // and every chunk was taken.
  std::optional<QueuedChunk> Pop();
  // Like Pop, but gives up after `timeout`: then *timed_out is true.
  std::optional<QueuedChunk> PopFor(absl::Duration timeout, bool* timed_out);
  // Hands a chunk the consumer is done with back for reuse (TakeSpent).
  void Recycle(idsync::v1::SyncChunk chunk);
  // Stops the producer: its next (or blocked) Write returns `why`, and
  // pending chunks are dropped.
  void Close(absl::Status why);
  absl::Status producer_status() const;
  std::string next_sync_token() const;

 private:
  const size_t capacity_;
  mutable absl::Mutex mu_;
  std::deque<QueuedChunk> chunks_ ABSL_GUARDED_BY(mu_);
  // At most `capacity_` + 1: what is in flight when the queue is full.
  std::vector<idsync::v1::SyncChunk> spent_ ABSL_GUARDED_BY(mu_);
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status producer_status_ ABSL_GUARDED_BY(mu_);
  absl::Status closed_ ABSL_GUARDED_BY(mu_);
  std::string next_sync_token_ ABSL_GUARDED_BY(mu_);
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_CHUNK_QUEUE_H_
