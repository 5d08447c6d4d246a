#include "agents/backoff.h"

#include <random>

#include "gtest/gtest.h"

namespace idsync {
namespace {

TEST(BackoffTest, GrowsBySixtyPercentUpToTheCap) {
  std::mt19937_64 rng(1);
  BackoffOptions options;
  options.jitter = 0;
  Backoff backoff(options, rng);
  EXPECT_EQ(backoff.Next(), absl::Seconds(1));
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(1600));
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(2560));
  absl::Duration last;
  for (int i = 0; i < 20; ++i) last = backoff.Next();
  EXPECT_EQ(last, absl::Seconds(120));
}

TEST(BackoffTest, JitterStaysWithinTwentyPercent) {
  std::mt19937_64 rng(7);
  Backoff backoff(BackoffOptions(), rng);
  double base = 1.0;
  bool varied = false;
  for (int i = 0; i < 30; ++i) {
    const double d = absl::ToDoubleSeconds(backoff.Next());
    EXPECT_GE(d, base * 0.8 - 1e-9) << i;
    EXPECT_LE(d, base * 1.2 + 1e-9) << i;
    varied = varied || std::abs(d - base) > 1e-6;
    base = std::min(base * 1.6, 120.0);
  }
  EXPECT_TRUE(varied);
}

TEST(BackoffTest, EveryDelayIsLongerThanTheOneBefore) {
  // 1.6 x 0.8 > 1.2: with +-20% jitter the delays still grow until the cap.
  std::mt19937_64 rng(3);
  Backoff backoff(BackoffOptions(), rng);
  absl::Duration previous = backoff.Next();
  for (int i = 0; i < 9; ++i) {
    absl::Duration d = backoff.Next();
    EXPECT_GT(d, previous) << i;
    previous = d;
  }
}

TEST(BackoffTest, ResetStartsOver) {
  std::mt19937_64 rng(1);
  BackoffOptions options;
  options.jitter = 0;
  options.initial = absl::Milliseconds(10);
  Backoff backoff(options, rng);
  backoff.Next();
  backoff.Next();
  backoff.Reset();
  EXPECT_EQ(backoff.Next(), absl::Milliseconds(10));
}

TEST(BackoffTest, SameSeedSameDelays) {
  std::mt19937_64 a(42), b(42);
  Backoff x(BackoffOptions(), a), y(BackoffOptions(), b);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(x.Next(), y.Next());
}

}  // namespace
}  // namespace idsync
