#include "dispatcher/cron.h"

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace idsync {
namespace {

constexpr size_t kMaxExpressionLength = 256;
// The Gregorian calendar repeats every 400 years, so any date the fields can
// match occurs within this window; only DST gaps can hide all of them.
constexpr int kSearchYears = 400;

constexpr const char* kMonthNames[] = {"JAN", "FEB", "MAR", "APR",
                                       "MAY", "JUN", "JUL", "AUG",
                                       "SEP", "OCT", "NOV", "DEC"};
constexpr const char* kDayNames[] = {"SUN", "MON", "TUE", "WED",
                                     "THU", "FRI", "SAT"};

struct FieldSpec {
  const char* name;
  int min;
  int max;
  const char* const* names;  // nullptr when the field takes no names.
  int name_count;
  int first_name_value;  // The value of names[0].
};

constexpr FieldSpec kMinute = {"minute", 0, 59, nullptr, 0, 0};
constexpr FieldSpec kHour = {"hour", 0, 23, nullptr, 0, 0};
constexpr FieldSpec kDayOfMonth = {"day-of-month", 1, 31, nullptr, 0, 0};
constexpr FieldSpec kMonth = {"month", 1, 12, kMonthNames, 12, 1};
constexpr FieldSpec kDayOfWeek = {"day-of-week", 0, 7, kDayNames, 7, 0};

struct Macro {
  const char* name;
  const char* fields;
};
constexpr Macro kMacros[] = {
    {"@hourly", "0 * * * *"},   {"@daily", "0 0 * * *"},
    {"@midnight", "0 0 * * *"}, {"@weekly", "0 0 * * 0"},
    {"@monthly", "0 0 1 * *"},  {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
};

absl::Status FieldError(const FieldSpec& spec, absl::string_view field,
                        absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(
      "cron: ", spec.name, " field \"", absl::CEscape(field), "\": ", problem));
}

std::string RangeText(const FieldSpec& spec) {
  return absl::StrCat(spec.min, "-", spec.max);
}

// Parses one number or name of the field into `*value`.
absl::Status ParseValue(const FieldSpec& spec, absl::string_view field,
                        absl::string_view text, int* value) {
  if (text.empty()) return FieldError(spec, field, "missing value");
  bool digits = true;
  bool letters = true;
  for (char c : text) {
    digits = digits && absl::ascii_isdigit(static_cast<unsigned char>(c));
    letters = letters && absl::ascii_isalpha(static_cast<unsigned char>(c));
  }
  if (digits) {
    // Longer strings would overflow int and are out of range anyway.
    int v = 0;
    if (text.size() > 4 || !absl::SimpleAtoi(text, &v) || v < spec.min ||
        v > spec.max) {
      return FieldError(
          spec, field,
          absl::StrCat("value ", text, " out of range ", RangeText(spec)));
    }
    *value = v;
    return absl::OkStatus();
  }
  if (letters && spec.names != nullptr) {
    for (int i = 0; i < spec.name_count; ++i) {
      if (absl::EqualsIgnoreCase(text, spec.names[i])) {
        *value = spec.first_name_value + i;
        return absl::OkStatus();
      }
    }
    return FieldError(
        spec, field,
        absl::StrCat("unknown name \"", text, "\" (expected ", spec.names[0],
                     "-", spec.names[spec.name_count - 1], ")"));
  }
  return FieldError(spec, field, absl::StrCat("invalid value \"", text, "\""));
}

// Parses one field into a bit mask of the values it selects (bit v = v).
absl::Status ParseField(const FieldSpec& spec, absl::string_view field,
                        uint64_t* bits) {
  for (char c : field) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '*' &&
        c != ',' && c != '-' && c != '/') {
      return FieldError(
          spec, field,
          absl::StrCat("unexpected character '",
                       absl::CEscape(absl::string_view(&c, 1)), "'"));
    }
  }
  *bits = 0;
  for (absl::string_view element : absl::StrSplit(field, ',')) {
    if (element.empty()) return FieldError(spec, field, "empty list element");
    absl::string_view base = element;
    int step = 1;
    bool has_step = false;
    if (size_t slash = element.find('/'); slash != absl::string_view::npos) {
      base = element.substr(0, slash);
      absl::string_view step_text = element.substr(slash + 1);
      has_step = true;
      if (base.empty()) {
        return FieldError(spec, field, "missing value before '/'");
      }
      if (step_text.empty()) {
        return FieldError(spec, field, "missing step after '/'");
      }
      // Step 0 never advances; a step above the maximum is a typo.
      bool numeric = true;
      for (char c : step_text) {
        numeric = numeric && absl::ascii_isdigit(static_cast<unsigned char>(c));
      }
      if (!numeric) {
        return FieldError(spec, field,
                          absl::StrCat("invalid step \"", step_text, "\""));
      }
      if (step_text.size() > 4 || !absl::SimpleAtoi(step_text, &step) ||
          step < 1 || step > spec.max) {
        return FieldError(
            spec, field,
            absl::StrCat("step ", step_text, " out of range 1-", spec.max));
      }
    }
    int lo = 0;
    int hi = 0;
    if (base == "*") {
      lo = spec.min;
      hi = spec.max;
    } else if (size_t dash = base.find('-'); dash != absl::string_view::npos) {
      absl::Status s = ParseValue(spec, field, base.substr(0, dash), &lo);
      if (!s.ok()) return s;
      s = ParseValue(spec, field, base.substr(dash + 1), &hi);
      if (!s.ok()) return s;
      if (lo > hi) {
        return FieldError(spec, field, absl::StrCat("reversed range ", base));
      }
    } else {
      absl::Status s = ParseValue(spec, field, base, &lo);
      if (!s.ok()) return s;
      // Vixie cron: "a/n" means a to the maximum, every n.
      hi = has_step ? spec.max : lo;
    }
    for (int v = lo; v <= hi; v += step) *bits |= uint64_t{1} << v;
  }
  return absl::OkStatus();
}

template <size_t N>
std::bitset<N> ToBitset(uint64_t bits) {
  return std::bitset<N>(bits & ((uint64_t{1} << N) - 1));
}

// The first set bit at or after `from`, or -1.
template <size_t N>
int NextSet(const std::bitset<N>& bits, int from) {
  for (int i = from; i < static_cast<int>(N); ++i) {
    if (bits[i]) return i;
  }
  return -1;
}

absl::Status LoadZone(absl::string_view name, absl::TimeZone* zone) {
  if (name.empty() || name == "UTC") {
    *zone = absl::UTCTimeZone();
    return absl::OkStatus();
  }
  absl::Status unknown = absl::InvalidArgumentError(
      absl::StrCat("cron: unknown time zone \"", absl::CEscape(name), "\""));
  // Only IANA-shaped names: the loader would also open absolute paths,
  // "../" paths and the host's "localtime".
  if (name.size() > kMaxExpressionLength || name.front() == '/' ||
      name == "localtime") {
    return unknown;
  }
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '/' &&
        c != '_' && c != '-' && c != '+') {
      return unknown;
    }
  }
  if (!absl::LoadTimeZone(std::string(name), zone)) return unknown;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<CronSchedule> CronSchedule::Parse(absl::string_view expr,
                                                 absl::string_view tz_name) {
  if (expr.size() > kMaxExpressionLength) {
    return absl::InvalidArgumentError(
        absl::StrCat("cron: expression is ", expr.size(),
                     " characters, more than ", kMaxExpressionLength));
  }
  expr = absl::StripAsciiWhitespace(expr);
  if (expr.empty()) return absl::InvalidArgumentError("cron: empty expression");

  absl::string_view fields_text = expr;
  if (expr.front() == '@') {
    const Macro* found = nullptr;
    for (const Macro& macro : kMacros) {
      if (absl::EqualsIgnoreCase(expr, macro.name)) found = &macro;
    }
    if (found == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cron: unknown macro \"", absl::CEscape(expr),
          "\" (expected @hourly, @daily, @midnight, @weekly, @monthly, "
          "@yearly or @annually)"));
    }
    fields_text = found->fields;
  }

  std::vector<absl::string_view> fields =
      absl::StrSplit(fields_text, absl::ByAnyChar(" \t"), absl::SkipEmpty());
  if (fields.size() != 5) {
    return absl::InvalidArgumentError(
        absl::StrCat("cron: expected 5 fields (minute hour day-of-month month "
                     "day-of-week), got ",
                     fields.size()));
  }

  CronSchedule schedule;
  const FieldSpec* specs[] = {&kMinute, &kHour, &kDayOfMonth, &kMonth,
                              &kDayOfWeek};
  uint64_t bits[5];
  for (int i = 0; i < 5; ++i) {
    absl::Status s = ParseField(*specs[i], fields[i], &bits[i]);
    if (!s.ok()) return s;
  }
  // Sunday may be written 7.
  if (bits[4] & (uint64_t{1} << 7)) bits[4] |= 1;
  schedule.minutes_ = ToBitset<60>(bits[0]);
  schedule.hours_ = ToBitset<24>(bits[1]);
  schedule.days_of_month_ = ToBitset<32>(bits[2]);
  schedule.months_ = ToBitset<13>(bits[3]);
  schedule.days_of_week_ = ToBitset<7>(bits[4]);
  schedule.dom_star_ = fields[2].front() == '*';
  schedule.dow_star_ = fields[4].front() == '*';

  // When the day fields are OR-ed every month has a matching weekday. When
  // they are AND-ed, every valid date falls on each weekday within 400
  // years, so only the month/day-of-month pairs can rule out all dates.
  if (schedule.dom_star_ || schedule.dow_star_) {
    static constexpr int kMaxDays[] = {0,  31, 29, 31, 30, 31, 30,
                                       31, 31, 30, 31, 30, 31};
    bool possible = false;
    for (int m = 1; m <= 12 && !possible; ++m) {
      if (!schedule.months_[m]) continue;
      for (int d = 1; d <= kMaxDays[m] && !possible; ++d) {
        possible = schedule.days_of_month_[d];
      }
    }
    if (!possible) {
      return absl::InvalidArgumentError(absl::StrCat(
          "cron: expression \"", absl::CEscape(expr),
          "\" never matches: no selected month has a selected day-of-month"));
    }
  }

  absl::Status s = LoadZone(tz_name, &schedule.zone_);
  if (!s.ok()) return s;
  schedule.expression_ = std::string(expr);
  schedule.time_zone_ = tz_name.empty() ? "UTC" : std::string(tz_name);
  return schedule;
}

bool CronSchedule::DayMatches(absl::CivilDay day) const {
  if (!months_[day.month()]) return false;
  const bool dom = days_of_month_[day.day()];
  // absl::Weekday counts from Monday = 0; cron from Sunday = 0.
  const bool dow =
      days_of_week_[(static_cast<int>(absl::GetWeekday(day)) + 1) % 7];
  if (dom_star_ || dow_star_) return dom && dow;
  return dom || dow;
}

absl::Time CronSchedule::Next(absl::Time after) const {
  if (after == absl::InfiniteFuture() || after == absl::InfinitePast()) {
    return absl::InfiniteFuture();
  }
  // Walks local civil minutes, skipping whole months, days and hours that
  // cannot match. Mapping each existing civil minute to its first occurrence
  // is monotonic, so the first candidate later than `after` is the answer.
  absl::CivilMinute c = absl::CivilMinute(zone_.At(after).cs) + 1;
  const absl::CivilMinute limit(absl::CivilYear(c) + kSearchYears);
  while (c < limit) {
    if (!months_[c.month()]) {
      c = absl::CivilMinute(absl::CivilMonth(c) + 1);
      continue;
    }
    if (!DayMatches(absl::CivilDay(c))) {
      c = absl::CivilMinute(absl::CivilDay(c) + 1);
      continue;
    }
    const int hour = NextSet(hours_, c.hour());
    if (hour < 0) {
      c = absl::CivilMinute(absl::CivilDay(c) + 1);
      continue;
    }
    const int minute = NextSet(minutes_, hour == c.hour() ? c.minute() : 0);
    if (minute < 0) {
      c = absl::CivilMinute(absl::CivilHour(c) + 1);
      continue;
    }
    c = absl::CivilMinute(c.year(), c.month(), c.day(), hour, minute);
    const absl::TimeZone::TimeInfo info = zone_.At(c);
    if (info.kind == absl::TimeZone::TimeInfo::SKIPPED) {
      // Jump to the first local minute after the gap.
      const absl::CivilMinute after_gap(zone_.At(info.trans).cs);
      c = after_gap > c ? after_gap : c + 1;
      continue;
    }
    // For a repeated local time, `pre` is the first occurrence.
    if (info.pre > after) return info.pre;
    c += 1;
  }
  return absl::InfiniteFuture();
}

}  // namespace idsync
