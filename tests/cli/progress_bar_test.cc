#include "cli/progress_bar.h"

#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

RunRow MakeRun(int64_t processed, int64_t chunks, int64_t done, int64_t total) {
  RunRow run;
  run.processed = processed;
  run.chunks = chunks;
  run.source_done = done;
  run.source_total = total;
  return run;
}

TEST(FormatProgressTest, KnownTotalShowsBarPercentageAndEta) {
  // A quarter of the source in 10 s: 30 s to go.
  const RunRow run = MakeRun(1000, 3, 50, 200);
  EXPECT_EQ(FormatProgress(run, absl::Seconds(10), 20),
            "[#####...............]  25% ETA 30s  "
            "1000 records  100 rec/s  3 chunks");
}

TEST(FormatProgressTest, BarHasTheGivenWidth) {
  const RunRow run = MakeRun(10, 1, 1, 4);
  for (int width : {0, 1, 10, 30, 57}) {
    SCOPED_TRACE(width);
    const std::string line = FormatProgress(run, absl::Seconds(1), width);
    ASSERT_EQ(line[0], '[');
    const size_t close = line.find(']');
    ASSERT_NE(close, std::string::npos);
    EXPECT_EQ(close, static_cast<size_t>(width) + 1);
    const std::string bar = line.substr(1, width);
    EXPECT_EQ(bar.find_first_not_of("#."), std::string::npos) << bar;
    // A quarter done: floor(width / 4) filled.
    EXPECT_EQ(bar.find('.') == std::string::npos ? bar.size() : bar.find('.'),
              static_cast<size_t>(width / 4));
  }
}

TEST(FormatProgressTest, CompleteSourceShowsFullBarWithoutEta) {
  const RunRow run = MakeRun(500, 2, 200, 200);
  const std::string line = FormatProgress(run, absl::Seconds(5), 10);
  EXPECT_EQ(line, "[##########] 100% 500 records  100 rec/s  2 chunks");
}

TEST(FormatProgressTest, NothingDoneYetShowsEmptyBarWithoutEta) {
  const RunRow run = MakeRun(0, 0, 0, 1000);
  const std::string line = FormatProgress(run, absl::Seconds(2), 4);
  EXPECT_EQ(line, "[....]   0% 0 records  0 rec/s  0 chunks");
}

TEST(FormatProgressTest, DoneBeyondTotalIsClampedToFull) {
  const RunRow run = MakeRun(10, 1, 300, 200);
  const std::string line = FormatProgress(run, absl::Seconds(1), 4);
  EXPECT_THAT(line, HasSubstr("[####] 100% "));
  EXPECT_THAT(line, Not(HasSubstr("ETA")));
}

TEST(FormatProgressTest, UnknownTotalShowsNoBarOrEta) {
  const RunRow run = MakeRun(1200, 4, 5000, 0);
  const std::string line = FormatProgress(run, absl::Seconds(3), 30);
  EXPECT_EQ(line, "1200 records  400 rec/s  4 chunks");
  EXPECT_THAT(line, Not(HasSubstr("[")));
  EXPECT_THAT(line, Not(HasSubstr("%")));
  EXPECT_THAT(line, Not(HasSubstr("ETA")));
}

TEST(FormatProgressTest, RateIsRecordsOverElapsed) {
  const RunRow run = MakeRun(500, 1, 0, 0);
  EXPECT_THAT(FormatProgress(run, absl::Seconds(4), 10),
              HasSubstr(" 125 rec/s"));
  EXPECT_THAT(FormatProgress(run, absl::Milliseconds(500), 10),
              HasSubstr(" 1000 rec/s"));
  EXPECT_THAT(FormatProgress(run, absl::Minutes(1), 10), HasSubstr(" 8 rec/s"));
}

TEST(FormatProgressTest, ZeroElapsedGivesAFiniteRate) {
  const RunRow run = MakeRun(500, 1, 10, 100);
  const std::string line = FormatProgress(run, absl::ZeroDuration(), 10);
  EXPECT_THAT(line, Not(HasSubstr("inf")));
  EXPECT_THAT(line, Not(HasSubstr("nan")));
  EXPECT_THAT(line, HasSubstr("500 records"));
}

TEST(FormatProgressTest, RejectedShownOnlyWhenPositive) {
  RunRow run = MakeRun(100, 1, 0, 0);
  EXPECT_THAT(FormatProgress(run, absl::Seconds(1), 10),
              Not(HasSubstr("rejected")));
  run.rejected = 7;
  EXPECT_EQ(FormatProgress(run, absl::Seconds(1), 10),
            "100 records  100 rec/s  1 chunks  7 rejected");
}

}  // namespace
}  // namespace idsync
