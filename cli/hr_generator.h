// A deterministic generator of realistic HR CSV exports, for load and sync
// tests. A seed fixes a base population (ids, names, manager tree, ...); the
// percents then modify or omit an exact number of its employees, so a test can
// feed the base file and a mutated one to a connector and know what changed.
// Output is byte-identical for the same options on every platform.
// The functions are thread-safe: they share no state.
#ifndef IDSYNC_CLI_HR_GENERATOR_H_
#define IDSYNC_CLI_HR_GENERATOR_H_

#include <cstdint>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace idsync {

struct HrGeneratorOptions {
  // Employees in the base population, 1..50,000,000.
  int64_t count = 0;
  uint64_t seed = 1;
  // Exactly llround(count * percent / 100) employees get a changed row
  // (modify) or are left out (remove). The two sets are disjoint and the root
  // of the manager tree is never removed.
  double modify_percent = 0;
  double remove_percent = 0;
};

struct HrGeneratorStats {
  int64_t written = 0;  // data rows, header excluded
  int64_t modified = 0;
  int64_t removed = 0;
};

// Writes the header line
//   employee_id,first_name,last_name,email,department,title,manager_id,
//   status,location,hire_date
// and one RFC 4180 row per employee kept, in shuffled order, lines ending in
// "\n". InvalidArgument for count out of range, a percent outside [0, 100],
// modify + remove above 100%, or a removal that would take the root;
// Internal if `out` fails.
absl::StatusOr<HrGeneratorStats> WriteHrCsv(const HrGeneratorOptions& options,
                                            std::ostream& out);

// Same, into `path`: writes and syncs `path`.tmp, then renames it over `path`,
// so readers never see a partial file. Errors name the path.
absl::StatusOr<HrGeneratorStats> WriteHrCsvFile(
    const HrGeneratorOptions& options, const std::string& path);

// The employee_id values WriteHrCsv would remove and modify for `options`,
// each sorted ascending. Same errors as WriteHrCsv for invalid options.
struct HrMutationIds {
  std::vector<std::string> removed;
  std::vector<std::string> modified;
};
absl::StatusOr<HrMutationIds> PlanHrMutations(
    const HrGeneratorOptions& options);

}  // namespace idsync

#endif  // IDSYNC_CLI_HR_GENERATOR_H_
