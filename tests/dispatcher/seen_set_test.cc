#include "dispatcher/seen_set.h"

#include <sys/resource.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

constexpr int64_t kTwoTo32 = int64_t{1} << 32;
// The largest row id the store holds, for decoding.
constexpr int64_t kMaxId = 1000000;

// Appends `value` as a little-endian base-128 varint.
void AppendVarint(uint64_t value, std::string* out) {
  while (value >= 0x80) {
    out->push_back(static_cast<char>(value | 0x80));
    value >>= 7;
  }
  out->push_back(static_cast<char>(value));
}

std::string Varints(std::initializer_list<uint64_t> values) {
  std::string out;
  for (uint64_t v : values) AppendVarint(v, &out);
  return out;
}

// The pending delta, then marks it persisted (what a successful commit does).
std::string Persist(SeenSet& set) {
  std::string delta = set.PendingDelta();
  set.MarkPersisted();
  return delta;
}

TEST(SeenSetTest, StartsEmpty) {
  SeenSet set;
  EXPECT_EQ(set.size(), 0);
  EXPECT_FALSE(set.Contains(0));
  EXPECT_FALSE(set.Contains(1));
  EXPECT_FALSE(set.Contains(1 << 20));
  EXPECT_EQ(Persist(set), "");
}

TEST(SeenSetTest, InsertThenContains) {
  SeenSet set;
  EXPECT_TRUE(set.Insert(0));
  EXPECT_TRUE(set.Insert(5));
  EXPECT_TRUE(set.Insert(63));
  EXPECT_TRUE(set.Insert(64));
  EXPECT_EQ(set.size(), 4);
  for (int64_t id : {0, 5, 63, 64}) EXPECT_TRUE(set.Contains(id)) << id;
  for (int64_t id : {1, 4, 6, 62, 65, 127, 128}) {
    EXPECT_FALSE(set.Contains(id)) << id;
  }
}

TEST(SeenSetTest, DuplicateInsertReturnsFalseAndKeepsSize) {
  SeenSet set;
  EXPECT_TRUE(set.Insert(7));
  EXPECT_FALSE(set.Insert(7));
  EXPECT_FALSE(set.Insert(7));
  EXPECT_EQ(set.size(), 1);
  // The duplicate is not encoded twice.
  EXPECT_EQ(Persist(set), Varints({7}));
}

TEST(SeenSetTest, LargeIdsBeyondCurrentCapacity) {
  SeenSet set;
  EXPECT_TRUE(set.Insert(3));
  EXPECT_TRUE(set.Insert(1'000'003));
  EXPECT_TRUE(set.Insert(kTwoTo32 + 17));
  EXPECT_EQ(set.size(), 3);
  EXPECT_TRUE(set.Contains(3));
  EXPECT_TRUE(set.Contains(1'000'003));
  EXPECT_TRUE(set.Contains(kTwoTo32 + 17));
  EXPECT_FALSE(set.Contains(kTwoTo32 + 16));
  EXPECT_FALSE(set.Contains(17));  // No truncation to 32 bits.
  EXPECT_FALSE(set.Contains(kTwoTo32 * 4));
}

TEST(SeenSetTest, DeltaIsSortedDeltaVarints) {
  SeenSet set;
  for (int64_t id : {300, 1, 3}) set.Insert(id);
  // Sorted 1, 3, 300 -> deltas 1, 2, 297 (297 = 0xA9 0x02 as a varint).
  EXPECT_EQ(Persist(set), std::string("\x01\x02\xA9\x02", 4));
}

TEST(SeenSetTest, PendingDeltaIsStableUntilPersisted) {
  SeenSet set;
  set.Insert(3);
  EXPECT_EQ(set.PendingDelta(), Varints({3}));
  EXPECT_EQ(set.PendingDelta(), Varints({3})) << "reading does not consume";
}

TEST(SeenSetTest, MarkPersistedClearsPendingButKeepsIds) {
  SeenSet set;
  set.Insert(1);
  set.Insert(2);
  EXPECT_EQ(Persist(set), Varints({1, 1}));
  EXPECT_EQ(Persist(set), "");
  EXPECT_TRUE(set.Contains(1));
  EXPECT_TRUE(set.Contains(2));
  // The next delta holds only the new id, relative to 0.
  set.Insert(10);
  EXPECT_EQ(Persist(set), Varints({10}));
}

TEST(SeenSetTest, DenseIdsCostAboutOneBytePerId) {
  SeenSet set;
  for (int64_t id = 1000; id < 2000; ++id) set.Insert(id);
  const std::string delta = Persist(set);
  EXPECT_EQ(delta.size(), 2u + 999u);  // 1000 needs two bytes, then 1s.
}

TEST(SeenSetTest, EncodeDecodeRoundTripsRandomIds) {
  std::mt19937_64 rng(20240501);
  std::uniform_int_distribution<int64_t> small(0, (int64_t{1} << 24) - 1);
  // Varint edges, and ids above 2^32 (5-byte deltas). Those share one bitset
  // word so the sets hold one 512 MiB bitset instead of doubling to 1 GiB.
  std::set<int64_t> ids = {
      0,     1,        127,          128,           16383,
      16384, kTwoTo32, kTwoTo32 + 1, kTwoTo32 + 37, kTwoTo32 + 63};
  while (ids.size() < 5000) ids.insert(small(rng));
  std::vector<int64_t> shuffled(ids.begin(), ids.end());
  std::shuffle(shuffled.begin(), shuffled.end(), rng);

  std::string encoded;
  {
    SeenSet source;
    for (int64_t id : shuffled) ASSERT_TRUE(source.Insert(id)) << id;
    encoded = Persist(source);
  }

  SeenSet decoded;
  ASSERT_TRUE(decoded.AddEncoded(encoded, kTwoTo32 + 63).ok());
  EXPECT_EQ(decoded.size(), static_cast<int64_t>(ids.size()));
  for (int64_t id : ids) ASSERT_TRUE(decoded.Contains(id)) << id;
  // A sample of ids never inserted stays absent.
  std::uniform_int_distribution<int64_t> any(0, kTwoTo32 + 63);
  for (int i = 0; i < 2000; ++i) {
    const int64_t id = any(rng);
    EXPECT_EQ(decoded.Contains(id), ids.count(id) == 1) << id;
  }
  // Decoded ids are already persisted: nothing pending.
  EXPECT_EQ(Persist(decoded), "");
}

TEST(SeenSetTest, AddEncodedMergesWithExistingIds) {
  SeenSet set;
  set.Insert(2);
  ASSERT_TRUE(set.AddEncoded(Varints({1, 1, 1}), kMaxId).ok());  // 1, 2, 3.
  EXPECT_EQ(set.size(), 3);
  EXPECT_TRUE(set.Contains(1));
  EXPECT_TRUE(set.Contains(3));
}

TEST(SeenSetTest, AddEncodedOfEmptyIsNoOp) {
  SeenSet set;
  ASSERT_TRUE(set.AddEncoded("", kMaxId).ok());
  EXPECT_EQ(set.size(), 0);
}

TEST(SeenSetTest, DropDeltaForgetsOnlyPendingIds) {
  SeenSet set;
  set.Insert(1);
  set.Insert(100);
  const std::string committed = Persist(set);

  EXPECT_TRUE(set.Insert(50));
  EXPECT_TRUE(set.Insert(200));
  EXPECT_FALSE(set.Insert(100));  // Already committed: not pending again.
  EXPECT_EQ(set.size(), 4);
  set.DropDelta();

  EXPECT_EQ(set.size(), 2);
  EXPECT_TRUE(set.Contains(1));
  EXPECT_TRUE(set.Contains(100));
  EXPECT_FALSE(set.Contains(50));
  EXPECT_FALSE(set.Contains(200));
  EXPECT_EQ(Persist(set), "");
  // A dropped id can be seen again and is then pending again.
  EXPECT_TRUE(set.Insert(50));
  EXPECT_EQ(Persist(set), Varints({50}));
  EXPECT_EQ(committed, Varints({1, 99}));
}

TEST(SeenSetTest, DropDeltaWithNothingPendingIsNoOp) {
  SeenSet set;
  set.Insert(9);
  Persist(set);
  set.DropDelta();
  EXPECT_EQ(set.size(), 1);
  EXPECT_TRUE(set.Contains(9));
}

TEST(SeenSetTest, DropDeltaAfterAddEncodedKeepsDecodedIds) {
  SeenSet set;
  ASSERT_TRUE(set.AddEncoded(Varints({4, 4}), kMaxId).ok());  // 4, 8.
  set.DropDelta();
  EXPECT_EQ(set.size(), 2);
  EXPECT_TRUE(set.Contains(4));
  EXPECT_TRUE(set.Contains(8));
}

void ExpectDataLoss(absl::string_view encoded, const char* what) {
  SeenSet set;
  absl::Status status = set.AddEncoded(encoded, kMaxId);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss)
      << what << ": " << status;
}

TEST(SeenSetTest, TruncatedVarintIsDataLoss) {
  ExpectDataLoss(std::string("\x80", 1), "lone continuation");
  ExpectDataLoss(std::string("\x05\xFF\xFF", 3), "truncated after a valid id");
}

TEST(SeenSetTest, OverlongVarintIsDataLoss) {
  // Eleven bytes: more than any 64-bit value needs.
  std::string eleven(10, '\x80');
  eleven.push_back('\x01');
  ExpectDataLoss(eleven, "11-byte varint");
  ExpectDataLoss(std::string(32, '\xFF') + "\x01", "32-byte varint");
}

TEST(SeenSetTest, IdAboveTheLargestRowIdIsDataLoss) {
  ExpectDataLoss(Varints({uint64_t{kMaxId} + 1}),
                 "id above the largest row id");
  ExpectDataLoss(Varints({~uint64_t{0}}), "id 2^64-1");
  ExpectDataLoss(Varints({5, uint64_t{kMaxId}}),
                 "sum of deltas above the largest id");
  SeenSet set;
  EXPECT_TRUE(set.AddEncoded(Varints({uint64_t{kMaxId}}), kMaxId).ok())
      << "bound is inclusive";
}

TEST(SeenSetTest, DeltaThatWrapsAroundIsDataLoss) {
  // 5, then a delta of 2^64 - 1: the sum wraps to 4 in 64 bits. No valid
  // encoding holds a delta this large, so it must not decode to "4".
  SeenSet set;
  absl::Status status = set.AddEncoded(Varints({5, ~uint64_t{0}}), kMaxId);
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss) << status;
  EXPECT_FALSE(set.Contains(4));
}

// A corrupt record naming a huge id (its bitset would be 128 GiB) must come
// back as an error, not abort the process with bad_alloc. Run in a child
// under a 1 GiB address-space limit so the outcome does not depend on the
// machine's memory.
[[noreturn]] void DecodeHugeIdUnderMemoryLimitAndExit() {
  rlimit limit;
  limit.rlim_cur = limit.rlim_max = rlim_t{1} << 30;
  if (setrlimit(RLIMIT_AS, &limit) != 0) std::_Exit(2);
  SeenSet set;
  const absl::Status status =
      set.AddEncoded(Varints({uint64_t{1} << 40}), kMaxId);
  std::_Exit(status.ok() ? 1 : 0);
}

TEST(SeenSetDeathTest, HugeIdFailsCleanlyInsteadOfAborting) {
  EXPECT_EXIT(DecodeHugeIdUnderMemoryLimitAndExit(),
              ::testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace idsync
