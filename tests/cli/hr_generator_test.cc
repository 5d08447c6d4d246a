#include "cli/hr_generator.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;

constexpr absl::string_view kHeader =
    "employee_id,first_name,last_name,email,department,title,manager_id,"
    "status,location,hire_date";
enum Column {
  kId,
  kFirst,
  kLast,
  kEmail,
  kDepartment,
  kTitle,
  kManager,
  kStatus,
  kLocation,
  kHireDate,
  kColumns
};

struct Record {
  std::vector<std::string> fields;
  std::string raw;  // the record's bytes, line end included
};

// A strict RFC 4180 reader: a field is either bare (no quote, CR or LF) or
// wholly quoted with inner quotes doubled; every record ends in "\n".
absl::StatusOr<std::vector<Record>> ParseCsv(absl::string_view text) {
  std::vector<Record> records;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t start = pos;
    Record record;
    while (true) {
      std::string field;
      if (pos < text.size() && text[pos] == '"') {
        ++pos;
        while (true) {
          if (pos >= text.size()) {
            return absl::InvalidArgumentError(
                absl::StrCat("unterminated quote at ", start));
          }
          const char c = text[pos++];
          if (c != '"') {
            field.push_back(c);
          } else if (pos < text.size() && text[pos] == '"') {
            field.push_back('"');
            ++pos;
          } else {
            break;
          }
        }
      } else {
        while (pos < text.size() && text[pos] != ',' && text[pos] != '\n') {
          if (text[pos] == '"' || text[pos] == '\r') {
            return absl::InvalidArgumentError(
                absl::StrCat("bare quote or CR at ", pos));
          }
          field.push_back(text[pos++]);
        }
      }
      record.fields.push_back(std::move(field));
      if (pos >= text.size()) {
        return absl::InvalidArgumentError("last record lacks its newline");
      }
      const char separator = text[pos++];
      if (separator == '\n') break;
      if (separator != ',') {
        return absl::InvalidArgumentError(
            absl::StrCat("text after a closing quote at ", pos - 1));
      }
    }
    record.raw = std::string(text.substr(start, pos - start));
    records.push_back(std::move(record));
  }
  return records;
}

HrGeneratorOptions Options(int64_t count, uint64_t seed,
                           double modify_percent = 0,
                           double remove_percent = 0) {
  HrGeneratorOptions options;
  options.count = count;
  options.seed = seed;
  options.modify_percent = modify_percent;
  options.remove_percent = remove_percent;
  return options;
}

std::string Csv(const HrGeneratorOptions& options) {
  std::ostringstream out;
  const absl::StatusOr<HrGeneratorStats> stats = WriteHrCsv(options, out);
  EXPECT_TRUE(stats.ok()) << stats.status();
  return out.str();
}

// Data rows of a generated file; fails the test on malformed CSV.
std::vector<Record> Rows(const HrGeneratorOptions& options) {
  absl::StatusOr<std::vector<Record>> records = ParseCsv(Csv(options));
  EXPECT_TRUE(records.ok()) << records.status();
  if (!records.ok() || records->empty()) return {};
  std::vector<Record> rows(records->begin() + 1, records->end());
  for (const Record& row : rows) {
    EXPECT_EQ(row.fields.size(), kColumns) << row.raw;
  }
  return rows;
}

std::map<std::string, Record> ById(const std::vector<Record>& rows) {
  std::map<std::string, Record> by_id;
  for (const Record& row : rows) {
    EXPECT_TRUE(by_id.emplace(row.fields[kId], row).second)
        << "duplicate id " << row.fields[kId];
  }
  return by_id;
}

bool IsAscii(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return static_cast<unsigned char>(c) < 0x80;
  });
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream contents;
  contents << in.rdbuf();
  return contents.str();
}

bool FileExists(const std::string& path) { return std::ifstream(path).good(); }

TEST(HrGeneratorTest, SameSeedGivesIdenticalBytes) {
  const HrGeneratorOptions options = Options(3000, 99);
  EXPECT_EQ(Csv(options), Csv(options));
  const HrGeneratorOptions mutated = Options(3000, 99, 7, 3);
  EXPECT_EQ(Csv(mutated), Csv(mutated));
}

TEST(HrGeneratorTest, DifferentSeedGivesDifferentOutput) {
  EXPECT_NE(Csv(Options(1000, 1)), Csv(Options(1000, 2)));
}

// Pins the bytes for one set of options: the output must not depend on the
// platform's standard library, and changing it silently would change every data
// set.
TEST(HrGeneratorTest, OutputForAFixedSeedIsStable) {
  // 2 employees modified (E0000003 transferred, E0000001 relocated) and 1
  // removed (E0000004).
  EXPECT_EQ(
      Csv(Options(6, 42, 34, 17)),
      "employee_id,first_name,last_name,email,department,title,manager_id,"
      "status,location,hire_date\n"
      "E0000006,Kevin,Wang,kevin.wang6@example.com,Sales,Account Manager,"
      "E0000001,leave,Chicago,2004-01-20\n"
      "E0000003,Chloe,Rodriguez,chloe.rodriguez3@example.com,IT,"
      "Network Engineer,E0000001,active,San Francisco,2014-11-22\n"
      "E0000002,Ahmed,Martinez,ahmed.martinez2@example.com,IT,"
      "Network Engineer,E0000001,active,London,1995-10-08\n"
      "E0000005,Sofia,Anderson,sofia.anderson5@example.com,Sales,"
      "Account Manager,E0000001,active,London,2018-10-01\n"
      "E0000001,Arjun,Jones,arjun.jones1@example.com,Executive,"
      "Chief Executive Officer,,active,Toronto,2005-06-30\n");
}

TEST(HrGeneratorTest, HeaderIsExactAndEveryEmployeeHasARow) {
  std::ostringstream out;
  const absl::StatusOr<HrGeneratorStats> stats =
      WriteHrCsv(Options(1234, 5), out);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->written, 1234);
  EXPECT_EQ(stats->modified, 0);
  EXPECT_EQ(stats->removed, 0);
  const std::string text = out.str();
  EXPECT_EQ(text.substr(0, text.find('\n')), kHeader);
  absl::StatusOr<std::vector<Record>> records = ParseCsv(text);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 1235u);
}

TEST(HrGeneratorTest, IdsAreAPermutationInShuffledOrder) {
  const std::vector<Record> rows = Rows(Options(1000, 3));
  std::vector<std::string> ids;
  for (const Record& row : rows) ids.push_back(row.fields[kId]);
  EXPECT_FALSE(std::is_sorted(ids.begin(), ids.end()));
  std::vector<std::string> expected;
  for (int i = 1; i <= 1000; ++i) {
    char id[16];
    std::snprintf(id, sizeof(id), "E%07d", i);
    expected.push_back(id);
  }
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, expected);
}

TEST(HrGeneratorTest, ManagersFormASingleTree) {
  const std::map<std::string, Record> by_id = ById(Rows(Options(5000, 11)));
  ASSERT_EQ(by_id.size(), 5000u);
  int roots = 0;
  int max_depth = 0;
  std::map<std::string, int> reports;
  for (const auto& [id, row] : by_id) {
    const std::string& manager = row.fields[kManager];
    if (manager.empty()) {
      ++roots;
      continue;
    }
    ASSERT_TRUE(by_id.count(manager))
        << id << " reports to unknown " << manager;
    ++reports[manager];
    // Walking up must reach the root within count steps, or there is a cycle.
    int depth = 0;
    for (std::string cur = id; !by_id.at(cur).fields[kManager].empty();
         cur = by_id.at(cur).fields[kManager]) {
      ASSERT_LT(++depth, 5000) << "cycle through " << id;
    }
    max_depth = std::max(max_depth, depth);
  }
  EXPECT_EQ(roots, 1);
  // A realistic organisation: a few levels, managers with a team each.
  EXPECT_GE(max_depth, 3);
  EXPECT_LE(max_depth, 12);
  EXPECT_GT(reports.size(), 100u);
  for (const auto& [manager, n] : reports) EXPECT_LE(n, 40) << manager;
}

TEST(HrGeneratorTest, ModifyAndRemoveChangeExactlyThePlannedRows) {
  const HrGeneratorOptions base_options = Options(2000, 17);
  HrGeneratorOptions options = base_options;
  options.modify_percent = 10;
  options.remove_percent = 5;

  std::ostringstream out;
  const absl::StatusOr<HrGeneratorStats> stats = WriteHrCsv(options, out);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->written, 1900);
  EXPECT_EQ(stats->modified, 200);
  EXPECT_EQ(stats->removed, 100);
  const absl::StatusOr<HrMutationIds> plan = PlanHrMutations(options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  ASSERT_EQ(plan->removed.size(), 100u);
  ASSERT_EQ(plan->modified.size(), 200u);

  const std::vector<Record> base_rows = Rows(base_options);
  absl::StatusOr<std::vector<Record>> parsed = ParseCsv(out.str());
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  const std::vector<Record> rows(parsed->begin() + 1, parsed->end());
  const std::map<std::string, Record> base = ById(base_rows);
  const std::map<std::string, Record> mutated = ById(rows);

  std::vector<std::string> missing;
  for (const auto& [id, row] : base) {
    if (!mutated.count(id)) missing.push_back(id);
  }
  EXPECT_EQ(missing, plan->removed);

  const std::set<std::string> planned_modified(plan->modified.begin(),
                                               plan->modified.end());
  std::vector<std::string> changed;
  for (const auto& [id, row] : mutated) {
    ASSERT_TRUE(base.count(id)) << "new id " << id;
    const Record& before = base.at(id);
    if (!planned_modified.count(id)) {
      EXPECT_EQ(row.raw, before.raw);
      continue;
    }
    if (row.raw != before.raw) changed.push_back(id);
    // Identity stays: a change is a transfer, title, location or status.
    for (Column c : {kId, kFirst, kLast, kEmail, kManager, kHireDate}) {
      EXPECT_EQ(row.fields[c], before.fields[c]) << id << " column " << c;
    }
  }
  EXPECT_EQ(changed, plan->modified);

  // Removal keeps the order of the rows that stay.
  std::vector<std::string> kept_order;
  for (const Record& row : base_rows) {
    if (mutated.count(row.fields[kId])) kept_order.push_back(row.fields[kId]);
  }
  std::vector<std::string> order;
  for (const Record& row : rows) order.push_back(row.fields[kId]);
  EXPECT_EQ(order, kept_order);
}

TEST(HrGeneratorTest, PlannedMutationsAreExactDisjointAndDeterministic) {
  const HrGeneratorOptions options = Options(10, 8, 50, 50);
  const absl::StatusOr<HrMutationIds> plan = PlanHrMutations(options);
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->removed.size(), 5u);
  EXPECT_EQ(plan->modified.size(), 5u);
  std::set<std::string> all(plan->removed.begin(), plan->removed.end());
  all.insert(plan->modified.begin(), plan->modified.end());
  EXPECT_EQ(all.size(), 10u);
  // The root (the only employee without a manager) is never removed.
  EXPECT_THAT(plan->modified, ::testing::Contains("E0000001"));

  const absl::StatusOr<HrMutationIds> again = PlanHrMutations(options);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->removed, plan->removed);
  EXPECT_EQ(again->modified, plan->modified);
}

TEST(HrGeneratorTest, RemovalKeepsTheRoot) {
  const std::vector<Record> rows = Rows(Options(50, 4, 0, 98));
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].fields[kManager], "");
}

TEST(HrGeneratorTest, EdgeCaseFieldsArePresentAndQuoted) {
  const std::string text = Csv(Options(10000, 1));
  // Raw RFC 4180 forms: inner quotes doubled, commas inside quotes.
  EXPECT_THAT(text, HasSubstr(",\"Robert \"\"Bob\"\"\","));
  EXPECT_THAT(text, HasSubstr(",\"Director, "));
  EXPECT_THAT(text, HasSubstr(",\"Vice President, "));

  absl::StatusOr<std::vector<Record>> records = ParseCsv(text);
  ASSERT_TRUE(records.ok()) << records.status();
  bool quote = false, comma = false, apostrophe = false, non_ascii = false;
  for (const Record& row : *records) {
    ASSERT_EQ(row.fields.size(), kColumns) << row.raw;
    for (const std::string& field : row.fields) {
      quote |= absl::StrContains(field, '"');
      comma |= absl::StrContains(field, ',');
    }
    for (Column c : {kFirst, kLast}) {
      apostrophe |= absl::StrContains(row.fields[c], '\'');
      non_ascii |= !IsAscii(row.fields[c]);
    }
  }
  EXPECT_TRUE(quote);
  EXPECT_TRUE(comma);
  EXPECT_TRUE(apostrophe);
  EXPECT_TRUE(non_ascii);
  EXPECT_THAT(text, HasSubstr(",Łukasz,"));
  EXPECT_THAT(text, HasSubstr(",李,"));
}

TEST(HrGeneratorTest, EmailsAreUniqueLowercaseAscii) {
  std::set<std::string> emails;
  for (const Record& row : Rows(Options(10000, 6))) {
    const std::string& email = row.fields[kEmail];
    EXPECT_TRUE(emails.insert(email).second) << "duplicate " << email;
    EXPECT_TRUE(absl::EndsWith(email, "@example.com")) << email;
    for (char c : email) {
      EXPECT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '@')
          << email;
    }
  }
  EXPECT_EQ(emails.size(), 10000u);
}

TEST(HrGeneratorTest, StatusDatesAndLocationsArePlausible) {
  std::map<std::string, int> statuses;
  for (const Record& row : Rows(Options(10000, 12))) {
    ++statuses[row.fields[kStatus]];
    const std::string& date = row.fields[kHireDate];
    ASSERT_EQ(date.size(), 10u) << date;
    const int year = std::stoi(date.substr(0, 4));
    const int month = std::stoi(date.substr(5, 2));
    const int day = std::stoi(date.substr(8, 2));
    EXPECT_TRUE(year >= 1995 && year <= 2024 && month >= 1 && month <= 12 &&
                day >= 1 && day <= 31 && date[4] == '-' && date[7] == '-')
        << date;
    EXPECT_FALSE(row.fields[kLocation].empty());
    EXPECT_FALSE(row.fields[kDepartment].empty());
    EXPECT_FALSE(row.fields[kTitle].empty());
  }
  EXPECT_EQ(statuses.size(), 3u);
  EXPECT_GT(statuses["active"], 9000);
  EXPECT_GT(statuses["leave"], 100);
  EXPECT_GT(statuses["inactive"], 100);
}

TEST(HrGeneratorTest, InvalidOptionsAreRejected) {
  struct Case {
    HrGeneratorOptions options;
    std::string names;
  };
  const Case cases[] = {
      {Options(0, 1), "count"},
      {Options(-5, 1), "count"},
      {Options(50'000'001, 1), "count"},
      {Options(10, 1, -1, 0), "modify_percent"},
      {Options(10, 1, 100.5, 0), "modify_percent"},
      {Options(10, 1, std::nan(""), 0), "modify_percent"},
      {Options(10, 1, 0, -0.1), "remove_percent"},
      {Options(10, 1, 0, 101), "remove_percent"},
      {Options(10, 1, 60, 50), "modify_percent + remove_percent"},
      // Both round up: 2 + 2 employees of 3.
      {Options(3, 1, 50, 50), "modify_percent and remove_percent"},
      // The root cannot be removed.
      {Options(1, 1, 0, 100), "remove_percent"},
  };
  for (const Case& c : cases) {
    std::ostringstream out;
    const absl::StatusOr<HrGeneratorStats> stats = WriteHrCsv(c.options, out);
    EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument)
        << c.names;
    EXPECT_THAT(stats.status().message(), HasSubstr(c.names));
    EXPECT_EQ(out.str(), "");
    EXPECT_EQ(PlanHrMutations(c.options).status().code(),
              absl::StatusCode::kInvalidArgument);
  }
}

TEST(HrGeneratorTest, FileIsWrittenWholeWithoutTemporary) {
  const std::string path = testing::TempDir() + "/hr_generator_test_file.csv";
  {
    std::ofstream stale(path);
    stale << "old contents\n";
  }
  const HrGeneratorOptions options = Options(500, 21, 4, 2);
  const absl::StatusOr<HrGeneratorStats> stats = WriteHrCsvFile(options, path);
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_EQ(stats->written, 490);
  EXPECT_EQ(ReadFile(path), Csv(options));
  EXPECT_FALSE(FileExists(path + ".tmp"));
  std::remove(path.c_str());
}

TEST(HrGeneratorTest, UnwritablePathGivesErrorNamingIt) {
  const std::string path =
      testing::TempDir() + "/hr_generator_no_such_dir/out.csv";
  const absl::StatusOr<HrGeneratorStats> stats =
      WriteHrCsvFile(Options(10, 1), path);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(stats.status().message(), HasSubstr(path));
  EXPECT_FALSE(FileExists(path));
}

TEST(HrGeneratorTest, FileVariantRejectsInvalidOptionsWithoutWriting) {
  const std::string path = testing::TempDir() + "/hr_generator_invalid.csv";
  const absl::StatusOr<HrGeneratorStats> stats =
      WriteHrCsvFile(Options(0, 1), path);
  EXPECT_EQ(stats.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_FALSE(FileExists(path));
  EXPECT_FALSE(FileExists(path + ".tmp"));
}

}  // namespace
}  // namespace idsync
