#include "connector/chunk_writer.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

// Records every chunk written; fails with `error_` when it is set.
class RecordingSink : public RecordSink {
 public:
  absl::Status Write(v1::SyncChunk chunk) override {
    if (!error_.ok()) return error_;
    chunks_.push_back(std::move(chunk));
    return absl::OkStatus();
  }
  void SetNextSyncToken(std::string token) override {
    token_ = std::move(token);
  }
  bool TakeSpent(v1::SyncChunk* chunk) override {
    if (!recycle_ || chunks_.empty()) return false;
    taken_.push_back(chunks_.back());  // What was written, for the test.
    chunk->Swap(&chunks_.back());
    chunks_.pop_back();
    return true;
  }

  bool recycle_ = false;
  std::vector<v1::SyncChunk> taken_;
  std::vector<v1::SyncChunk> chunks_;
  absl::Status error_;
  std::string token_;
};

v1::Progress MakeProgress(int64_t done, int64_t total) {
  v1::Progress p;
  p.set_done(done);
  p.set_total(total);
  p.set_unit("bytes");
  return p;
}

TEST(ChunkWriterTest, ASpentChunkIsReusedClearedOfItsRecords) {
  RecordingSink sink;
  sink.recycle_ = true;
  ChunkWriter writer(sink, 10);
  v1::RemoteIdentity* first = writer.AddIdentity();
  first->set_external_id("E1");
  first->set_email("e1@example.com");
  (*first->mutable_attributes())["site"] = "Chicago";
  writer.AddReject()->set_reason("bad row");
  ASSERT_TRUE(writer.Flush("t1", MakeProgress(1, 2)).ok());
  ASSERT_EQ(sink.taken_.size(), 1u) << "the writer took the chunk back";
  EXPECT_EQ(writer.size(), 0) << "and starts from an empty chunk";

  writer.AddIdentity()->set_external_id("E2");
  ASSERT_TRUE(writer.Flush("t2").ok());
  ASSERT_EQ(sink.taken_.size(), 2u);
  const v1::SyncChunk& second = sink.taken_[1];
  EXPECT_EQ(second.sequence(), 2);
  EXPECT_EQ(second.resume_token(), "t2");
  EXPECT_EQ(second.progress().total(), 0)
      << "nothing of the first chunk remains";
  EXPECT_EQ(second.rejects_size(), 0);
  ASSERT_EQ(second.identities_size(), 1);
  EXPECT_EQ(second.identities(0).external_id(), "E2");
  EXPECT_EQ(second.identities(0).email(), "");
  EXPECT_TRUE(second.identities(0).attributes().empty());
}

TEST(ChunkWriterTest, FlushOfEmptyChunkWritesNothing) {
  RecordingSink sink;
  ChunkWriter writer(sink, 10);
  EXPECT_TRUE(writer.Flush("token-0").ok());
  EXPECT_TRUE(writer.Flush("token-0", MakeProgress(1, 2)).ok());
  EXPECT_TRUE(sink.chunks_.empty());
}

TEST(ChunkWriterTest, EmptyFlushDoesNotConsumeASequenceNumber) {
  RecordingSink sink;
  ChunkWriter writer(sink, 10);
  ASSERT_TRUE(writer.Flush("t").ok());
  writer.AddIdentity()->set_external_id("E1");
  ASSERT_TRUE(writer.Flush("t1").ok());
  ASSERT_EQ(sink.chunks_.size(), 1u);
  EXPECT_EQ(sink.chunks_[0].sequence(), 1);
}

TEST(ChunkWriterTest, SequenceCountsFromOne) {
  RecordingSink sink;
  ChunkWriter writer(sink, 10);
  for (int i = 1; i <= 4; ++i) {
    writer.AddIdentity()->set_external_id(absl::StrCat("E", i));
    ASSERT_TRUE(writer.Flush(absl::StrCat("offset=", i)).ok());
    ASSERT_TRUE(writer.Flush("ignored").ok());  // Empty: no chunk.
  }
  ASSERT_EQ(sink.chunks_.size(), 4u);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(sink.chunks_[i].sequence(), i + 1);
  }
}

TEST(ChunkWriterTest, FlushSetsResumeTokenAndProgress) {
  RecordingSink sink;
  ChunkWriter writer(sink, 10);
  writer.AddIdentity()->set_external_id("E1");
  ASSERT_TRUE(writer.Flush("offset=120", MakeProgress(120, 1000)).ok());
  ASSERT_EQ(sink.chunks_.size(), 1u);
  const v1::SyncChunk& chunk = sink.chunks_[0];
  EXPECT_EQ(chunk.resume_token(), "offset=120");
  EXPECT_EQ(chunk.progress().done(), 120);
  EXPECT_EQ(chunk.progress().total(), 1000);
  EXPECT_EQ(chunk.progress().unit(), "bytes");
  ASSERT_EQ(chunk.identities_size(), 1);
  EXPECT_EQ(chunk.identities(0).external_id(), "E1");
}

TEST(ChunkWriterTest, NextChunkStartsEmpty) {
  RecordingSink sink;
  ChunkWriter writer(sink, 10);
  writer.AddIdentity()->set_external_id("E1");
  writer.AddReject()->set_reason("bad row");
  ASSERT_TRUE(writer.Flush("t1", MakeProgress(10, 100)).ok());
  EXPECT_EQ(writer.size(), 0);

  writer.AddAccount()->set_external_id("A1");
  ASSERT_TRUE(writer.Flush("t2").ok());
  ASSERT_EQ(sink.chunks_.size(), 2u);
  const v1::SyncChunk& second = sink.chunks_[1];
  EXPECT_EQ(second.identities_size(), 0);
  EXPECT_EQ(second.rejects_size(), 0);
  ASSERT_EQ(second.accounts_size(), 1);
  EXPECT_EQ(second.accounts(0).external_id(), "A1");
  EXPECT_EQ(second.resume_token(), "t2");
  // Progress is per flush; none given means none carried over.
  EXPECT_EQ(second.progress().done(), 0);
  EXPECT_EQ(second.progress().total(), 0);
}

TEST(ChunkWriterTest, ChunkSizeDefaultsAndClamps) {
  RecordingSink sink;
  EXPECT_EQ(ChunkWriter(sink, 0).chunk_size(), kDefaultChunkSize);
  EXPECT_EQ(ChunkWriter(sink, -5).chunk_size(), kDefaultChunkSize);
  EXPECT_EQ(ChunkWriter(sink, 1).chunk_size(), 1);
  EXPECT_EQ(ChunkWriter(sink, 500).chunk_size(), 500);
  EXPECT_EQ(ChunkWriter(sink, 10000).chunk_size(), 10000);
  EXPECT_EQ(ChunkWriter(sink, 10001).chunk_size(), kMaxChunkSize);
  EXPECT_EQ(kDefaultChunkSize, 1000);
  EXPECT_EQ(kMaxChunkSize, 10000);
}

TEST(ChunkWriterTest, SizeCountsEveryKindOfItem) {
  RecordingSink sink;
  ChunkWriter writer(sink, 6);
  EXPECT_EQ(writer.size(), 0);
  writer.AddIdentity();
  EXPECT_EQ(writer.size(), 1);
  writer.AddAccount();
  EXPECT_EQ(writer.size(), 2);
  writer.AddEntitlement();
  EXPECT_EQ(writer.size(), 3);
  writer.AddGrant();
  EXPECT_EQ(writer.size(), 4);
  writer.AddDeletion();
  EXPECT_EQ(writer.size(), 5);
  EXPECT_FALSE(writer.full());
  writer.AddReject();
  EXPECT_EQ(writer.size(), 6);
  EXPECT_TRUE(writer.full());
}

TEST(ChunkWriterTest, FullCountsDeletionsAndRejects) {
  RecordingSink sink;
  ChunkWriter writer(sink, 3);
  writer.AddDeletion();
  writer.AddReject();
  EXPECT_FALSE(writer.full());
  writer.AddReject();
  EXPECT_TRUE(writer.full());
  ASSERT_TRUE(writer.Flush("t").ok());
  EXPECT_FALSE(writer.full());
  ASSERT_EQ(sink.chunks_.size(), 1u);
  EXPECT_EQ(sink.chunks_[0].deletions_size(), 1);
  EXPECT_EQ(sink.chunks_[0].rejects_size(), 2);
}

TEST(ChunkWriterTest, SinkErrorPropagates) {
  RecordingSink sink;
  sink.error_ = absl::CancelledError("run cancelled");
  ChunkWriter writer(sink, 10);
  writer.AddIdentity();
  EXPECT_EQ(writer.Flush("t"), absl::CancelledError("run cancelled"));
  EXPECT_TRUE(sink.chunks_.empty());
}

}  // namespace
}  // namespace idsync
