#include "cli/hr_generator.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "connector/status_macros.h"

namespace idsync {
namespace {

constexpr int64_t kMaxCount = 50'000'000;
constexpr absl::string_view kHeader =
    "employee_id,first_name,last_name,email,department,title,manager_id,"
    "status,location,hire_date\n";

// The output order holds employee indices; the two high bits mark the
// mutation chosen for that employee, so the plan costs 4 bytes per employee.
constexpr uint32_t kRemovedBit = uint32_t{1} << 31;
constexpr uint32_t kModifiedBit = uint32_t{1} << 30;
constexpr uint32_t kIndexMask = kModifiedBit - 1;
static_assert(kMaxCount <= kIndexMask, "indices must fit below the flag bits");

// Rows are flushed to the sink in chunks of about this size.
constexpr size_t kChunkBytes = size_t{1} << 20;

// A name as shown, and its ASCII spelling for email addresses (which
// AppendEmailPart lowercases, dropping anything but letters).
struct Name {
  absl::string_view display;
  absl::string_view ascii;
};

constexpr absl::string_view kFirstNames[] = {
    "James",   "Mary",     "John",    "Patricia",  "Michael", "Jennifer",
    "David",   "Linda",    "William", "Elizabeth", "Richard", "Susan",
    "Thomas",  "Jessica",  "Daniel",  "Sarah",     "Matthew", "Karen",
    "Anthony", "Nancy",    "Mark",    "Lisa",      "Steven",  "Emily",
    "Andrew",  "Michelle", "Kevin",   "Laura",     "Brian",   "Rachel",
    "Priya",   "Arjun",    "Wei",     "Mei",       "Hiroshi", "Yuki",
    "Carlos",  "Sofia",    "Luis",    "Ana",       "Ahmed",   "Fatima",
    "Olga",    "Ivan",     "Kwame",   "Amara",     "Lars",    "Ingrid",
    "Pierre",  "Claire",   "Giulia",  "Marco",     "Hannah",  "Noah",
    "Liam",    "Olivia",   "Ethan",   "Ava",       "Mateo",   "Chloe",
};

constexpr absl::string_view kLastNames[] = {
    "Smith",    "Johnson",  "Williams",  "Brown",    "Jones",   "Miller",
    "Davis",    "Wilson",   "Anderson",  "Taylor",   "Thomas",  "Moore",
    "Martin",   "Jackson",  "Thompson",  "White",    "Harris",  "Clark",
    "Lewis",    "Robinson", "Walker",    "Young",    "Allen",   "King",
    "Wright",   "Scott",    "Green",     "Baker",    "Adams",   "Nelson",
    "Patel",    "Sharma",   "Chen",      "Wang",     "Tanaka",  "Sato",
    "Kim",      "Park",     "Rodriguez", "Martinez", "Lopez",   "Hernandez",
    "Silva",    "Santos",   "Ivanov",    "Petrova",  "Okafor",  "Mensah",
    "Hansen",   "Larsen",   "Dubois",    "Rossi",    "Schmidt", "Fischer",
    "Kowalski", "Novak",    "Cohen",     "Haddad",   "Murphy",  "Kelly",
};

// Edge cases for parsers and matchers: non-ASCII UTF-8, apostrophes, and a
// nickname with embedded double quotes. Drawn at kEdgeNamePerMille.
constexpr Name kEdgeFirstNames[] = {
    {"José", "jose"},
    {"Zoë", "zoe"},
    {"Łukasz", "lukasz"},
    {"Søren", "soren"},
    {"Robert \"Bob\"", "robert"},
    {"François", "francois"},
};
constexpr Name kEdgeLastNames[] = {
    {"Nguyễn", "nguyen"}, {"李", "li"},         {"O'Brien", "obrien"},
    {"Müller", "muller"}, {"García", "garcia"}, {"D'Angelo", "dangelo"},
};
constexpr uint64_t kEdgeNamePerMille = 20;

struct Department {
  absl::string_view name;
  int weight;  // percent of the workforce
  absl::string_view titles[4];
};

constexpr Department kDepartments[] = {
    {"Engineering",
     30,
     {"Software Engineer", "Senior Software Engineer", "Staff Engineer",
      "QA Engineer"}},
    {"Sales",
     15,
     {"Account Executive", "Sales Development Representative",
      "Solutions Engineer", "Account Manager"}},
    {"Customer Support",
     12,
     {"Support Specialist", "Support Engineer", "Customer Success Manager",
      "Technical Writer"}},
    {"Operations",
     10,
     {"Operations Analyst", "Program Manager", "Facilities Coordinator",
      "Procurement Specialist"}},
    {"Marketing",
     8,
     {"Marketing Specialist", "Content Strategist", "Product Marketing Manager",
      "Brand Designer"}},
    {"Finance",
     7,
     {"Financial Analyst", "Accountant", "Payroll Specialist", "Controller"}},
    {"IT",
     7,
     {"Systems Administrator", "Help Desk Technician", "Security Engineer",
      "Network Engineer"}},
    {"Human Resources",
     5,
     {"HR Generalist", "Recruiter", "HR Business Partner",
      "Benefits Specialist"}},
    {"Legal",
     3,
     {"Counsel", "Paralegal", "Compliance Analyst", "Contracts Manager"}},
    {"Research & Development",
     3,
     {"Research Scientist", "Data Scientist", "Research Engineer",
      "Lab Technician"}},
};
constexpr int kDepartmentCount = std::size(kDepartments);
constexpr int kTitlesPerDepartment = std::size(kDepartments[0].titles);
// The root's department; not drawn for anyone else.
constexpr int kExecutive = -1;
constexpr absl::string_view kExecutiveName = "Executive";

constexpr absl::string_view kLocations[] = {
    "New York",  "San Francisco", "Austin", "Chicago", "Toronto",
    "London",    "Dublin",        "Berlin", "Kraków",  "São Paulo",
    "Bangalore", "Singapore",     "Tokyo",  "Sydney",  "Remote",
};
constexpr int kLocationCount = std::size(kLocations);

enum EmploymentStatus { kActive, kLeave, kInactive };
constexpr absl::string_view kStatusNames[] = {"active", "leave", "inactive"};

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
// days_from_civil), so dates need no time zone library.
constexpr int64_t DaysFromCivil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}
constexpr int64_t kFirstHireDay = DaysFromCivil(1995, 1, 1);
constexpr int64_t kHireDays = DaysFromCivil(2024, 12, 31) - kFirstHireDay + 1;

void AppendDate(int64_t days, std::string& out) {
  // H. Hinnant's civil_from_days.
  days += 719468;
  const int64_t era = (days >= 0 ? days : days - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned d = doy - (153 * mp + 2) / 5 + 1;
  const unsigned m = mp < 10 ? mp + 3 : mp - 9;
  const int64_t y = static_cast<int64_t>(yoe) + era * 400 + (m <= 2);
  char buf[10] = {
      static_cast<char>('0' + y / 1000 % 10),
      static_cast<char>('0' + y / 100 % 10),
      static_cast<char>('0' + y / 10 % 10),
      static_cast<char>('0' + y % 10),
      '-',
      static_cast<char>('0' + m / 10),
      static_cast<char>('0' + m % 10),
      '-',
      static_cast<char>('0' + d / 10),
      static_cast<char>('0' + d % 10),
  };
  out.append(buf, sizeof(buf));
}

// Appends `value` as one RFC 4180 field.
void AppendField(absl::string_view value, std::string& out) {
  if (value.find_first_of(",\"\r\n") == absl::string_view::npos) {
    out.append(value.data(), value.size());
    return;
  }
  out.push_back('"');
  for (char c : value) {
    if (c == '"') out.push_back('"');
    out.push_back(c);
  }
  out.push_back('"');
}

// Appends the letters of `ascii`, lowercased; drops anything else.
void AppendEmailPart(absl::string_view ascii, std::string& out) {
  for (const char c : ascii) {
    if (c >= 'a' && c <= 'z') {
      out.push_back(c);
    } else if (c >= 'A' && c <= 'Z') {
      out.push_back(static_cast<char>(c - 'A' + 'a'));
    }
  }
}

void AppendNumber(int64_t n, int width, std::string& out) {
  char buf[20];
  int len = 0;
  do {
    buf[len++] = static_cast<char>('0' + n % 10);
    n /= 10;
  } while (n > 0);
  for (int i = len; i < width; ++i) out.push_back('0');
  while (len > 0) out.push_back(buf[--len]);
}

// The employee_id of hierarchy index `index`: "E" and the 1-based number,
// zero-padded to `width` digits.
void AppendEmployeeId(int64_t index, int width, std::string& out) {
  out.push_back('E');
  AppendNumber(index + 1, width, out);
}

int IdWidth(int64_t count) {
  int digits = 1;
  for (int64_t n = count; n >= 10; n /= 10) ++digits;
  return std::max(digits, 7);
}

std::string EmployeeId(int64_t index, int width) {
  std::string id;
  AppendEmployeeId(index, width, id);
  return id;
}

// Independent, reproducible streams per purpose, so e.g. choosing what to
// modify never shifts the base population's draws.
enum Stream : uint64_t { kShuffle = 1, kSelect = 2, kRows = 3, kModify = 4 };

std::mt19937_64 MakeRng(uint64_t seed, Stream stream) {
  // splitmix64 finalizer: nearby seeds give unrelated engine states.
  uint64_t z = seed + 0x9E3779B97F4A7C15u * static_cast<uint64_t>(stream);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9u;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBu;
  return std::mt19937_64(z ^ (z >> 31));
}

// Uniform in [0, n). The modulo bias is below n / 2^64: negligible here.
uint64_t Below(std::mt19937_64& rng, uint64_t n) { return rng() % n; }

struct Counts {
  int64_t modify = 0;
  int64_t remove = 0;
};

bool IsPercent(double p) { return p >= 0 && p <= 100; }  // false for NaN

absl::StatusOr<Counts> Validate(const HrGeneratorOptions& options) {
  if (options.count < 1 || options.count > kMaxCount) {
    return absl::InvalidArgumentError(absl::StrCat(
        "count must be in [1, ", kMaxCount, "], got ", options.count));
  }
  if (!IsPercent(options.modify_percent)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "modify_percent must be in [0, 100], got ", options.modify_percent));
  }
  if (!IsPercent(options.remove_percent)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "remove_percent must be in [0, 100], got ", options.remove_percent));
  }
  if (options.modify_percent + options.remove_percent > 100) {
    return absl::InvalidArgumentError(absl::StrCat(
        "modify_percent + remove_percent must be at most 100, got ",
        options.modify_percent, " + ", options.remove_percent));
  }
  const double count = static_cast<double>(options.count);
  Counts counts;
  counts.modify = std::llround(count * options.modify_percent / 100);
  counts.remove = std::llround(count * options.remove_percent / 100);
  if (counts.remove > options.count - 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "remove_percent ", options.remove_percent, " would remove all ",
        options.count, " employees; the root manager is never removed"));
  }
  // Rounding both up can overshoot even when the percents sum to <= 100.
  if (counts.modify + counts.remove > options.count) {
    return absl::InvalidArgumentError(absl::StrCat(
        "modify_percent and remove_percent select ", counts.modify, " + ",
        counts.remove, " employees, more than count ", options.count));
  }
  return counts;
}

// Marks `k` of the `eligible` entries of `order` with `bit`, every k-subset
// equally likely (Knuth's selection sampling: one pass, exact count).
template <typename Eligible>
void MarkSubset(int64_t eligible_count, int64_t k, uint32_t bit,
                Eligible eligible, std::mt19937_64& rng,
                std::vector<uint32_t>& order) {
  for (uint32_t& entry : order) {
    if (k == 0) return;
    if (!eligible(entry)) continue;
    if (static_cast<int64_t>(Below(rng, eligible_count)) < k) {
      entry |= bit;
      --k;
    }
    --eligible_count;
  }
}

// Employee indices in output order, flagged with their mutation.
std::vector<uint32_t> PlanOrder(const HrGeneratorOptions& options,
                                const Counts& counts) {
  const int64_t n = options.count;
  std::vector<uint32_t> order(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
  std::mt19937_64 shuffle = MakeRng(options.seed, kShuffle);
  for (int64_t i = n - 1; i > 0; --i) {
    std::swap(order[i], order[Below(shuffle, static_cast<uint64_t>(i) + 1)]);
  }
  std::mt19937_64 select = MakeRng(options.seed, kSelect);
  MarkSubset(
      n - 1, counts.remove, kRemovedBit,
      [](uint32_t e) { return (e & kIndexMask) != 0; }, select, order);
  MarkSubset(
      n - counts.remove, counts.modify, kModifiedBit,
      [](uint32_t e) { return (e & kRemovedBit) == 0; }, select, order);
  return order;
}

enum Level { kCeo, kVicePresident, kDirector, kManager, kIndividual };

struct Employee {
  int64_t index = 0;
  Name first;
  Name last;
  Level level = kIndividual;
  int department = 0;  // or kExecutive
  int title = 0;       // into the department's titles, for kIndividual
  int64_t manager = -1;
  EmploymentStatus status = kActive;
  int location = 0;
  int64_t hire_day = 0;
};

// Fixed number of draws per employee, made even for removed ones, so the
// base population is the same whatever is removed or modified.
constexpr int kDrawsPerRow = 8;

template <size_t kCommon, size_t kEdge>
Name PickName(uint64_t draw, const absl::string_view (&common)[kCommon],
              const Name (&edge)[kEdge]) {
  const uint64_t rest = draw / 1000;
  if (draw % 1000 < kEdgeNamePerMille) return edge[rest % kEdge];
  const absl::string_view name = common[rest % kCommon];
  return {name, name};
}

int PickDepartment(uint64_t draw) {
  int roll = static_cast<int>(draw % 100);
  for (int d = 0; d < kDepartmentCount; ++d) {
    if (roll < kDepartments[d].weight) return d;
    roll -= kDepartments[d].weight;
  }
  return 0;
}

// Builds employee `index` of a population of `count`. The hidden hierarchy
// order is the index: managers come from [index/16, ceil(index/8)), always
// smaller, so the reporting lines form a tree of depth about log_11(count)
// with about 11 direct reports per manager.
void MakeEmployee(int64_t index, int64_t count,
                  const uint64_t (&draws)[kDrawsPerRow], Employee& e) {
  e.index = index;
  e.first = PickName(draws[0], kFirstNames, kEdgeFirstNames);
  e.last = PickName(draws[1], kLastNames, kEdgeLastNames);
  e.department = PickDepartment(draws[2]);
  e.title = static_cast<int>(draws[3] % kTitlesPerDepartment);
  if (index == 0) {
    e.manager = -1;
  } else {
    const int64_t lo = index / 16;
    const int64_t hi = (index + 7) / 8;
    e.manager = lo + static_cast<int64_t>(draws[4] % (hi - lo));
  }
  const uint64_t status_roll = draws[5] % 1000;
  e.status = status_roll < 940   ? kActive
             : status_roll < 970 ? kLeave
                                 : kInactive;
  e.location = static_cast<int>(draws[6] % kLocationCount);
  e.hire_day = kFirstHireDay + static_cast<int64_t>(draws[7] % kHireDays);

  // Indices below count/16 almost surely have reports; give them manager
  // titles, the first dozen (the root's direct reports) as vice presidents.
  if (index == 0) {
    e.level = kCeo;
    e.department = kExecutive;
    e.status = kActive;
  } else if (index < (count + 15) / 16) {
    e.level = index <= 12                   ? kVicePresident
              : index < (count + 127) / 128 ? kDirector
                                            : kManager;
  } else {
    e.level = kIndividual;
  }
}

// Returns `current` replaced by another value in [0, n), n >= 2.
int OtherThan(int current, int n, uint64_t draw) {
  return static_cast<int>((current + 1 + draw % (n - 1)) % n);
}

// A realistic change that alters at least one field: a transfer, a new
// title, a relocation or a status change.
void Modify(uint64_t kind_draw, uint64_t value_draw, Employee& e) {
  int kind = static_cast<int>(kind_draw % 4);
  if (e.level == kCeo && kind < 2) kind = 2;  // the CEO stays CEO
  if (e.level != kIndividual && kind == 1) kind = 0;
  switch (kind) {
    case 0:
      e.department = OtherThan(e.department, kDepartmentCount, value_draw);
      break;
    case 1:
      e.title = OtherThan(e.title, kTitlesPerDepartment, value_draw);
      break;
    case 2:
      e.location = OtherThan(e.location, kLocationCount, value_draw);
      break;
    default:
      e.status =
          e.status == kActive ? (value_draw % 2 ? kLeave : kInactive) : kActive;
      break;
  }
}

void AppendRow(const Employee& e, int id_width, std::string& title,
               std::string& out) {
  const absl::string_view department = e.department == kExecutive
                                           ? kExecutiveName
                                           : kDepartments[e.department].name;
  switch (e.level) {
    case kCeo:
      title.assign("Chief Executive Officer");
      break;
    case kVicePresident:
      title.assign("Vice President, ");
      title.append(department.data(), department.size());
      break;
    case kDirector:
      title.assign("Director, ");
      title.append(department.data(), department.size());
      break;
    case kManager:
      title.assign(department.data(), department.size());
      title.append(" Manager");
      break;
    case kIndividual: {
      const absl::string_view t = kDepartments[e.department].titles[e.title];
      title.assign(t.data(), t.size());
      break;
    }
  }

  AppendEmployeeId(e.index, id_width, out);
  out.push_back(',');
  AppendField(e.first.display, out);
  out.push_back(',');
  AppendField(e.last.display, out);
  out.push_back(',');
  // Unique because the number is; names contribute [a-z] only.
  AppendEmailPart(e.first.ascii, out);
  out.push_back('.');
  AppendEmailPart(e.last.ascii, out);
  AppendNumber(e.index + 1, 1, out);
  out.append("@example.com,");
  AppendField(department, out);
  out.push_back(',');
  AppendField(title, out);
  out.push_back(',');
  if (e.manager >= 0) AppendEmployeeId(e.manager, id_width, out);
  out.push_back(',');
  const absl::string_view status = kStatusNames[e.status];
  out.append(status.data(), status.size());
  out.push_back(',');
  AppendField(kLocations[e.location], out);
  out.push_back(',');
  AppendDate(e.hire_day, out);
  out.push_back('\n');
}

// Generates the whole file, handing it to `sink` in chunks.
absl::StatusOr<HrGeneratorStats> Generate(
    const HrGeneratorOptions& options,
    absl::FunctionRef<absl::Status(absl::string_view)> sink) {
  IDSYNC_ASSIGN_OR_RETURN(const Counts counts, Validate(options));
  const std::vector<uint32_t> order = PlanOrder(options, counts);
  const int id_width = IdWidth(options.count);
  std::mt19937_64 rows = MakeRng(options.seed, kRows);
  std::mt19937_64 modify = MakeRng(options.seed, kModify);

  HrGeneratorStats stats;
  std::string buffer;
  buffer.reserve(kChunkBytes + 4096);
  buffer.append(kHeader.data(), kHeader.size());
  std::string title;
  Employee employee;
  uint64_t draws[kDrawsPerRow];
  for (const uint32_t entry : order) {
    for (uint64_t& d : draws) d = rows();
    if (entry & kRemovedBit) {
      ++stats.removed;
      continue;
    }
    MakeEmployee(entry & kIndexMask, options.count, draws, employee);
    if (entry & kModifiedBit) {
      const uint64_t kind = modify();
      Modify(kind, modify(), employee);
      ++stats.modified;
    }
    AppendRow(employee, id_width, title, buffer);
    ++stats.written;
    if (buffer.size() >= kChunkBytes) {
      IDSYNC_RETURN_IF_ERROR(sink(buffer));
      buffer.clear();
    }
  }
  if (!buffer.empty()) IDSYNC_RETURN_IF_ERROR(sink(buffer));
  return stats;
}

absl::Status WriteAll(int fd, absl::string_view data, const std::string& path) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, absl::StrCat("cannot write ", path));
    }
    data.remove_prefix(static_cast<size_t>(n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<HrGeneratorStats> WriteHrCsv(const HrGeneratorOptions& options,
                                            std::ostream& out) {
  IDSYNC_ASSIGN_OR_RETURN(
      const HrGeneratorStats stats,
      Generate(options, [&out](absl::string_view chunk) {
        out.write(chunk.data(), static_cast<std::streamsize>(chunk.size()));
        return out ? absl::OkStatus()
                   : absl::InternalError("writing the HR CSV stream failed");
      }));
  if (!out.flush()) {
    return absl::InternalError("flushing the HR CSV stream failed");
  }
  return stats;
}

absl::StatusOr<HrGeneratorStats> WriteHrCsvFile(
    const HrGeneratorOptions& options, const std::string& path) {
  // Reject bad options before touching the file system.
  IDSYNC_RETURN_IF_ERROR(Validate(options).status());
  const std::string tmp = path + ".tmp";
  const int fd =
      ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("cannot create ", tmp));
  }
  absl::StatusOr<HrGeneratorStats> stats = Generate(
      options,
      [fd, &tmp](absl::string_view chunk) { return WriteAll(fd, chunk, tmp); });
  // fsync before rename: after a crash `path` is the old or the whole file.
  if (stats.ok() && ::fsync(fd) != 0) {
    stats = absl::ErrnoToStatus(errno, absl::StrCat("cannot sync ", tmp));
  }
  if (::close(fd) != 0 && stats.ok()) {
    stats = absl::ErrnoToStatus(errno, absl::StrCat("cannot close ", tmp));
  }
  if (stats.ok() && std::rename(tmp.c_str(), path.c_str()) != 0) {
    stats = absl::ErrnoToStatus(
        errno, absl::StrCat("cannot rename ", tmp, " to ", path));
  }
  if (!stats.ok()) ::unlink(tmp.c_str());
  return stats;
}

absl::StatusOr<HrMutationIds> PlanHrMutations(
    const HrGeneratorOptions& options) {
  IDSYNC_ASSIGN_OR_RETURN(const Counts counts, Validate(options));
  const int id_width = IdWidth(options.count);
  HrMutationIds ids;
  ids.removed.reserve(static_cast<size_t>(counts.remove));
  ids.modified.reserve(static_cast<size_t>(counts.modify));
  for (const uint32_t entry : PlanOrder(options, counts)) {
    if (entry & kRemovedBit) {
      ids.removed.push_back(EmployeeId(entry & kIndexMask, id_width));
    } else if (entry & kModifiedBit) {
      ids.modified.push_back(EmployeeId(entry & kIndexMask, id_width));
    }
  }
  // Fixed-width ids sort like their numbers.
  std::sort(ids.removed.begin(), ids.removed.end());
  std::sort(ids.modified.begin(), ids.modified.end());
  return ids;
}

}  // namespace idsync
