#include "dispatcher/chunk_queue.h"

#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

using ::testing::UnorderedElementsAre;

v1::SyncChunk Chunk(int64_t sequence) {
  v1::SyncChunk chunk;
  chunk.set_sequence(sequence);
  return chunk;
}

// Counts Write calls that have returned, and keeps their statuses.
class WriteLog {
 public:
  void Returned(absl::Status status) {
    absl::MutexLock lock(&mu_);
    statuses_.push_back(std::move(status));
  }
  // Blocks until at least `n` writes have returned, then reports how many.
  int AwaitAtLeast(int n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return static_cast<int>(statuses_.size()) >= n;
    };
    mu_.Await(absl::Condition(&enough));
    return static_cast<int>(statuses_.size());
  }
  int count() {
    absl::MutexLock lock(&mu_);
    return static_cast<int>(statuses_.size());
  }
  std::vector<absl::Status> statuses() {
    absl::MutexLock lock(&mu_);
    return statuses_;
  }

 private:
  absl::Mutex mu_;
  std::vector<absl::Status> statuses_ ABSL_GUARDED_BY(mu_);
};

TEST(ChunkQueueTest, PreservesOrder) {
  ChunkQueue queue(8);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(queue.Write(Chunk(i)).ok());
  queue.Finish(absl::OkStatus());
  for (int i = 1; i <= 5; ++i) {
    std::optional<QueuedChunk> chunk = queue.Pop();
    ASSERT_TRUE(chunk.has_value());
    EXPECT_EQ(chunk->chunk.sequence(), i);
  }
  EXPECT_FALSE(queue.Pop().has_value());
}

TEST(ChunkQueueTest, WriteDigestsEveryRecordInApplyOrder) {
  v1::SyncChunk chunk = Chunk(1);
  // Added out of apply order: grants and accounts before identities.
  chunk.add_grants()->set_account_external_id("A1");
  chunk.add_accounts()->set_external_id("A1");
  chunk.add_identities()->set_external_id("E1");
  chunk.add_identities()->set_email("x@example.com");
  chunk.add_entitlements()->set_external_id("G1");
  chunk.add_rejects()->set_reason("not a record");
  ChunkQueue queue(2);
  ASSERT_TRUE(queue.Write(chunk).ok());
  std::optional<QueuedChunk> popped = queue.Pop();
  ASSERT_TRUE(popped.has_value());
  std::vector<const google::protobuf::Message*> order = {
      &chunk.identities(0), &chunk.identities(1), &chunk.accounts(0),
      &chunk.entitlements(0), &chunk.grants(0)};
  ASSERT_EQ(popped->digests.size(), order.size());
  std::string scratch;
  for (size_t i = 0; i < order.size(); ++i) {
    EXPECT_EQ(popped->digests[i].hash, ContentHash(*order[i], &scratch)) << i;
    EXPECT_EQ(popped->digests[i].bytes, order[i]->ByteSizeLong()) << i;
  }
}

TEST(ChunkQueueTest, RecycledChunksComeBackToTheProducer) {
  ChunkQueue queue(2);
  v1::SyncChunk spent;
  EXPECT_FALSE(queue.TakeSpent(&spent)) << "nothing recycled yet";
  v1::SyncChunk chunk = Chunk(1);
  chunk.add_identities()->set_external_id("E1");
  queue.Recycle(std::move(chunk));
  ASSERT_TRUE(queue.TakeSpent(&spent));
  ASSERT_EQ(spent.identities_size(), 1) << "handed back as it was";
  EXPECT_EQ(spent.identities(0).external_id(), "E1");
  EXPECT_FALSE(queue.TakeSpent(&spent)) << "each chunk is taken once";
}

TEST(ChunkQueueTest, RecyclingKeepsAtMostCapacityPlusOneChunks) {
  ChunkQueue queue(2);
  for (int i = 1; i <= 10; ++i) queue.Recycle(Chunk(i));
  int taken = 0;
  v1::SyncChunk spent;
  while (queue.TakeSpent(&spent)) {
    ++taken;
    spent = v1::SyncChunk();
  }
  EXPECT_EQ(taken, 3);
}

TEST(ChunkQueueTest, ClosedQueueKeepsNoRecycledChunks) {
  ChunkQueue queue(2);
  queue.Recycle(Chunk(1));
  queue.Close(absl::CancelledError("stop"));
  queue.Recycle(Chunk(2));
  v1::SyncChunk spent;
  EXPECT_FALSE(queue.TakeSpent(&spent));
}

TEST(ChunkQueueTest, PopReturnsNulloptOnlyAfterFinishAndDrain) {
  ChunkQueue queue(4);
  ASSERT_TRUE(queue.Write(Chunk(1)).ok());
  queue.Finish(absl::OkStatus());
  // Finished, but a chunk is still waiting: it comes first.
  std::optional<QueuedChunk> chunk = queue.Pop();
  ASSERT_TRUE(chunk.has_value());
  EXPECT_EQ(chunk->chunk.sequence(), 1);
  EXPECT_FALSE(queue.Pop().has_value());
  EXPECT_FALSE(queue.Pop().has_value());  // And stays drained.
}

TEST(ChunkQueueTest, PopWaitsForAChunkFromAnotherThread) {
  ChunkQueue queue(1);
  std::optional<QueuedChunk> popped;
  std::thread consumer([&] { popped = queue.Pop(); });
  ASSERT_TRUE(queue.Write(Chunk(42)).ok());
  consumer.join();
  ASSERT_TRUE(popped.has_value());
  EXPECT_EQ(popped->chunk.sequence(), 42);
}

TEST(ChunkQueueTest, PopWaitsForFinishFromAnotherThread) {
  ChunkQueue queue(1);
  std::optional<QueuedChunk> popped = QueuedChunk{Chunk(1), {}};
  std::thread consumer([&] { popped = queue.Pop(); });
  queue.Finish(absl::UnavailableError("source down"));
  consumer.join();
  EXPECT_FALSE(popped.has_value());
}

TEST(ChunkQueueTest, WriteBlocksWhileFullUntilPop) {
  ChunkQueue queue(1);
  ASSERT_TRUE(queue.Write(Chunk(1)).ok());  // Now full.

  WriteLog log;
  absl::Notification started_2, started_3;
  std::thread writer_2([&] {
    started_2.Notify();
    log.Returned(queue.Write(Chunk(2)));
  });
  std::thread writer_3([&] {
    started_3.Notify();
    log.Returned(queue.Write(Chunk(3)));
  });
  started_2.WaitForNotification();
  started_3.WaitForNotification();
  // Nothing was popped and the queue holds `capacity` chunks: no writer can
  // have returned, however the threads are scheduled.
  EXPECT_EQ(log.count(), 0);

  std::optional<QueuedChunk> first = queue.Pop();
  ASSERT_TRUE(first.has_value());
  EXPECT_EQ(first->chunk.sequence(), 1);
  // One Pop makes room for exactly one chunk: one writer gets through, then
  // the queue is full again and the other must still be blocked.
  EXPECT_EQ(log.AwaitAtLeast(1), 1);
  EXPECT_EQ(log.count(), 1);

  std::optional<QueuedChunk> second = queue.Pop();
  EXPECT_EQ(log.AwaitAtLeast(2), 2);
  std::optional<QueuedChunk> third = queue.Pop();
  writer_2.join();
  writer_3.join();

  ASSERT_TRUE(second.has_value());
  ASSERT_TRUE(third.has_value());
  EXPECT_THAT(
      (std::vector<int64_t>{second->chunk.sequence(), third->chunk.sequence()}),
      UnorderedElementsAre(2, 3));
  for (const absl::Status& s : log.statuses()) EXPECT_TRUE(s.ok()) << s;
}

TEST(ChunkQueueTest, CapacityBelowOneMeansOne) {
  ChunkQueue queue(0);
  ASSERT_TRUE(queue.Write(Chunk(1)).ok());  // Would block forever at 0.
  WriteLog log;
  absl::Notification started;
  std::thread writer([&] {
    started.Notify();
    log.Returned(queue.Write(Chunk(2)));
  });
  started.WaitForNotification();
  EXPECT_EQ(log.count(), 0);  // Full at one chunk.
  ASSERT_EQ(queue.Pop()->chunk.sequence(), 1);
  ASSERT_EQ(queue.Pop()->chunk.sequence(), 2);
  writer.join();
  EXPECT_EQ(log.count(), 1);
}

TEST(ChunkQueueTest, CloseUnblocksBlockedWriterWithItsStatus) {
  ChunkQueue queue(1);
  ASSERT_TRUE(queue.Write(Chunk(1)).ok());
  WriteLog log;
  absl::Notification started;
  std::thread writer([&] {
    started.Notify();
    log.Returned(queue.Write(Chunk(2)));
  });
  started.WaitForNotification();
  EXPECT_EQ(log.count(), 0);
  queue.Close(absl::AbortedError("store failed"));
  writer.join();
  ASSERT_EQ(log.count(), 1);
  EXPECT_EQ(log.statuses()[0], absl::AbortedError("store failed"));
}

TEST(ChunkQueueTest, WriteAfterCloseFailsAtOnceAndPendingChunksAreDropped) {
  ChunkQueue queue(4);
  ASSERT_TRUE(queue.Write(Chunk(1)).ok());
  ASSERT_TRUE(queue.Write(Chunk(2)).ok());
  queue.Close(absl::UnavailableError("shutting down"));
  EXPECT_EQ(queue.Write(Chunk(3)), absl::UnavailableError("shutting down"));
  queue.Finish(absl::UnavailableError("shutting down"));
  EXPECT_FALSE(queue.Pop().has_value());
}

TEST(ChunkQueueTest, CloseWithOkStatusStillStopsTheProducer) {
  ChunkQueue queue(4);
  queue.Close(absl::OkStatus());
  absl::Status s = queue.Write(Chunk(1));
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
}

TEST(ChunkQueueTest, ProducerStatusIsWhatFinishGot) {
  ChunkQueue queue(2);
  EXPECT_TRUE(queue.producer_status().ok());
  queue.Finish(absl::InvalidArgumentError("csv config: 'path' is required"));
  EXPECT_EQ(queue.producer_status(),
            absl::InvalidArgumentError("csv config: 'path' is required"));
}

TEST(ChunkQueueTest, NextSyncTokenIsTheLastOneSet) {
  ChunkQueue queue(2);
  EXPECT_EQ(queue.next_sync_token(), "");
  queue.SetNextSyncToken("wm-1");
  queue.SetNextSyncToken("wm-2");
  EXPECT_EQ(queue.next_sync_token(), "wm-2");
}

TEST(ChunkQueueTest, WorksAsRecordSinkAcrossThreads) {
  constexpr int kChunks = 200;
  ChunkQueue queue(3);
  std::thread producer([&] {
    RecordSink& sink = queue;
    for (int i = 1; i <= kChunks; ++i) {
      if (!sink.Write(Chunk(i)).ok()) break;
    }
    sink.SetNextSyncToken("wm-end");
    queue.Finish(absl::OkStatus());
  });
  int expected = 1;
  while (std::optional<QueuedChunk> chunk = queue.Pop()) {
    EXPECT_EQ(chunk->chunk.sequence(), expected++);
  }
  producer.join();
  EXPECT_EQ(expected, kChunks + 1);
  EXPECT_TRUE(queue.producer_status().ok());
  EXPECT_EQ(queue.next_sync_token(), "wm-end");
}

}  // namespace
}  // namespace idsync
