#include "connector/csv/csv_connector.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/substitute.h"
#include "connector/connector.h"
#include "connector/registry.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::idsync::v1::Reject;
using ::idsync::v1::RemoteIdentity;
using ::idsync::v1::SyncChunk;
using ::idsync::v1::SyncRequest;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;

constexpr int64_t kMtimeSec = 1700000000;

// Stores every chunk; can fail the n-th Write with a given status.
class CollectingSink : public RecordSink {
 public:
  absl::Status Write(SyncChunk chunk) override {
    ++writes;
    if (writes == fail_at_write) return fail_with;
    chunks.push_back(std::move(chunk));
    return absl::OkStatus();
  }
  void SetNextSyncToken(std::string token) override {
    next_sync_token = std::move(token);
  }

  std::vector<RemoteIdentity> Identities() const {
    std::vector<RemoteIdentity> out;
    for (const SyncChunk& c : chunks) {
      out.insert(out.end(), c.identities().begin(), c.identities().end());
    }
    return out;
  }
  std::vector<Reject> Rejects() const {
    std::vector<Reject> out;
    for (const SyncChunk& c : chunks) {
      out.insert(out.end(), c.rejects().begin(), c.rejects().end());
    }
    return out;
  }
  std::vector<std::string> ExternalIds() const {
    std::vector<std::string> out;
    for (const RemoteIdentity& i : Identities()) out.push_back(i.external_id());
    return out;
  }

  std::vector<SyncChunk> chunks;
  std::string next_sync_token;
  int writes = 0;
  int fail_at_write = 0;  // 1-based; 0 never fails.
  absl::Status fail_with = absl::CancelledError("consumer went away");
};

// Everything a chunk carries, in order, as text: "id:X" for an identity,
// "reject:LOCATION:EXTERNAL_ID:REASON" for a reject.
std::vector<std::string> Items(const SyncChunk& chunk) {
  std::vector<std::string> out;
  for (const RemoteIdentity& i : chunk.identities()) {
    out.push_back(absl::StrCat("id:", i.external_id()));
  }
  for (const Reject& r : chunk.rejects()) {
    out.push_back(absl::StrCat("reject:", r.location(), ":", r.external_id(),
                               ":", r.reason()));
  }
  return out;
}

std::vector<std::string> Items(const std::vector<SyncChunk>& chunks,
                               size_t first = 0) {
  std::vector<std::string> out;
  for (size_t i = first; i < chunks.size(); ++i) {
    std::vector<std::string> items = Items(chunks[i]);
    out.insert(out.end(), items.begin(), items.end());
  }
  return out;
}

class CsvConnectorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<testing::ScopedTestDir>("csv_connector_test");
    path_ = dir_->File("hr.csv");
  }

  // Writes `bytes` to path_ and gives it a fixed mtime (plus `mtime_nsec`).
  void WriteFile(absl::string_view bytes, long mtime_nsec = 0) {
    {
      std::ofstream out(path_, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
      ASSERT_TRUE(out.good()) << path_;
    }
    struct timespec times[2];
    times[0].tv_sec = times[1].tv_sec = kMtimeSec;
    times[0].tv_nsec = times[1].tv_nsec = mtime_nsec;
    ASSERT_EQ(utimensat(AT_FDCWD, path_.c_str(), times, 0), 0);
  }

  // `json` is the config object; $0 stands for the file path.
  static absl::StatusOr<std::unique_ptr<Connector>> Create(
      absl::string_view json, absl::string_view path = "") {
    ConnectorSpec spec;
    spec.business_id = "hr";
    const std::string text = absl::Substitute(json, path);
    auto parsed =
        google::protobuf::util::JsonStringToMessage(text, &spec.config);
    if (!parsed.ok()) {
      ADD_FAILURE() << "bad test JSON: " << text;
      return absl::InternalError("bad test JSON");
    }
    return CreateCsvConnector(spec);
  }

  // A connector for path_ with extra config members (", ..." JSON text).
  std::unique_ptr<Connector> Make(absl::string_view extra = "") {
    auto connector =
        Create(absl::StrCat(R"({"path": "$0")", extra, "}"), path_);
    EXPECT_TRUE(connector.ok()) << connector.status();
    return connector.ok() ? *std::move(connector) : nullptr;
  }

  absl::Status Sync(Connector& connector, CollectingSink& sink,
                    int chunk_size = 0, std::string resume_token = "") {
    SyncRequest request;
    request.set_connector_business_id("hr");
    request.set_chunk_size(chunk_size);
    request.set_resume_token(std::move(resume_token));
    return connector.Sync(request, sink);
  }

  // Syncs path_ with a default connector; expects success.
  CollectingSink SyncFile(absl::string_view bytes, absl::string_view extra = "",
                          int chunk_size = 0) {
    WriteFile(bytes);
    CollectingSink sink;
    std::unique_ptr<Connector> connector = Make(extra);
    if (connector == nullptr) return sink;
    absl::Status status = Sync(*connector, sink, chunk_size);
    EXPECT_TRUE(status.ok()) << status;
    return sink;
  }

  // The status of a Sync of `bytes` with config `extra`.
  absl::Status SyncStatus(absl::string_view bytes,
                          absl::string_view extra = "") {
    WriteFile(bytes);
    std::unique_ptr<Connector> connector = Make(extra);
    if (connector == nullptr) return absl::InternalError("no connector");
    CollectingSink sink;
    return Sync(*connector, sink);
  }

  std::unique_ptr<testing::ScopedTestDir> dir_;
  std::string path_;
};

// --- Describe and creation ---------------------------------------------------

TEST_F(CsvConnectorTest, DescribeReturnsTypeCsv) {
  WriteFile("employee_id\n1\n");
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  auto info = connector->Describe();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->type(), "csv");
  EXPECT_THAT(info->capabilities(), ::testing::Contains("resume"));
}

TEST_F(CsvConnectorTest, BuiltinRegistryCreatesTheCsvConnector) {
  ConnectorRegistry registry;
  RegisterBuiltinConnectors(registry);
  ConnectorSpec spec;
  (*spec.config.mutable_fields())["path"].set_string_value(path_);
  auto connector = registry.Create("csv", spec);
  ASSERT_TRUE(connector.ok()) << connector.status();
  auto info = (*connector)->Describe();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->type(), "csv");
}

// --- Column mapping
// ------------------------------------------------------------

TEST_F(CsvConnectorTest, DefaultAliasesMapHeadersToFields) {
  CollectingSink sink = SyncFile(
      "Employee ID,E-Mail,first_name,Last Name,Display_Name,Dept,Title,"
      "Manager ID,Employment Status\n"
      "e1,a@x.org,Ann,Lee,Ann Lee,Sales,Rep,e0,active\n");
  ASSERT_EQ(sink.Identities().size(), 1u);
  const RemoteIdentity i = sink.Identities()[0];
  EXPECT_EQ(i.external_id(), "e1");
  EXPECT_EQ(i.email(), "a@x.org");
  EXPECT_EQ(i.first_name(), "Ann");
  EXPECT_EQ(i.last_name(), "Lee");
  EXPECT_EQ(i.display_name(), "Ann Lee");
  EXPECT_EQ(i.department(), "Sales");
  EXPECT_EQ(i.job_title(), "Rep");
  EXPECT_EQ(i.manager_external_id(), "e0");
  EXPECT_EQ(i.status(), "active");
  EXPECT_THAT(i.attributes(), IsEmpty());
  EXPECT_THAT(sink.Rejects(), IsEmpty());
}

TEST_F(CsvConnectorTest, UnmappedColumnsLandInAttributesUnderTheirHeader) {
  CollectingSink sink = SyncFile(
      "employee_id,Cost Center,location\n"
      "e1,CC-7,Berlin\n");
  ASSERT_EQ(sink.Identities().size(), 1u);
  EXPECT_THAT(sink.Identities()[0].attributes(),
              UnorderedElementsAre(Pair("Cost Center", "CC-7"),
                                   Pair("location", "Berlin")));
}

TEST_F(CsvConnectorTest, EmptyUnmappedValuesAreOmittedFromAttributes) {
  CollectingSink sink = SyncFile(
      "employee_id,email,location,badge\n"
      "e1,,,\"\"\n"
      "e2,,Paris,\n");
  ASSERT_EQ(sink.Identities().size(), 2u);
  EXPECT_THAT(sink.Identities()[0].attributes(), IsEmpty());
  EXPECT_EQ(sink.Identities()[0].email(), "");
  EXPECT_THAT(sink.Identities()[1].attributes(),
              UnorderedElementsAre(Pair("location", "Paris")));
}

TEST_F(CsvConnectorTest, SecondAliasOfATakenFieldBecomesAnAttribute) {
  CollectingSink sink = SyncFile("employee_id,id\ne1,legacy-9\n");
  ASSERT_EQ(sink.Identities().size(), 1u);
  EXPECT_EQ(sink.Identities()[0].external_id(), "e1");
  EXPECT_THAT(sink.Identities()[0].attributes(),
              UnorderedElementsAre(Pair("id", "legacy-9")));
}

TEST_F(CsvConnectorTest, ExplicitMappingOverridesAliasesAndDropsColumns) {
  CollectingSink sink = SyncFile(
      "employee_id,Worker,Boss,Cost Center,SSN,Mail\n"
      "old-1,w1,w0,CC-1,123-45-6789,w1@x.org\n",
      R"(, "mapping": {"Worker": "external_id",
                       "Boss": "manager_external_id",
                       "employee_id": "attributes.legacy_id",
                       "Cost Center": "attributes.cost_center",
                       "SSN": ""})");
  ASSERT_EQ(sink.Identities().size(), 1u);
  const RemoteIdentity i = sink.Identities()[0];
  EXPECT_EQ(i.external_id(), "w1");
  EXPECT_EQ(i.manager_external_id(), "w0");
  EXPECT_EQ(i.email(), "w1@x.org");
  EXPECT_THAT(i.attributes(),
              UnorderedElementsAre(Pair("legacy_id", "old-1"),
                                   Pair("cost_center", "CC-1")));
  EXPECT_EQ(i.DebugString().find("123-45-6789"), std::string::npos);
}

TEST_F(CsvConnectorTest, ExplicitMappingWinsOverAnAliasInEitherColumnOrder) {
  for (const char* header :
       {"employee_id,Mail,Work\n", "employee_id,Work,Mail\n"}) {
    const bool mail_first =
        std::string(header).find("Mail,") != std::string::npos;
    CollectingSink sink =
        SyncFile(absl::StrCat(header, mail_first ? "e1,home@x,work@x\n"
                                                 : "e1,work@x,home@x\n"),
                 R"(, "mapping": {"Work": "email"})");
    ASSERT_EQ(sink.Identities().size(), 1u) << header;
    EXPECT_EQ(sink.Identities()[0].email(), "work@x") << header;
    EXPECT_THAT(sink.Identities()[0].attributes(),
                UnorderedElementsAre(Pair("Mail", "home@x")))
        << header;
  }
}

TEST_F(CsvConnectorTest, BomBeforeTheHeaderIsNotPartOfTheFirstColumnName) {
  CollectingSink sink = SyncFile(
      "\xEF\xBB\xBF"
      "employee_id,email\ne1,a@x\n");
  EXPECT_THAT(sink.ExternalIds(), ElementsAre("e1"));
}

TEST_F(CsvConnectorTest, SemicolonDelimiterIsUsed) {
  CollectingSink sink = SyncFile("employee_id;display_name\ne1;Lee, Ann\n",
                                 R"(, "delimiter": ";")");
  ASSERT_EQ(sink.Identities().size(), 1u);
  EXPECT_EQ(sink.Identities()[0].external_id(), "e1");
  EXPECT_EQ(sink.Identities()[0].display_name(), "Lee, Ann");
}

// --- Config errors
// -------------------------------------------------------------

TEST_F(CsvConnectorTest, UnknownConfigKeyIsInvalidArgumentNamingIt) {
  auto connector = Create(R"({"path": "$0", "delimeter": ";"})", path_);
  ASSERT_FALSE(connector.ok());
  EXPECT_EQ(connector.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(connector.status().message(), HasSubstr("'delimeter'"));
}

TEST_F(CsvConnectorTest, MissingPathIsInvalidArgumentNamingIt) {
  auto connector = Create(R"({"delimiter": ";"})");
  ASSERT_FALSE(connector.ok());
  EXPECT_EQ(connector.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(connector.status().message(), HasSubstr("'path'"));
}

TEST_F(CsvConnectorTest, EmptyOrNonStringPathIsInvalidArgumentNamingIt) {
  for (absl::string_view json : {R"({"path": ""})", R"({"path": 7})"}) {
    auto connector = Create(json);
    ASSERT_FALSE(connector.ok()) << json;
    EXPECT_EQ(connector.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(connector.status().message(), HasSubstr("'path'"));
  }
}

TEST_F(CsvConnectorTest, BadDelimiterIsInvalidArgumentNamingIt) {
  for (absl::string_view delimiter :
       {R"("")", R"(";;")", R"("\"")", R"("\n")", R"("\r")", "1"}) {
    auto connector = Create(
        absl::StrCat(R"({"path": "$0", "delimiter": )", delimiter, "}"), path_);
    ASSERT_FALSE(connector.ok()) << delimiter;
    EXPECT_EQ(connector.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(connector.status().message(), HasSubstr("'delimiter'"));
  }
}

TEST_F(CsvConnectorTest, OutOfRangeSizeLimitsAreInvalidArgumentNamingThem) {
  for (const auto& [key, value] :
       std::vector<std::pair<std::string, std::string>>{
           {"max_field_bytes", "0"},
           {"max_field_bytes", "1.5"},
           {"max_field_bytes", R"("100")"},
           {"max_record_bytes", "100"},
           {"max_record_bytes", "2e9"}}) {
    auto connector = Create(
        absl::StrCat(R"({"path": "$0", ")", key, R"(": )", value, "}"), path_);
    ASSERT_FALSE(connector.ok()) << key << "=" << value;
    EXPECT_EQ(connector.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(connector.status().message(), HasSubstr(key));
  }
}

TEST_F(CsvConnectorTest, NonObjectOrNonStringMappingIsInvalidArgument) {
  auto not_object = Create(R"({"path": "$0", "mapping": "email"})", path_);
  ASSERT_FALSE(not_object.ok());
  EXPECT_EQ(not_object.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_object.status().message(), HasSubstr("'mapping'"));

  auto not_string = Create(R"({"path": "$0", "mapping": {"Mail": 3}})", path_);
  ASSERT_FALSE(not_string.ok());
  EXPECT_EQ(not_string.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(not_string.status().message(), HasSubstr("'Mail'"));
}

TEST_F(CsvConnectorTest, MappingToAnUnknownFieldIsInvalidArgumentNamingIt) {
  absl::Status status = SyncStatus("employee_id,Mail\ne1,a@x\n",
                                   R"(, "mapping": {"Mail": "e_mail"})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'Mail'"));
  EXPECT_THAT(status.message(), HasSubstr("e_mail"));
}

TEST_F(CsvConnectorTest, MappingToBareAttributesPrefixIsInvalidArgument) {
  absl::Status status = SyncStatus("employee_id,Mail\ne1,a@x\n",
                                   R"(, "mapping": {"Mail": "attributes."})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'Mail'"));
}

TEST_F(CsvConnectorTest, MappingNamingAColumnNotInTheHeaderIsInvalidArgument) {
  absl::Status status = SyncStatus("employee_id,Mail\ne1,a@x\n",
                                   R"(, "mapping": {"E-Mail": "email"})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'E-Mail'"));
  EXPECT_THAT(status.message(), HasSubstr("not in the header"));
}

TEST_F(CsvConnectorTest,
       TwoColumnsMappedToOneFieldIsInvalidArgumentNamingBoth) {
  absl::Status status =
      SyncStatus("employee_id,Mail1,Mail2\ne1,a@x,b@x\n",
                 R"(, "mapping": {"Mail1": "email", "Mail2": "email"})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'Mail1'"));
  EXPECT_THAT(status.message(), HasSubstr("'Mail2'"));
  EXPECT_THAT(status.message(), HasSubstr("email"));
}

TEST_F(CsvConnectorTest, NoExternalIdColumnIsInvalidArgument) {
  absl::Status status = SyncStatus("email,name\na@x,Ann\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("external_id"));
}

// --- Header errors
// -------------------------------------------------------------

TEST_F(CsvConnectorTest, EmptyFileIsInvalidArgumentSayingEmpty) {
  for (absl::string_view bytes : {"", "\n\n", "\xEF\xBB\xBF"}) {
    absl::Status status = SyncStatus(bytes);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(status.message(), HasSubstr("empty"));
  }
}

TEST_F(CsvConnectorTest, DuplicateHeaderIsInvalidArgumentNamingIt) {
  absl::Status status = SyncStatus("employee_id,Site,Site\ne1,a,b\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("'Site'"));
  EXPECT_THAT(status.message(), HasSubstr("twice"));
}

TEST_F(CsvConnectorTest, BinaryHeaderIsInvalidArgument) {
  absl::Status status =
      SyncStatus(std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("header"));
}

TEST_F(CsvConnectorTest, HeaderColumnWithoutNameIsInvalidArgument) {
  absl::Status status = SyncStatus("employee_id,,email\ne1,x,a@x\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("column 2"));
}

TEST_F(CsvConnectorTest, HeaderOnlyFileSyncsZeroRecords) {
  CollectingSink sink = SyncFile("employee_id,email\n");
  EXPECT_THAT(sink.Identities(), IsEmpty());
  EXPECT_THAT(sink.Rejects(), IsEmpty());
}

// --- Rejects
// -------------------------------------------------------------------

TEST_F(CsvConnectorTest, WrongColumnCountIsRejectedWithLineAndReason) {
  CollectingSink sink =
      SyncFile("employee_id,email,dept\ne1,a@x,S\ne2,b@x\ne3,c@x,S,extra\n");
  EXPECT_THAT(sink.ExternalIds(), ElementsAre("e1"));
  const std::vector<Reject> rejects = sink.Rejects();
  ASSERT_EQ(rejects.size(), 2u);
  EXPECT_EQ(rejects[0].location(), "line 3");
  EXPECT_THAT(rejects[0].reason(), HasSubstr("column count"));
  EXPECT_THAT(rejects[0].reason(), HasSubstr("expected 3, got 2"));
  EXPECT_EQ(rejects[0].kind(), idsync::v1::RECORD_KIND_IDENTITY);
  EXPECT_EQ(rejects[1].location(), "line 4");
  EXPECT_THAT(rejects[1].reason(), HasSubstr("expected 3, got 4"));
}

TEST_F(CsvConnectorTest, InvalidUtf8IsRejectedWithExternalId) {
  CollectingSink sink =
      SyncFile("employee_id,last_name\ne1,Lee\ne2,M\xFCller\ne3,\xC0\xAF\n");
  EXPECT_THAT(sink.ExternalIds(), ElementsAre("e1"));
  const std::vector<Reject> rejects = sink.Rejects();
  ASSERT_EQ(rejects.size(), 2u);
  EXPECT_EQ(rejects[0].location(), "line 3");
  EXPECT_EQ(rejects[0].external_id(), "e2");
  EXPECT_THAT(rejects[0].reason(), HasSubstr("'last_name'"));
  EXPECT_THAT(rejects[0].reason(), HasSubstr("UTF-8"));
  EXPECT_EQ(rejects[1].location(), "line 4");
  EXPECT_EQ(rejects[1].external_id(), "e3");
}

TEST_F(CsvConnectorTest, InvalidUtf8ExternalIdIsRejectedWithoutExternalId) {
  CollectingSink sink = SyncFile("employee_id,last_name\n\xFF\xFE,Lee\n");
  const std::vector<Reject> rejects = sink.Rejects();
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_EQ(rejects[0].location(), "line 2");
  EXPECT_EQ(rejects[0].external_id(), "");
  EXPECT_THAT(rejects[0].reason(), HasSubstr("UTF-8"));
}

TEST_F(CsvConnectorTest, FieldOverMaxFieldBytesIsRejectedWithExternalId) {
  const std::string text = absl::StrCat("employee_id,notes\ne1,",
                                        std::string(2000, 'n'), "\ne2,ok\n");
  CollectingSink sink = SyncFile(text, R"(, "max_field_bytes": 1000)");
  EXPECT_THAT(sink.ExternalIds(), ElementsAre("e2"));
  const std::vector<Reject> rejects = sink.Rejects();
  ASSERT_EQ(rejects.size(), 1u);
  EXPECT_EQ(rejects[0].location(), "line 2");
  EXPECT_EQ(rejects[0].external_id(), "e1");
  EXPECT_THAT(rejects[0].reason(), HasSubstr("'notes'"));
  EXPECT_THAT(rejects[0].reason(), HasSubstr("max_field_bytes"));
}

TEST_F(CsvConnectorTest, RejectCarriesExternalIdWhenTheBadColumnComesFirst) {
  const std::string text =
      absl::StrCat("notes,last_name,employee_id\n", std::string(2000, 'n'),
                   ",Lee,e1\n", "ok,M\xFCller,e2\n");
  CollectingSink sink = SyncFile(text, R"(, "max_field_bytes": 1000)");
  const std::vector<Reject> rejects = sink.Rejects();
  ASSERT_EQ(rejects.size(), 2u);
  EXPECT_EQ(rejects[0].location(), "line 2");
  EXPECT_THAT(rejects[0].reason(), HasSubstr("max_field_bytes"));
  EXPECT_EQ(rejects[0].external_id(), "e1");
  EXPECT_EQ(rejects[1].location(), "line 3");
  EXPECT_THAT(rejects[1].reason(), HasSubstr("UTF-8"));
  EXPECT_EQ(rejects[1].external_id(), "e2");
}

TEST_F(CsvConnectorTest, MissingExternalIdIsRejected) {
  CollectingSink sink = SyncFile("email,employee_id\na@x,e1\nb@x,\nc@x,\"\"\n");
  EXPECT_THAT(sink.ExternalIds(), ElementsAre("e1"));
  const std::vector<Reject> rejects = sink.Rejects();
  ASSERT_EQ(rejects.size(), 2u);
  EXPECT_EQ(rejects[0].location(), "line 3");
  EXPECT_EQ(rejects[0].reason(), "missing external_id");
  EXPECT_EQ(rejects[0].external_id(), "");
  EXPECT_EQ(rejects[1].location(), "line 4");
}

TEST_F(CsvConnectorTest, RejectLinesArePhysicalLinesAfterMultiLineRecords) {
  for (const std::string eol : {"\n", "\r\n", "\r"}) {
    SCOPED_TRACE(absl::StrCat("eol size ", eol.size(), " first ",
                              static_cast<int>(eol[0])));
    const std::string text =
        absl::StrCat("employee_id,notes", eol,                          // 1
                     "e1,\"first", eol, "second", eol, "third\"", eol,  // 2-4
                     eol,                             // 5 (blank)
                     "e2", eol,                       // 6: count
                     "e3,\"x", eol, "y\"", eol,       // 7-8
                     ",\"no id", eol, "here\"", eol,  // 9-10: no id
                     "e5,\xFF", eol);                 // 11: UTF-8
    CollectingSink sink = SyncFile(text);
    EXPECT_THAT(sink.ExternalIds(), ElementsAre("e1", "e3"));
    const std::vector<Reject> rejects = sink.Rejects();
    ASSERT_EQ(rejects.size(), 3u);
    EXPECT_EQ(rejects[0].location(), "line 6");
    EXPECT_EQ(rejects[1].location(), "line 9");
    EXPECT_EQ(rejects[2].location(), "line 11");
  }
}

TEST_F(CsvConnectorTest, UnterminatedQuoteFailsTheSyncNamingTheLine) {
  absl::Status status =
      SyncStatus("employee_id,notes\ne1,ok\ne2,\"open\ne3,x\n");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("line 3"));
}

TEST_F(CsvConnectorTest, RecordOverMaxRecordBytesFailsTheSync) {
  std::string text = "employee_id,notes\ne1,\"open\n";
  for (int i = 0; i < 500; ++i) absl::StrAppend(&text, "e", i, ",x\n");
  absl::StrAppend(&text, "\"\n");
  absl::Status status = SyncStatus(text, R"(, "max_record_bytes": 1024)");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("line 2"));
}

// --- Chunks and progress
// -------------------------------------------------------

// A file of `n` data rows: every 7th row lacks its external id (a reject),
// every 5th has a multi-line note. Rows end with `eol`.
std::string MakeRows(int n, absl::string_view eol = "\n") {
  std::string text = absl::StrCat("employee_id,email,notes", eol);
  for (int i = 1; i <= n; ++i) {
    const std::string id = i % 7 == 0 ? "" : absl::StrCat("e", i);
    const std::string notes =
        i % 5 == 0 ? absl::StrCat("\"line one", eol, "line \"\"two\"\"\"")
                   : absl::StrCat("n", i);
    absl::StrAppend(&text, id, ",", "u", i, "@x.org,", notes, eol);
  }
  return text;
}

// The byte offset just past each data row's line end.
std::vector<int64_t> RowEnds(absl::string_view text, int n,
                             absl::string_view eol = "\n") {
  std::vector<int64_t> ends;
  size_t pos = text.find(eol) + eol.size();  // Past the header.
  for (int i = 1; i <= n; ++i) {
    if (i % 5 == 0) pos = text.find(eol, pos) + eol.size();  // Inner line end.
    pos = text.find(eol, pos) + eol.size();
    ends.push_back(static_cast<int64_t>(pos));
  }
  return ends;
}

TEST_F(CsvConnectorTest, ChunksHoldChunkSizeItemsWithSequenceAndProgress) {
  constexpr int kRows = 23;
  constexpr int kChunk = 5;
  const std::string text = MakeRows(kRows);
  const std::vector<int64_t> ends = RowEnds(text, kRows);
  CollectingSink sink = SyncFile(text, "", kChunk);
  ASSERT_EQ(sink.chunks.size(),
            static_cast<size_t>((kRows + kChunk - 1) / kChunk));
  for (size_t i = 0; i < sink.chunks.size(); ++i) {
    const SyncChunk& c = sink.chunks[i];
    SCOPED_TRACE(absl::StrCat("chunk ", i));
    EXPECT_EQ(c.sequence(), static_cast<int64_t>(i + 1));
    const int items = c.identities_size() + c.rejects_size();
    EXPECT_EQ(items, i + 1 < sink.chunks.size() ? kChunk : kRows % kChunk);
    EXPECT_EQ(c.progress().unit(), "bytes");
    EXPECT_EQ(c.progress().total(), static_cast<int64_t>(text.size()));
    const size_t last_row = std::min<size_t>((i + 1) * kChunk, kRows) - 1;
    EXPECT_EQ(c.progress().done(), ends[last_row]);
  }
  EXPECT_EQ(sink.chunks.back().progress().done(),
            static_cast<int64_t>(text.size()));
  EXPECT_EQ(sink.Identities().size() + sink.Rejects().size(),
            static_cast<size_t>(kRows));
  EXPECT_EQ(sink.Rejects().size(), static_cast<size_t>(kRows / 7));
}

TEST_F(CsvConnectorTest, ExactMultipleOfChunkSizeSendsNoEmptyChunk) {
  CollectingSink sink = SyncFile(MakeRows(10), "", 5);
  ASSERT_EQ(sink.chunks.size(), 2u);
  EXPECT_EQ(sink.chunks[1].sequence(), 2);
}

TEST_F(CsvConnectorTest, ZeroChunkSizeUsesTheDefaultOf1000) {
  CollectingSink sink = SyncFile(MakeRows(2500), "", 0);
  ASSERT_EQ(sink.chunks.size(), 3u);
  EXPECT_EQ(sink.chunks[0].identities_size() + sink.chunks[0].rejects_size(),
            kDefaultChunkSize);
  EXPECT_EQ(sink.chunks[2].identities_size() + sink.chunks[2].rejects_size(),
            500);
}

TEST_F(CsvConnectorTest, CrlfFileProgressEndsAtTheFileSize) {
  constexpr int kRows = 12;
  const std::string text = MakeRows(kRows, "\r\n");
  const std::vector<int64_t> ends = RowEnds(text, kRows, "\r\n");
  CollectingSink sink = SyncFile(text, "", 4);
  ASSERT_EQ(sink.chunks.size(), 3u);
  EXPECT_EQ(sink.chunks[0].progress().done(), ends[3]);
  EXPECT_EQ(sink.chunks[1].progress().done(), ends[7]);
  EXPECT_EQ(sink.chunks[2].progress().done(),
            static_cast<int64_t>(text.size()));
}

TEST_F(CsvConnectorTest, ResumeTokenNamesOffsetLineSizeAndMtime) {
  const std::string text = MakeRows(6);
  const std::vector<int64_t> ends = RowEnds(text, 6);
  CollectingSink sink = SyncFile(text, "", 4);
  ASSERT_EQ(sink.chunks.size(), 2u);
  std::vector<std::string> parts =
      absl::StrSplit(sink.chunks[0].resume_token(), ':');
  ASSERT_EQ(parts.size(), 5u) << sink.chunks[0].resume_token();
  EXPECT_EQ(parts[0], "csv1");
  EXPECT_EQ(parts[1], absl::StrCat(ends[3]));
  // Header 1, rows 1-4 on lines 2-3-4-5, row 5 on lines 6-7.
  EXPECT_EQ(parts[2], "6");
  EXPECT_EQ(parts[3], absl::StrCat(text.size()));
  EXPECT_EQ(parts[4], absl::StrCat(kMtimeSec * 1000000000));
}

// --- Resume
// --------------------------------------------------------------------

TEST_F(CsvConnectorTest, ResumeFromEachChunkYieldsExactlyTheLaterRecords) {
  for (const std::string eol : {"\n", "\r\n", "\r"}) {
    SCOPED_TRACE(absl::StrCat("eol size ", eol.size(), " first ",
                              static_cast<int>(eol[0])));
    constexpr int kRows = 40;
    const std::string text = MakeRows(kRows, eol);
    CollectingSink full = SyncFile(text, "", 3);
    ASSERT_EQ(full.chunks.size(), 14u);
    std::unique_ptr<Connector> connector = Make();
    ASSERT_NE(connector, nullptr);
    for (size_t i = 0; i < full.chunks.size(); ++i) {
      SCOPED_TRACE(absl::StrCat("resuming after chunk ", i + 1, " with ",
                                full.chunks[i].resume_token()));
      CollectingSink resumed;
      absl::Status status =
          Sync(*connector, resumed, 3, full.chunks[i].resume_token());
      ASSERT_TRUE(status.ok()) << status;
      EXPECT_EQ(Items(resumed.chunks), Items(full.chunks, i + 1));
      if (!resumed.chunks.empty()) {
        EXPECT_EQ(resumed.chunks.back().progress().done(),
                  static_cast<int64_t>(text.size()));
      }
    }
  }
}

TEST_F(CsvConnectorTest, TokenForARewrittenFileIsFailedPrecondition) {
  CollectingSink full = SyncFile(MakeRows(10), "", 4);
  ASSERT_GE(full.chunks.size(), 2u);
  // Same mtime, different size.
  WriteFile(MakeRows(11));
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  CollectingSink sink;
  absl::Status status =
      Sync(*connector, sink, 4, full.chunks[0].resume_token());
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(sink.chunks, IsEmpty());
}

TEST_F(CsvConnectorTest, TokenForATouchedFileIsFailedPrecondition) {
  const std::string text = MakeRows(10);
  CollectingSink full = SyncFile(text, "", 4);
  ASSERT_GE(full.chunks.size(), 2u);
  // Same bytes, mtime one nanosecond later.
  WriteFile(text, 1);
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  CollectingSink sink;
  absl::Status status =
      Sync(*connector, sink, 4, full.chunks[0].resume_token());
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
  EXPECT_THAT(sink.chunks, IsEmpty());
}

TEST_F(CsvConnectorTest, TokenPointingIntoTheHeaderIsFailedPrecondition) {
  const std::string text = MakeRows(3);
  WriteFile(text);
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  CollectingSink sink;
  absl::Status status =
      Sync(*connector, sink, 0,
           absl::StrCat("csv1:5:1:", text.size(), ":", kMtimeSec * 1000000000));
  EXPECT_EQ(status.code(), absl::StatusCode::kFailedPrecondition) << status;
}

TEST_F(CsvConnectorTest, MalformedTokensAreInvalidArgument) {
  const std::string text = MakeRows(3);
  WriteFile(text);
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  const std::string size = absl::StrCat(text.size());
  const std::string mtime = absl::StrCat(kMtimeSec * 1000000000);
  for (const std::string& token : std::vector<std::string>{
           "garbage",
           "csv1",
           "csv1:30:2",
           absl::StrCat("csv2:30:2:", size, ":", mtime),
           absl::StrCat("csv1:x:2:", size, ":", mtime),
           absl::StrCat("csv1:30:two:", size, ":", mtime),
           absl::StrCat("csv1:30:2:", size, ":", mtime, ":7"),
           absl::StrCat("csv1:30:2:", size, ":"),
           // Well-formed for this file but impossible positions.
           absl::StrCat("csv1:", text.size() + 1, ":2:", size, ":", mtime),
           absl::StrCat("csv1:30:0:", size, ":", mtime),
       }) {
    CollectingSink sink;
    absl::Status status = Sync(*connector, sink, 0, token);
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument)
        << token << " -> " << status;
    EXPECT_THAT(sink.chunks, IsEmpty()) << token;
  }
}

// --- The sink says stop
// --------------------------------------------------------

TEST_F(CsvConnectorTest, SinkErrorStopsSyncAndIsReturned) {
  WriteFile(MakeRows(20));
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  CollectingSink sink;
  sink.fail_at_write = 2;
  absl::Status status = Sync(*connector, sink, 3);
  EXPECT_EQ(status.code(), absl::StatusCode::kCancelled) << status;
  EXPECT_EQ(status.message(), "consumer went away");
  EXPECT_EQ(sink.writes, 2);
  EXPECT_EQ(sink.chunks.size(), 1u);
}

TEST_F(CsvConnectorTest, SinkErrorOnTheLastChunkIsReturned) {
  WriteFile(MakeRows(5));
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  CollectingSink sink;
  sink.fail_at_write = 2;
  sink.fail_with = absl::UnavailableError("store down");
  absl::Status status = Sync(*connector, sink, 3);
  EXPECT_EQ(status.code(), absl::StatusCode::kUnavailable) << status;
  EXPECT_EQ(sink.writes, 2);
}

// --- TestConnection
// ------------------------------------------------------------

TEST_F(CsvConnectorTest, TestConnectionSucceedsOnAGoodFile) {
  // Only the header is read: a broken row later does not matter.
  WriteFile("employee_id,email\ne1,a@x\ne2,\"open\n");
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  EXPECT_TRUE(connector->TestConnection().ok());
}

TEST_F(CsvConnectorTest, TestConnectionFailsOnAMissingFileNamingIt) {
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  absl::Status status = connector->TestConnection();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr(path_));
}

TEST_F(CsvConnectorTest, TestConnectionFailsWithoutAnExternalIdColumn) {
  WriteFile("email,name\na@x,Ann\n");
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  absl::Status status = connector->TestConnection();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("external_id"));
}

TEST_F(CsvConnectorTest, TestConnectionFailsOnAnEmptyFile) {
  WriteFile("");
  std::unique_ptr<Connector> connector = Make();
  ASSERT_NE(connector, nullptr);
  absl::Status status = connector->TestConnection();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(), HasSubstr("empty"));
}

}  // namespace
}  // namespace idsync
