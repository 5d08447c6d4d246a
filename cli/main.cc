// idsync: the command line. `idsync --help` lists the commands.
#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "cli/hr_generator.h"
#include "cli/sync_command.h"

namespace {

int RunGenHr(const idsync::HrGeneratorOptions& options,
             const std::string& out) {
  auto stats = idsync::WriteHrCsvFile(options, out);
  if (!stats.ok()) {
    std::cerr << "idsync gen-hr: " << stats.status().message() << "\n";
    return 2;
  }
  std::cerr << "wrote " << stats->written << " employees to " << out;
  if (stats->modified > 0 || stats->removed > 0) {
    std::cerr << " (" << stats->modified << " modified, " << stats->removed
              << " removed)";
  }
  std::cerr << "\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"idsync: identity-governance sync connectors"};
  app.require_subcommand(1);
  int exit_code = 0;

  idsync::HrGeneratorOptions gen;
  std::string gen_out;
  CLI::App* gen_hr = app.add_subcommand(
      "gen-hr", "Write a realistic, deterministic HR CSV export");
  gen_hr->add_option("--count", gen.count, "Employees in the base population")
      ->required();
  gen_hr->add_option("--seed", gen.seed, "Random seed (same seed, same file)");
  gen_hr->add_option("--modify-percent", gen.modify_percent,
                     "Percent of employees whose row changes");
  gen_hr->add_option("--remove-percent", gen.remove_percent,
                     "Percent of employees left out");
  gen_hr->add_option("--out", gen_out, "Output file")->required();
  gen_hr->callback([&]() { exit_code = RunGenHr(gen, gen_out); });

  idsync::SyncCommandOptions sync;
  double threshold = -1;
  int64_t max_records = 0;
  CLI::App* sync_cmd = app.add_subcommand(
      "sync", "Run one hosted sync of a connector into a store");
  sync_cmd
      ->add_option("--type", sync.type,
                   "Connector type (csv, ldap, rest, scim, remote)")
      ->check(CLI::IsMember({"csv", "ldap", "rest", "scim", "remote"}))
      ->capture_default_str();
  sync_cmd->add_option("--file", sync.file, "Source file (csv)");
  sync_cmd->add_option(
      "--config", sync.config_file,
      "Connector config, a JSON object (csv: e.g. a column mapping; ldap: "
      "url, bind_dn, bind_password_file, user_base, ...; rest: base_url, "
      "streams, ...)");
  sync_cmd->add_option(
      "--auth-config", sync.auth_config_file,
      "Connector secrets, a JSON object (rest: {\"type\": \"bearer\", "
      "\"token\": ...}; ldap: {\"password\": ...}); never stored");
  sync_cmd
      ->add_option("--db", sync.db, "Store file (SQLite), created if missing")
      ->capture_default_str();
  sync_cmd->add_option("--tenant", sync.tenant, "Tenant name")
      ->capture_default_str();
  sync_cmd->add_option("--connector", sync.connector,
                       "Connector name in the store (default: the type); "
                       "deletions are detected per connector");
  sync_cmd->add_option("--chunk-size", sync.chunk_size, "Records per chunk")
      ->check(CLI::Range(1, 10000))
      ->capture_default_str();
  sync_cmd
      ->add_option("--commit-records", sync.commit_records,
                   "Records per transaction at most (smaller: less to redo "
                   "after a crash; larger: faster)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000000}))
      ->capture_default_str();
  sync_cmd
      ->add_option("--max-records", max_records,
                   "Stop after this many records (no deletions then)")
      ->check(CLI::PositiveNumber);
  sync_cmd
      ->add_option("--deletion-threshold", threshold,
                   "Percent of records this run may remove (default: the "
                   "connector's, 20)")
      ->check(CLI::Range(0.0, 100.0));
  sync_cmd->add_flag(
      "--incremental", sync.incremental,
      "Apply changes only; remove nothing that was not reported");
  sync_cmd->add_flag("--json", sync.json, "Print a JSON summary");
  sync_cmd->callback([&]() {
    if (sync.type == "csv" && sync.file.empty() && sync.config_file.empty()) {
      throw CLI::ValidationError(
          "--file", "a csv sync needs --file (or --config with a path)");
    }
    if ((sync.type == "rest" || sync.type == "scim" || sync.type == "remote") &&
        sync.config_file.empty()) {
      throw CLI::ValidationError(
          "--config", absl::StrCat("a ", sync.type,
                                   " sync needs --config (see docs/connectors/",
                                   sync.type, ".md)"));
    }
    if (sync.type == "ldap" && sync.config_file.empty()) {
      throw CLI::ValidationError(
          "--config",
          "an ldap sync needs --config (see docs/connectors/ldap.md)");
    }
    if (sync.type != "csv" && !sync.file.empty()) {
      throw CLI::ValidationError("--file", "is for --type csv only");
    }
    if (max_records > 0) sync.max_records = max_records;
    if (threshold >= 0) sync.deletion_threshold_percent = threshold;
    exit_code = idsync::RunSyncCommand(sync);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? 0 : 2;
  }
  return exit_code;
}
