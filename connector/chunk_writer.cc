#include "connector/chunk_writer.h"

#include <algorithm>
#include <utility>

namespace idsync {

ChunkWriter::ChunkWriter(RecordSink& sink, int chunk_size)
    : sink_(sink),
      chunk_size_(chunk_size <= 0 ? kDefaultChunkSize
                                  : std::min(chunk_size, kMaxChunkSize)) {}

int ChunkWriter::size() const {
  return chunk_.identities_size() + chunk_.accounts_size() +
         chunk_.entitlements_size() + chunk_.grants_size() +
         chunk_.deletions_size() + chunk_.rejects_size();
}

absl::Status ChunkWriter::Flush(std::string resume_token,
                                const idsync::v1::Progress& progress) {
  if (size() == 0) return absl::OkStatus();
  chunk_.set_sequence(++sequence_);
  chunk_.set_resume_token(std::move(resume_token));
  *chunk_.mutable_progress() = progress;
  idsync::v1::SyncChunk full;
  full.Swap(&chunk_);
  absl::Status written = sink_.Write(std::move(full));
  // Clearing here, on the producer's thread, keeps that work off the
  // consumer's, which is usually the slower one (the store).
  if (written.ok() && sink_.TakeSpent(&chunk_)) chunk_.Clear();
  return written;
}

}  // namespace idsync
