#include "dispatcher/chunk_queue.h"

#include <utility>

namespace idsync {

absl::Status ChunkQueue::Write(idsync::v1::SyncChunk chunk) {
  QueuedChunk queued;
  {
    thread_local std::string scratch;
    DigestRecords(chunk, &queued.digests, &scratch);
  }
  queued.chunk = std::move(chunk);
  absl::MutexLock lock(&mu_);
  auto room = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return !closed_.ok() || chunks_.size() < capacity_;
  };
  mu_.Await(absl::Condition(&room));
  if (!closed_.ok()) return closed_;
  chunks_.push_back(std::move(queued));
  return absl::OkStatus();
}

void ChunkQueue::SetNextSyncToken(std::string token) {
  absl::MutexLock lock(&mu_);
  next_sync_token_ = std::move(token);
}

void ChunkQueue::Finish(absl::Status status) {
  absl::MutexLock lock(&mu_);
  finished_ = true;
  producer_status_ = std::move(status);
}

std::optional<QueuedChunk> ChunkQueue::Pop() {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return finished_ || !chunks_.empty();
  };
  mu_.Await(absl::Condition(&ready));
  if (chunks_.empty()) return std::nullopt;
  QueuedChunk chunk = std::move(chunks_.front());
  chunks_.pop_front();
  return chunk;
}

std::optional<QueuedChunk> ChunkQueue::PopFor(absl::Duration timeout,
                                              bool* timed_out) {
  absl::MutexLock lock(&mu_);
  auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return finished_ || !chunks_.empty();
  };
  *timed_out = !mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (chunks_.empty()) return std::nullopt;
  QueuedChunk chunk = std::move(chunks_.front());
  chunks_.pop_front();
  return chunk;
}

bool ChunkQueue::TakeSpent(idsync::v1::SyncChunk* chunk) {
  absl::MutexLock lock(&mu_);
  if (spent_.empty()) return false;
  chunk->Swap(&spent_.back());
  spent_.pop_back();
  return true;
}

void ChunkQueue::Recycle(idsync::v1::SyncChunk chunk) {
  absl::MutexLock lock(&mu_);
  if (closed_.ok() && spent_.size() <= capacity_) {
    spent_.push_back(std::move(chunk));
  }
}

void ChunkQueue::Close(absl::Status why) {
  absl::MutexLock lock(&mu_);
  closed_ = why.ok() ? absl::CancelledError("closed") : std::move(why);
  chunks_.clear();
  spent_.clear();
}

absl::Status ChunkQueue::producer_status() const {
  absl::MutexLock lock(&mu_);
  return producer_status_;
}

std::string ChunkQueue::next_sync_token() const {
  absl::MutexLock lock(&mu_);
  return next_sync_token_;
}

}  // namespace idsync
