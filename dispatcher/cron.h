// CronSchedule: a parsed 5-field cron expression ("minute hour day-of-month
// month day-of-week", Vixie/cronie syntax) evaluated in one IANA time zone,
// for the dispatcher's scheduler. Immutable after Parse, so a const
// CronSchedule may be shared between threads.
//
// Syntax per field: `*`, `n`, `a-b`, `*/s`, `a-b/s`, `a/s` (a to the field's
// maximum) and comma lists of these. Ranges: minute 0-59, hour 0-23,
// day-of-month 1-31, month 1-12 or JAN-DEC, day-of-week 0-7 (0 and 7 are
// Sunday) or SUN-SAT; names are case-insensitive. Macros: @hourly, @daily,
// @midnight, @weekly, @monthly, @yearly, @annually (@reboot is not a time).
//
// Day-of-month and day-of-week: as crontab(5) says, when both fields are
// restricted (neither starts with `*`), a day matches when either matches;
// otherwise a day must match both. So "0 0 1 * MON" runs on the 1st and on
// every Monday, while "0 0 */2 * MON" runs on Mondays that are odd days.
//
// Time zones: fields are matched against the zone's local (civil) time.
// - A local time that does not exist (spring-forward gap, e.g. 02:30 on
//   2027-03-14 in America/New_York) is skipped: that run does not happen.
//   Unlike cronie, fixed-time jobs are not run right after the gap.
// - A local time that happens twice (fall back) runs once, at its first
//   occurrence. This holds for every expression: `* * * * *` does not run
//   during the second pass of a repeated hour (cronie would run it).
#ifndef IDSYNC_DISPATCHER_CRON_H_
#define IDSYNC_DISPATCHER_CRON_H_

#include <bitset>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/civil_time.h"
#include "absl/time/time.h"

namespace idsync {

class CronSchedule {
 public:
  // Parses `expr` evaluated in time zone `tz_name` (an IANA name such as
  // "Europe/Berlin", loaded from the system zoneinfo; empty or "UTC" means
  // UTC). InvalidArgumentError naming the problem and the field for: wrong
  // field count, empty list elements, values out of range, reversed ranges,
  // bad steps, unknown names or characters, input over 256 characters, an
  // unknown time zone, and expressions no calendar date matches (such as
  // "0 0 30 2 *").
  static absl::StatusOr<CronSchedule> Parse(absl::string_view expr,
                                            absl::string_view tz_name);

  // The first matching time strictly after `after`: a whole minute (seconds
  // 0) of local time, as an absolute time. InfiniteFuture() if `after` is
  // infinite, or if no match exists in the next 400 years (only possible
  // when every calendar match falls into a DST gap).
  absl::Time Next(absl::Time after) const;

  // The expression as given, without surrounding whitespace.
  const std::string& expression() const { return expression_; }
  // The zone name as given; "UTC" when it was empty.
  const std::string& time_zone() const { return time_zone_; }

 private:
  CronSchedule() = default;

  // Whether the local day `day` matches the day-of-month, month and
  // day-of-week fields.
  bool DayMatches(absl::CivilDay day) const;

  std::bitset<60> minutes_;
  std::bitset<24> hours_;
  std::bitset<32> days_of_month_;  // Bit 0 unused.
  std::bitset<13> months_;         // Bit 0 unused.
  std::bitset<7> days_of_week_;    // 0 is Sunday; a 7 in the input sets bit 0.
  // The field starts with `*`: crontab(5) "unrestricted" for the day rule.
  bool dom_star_ = false;
  bool dow_star_ = false;
  absl::TimeZone zone_;
  std::string expression_;
  std::string time_zone_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_CRON_H_
