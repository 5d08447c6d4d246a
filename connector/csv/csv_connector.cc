#include "connector/csv/csv_connector.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "connector/chunk_writer.h"
#include "connector/config.h"
#include "connector/csv/csv_reader.h"
#include "connector/status_macros.h"
#include "connector/text.h"

namespace idsync {
namespace {

using idsync::v1::RemoteIdentity;
using Setter = std::string* (RemoteIdentity::*)();

struct Field {
  const char* name;
  Setter setter;
  std::vector<const char*> aliases;  // Normalised: lower case, no " _-".
};

const std::vector<Field>& Fields() {
  static const auto* fields = new std::vector<Field>{
      {"external_id",
       &RemoteIdentity::mutable_external_id,
       {"externalid", "employeeid", "employeenumber", "workerid", "personid",
        "id"}},
      {"email",
       &RemoteIdentity::mutable_email,
       {"email", "mail", "emailaddress", "workemail"}},
      {"first_name",
       &RemoteIdentity::mutable_first_name,
       {"firstname", "givenname"}},
      {"last_name",
       &RemoteIdentity::mutable_last_name,
       {"lastname", "surname", "familyname", "sn"}},
      {"display_name",
       &RemoteIdentity::mutable_display_name,
       {"displayname", "fullname"}},
      {"department",
       &RemoteIdentity::mutable_department,
       {"department", "dept"}},
      {"job_title", &RemoteIdentity::mutable_job_title, {"jobtitle", "title"}},
      {"manager_external_id",
       &RemoteIdentity::mutable_manager_external_id,
       {"managerexternalid", "managerid", "manageremployeeid", "manager"}},
      {"status",
       &RemoteIdentity::mutable_status,
       {"status", "employmentstatus"}},
  };
  return *fields;
}

std::string Normalise(absl::string_view header) {
  std::string out;
  for (char c : header) {
    if (c != ' ' && c != '_' && c != '-') out.push_back(absl::ascii_tolower(c));
  }
  return out;
}

// What to do with one column.
struct Column {
  std::string header;
  Setter setter = nullptr;  // A record field, or
  std::string attribute;    // an attribute name, or neither: dropped.
};

struct Options {
  std::string path;
  CsvReaderOptions reader;
  int64_t max_field_bytes = 65536;
  absl::flat_hash_map<std::string, std::string> mapping;
};

absl::StatusOr<Options> ParseOptions(const google::protobuf::Struct& config) {
  ConfigReader cfg(config, "csv config");
  IDSYNC_RETURN_IF_ERROR(cfg.CheckKnownKeys(
      {"path", "mapping", "delimiter", "max_field_bytes", "max_record_bytes"}));
  Options o;
  IDSYNC_ASSIGN_OR_RETURN(o.path, cfg.RequiredString("path"));
  if (o.path.empty()) {
    return absl::InvalidArgumentError("csv config: 'path' must not be empty");
  }
  IDSYNC_ASSIGN_OR_RETURN(std::string delim, cfg.String("delimiter", ","));
  if (delim.size() != 1 || delim[0] == '"' || delim[0] == '\n' ||
      delim[0] == '\r') {
    return absl::InvalidArgumentError(
        "csv config: 'delimiter' must be one character other than a quote or "
        "line end");
  }
  o.reader.delimiter = delim[0];
  IDSYNC_ASSIGN_OR_RETURN(o.max_field_bytes,
                          cfg.Int("max_field_bytes", 65536, 1, 16 << 20));
  IDSYNC_ASSIGN_OR_RETURN(o.reader.max_record_bytes,
                          cfg.Int("max_record_bytes", 16 << 20, 1024, 1 << 30));
  IDSYNC_ASSIGN_OR_RETURN(const google::protobuf::Struct* mapping,
                          cfg.Object("mapping"));
  if (mapping != nullptr) {
    ConfigReader m(*mapping, "csv config: mapping");
    for (const auto& [header, unused] : mapping->fields()) {
      IDSYNC_ASSIGN_OR_RETURN(std::string target, m.RequiredString(header));
      o.mapping[header] = target;
    }
  }
  return o;
}

// Builds the column plan from the header row and the mapping.
absl::StatusOr<std::vector<Column>> PlanColumns(const CsvRecord& header,
                                                const Options& options) {
  if (header.field_count > static_cast<int>(header.fields.size())) {
    return absl::InvalidArgumentError(absl::StrCat(
        "header has more than ", header.fields.size(), " columns"));
  }
  std::vector<Column> columns;
  absl::flat_hash_set<std::string> seen_headers;
  absl::flat_hash_map<std::string, std::string> taken;  // field -> header
  absl::flat_hash_set<std::string> explicitly_mapped;   // fields
  for (const auto& [header_name, target] : options.mapping) {
    explicitly_mapped.insert(target);
  }
  for (int i = 0; i < header.field_count; ++i) {
    Column c;
    c.header = header.fields[i];
    if (!IsValidUtf8(c.header) || c.header.size() > 256) {
      return absl::InvalidArgumentError(
          absl::StrCat("header column ", i + 1, " is not a valid name (",
                       Excerpt(c.header), "); is this a CSV file?"));
    }
    if (c.header.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("header column ", i + 1, " has no name"));
    }
    if (!seen_headers.insert(c.header).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("header column '", c.header, "' appears twice"));
    }
    const Field* field = nullptr;
    auto explicit_target = options.mapping.find(c.header);
    if (explicit_target != options.mapping.end()) {
      const std::string& target = explicit_target->second;
      if (absl::StartsWith(target, "attributes.") && target.size() > 11) {
        c.attribute = target.substr(11);
      } else if (!target.empty()) {
        for (const Field& f : Fields()) {
          if (target == f.name) field = &f;
        }
        if (field == nullptr) {
          return absl::InvalidArgumentError(absl::StrCat(
              "csv config: mapping '", c.header, "' -> '", Excerpt(target),
              "': not a field (use external_id, email, first_name, last_name, "
              "display_name, department, job_title, manager_external_id, "
              "status, attributes.NAME or \"\")"));
        }
      }
    } else {
      // An alias never takes a field that the mapping gives another column.
      std::string norm = Normalise(c.header);
      for (const Field& f : Fields()) {
        for (const char* alias : f.aliases) {
          if (norm == alias && !taken.contains(f.name) &&
              !explicitly_mapped.contains(f.name)) {
            field = &f;
          }
        }
      }
      if (field == nullptr) c.attribute = c.header;
    }
    if (field != nullptr) {
      auto [it, inserted] = taken.emplace(field->name, c.header);
      if (!inserted) {
        return absl::InvalidArgumentError(
            absl::StrCat("columns '", it->second, "' and '", c.header,
                         "' both map to ", field->name));
      }
      c.setter = field->setter;
    }
    columns.push_back(std::move(c));
  }
  for (const auto& [header, unused] : options.mapping) {
    if (!seen_headers.contains(header)) {
      return absl::InvalidArgumentError(
          absl::StrCat("csv config: mapping names column '", header,
                       "', which is not in the header"));
    }
  }
  if (!taken.contains("external_id")) {
    return absl::InvalidArgumentError(
        "no column maps to external_id (name one employee_id or external_id, "
        "or map one in 'mapping')");
  }
  return columns;
}

// The resume token: where to restart and which file it is valid for.
struct Position {
  int64_t offset = 0, line = 1, size = 0, mtime_ns = 0;
};

std::string EncodeToken(const Position& p) {
  return absl::StrCat("csv1:", p.offset, ":", p.line, ":", p.size, ":",
                      p.mtime_ns);
}

absl::StatusOr<Position> DecodeToken(absl::string_view token) {
  std::vector<absl::string_view> parts = absl::StrSplit(token, ':');
  Position p;
  if (parts.size() != 5 || parts[0] != "csv1" ||
      !absl::SimpleAtoi(parts[1], &p.offset) ||
      !absl::SimpleAtoi(parts[2], &p.line) ||
      !absl::SimpleAtoi(parts[3], &p.size) ||
      !absl::SimpleAtoi(parts[4], &p.mtime_ns)) {
    return absl::InvalidArgumentError(
        absl::StrCat("malformed csv resume token '", Excerpt(token), "'"));
  }
  return p;
}

class CsvConnector final : public Connector {
 public:
  CsvConnector(Options options, std::shared_ptr<const FileAccess> files)
      : options_(std::move(options)), files_(std::move(files)) {}

  absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override {
    return BuiltinInfo("csv", {"full", "resume", "identities"});
  }

  absl::Status TestConnection() override {
    IDSYNC_ASSIGN_OR_RETURN(auto reader, OpenReader());
    CsvRecord header;
    IDSYNC_ASSIGN_OR_RETURN(bool has_header, reader->Next(&header));
    if (!has_header) return EmptyFile();
    return PlanColumns(header, options_).status();
  }

  absl::Status Sync(const idsync::v1::SyncRequest& request,
                    RecordSink& sink) override {
    IDSYNC_ASSIGN_OR_RETURN(auto reader, OpenReader());
    CsvRecord record;
    IDSYNC_ASSIGN_OR_RETURN(bool has_header, reader->Next(&record));
    if (!has_header) return EmptyFile();
    IDSYNC_ASSIGN_OR_RETURN(std::vector<Column> columns,
                            PlanColumns(record, options_));
    if (!request.resume_token().empty()) {
      IDSYNC_ASSIGN_OR_RETURN(Position p, DecodeToken(request.resume_token()));
      if (p.size != reader->file_size() ||
          p.mtime_ns != reader->file_mtime_ns() ||
          p.offset < reader->boundary()) {
        return absl::FailedPreconditionError(
            "the CSV file changed since the interrupted run; it cannot resume");
      }
      IDSYNC_RETURN_IF_ERROR(reader->Seek(p.offset, p.line));
    }

    ChunkWriter writer(sink, request.chunk_size());
    idsync::v1::Progress progress;
    progress.set_unit("bytes");
    progress.set_total(reader->file_size());
    auto flush = [&]() {
      progress.set_done(reader->boundary());
      return writer.Flush(
          EncodeToken({reader->boundary(), reader->line(), reader->file_size(),
                       reader->file_mtime_ns()}),
          progress);
    };
    while (true) {
      IDSYNC_ASSIGN_OR_RETURN(bool more, reader->Next(&record));
      if (!more) break;
      AddRow(record, columns, writer);
      if (writer.full()) IDSYNC_RETURN_IF_ERROR(flush());
    }
    return flush();
  }

 private:
  absl::StatusOr<std::unique_ptr<CsvReader>> OpenReader() const {
    IDSYNC_ASSIGN_OR_RETURN(UniqueFd fd,
                            files_->OpenRead(options_.path, "CSV file"));
    return CsvReader::FromFd(std::move(fd), options_.reader);
  }

  static absl::Status EmptyFile() {
    return absl::InvalidArgumentError("the CSV file is empty (no header row)");
  }

  // Adds the record as an identity, or as a reject saying what is wrong.
  void AddRow(const CsvRecord& record, const std::vector<Column>& columns,
              ChunkWriter& writer) {
    std::string reason;
    // The external id is known when the row has the header's shape, even if
    // another column is bad.
    int external_id_column = -1;
    if (record.field_count != static_cast<int>(columns.size())) {
      reason = absl::StrCat("wrong column count: expected ", columns.size(),
                            ", got ", record.field_count);
    } else {
      for (size_t i = 0; i < columns.size(); ++i) {
        if (columns[i].setter == &RemoteIdentity::mutable_external_id) {
          external_id_column = static_cast<int>(i);
        }
      }
    }
    for (size_t i = 0; reason.empty() && i < columns.size(); ++i) {
      const std::string& value = record.fields[i];
      if (static_cast<int64_t>(value.size()) > options_.max_field_bytes) {
        reason = absl::StrCat("column '", columns[i].header, "' is ",
                              value.size(), " bytes, over max_field_bytes (",
                              options_.max_field_bytes, ")");
      } else if (!IsValidUtf8(value)) {
        reason =
            absl::StrCat("column '", columns[i].header, "' is not valid UTF-8");
      }
    }
    if (reason.empty() && record.fields[external_id_column].empty()) {
      reason = "missing external_id";
    }
    if (!reason.empty()) {
      idsync::v1::Reject* reject = writer.AddReject();
      reject->set_kind(idsync::v1::RECORD_KIND_IDENTITY);
      reject->set_location(absl::StrCat("line ", record.line));
      reject->set_reason(std::move(reason));
      if (external_id_column >= 0 &&
          IsValidUtf8(record.fields[external_id_column]) &&
          record.fields[external_id_column].size() <= 256) {
        reject->set_external_id(record.fields[external_id_column]);
      }
      return;
    }
    RemoteIdentity* identity = writer.AddIdentity();
    for (size_t i = 0; i < columns.size(); ++i) {
      const Column& c = columns[i];
      if (c.setter != nullptr) {
        *(identity->*c.setter)() = record.fields[i];
      } else if (!c.attribute.empty() && !record.fields[i].empty()) {
        (*identity->mutable_attributes())[c.attribute] = record.fields[i];
      }
    }
  }

  const Options options_;
  const std::shared_ptr<const FileAccess> files_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Connector>> CreateCsvConnector(
    const ConnectorSpec& spec) {
  IDSYNC_ASSIGN_OR_RETURN(Options options, ParseOptions(spec.config));
  IDSYNC_RETURN_IF_ERROR(
      spec.access.files->CheckPath(options.path, "csv config: 'path'"));
  return std::make_unique<CsvConnector>(std::move(options), spec.access.files);
}

}  // namespace idsync
