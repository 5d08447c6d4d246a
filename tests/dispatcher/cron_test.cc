#include "dispatcher/cron.h"

#include <algorithm>
#include <cstdint>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

absl::TimeZone Zone(const std::string& name) {
  absl::TimeZone tz;
  EXPECT_TRUE(absl::LoadTimeZone(name, &tz)) << name;
  return tz;
}

absl::Time Utc(int y, int mo, int d, int h, int mi, int s = 0) {
  return absl::FromCivil(absl::CivilSecond(y, mo, d, h, mi, s),
                         absl::UTCTimeZone());
}

CronSchedule MustParse(const std::string& expr, const std::string& tz = "") {
  absl::StatusOr<CronSchedule> s = CronSchedule::Parse(expr, tz);
  EXPECT_TRUE(s.ok()) << expr << ": " << s.status();
  if (!s.ok()) return *CronSchedule::Parse("* * * * *", "");
  return *std::move(s);
}

std::string Format(absl::Time t, const std::string& tz = "UTC") {
  if (t == absl::InfiniteFuture()) return "never";
  return absl::FormatTime("%Y-%m-%d %H:%M:%S %z", t, Zone(tz));
}

// The next `n` runs after `start`, formatted in `tz`.
std::vector<std::string> Runs(const std::string& expr, absl::Time start, int n,
                              const std::string& tz = "UTC") {
  CronSchedule schedule = MustParse(expr, tz);
  std::vector<std::string> out;
  absl::Time t = start;
  for (int i = 0; i < n; ++i) {
    t = schedule.Next(t);
    out.push_back(Format(t, tz));
  }
  return out;
}

std::string ParseError(const std::string& expr, const std::string& tz = "") {
  absl::StatusOr<CronSchedule> s = CronSchedule::Parse(expr, tz);
  if (s.ok()) return "parsed";
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(s.status().message());
}

using Strings = std::vector<std::string>;

// --- Syntax -----------------------------------------------------------------

TEST(CronParseTest, EveryMinuteIsStrictlyAfter) {
  CronSchedule s = MustParse("* * * * *");
  EXPECT_EQ(s.Next(Utc(2026, 5, 1, 10, 0, 30)), Utc(2026, 5, 1, 10, 1));
  EXPECT_EQ(s.Next(Utc(2026, 5, 1, 10, 1)), Utc(2026, 5, 1, 10, 2));
  EXPECT_EQ(s.Next(Utc(2026, 5, 1, 10, 1) - absl::Nanoseconds(1)),
            Utc(2026, 5, 1, 10, 1));
}

TEST(CronParseTest, SingleValues) {
  EXPECT_EQ(
      Runs("30 4 * * *", Utc(2026, 5, 1, 4, 30), 2),
      (Strings{"2026-05-02 04:30:00 +0000", "2026-05-03 04:30:00 +0000"}));
}

TEST(CronParseTest, Range) {
  EXPECT_EQ(
      Runs("0 9-11 * * *", Utc(2026, 5, 1, 8, 0), 4),
      (Strings{"2026-05-01 09:00:00 +0000", "2026-05-01 10:00:00 +0000",
               "2026-05-01 11:00:00 +0000", "2026-05-02 09:00:00 +0000"}));
}

TEST(CronParseTest, List) {
  EXPECT_EQ(
      Runs("0,15,45 * * * *", Utc(2026, 5, 1, 8, 0), 4),
      (Strings{"2026-05-01 08:15:00 +0000", "2026-05-01 08:45:00 +0000",
               "2026-05-01 09:00:00 +0000", "2026-05-01 09:15:00 +0000"}));
}

TEST(CronParseTest, StepOverStar) {
  EXPECT_EQ(
      Runs("*/20 * * * *", Utc(2026, 5, 1, 8, 0), 4),
      (Strings{"2026-05-01 08:20:00 +0000", "2026-05-01 08:40:00 +0000",
               "2026-05-01 09:00:00 +0000", "2026-05-01 09:20:00 +0000"}));
  EXPECT_EQ(
      Runs("0 */7 * * *", Utc(2026, 5, 1, 0, 0), 4),
      (Strings{"2026-05-01 07:00:00 +0000", "2026-05-01 14:00:00 +0000",
               "2026-05-01 21:00:00 +0000", "2026-05-02 00:00:00 +0000"}));
}

TEST(CronParseTest, StepOverRange) {
  EXPECT_EQ(
      Runs("10-30/10 * * * *", Utc(2026, 5, 1, 8, 0), 4),
      (Strings{"2026-05-01 08:10:00 +0000", "2026-05-01 08:20:00 +0000",
               "2026-05-01 08:30:00 +0000", "2026-05-01 09:10:00 +0000"}));
}

TEST(CronParseTest, StepFromValueRunsToTheMaximum) {
  EXPECT_EQ(
      Runs("5/20 * * * *", Utc(2026, 5, 1, 8, 0), 4),
      (Strings{"2026-05-01 08:05:00 +0000", "2026-05-01 08:25:00 +0000",
               "2026-05-01 08:45:00 +0000", "2026-05-01 09:05:00 +0000"}));
}

TEST(CronParseTest, MixedList) {
  EXPECT_EQ(
      Runs("1,10-11,*/30 * * * *", Utc(2026, 5, 1, 8, 0), 6),
      (Strings{"2026-05-01 08:01:00 +0000", "2026-05-01 08:10:00 +0000",
               "2026-05-01 08:11:00 +0000", "2026-05-01 08:30:00 +0000",
               "2026-05-01 09:00:00 +0000", "2026-05-01 09:01:00 +0000"}));
}

TEST(CronParseTest, LeadingZerosAndWhitespace) {
  CronSchedule s = MustParse("  05\t007   * *  *  ");
  EXPECT_EQ(s.expression(), "05\t007   * *  *");
  EXPECT_EQ(s.Next(Utc(2026, 5, 1, 0, 0)), Utc(2026, 5, 1, 7, 5));
}

TEST(CronParseTest, MonthNamesAreCaseInsensitive) {
  EXPECT_EQ(
      Runs("0 0 1 jan,Mar-MAY *", Utc(2026, 1, 1, 0, 0), 4),
      (Strings{"2026-03-01 00:00:00 +0000", "2026-04-01 00:00:00 +0000",
               "2026-05-01 00:00:00 +0000", "2027-01-01 00:00:00 +0000"}));
}

TEST(CronParseTest, DayNames) {
  // 2026-05-01 is a Friday.
  EXPECT_EQ(
      Runs("0 0 * * mon-Wed,FRI", Utc(2026, 5, 1, 0, 0), 4),
      (Strings{"2026-05-04 00:00:00 +0000", "2026-05-05 00:00:00 +0000",
               "2026-05-06 00:00:00 +0000", "2026-05-08 00:00:00 +0000"}));
  EXPECT_EQ(Runs("0 0 * * MON-FRI/2", Utc(2026, 5, 1, 0, 0), 3),
            (Strings{"2026-05-04 00:00:00 +0000", "2026-05-06 00:00:00 +0000",
                     "2026-05-08 00:00:00 +0000"}));
}

TEST(CronParseTest, SevenIsSunday) {
  const Strings sundays = {"2026-05-03 00:00:00 +0000",
                           "2026-05-10 00:00:00 +0000"};
  EXPECT_EQ(Runs("0 0 * * 7", Utc(2026, 5, 1, 0, 0), 2), sundays);
  EXPECT_EQ(Runs("0 0 * * 0", Utc(2026, 5, 1, 0, 0), 2), sundays);
  EXPECT_EQ(Runs("0 0 * * sun", Utc(2026, 5, 1, 0, 0), 2), sundays);
  // Friday to Sunday.
  EXPECT_EQ(Runs("0 0 * * 5-7", Utc(2026, 5, 1, 0, 0), 3),
            (Strings{"2026-05-02 00:00:00 +0000", "2026-05-03 00:00:00 +0000",
                     "2026-05-08 00:00:00 +0000"}));
}

TEST(CronParseTest, DayOfWeekStep) {
  // Sunday, Tuesday, Thursday, Saturday.
  EXPECT_EQ(
      Runs("0 0 * * */2", Utc(2026, 5, 1, 0, 0), 4),
      (Strings{"2026-05-02 00:00:00 +0000", "2026-05-03 00:00:00 +0000",
               "2026-05-05 00:00:00 +0000", "2026-05-07 00:00:00 +0000"}));
}

TEST(CronParseTest, Macros) {
  const absl::Time start = Utc(2026, 5, 13, 10, 30);  // A Wednesday.
  struct Case {
    const char* macro;
    const char* fields;
  };
  for (const Case& c :
       {Case{"@hourly", "0 * * * *"}, Case{"@daily", "0 0 * * *"},
        Case{"@midnight", "0 0 * * *"}, Case{"@weekly", "0 0 * * 0"},
        Case{"@monthly", "0 0 1 * *"}, Case{"@yearly", "0 0 1 1 *"},
        Case{"@annually", "0 0 1 1 *"}}) {
    EXPECT_EQ(Runs(c.macro, start, 3), Runs(c.fields, start, 3)) << c.macro;
  }
  EXPECT_EQ(Runs("@DAILY", start, 1), Strings{"2026-05-14 00:00:00 +0000"});
  EXPECT_EQ(MustParse(" @weekly ").expression(), "@weekly");
}

// --- Day-of-month and day-of-week --------------------------------------------

TEST(CronDayRuleTest, BothRestrictedMatchEither) {
  // The 13th or any Friday.
  EXPECT_EQ(
      Runs("0 0 13 * FRI", Utc(2026, 3, 1, 0, 0), 8),
      (Strings{"2026-03-06 00:00:00 +0000", "2026-03-13 00:00:00 +0000",
               "2026-03-20 00:00:00 +0000", "2026-03-27 00:00:00 +0000",
               "2026-04-03 00:00:00 +0000", "2026-04-10 00:00:00 +0000",
               "2026-04-13 00:00:00 +0000", "2026-04-17 00:00:00 +0000"}));
}

TEST(CronDayRuleTest, StarDayOfWeekLeavesDayOfMonth) {
  EXPECT_EQ(
      Runs("0 0 13 * *", Utc(2026, 3, 1, 0, 0), 2),
      (Strings{"2026-03-13 00:00:00 +0000", "2026-04-13 00:00:00 +0000"}));
}

TEST(CronDayRuleTest, StarDayOfMonthLeavesDayOfWeek) {
  EXPECT_EQ(
      Runs("0 0 * * FRI", Utc(2026, 3, 1, 0, 0), 2),
      (Strings{"2026-03-06 00:00:00 +0000", "2026-03-13 00:00:00 +0000"}));
}

TEST(CronDayRuleTest, FieldStartingWithStarCountsAsUnrestricted) {
  // crontab(5): "*/2" starts with '*', so the fields are AND-ed: Mondays
  // that are odd days of the month.
  EXPECT_EQ(
      Runs("0 0 */2 6 MON", Utc(2026, 5, 1, 0, 0), 4),
      (Strings{"2026-06-01 00:00:00 +0000", "2026-06-15 00:00:00 +0000",
               "2026-06-29 00:00:00 +0000", "2027-06-07 00:00:00 +0000"}));
}

TEST(CronDayRuleTest, FullRangeIsStillRestricted) {
  // "1-31" does not start with '*', so any day matches (OR).
  EXPECT_EQ(
      Runs("0 0 1-31 * MON", Utc(2026, 5, 1, 0, 0), 2),
      (Strings{"2026-05-02 00:00:00 +0000", "2026-05-03 00:00:00 +0000"}));
}

TEST(CronDayRuleTest, ImpossibleDateWithWeekdayRunsOnTheWeekday) {
  // OR: Feb 30 never comes, Mondays in February do.
  EXPECT_EQ(
      Runs("0 0 30 2 MON", Utc(2026, 1, 1, 0, 0), 2),
      (Strings{"2026-02-02 00:00:00 +0000", "2026-02-09 00:00:00 +0000"}));
}

// --- Rejections
// ----------------------------------------------------------------

TEST(CronRejectTest, FieldCount) {
  EXPECT_EQ(ParseError(""), "cron: empty expression");
  EXPECT_EQ(ParseError(" \t "), "cron: empty expression");
  EXPECT_EQ(ParseError("* * * *"),
            "cron: expected 5 fields (minute hour day-of-month month "
            "day-of-week), got 4");
  EXPECT_EQ(ParseError("* * * * * *"),
            "cron: expected 5 fields (minute hour day-of-month month "
            "day-of-week), got 6");
}

TEST(CronRejectTest, OutOfRange) {
  EXPECT_EQ(ParseError("61 * * * *"),
            "cron: minute field \"61\": value 61 out of range 0-59");
  EXPECT_EQ(ParseError("0 24 * * *"),
            "cron: hour field \"24\": value 24 out of range 0-23");
  EXPECT_EQ(ParseError("0 0 0 * *"),
            "cron: day-of-month field \"0\": value 0 out of range 1-31");
  EXPECT_EQ(ParseError("0 0 32 * *"),
            "cron: day-of-month field \"32\": value 32 out of range 1-31");
  EXPECT_EQ(ParseError("0 0 * 0 *"),
            "cron: month field \"0\": value 0 out of range 1-12");
  EXPECT_EQ(ParseError("0 0 * 13 *"),
            "cron: month field \"13\": value 13 out of range 1-12");
  EXPECT_EQ(ParseError("0 0 * * 8"),
            "cron: day-of-week field \"8\": value 8 out of range 0-7");
  EXPECT_EQ(ParseError("1,2,99999999999 * * * *"),
            "cron: minute field \"1,2,99999999999\": value 99999999999 out of "
            "range 0-59");
  EXPECT_EQ(ParseError("0 5-25 * * *"),
            "cron: hour field \"5-25\": value 25 out of range 0-23");
}

TEST(CronRejectTest, ReversedRange) {
  EXPECT_EQ(ParseError("0 5-2 * * *"),
            "cron: hour field \"5-2\": reversed range 5-2");
  EXPECT_EQ(ParseError("0 0 * * FRI-MON"),
            "cron: day-of-week field \"FRI-MON\": reversed range FRI-MON");
}

TEST(CronRejectTest, BadSteps) {
  EXPECT_EQ(ParseError("*/0 * * * *"),
            "cron: minute field \"*/0\": step 0 out of range 1-59");
  EXPECT_EQ(ParseError("*/60 * * * *"),
            "cron: minute field \"*/60\": step 60 out of range 1-59");
  EXPECT_EQ(ParseError("0 1-5/0 * * *"),
            "cron: hour field \"1-5/0\": step 0 out of range 1-23");
  EXPECT_EQ(ParseError("5/ * * * *"),
            "cron: minute field \"5/\": missing step after '/'");
  EXPECT_EQ(ParseError("/5 * * * *"),
            "cron: minute field \"/5\": missing value before '/'");
  EXPECT_EQ(ParseError("*/x * * * *"),
            "cron: minute field \"*/x\": invalid step \"x\"");
  EXPECT_EQ(ParseError("*/5/2 * * * *"),
            "cron: minute field \"*/5/2\": invalid step \"5/2\"");
}

TEST(CronRejectTest, EmptyListElementsAndMissingValues) {
  EXPECT_EQ(ParseError("1,,2 * * * *"),
            "cron: minute field \"1,,2\": empty list element");
  EXPECT_EQ(ParseError("1, * * * *"),
            "cron: minute field \"1,\": empty list element");
  EXPECT_EQ(ParseError("0 1- * * *"), "cron: hour field \"1-\": missing value");
  EXPECT_EQ(ParseError("0 -1 * * *"), "cron: hour field \"-1\": missing value");
}

TEST(CronRejectTest, GarbageAndNames) {
  EXPECT_EQ(ParseError("1# * * * *"),
            "cron: minute field \"1#\": unexpected character '#'");
  EXPECT_EQ(ParseError("0 0 * * 1;"),
            "cron: day-of-week field \"1;\": unexpected character ';'");
  EXPECT_EQ(ParseError("0 0 \x01 * *"),
            "cron: day-of-month field \"\\001\": unexpected character "
            "'\\001'");
  EXPECT_EQ(ParseError("1a * * * *"),
            "cron: minute field \"1a\": invalid value \"1a\"");
  EXPECT_EQ(ParseError("MON * * * *"),
            "cron: minute field \"MON\": invalid value \"MON\"");
  EXPECT_EQ(ParseError("0 0 * * *-5"),
            "cron: day-of-week field \"*-5\": invalid value \"*\"");
  EXPECT_EQ(ParseError("0 0 1-2-3 * *"),
            "cron: day-of-month field \"1-2-3\": invalid value \"2-3\"");
  EXPECT_EQ(ParseError("0 0 * FOO *"),
            "cron: month field \"FOO\": unknown name \"FOO\" (expected "
            "JAN-DEC)");
  EXPECT_EQ(ParseError("0 0 * * MONDAY"),
            "cron: day-of-week field \"MONDAY\": unknown name \"MONDAY\" "
            "(expected SUN-SAT)");
  EXPECT_EQ(ParseError("0 0 * MON *"),
            "cron: month field \"MON\": unknown name \"MON\" (expected "
            "JAN-DEC)");
}

TEST(CronRejectTest, Macros) {
  const std::string expected =
      " (expected @hourly, @daily, @midnight, @weekly, @monthly, @yearly or "
      "@annually)";
  EXPECT_EQ(ParseError("@reboot"),
            "cron: unknown macro \"@reboot\"" + expected);
  EXPECT_EQ(ParseError("@daily 5"),
            "cron: unknown macro \"@daily 5\"" + expected);
  EXPECT_EQ(ParseError("@"), "cron: unknown macro \"@\"" + expected);
}

TEST(CronRejectTest, Overlong) {
  std::string list = "0";
  while (list.size() < 247) list += ",0";
  // 256 characters, whitespace included, is the limit.
  const std::string longest = " " + list + " * * * *";
  ASSERT_EQ(longest.size(), 256u);
  EXPECT_EQ(ParseError(longest), "parsed");
  EXPECT_EQ(ParseError(" " + longest),
            "cron: expression is 257 characters, more than 256");
  EXPECT_EQ(ParseError(std::string(100000, ' ')),
            "cron: expression is 100000 characters, more than 256");
}

TEST(CronRejectTest, UnknownTimeZone) {
  EXPECT_EQ(ParseError("* * * * *", "Mars/Base"),
            "cron: unknown time zone \"Mars/Base\"");
  EXPECT_EQ(ParseError("* * * * *", "europe/berlin"),
            "cron: unknown time zone \"europe/berlin\"");
  // Not IANA names: the loader would read them from anywhere.
  EXPECT_EQ(ParseError("* * * * *", "/usr/share/zoneinfo/UTC"),
            "cron: unknown time zone \"/usr/share/zoneinfo/UTC\"");
  EXPECT_EQ(ParseError("* * * * *", "../zoneinfo/UTC"),
            "cron: unknown time zone \"../zoneinfo/UTC\"");
  EXPECT_EQ(ParseError("* * * * *", "localtime"),
            "cron: unknown time zone \"localtime\"");
  EXPECT_EQ(ParseError("* * * * *", std::string("UTC\0x", 5)),
            "cron: unknown time zone \"UTC\\000x\"");
}

TEST(CronRejectTest, NeverMatches) {
  EXPECT_EQ(ParseError("0 0 30 2 *"),
            "cron: expression \"0 0 30 2 *\" never matches: no selected month "
            "has a selected day-of-month");
  EXPECT_EQ(ParseError("0 0 31 4 *"),
            "cron: expression \"0 0 31 4 *\" never matches: no selected month "
            "has a selected day-of-month");
  EXPECT_EQ(ParseError("0 0 31 2,4,6,9,11 *"),
            "cron: expression \"0 0 31 2,4,6,9,11 *\" never matches: no "
            "selected month has a selected day-of-month");
  // AND-ed with a '*' day-of-week field: still no such date.
  EXPECT_EQ(ParseError("0 0 30-31 FEB */2"),
            "cron: expression \"0 0 30-31 FEB */2\" never matches: no "
            "selected month has a selected day-of-month");
  EXPECT_EQ(ParseError("0 0 31 1-12 *"), "parsed");
  EXPECT_EQ(ParseError("0 0 29 2 *"), "parsed");
}

TEST(CronRejectTest, ErrorsNameTheFirstBadField) {
  EXPECT_EQ(ParseError("0 99 32 * *"),
            "cron: hour field \"99\": value 99 out of range 0-23");
}

// --- Next across calendar boundaries -----------------------------------------

TEST(CronNextTest, MonthEnd) {
  EXPECT_EQ(
      Runs("0 0 1 * *", Utc(2026, 1, 31, 12, 0), 2),
      (Strings{"2026-02-01 00:00:00 +0000", "2026-03-01 00:00:00 +0000"}));
  // Months without a 31st are skipped.
  EXPECT_EQ(Runs("0 0 31 * *", Utc(2026, 3, 31, 0, 0), 3),
            (Strings{"2026-05-31 00:00:00 +0000", "2026-07-31 00:00:00 +0000",
                     "2026-08-31 00:00:00 +0000"}));
}

TEST(CronNextTest, YearEnd) {
  EXPECT_EQ(
      Runs("0 0 1 1 *", Utc(2026, 12, 31, 23, 59, 59), 2),
      (Strings{"2027-01-01 00:00:00 +0000", "2028-01-01 00:00:00 +0000"}));
  EXPECT_EQ(Runs("59 23 31 12 *", Utc(2026, 12, 31, 23, 59), 1),
            Strings{"2027-12-31 23:59:00 +0000"});
  EXPECT_EQ(Runs("* * * * *", Utc(2026, 12, 31, 23, 59), 1),
            Strings{"2027-01-01 00:00:00 +0000"});
}

TEST(CronNextTest, LeapDay) {
  EXPECT_EQ(
      Runs("0 0 29 2 *", Utc(2026, 1, 1, 0, 0), 2),
      (Strings{"2028-02-29 00:00:00 +0000", "2032-02-29 00:00:00 +0000"}));
  // 2100 is not a leap year.
  EXPECT_EQ(Runs("0 0 29 2 *", Utc(2096, 3, 1, 0, 0), 1),
            Strings{"2104-02-29 00:00:00 +0000"});
  // A leap day that is a Sunday: 40 years apart across 2100.
  EXPECT_EQ(Runs("0 0 29 2 */7", Utc(2089, 1, 1, 0, 0), 1),
            Strings{"2128-02-29 00:00:00 +0000"});
}

TEST(CronNextTest, InfiniteInputs) {
  CronSchedule s = MustParse("* * * * *");
  EXPECT_EQ(s.Next(absl::InfiniteFuture()), absl::InfiniteFuture());
  EXPECT_EQ(s.Next(absl::InfinitePast()), absl::InfiniteFuture());
}

TEST(CronNextTest, FarPastAndFuture) {
  EXPECT_EQ(Runs("0 12 29 2 *", Utc(1899, 12, 31, 0, 0), 1),
            Strings{"1904-02-29 12:00:00 +0000"});
  EXPECT_EQ(Runs("0 0 1 1 *", Utc(9999, 6, 1, 0, 0), 1),
            Strings{"10000-01-01 00:00:00 +0000"});
}

// --- Time zones
// ------------------------------------------------------------------

TEST(CronZoneTest, Accessors) {
  CronSchedule berlin = MustParse("0 2 * * *", "Europe/Berlin");
  EXPECT_EQ(berlin.expression(), "0 2 * * *");
  EXPECT_EQ(berlin.time_zone(), "Europe/Berlin");
  EXPECT_EQ(MustParse("0 2 * * *", "").time_zone(), "UTC");
  EXPECT_EQ(MustParse("0 2 * * *", "UTC").time_zone(), "UTC");
}

TEST(CronZoneTest, BerlinWinterAndSummer) {
  CronSchedule s = MustParse("0 2 * * *", "Europe/Berlin");
  EXPECT_EQ(s.Next(Utc(2026, 1, 10, 0, 0)), Utc(2026, 1, 10, 1, 0));
  EXPECT_EQ(s.Next(Utc(2026, 7, 10, 0, 0) - absl::Minutes(1)),
            Utc(2026, 7, 10, 0, 0));
}

TEST(CronZoneTest, NonHourOffset) {
  CronSchedule s = MustParse("0 9 * * *", "Asia/Kolkata");
  EXPECT_EQ(s.Next(Utc(2026, 1, 10, 0, 0)), Utc(2026, 1, 10, 3, 30));
}

TEST(CronZoneTest, SpringForwardGapIsSkipped) {
  // 2027-03-14 02:00-03:00 does not exist in New York.
  EXPECT_EQ(Runs("30 2 * * *", Utc(2027, 3, 13, 5, 0), 3, "America/New_York"),
            (Strings{"2027-03-13 02:30:00 -0500", "2027-03-15 02:30:00 -0400",
                     "2027-03-16 02:30:00 -0400"}));
  EXPECT_EQ(
      Runs("*/20 1-3 14 3 *", Utc(2027, 3, 14, 5, 0), 6, "America/New_York"),
      (Strings{"2027-03-14 01:00:00 -0500", "2027-03-14 01:20:00 -0500",
               "2027-03-14 01:40:00 -0500", "2027-03-14 03:00:00 -0400",
               "2027-03-14 03:20:00 -0400", "2027-03-14 03:40:00 -0400"}));
  // Every minute: 01:59 EST is followed one minute later by 03:00 EDT.
  CronSchedule every = MustParse("* * * * *", "America/New_York");
  const absl::Time before = Utc(2027, 3, 14, 6, 59);  // 01:59 EST.
  EXPECT_EQ(every.Next(before), before + absl::Minutes(1));
  // Starting inside the gap's absolute minute.
  EXPECT_EQ(every.Next(before + absl::Seconds(30)), before + absl::Minutes(1));
}

TEST(CronZoneTest, BerlinSpringForwardGapIsSkipped) {
  // 2026-03-29 02:00-03:00 does not exist in Berlin.
  EXPECT_EQ(
      Runs("30 2 * * *", Utc(2026, 3, 28, 12, 0), 2, "Europe/Berlin"),
      (Strings{"2026-03-30 02:30:00 +0200", "2026-03-31 02:30:00 +0200"}));
}

TEST(CronZoneTest, FallBackRepeatRunsOnceAtTheFirstOccurrence) {
  // 2027-11-07 01:00-02:00 happens twice in New York.
  EXPECT_EQ(Runs("30 1 * * *", Utc(2027, 11, 6, 12, 0), 3, "America/New_York"),
            (Strings{"2027-11-07 01:30:00 -0400", "2027-11-08 01:30:00 -0500",
                     "2027-11-09 01:30:00 -0500"}));
  CronSchedule s = MustParse("30 1 * * *", "America/New_York");
  // From inside the second 01:00-02:00 (EST), before and after its 01:30.
  EXPECT_EQ(s.Next(Utc(2027, 11, 7, 6, 10)), Utc(2027, 11, 8, 6, 30));
  EXPECT_EQ(s.Next(Utc(2027, 11, 7, 6, 40)), Utc(2027, 11, 8, 6, 30));
  // Between the first 01:30 (05:30 UTC) and the second (06:30 UTC).
  EXPECT_EQ(s.Next(Utc(2027, 11, 7, 5, 45)), Utc(2027, 11, 8, 6, 30));
}

TEST(CronZoneTest, FallBackHourlyAndEveryMinute) {
  EXPECT_EQ(Runs("0 * * * *", Utc(2027, 11, 7, 4, 30), 3, "America/New_York"),
            (Strings{"2027-11-07 01:00:00 -0400", "2027-11-07 02:00:00 -0500",
                     "2027-11-07 03:00:00 -0500"}));
  // The second pass of 01:xx is not run again.
  CronSchedule every = MustParse("* * * * *", "America/New_York");
  EXPECT_EQ(every.Next(Utc(2027, 11, 7, 5, 59)), Utc(2027, 11, 7, 7, 0));
}

TEST(CronZoneTest, DstGapOnEveryMatchNeverRuns) {
  // The second Sunday of March at 02:xx never exists in New York under the
  // current rules: Next gives up after its search window.
  CronSchedule s = MustParse("* 2 8-14 3 */7", "America/New_York");
  EXPECT_EQ(s.Next(Utc(2026, 1, 1, 0, 0)), absl::InfiniteFuture());
  // The same date in UTC exists.
  CronSchedule utc = MustParse("* 2 8-14 3 */7");
  EXPECT_EQ(utc.Next(Utc(2026, 1, 1, 0, 0)), Utc(2026, 3, 8, 2, 0));
}

// --- Property test against a brute-force reference
// -------------------------------

// One field's generated text and the values it selects.
struct GenField {
  std::string text;
  std::set<int> values;
};

class Generator {
 public:
  explicit Generator(uint32_t seed) : rng_(seed) {}

  int Uniform(int lo, int hi) {
    return std::uniform_int_distribution<int>(lo, hi)(rng_);
  }

  // A value of [lo, hi], sometimes written as a name.
  std::string Value(int v, const char* const* names, int first_name_value,
                    int name_count) {
    const int index = v - first_name_value;
    if (names != nullptr && index >= 0 && index < name_count &&
        Uniform(0, 2) == 0) {
      std::string name = names[index];
      if (Uniform(0, 1) == 0) name[1] = static_cast<char>(name[1] + 32);
      return name;
    }
    return absl::StrCat(v);
  }

  // `star_weight` in [0, 10]: how often the field is a plain "*".
  GenField Field(int lo, int hi, int star_weight,
                 const char* const* names = nullptr, int first_name_value = 0,
                 int name_count = 0) {
    GenField f;
    if (Uniform(0, 9) < star_weight) {
      f.text = "*";
      for (int v = lo; v <= hi; ++v) f.values.insert(v);
      return f;
    }
    std::vector<std::string> parts;
    const int elements = Uniform(1, 3);
    for (int i = 0; i < elements; ++i) {
      const int form = Uniform(0, 4);
      int a = Uniform(lo, hi);
      int b = Uniform(lo, hi);
      if (a > b) std::swap(a, b);
      const int step = Uniform(1, std::min(hi, 12));
      auto name = [&](int v) {
        return Value(v, names, first_name_value, name_count);
      };
      switch (form) {
        case 0:  // n
          parts.push_back(name(a));
          f.values.insert(a);
          break;
        case 1:  // a-b
          parts.push_back(absl::StrCat(name(a), "-", name(b)));
          for (int v = a; v <= b; ++v) f.values.insert(v);
          break;
        case 2:  // */s
          parts.push_back(absl::StrCat("*/", step));
          for (int v = lo; v <= hi; v += step) f.values.insert(v);
          break;
        case 3:  // a-b/s
          parts.push_back(absl::StrCat(name(a), "-", name(b), "/", step));
          for (int v = a; v <= b; v += step) f.values.insert(v);
          break;
        default:  // a/s
          parts.push_back(absl::StrCat(name(a), "/", step));
          for (int v = a; v <= hi; v += step) f.values.insert(v);
          break;
      }
    }
    f.text = absl::StrJoin(parts, ",");
    return f;
  }

 private:
  std::mt19937 rng_;
};

constexpr const char* kMonths[] = {"JAN", "FEB", "MAR", "APR", "MAY", "JUN",
                                   "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"};
constexpr const char* kDays[] = {"SUN", "MON", "TUE", "WED",
                                 "THU", "FRI", "SAT"};

// The reference: crontab(5) rules over explicit value sets.
struct Reference {
  std::string expr;
  std::set<int> minutes, hours, doms, months, dows;
  bool dom_star = false;
  bool dow_star = false;

  bool Matches(absl::CivilSecond c) const {
    const int dow = (static_cast<int>(absl::GetWeekday(c)) + 1) % 7;
    const bool dom_ok = doms.count(c.day()) > 0;
    const bool dow_ok = dows.count(dow) > 0 || (dow == 0 && dows.count(7) > 0);
    const bool day_ok =
        (dom_star || dow_star) ? (dom_ok && dow_ok) : (dom_ok || dow_ok);
    return minutes.count(c.minute()) > 0 && hours.count(c.hour()) > 0 &&
           months.count(c.month()) > 0 && day_ok;
  }

  // Minute by minute in absolute time, up to `limit`. A local time that
  // was already shown (fall back) does not run again.
  absl::Time Next(const absl::TimeZone& tz, absl::Time after,
                  absl::Time limit) const {
    absl::Time t =
        absl::FromUnixSeconds(absl::ToUnixSeconds(after) -
                              ((absl::ToUnixSeconds(after) % 60) + 60) % 60);
    for (t += absl::Minutes(1); t <= limit; t += absl::Minutes(1)) {
      const absl::CivilSecond local = tz.At(t).cs;
      if (!Matches(local)) continue;
      bool repeat = false;
      for (int back : {30, 60, 120}) {
        repeat = repeat || tz.At(t - absl::Minutes(back)).cs == local;
      }
      if (!repeat) return t;
    }
    return absl::InfiniteFuture();
  }
};

Reference RandomReference(Generator& gen) {
  Reference r;
  GenField minute = gen.Field(0, 59, 3);
  GenField hour = gen.Field(0, 23, 4);
  GenField dom = gen.Field(1, 31, 6);
  GenField month = gen.Field(1, 12, 7, kMonths, 1, 12);
  GenField dow = gen.Field(0, 7, 6, kDays, 0, 7);
  r.expr = absl::StrJoin(
      {minute.text, hour.text, dom.text, month.text, dow.text}, " ");
  r.minutes = minute.values;
  r.hours = hour.values;
  r.doms = dom.values;
  r.months = month.values;
  r.dows = dow.values;
  r.dom_star = dom.text[0] == '*';
  r.dow_star = dow.text[0] == '*';
  return r;
}

void CheckAgainstReference(const std::string& tz_name, int cases,
                           uint32_t seed) {
  const absl::TimeZone tz = Zone(tz_name);
  Generator gen(seed);
  // Starts near DST transitions half of the time.
  std::vector<absl::Time> transitions;
  absl::TimeZone::CivilTransition trans;
  for (absl::Time t = Utc(2025, 1, 1, 0, 0);
       t < Utc(2035, 1, 1, 0, 0) && tz.NextTransition(t, &trans);) {
    t = tz.At(trans.to).trans;
    transitions.push_back(t);
  }
  // The brute force is slow; matches further away are only spot-checked.
  const absl::Duration window = absl::Hours(24 * 45);
  int checked = 0;
  int within_window = 0;
  while (checked < cases) {
    Reference ref = RandomReference(gen);
    absl::StatusOr<CronSchedule> schedule =
        CronSchedule::Parse(ref.expr, tz_name);
    bool possible = false;
    for (int m : ref.months) {
      for (int d : ref.doms) {
        possible = possible || d <= (m == 2 ? 29 : 30) ||
                   (d == 31 && m != 4 && m != 6 && m != 9 && m != 11);
      }
    }
    if (!ref.dom_star && !ref.dow_star) possible = true;
    ASSERT_EQ(schedule.ok(), possible) << ref.expr << ": " << schedule.status();
    if (!possible) continue;
    ++checked;

    absl::Time start;
    if (!transitions.empty() && gen.Uniform(0, 1) == 0) {
      start = transitions[gen.Uniform(
                  0, static_cast<int>(transitions.size()) - 1)] +
              absl::Seconds(gen.Uniform(-3 * 3600, 3 * 3600));
    } else {
      start = Utc(2025, 1, 1, 0, 0) +
              absl::Seconds(gen.Uniform(0, 10 * 365 * 86400));
    }
    // A few runs in a row.
    absl::Time after = start;
    for (int run = 0; run < 3; ++run) {
      const absl::Time limit = after + window;
      const absl::Time expected = ref.Next(tz, after, limit);
      const absl::Time got = schedule->Next(after);
      if (expected == absl::InfiniteFuture()) {
        // Nothing within the window: the answer lies beyond and matches.
        ASSERT_GT(got, limit)
            << ref.expr << " after " << Format(after, tz_name);
        ASSERT_NE(got, absl::InfiniteFuture()) << ref.expr;
        ASSERT_TRUE(ref.Matches(tz.At(got).cs))
            << ref.expr << " gave " << Format(got, tz_name);
        ASSERT_EQ(ref.Next(tz, got - absl::Hours(24), got), got) << ref.expr;
        break;
      }
      ++within_window;
      ASSERT_EQ(got, expected)
          << ref.expr << " in " << tz_name << " after "
          << Format(after, tz_name) << ": got " << Format(got, tz_name)
          << ", brute force " << Format(expected, tz_name);
      after = got;
    }
  }
  // The generator mostly makes schedules that run within the window.
  EXPECT_GT(within_window, cases);
}

TEST(CronPropertyTest, MatchesBruteForceInUtc) {
  CheckAgainstReference("UTC", 200, 12345);
}

TEST(CronPropertyTest, MatchesBruteForceInNewYork) {
  CheckAgainstReference("America/New_York", 200, 67890);
}

TEST(CronPropertyTest, MatchesBruteForceInLordHowe) {
  // A 30-minute DST shift.
  CheckAgainstReference("Australia/Lord_Howe", 60, 4242);
}

}  // namespace
}  // namespace idsync
