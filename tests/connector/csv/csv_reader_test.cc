#include "connector/csv/csv_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// One record as the test expects it.
struct Expected {
  std::vector<std::string> fields;
  int64_t line = 0;      // 1-based line the record starts on.
  int64_t boundary = 0;  // Offset just past the record's line end.
};

// One record as the reader returned it.
struct Read {
  std::vector<std::string> fields;
  int64_t line = 0;
  int64_t boundary = 0;
  int64_t next_line = 0;  // reader.line() after the record.
};

class CsvReaderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<testing::ScopedTestDir>("csv_reader_test");
  }

  std::string Write(absl::string_view bytes, const std::string& name = "in") {
    std::string path = dir_->File(name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    out.close();
    EXPECT_TRUE(out.good()) << path;
    return path;
  }

  std::unique_ptr<CsvReader> Open(const std::string& path,
                                  const CsvReaderOptions& options = {}) {
    absl::StatusOr<std::unique_ptr<CsvReader>> reader =
        CsvReader::Open(path, options);
    EXPECT_TRUE(reader.ok()) << reader.status();
    return reader.ok() ? *std::move(reader) : nullptr;
  }

  // Reads every remaining record; the first error ends the reading.
  static absl::StatusOr<std::vector<Read>> ReadRest(CsvReader& reader) {
    std::vector<Read> out;
    CsvRecord record;
    while (true) {
      absl::StatusOr<bool> more = reader.Next(&record);
      if (!more.ok()) return more.status();
      if (!*more) return out;
      Read r;
      r.fields.assign(record.fields.begin(),
                      record.fields.begin() + record.field_count);
      r.line = record.line;
      r.boundary = reader.boundary();
      r.next_line = reader.line();
      out.push_back(std::move(r));
    }
  }

  absl::StatusOr<std::vector<Read>> ReadFile(
      absl::string_view bytes, const CsvReaderOptions& options = {}) {
    std::unique_ptr<CsvReader> reader = Open(Write(bytes), options);
    if (reader == nullptr) return absl::InternalError("open failed");
    return ReadRest(*reader);
  }

  static std::vector<std::vector<std::string>> Fields(
      const std::vector<Read>& records) {
    std::vector<std::vector<std::string>> out;
    for (const Read& r : records) out.push_back(r.fields);
    return out;
  }
  static std::vector<int64_t> Lines(const std::vector<Read>& records) {
    std::vector<int64_t> out;
    for (const Read& r : records) out.push_back(r.line);
    return out;
  }
  static std::vector<int64_t> Boundaries(const std::vector<Read>& records) {
    std::vector<int64_t> out;
    for (const Read& r : records) out.push_back(r.boundary);
    return out;
  }

  std::unique_ptr<testing::ScopedTestDir> dir_;
};

using Row = std::vector<std::string>;

TEST_F(CsvReaderTest, QuotedFieldWithEmbeddedCommaIsOneField) {
  auto records = ReadFile("a,\"b,c\",d\n");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records), ElementsAre(Row{"a", "b,c", "d"}));
}

TEST_F(CsvReaderTest, DoubledQuoteInQuotedFieldIsOneQuote) {
  auto records = ReadFile("\"say \"\"hi\"\"\",\"\"\"\"\n");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records), ElementsAre(Row{"say \"hi\"", "\""}));
}

TEST_F(CsvReaderTest, QuotedFieldWithEmbeddedNewlineIsOneField) {
  auto records = ReadFile("1,\"two\nlines\"\n2,\"crlf\r\ninside\"\n");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records),
              ElementsAre(Row{"1", "two\nlines"}, Row{"2", "crlf\r\ninside"}));
  EXPECT_THAT(Lines(*records), ElementsAre(1, 3));
}

TEST_F(CsvReaderTest, LfLineEndingsSeparateRecords) {
  const std::string text = "h1,h2\na,b\nc,d\n";
  auto records = ReadFile(text);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records),
              ElementsAre(Row{"h1", "h2"}, Row{"a", "b"}, Row{"c", "d"}));
  EXPECT_THAT(Lines(*records), ElementsAre(1, 2, 3));
  EXPECT_THAT(Boundaries(*records), ElementsAre(6, 10, 14));
}

TEST_F(CsvReaderTest, CrlfLineEndingsSeparateRecordsAndCountLines) {
  const std::string text = "h1,h2\r\na,b\r\nc,d\r\n";
  auto records = ReadFile(text);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records),
              ElementsAre(Row{"h1", "h2"}, Row{"a", "b"}, Row{"c", "d"}));
  EXPECT_THAT(Lines(*records), ElementsAre(1, 2, 3));
}

TEST_F(CsvReaderTest, LoneCrLineEndingsSeparateRecordsAndCountLines) {
  auto records = ReadFile("h1,h2\ra,b\rc,d\r");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records),
              ElementsAre(Row{"h1", "h2"}, Row{"a", "b"}, Row{"c", "d"}));
  EXPECT_THAT(Lines(*records), ElementsAre(1, 2, 3));
  EXPECT_THAT(Boundaries(*records), ElementsAre(6, 10, 14));
}

TEST_F(CsvReaderTest, Utf8BomIsSkippedAndNotPartOfFirstHeader) {
  auto records = ReadFile("\xEF\xBB\xBFid,name\n1,x\n");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records), ElementsAre(Row{"id", "name"}, Row{"1", "x"}));
  EXPECT_THAT(Lines(*records), ElementsAre(1, 2));
  EXPECT_THAT(Boundaries(*records), ElementsAre(11, 15));
}

TEST_F(CsvReaderTest, BomOnlyFileHasNoRecords) {
  auto records = ReadFile("\xEF\xBB\xBF");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_TRUE(records->empty());
}

TEST_F(CsvReaderTest, BlankLinesAreSkippedAndCounted) {
  auto records = ReadFile("\n\na\n\n\r\nb\r\n\r\n\nc\n\n");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records), ElementsAre(Row{"a"}, Row{"b"}, Row{"c"}));
  EXPECT_THAT(Lines(*records), ElementsAre(3, 6, 9));
}

TEST_F(CsvReaderTest, WhitespaceOnlyLineIsSkippedAndNotTheNextRecordsLine) {
  auto records = ReadFile("a\n   \nb\n");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records), ElementsAre(Row{"a"}, Row{"b"}));
  EXPECT_THAT(Lines(*records), ElementsAre(1, 3));
}

TEST_F(CsvReaderTest, LastRecordWithoutTrailingNewlineIsRead) {
  const std::string text = "a,b\nc,\"d\"";
  auto records = ReadFile(text);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records), ElementsAre(Row{"a", "b"}, Row{"c", "d"}));
  EXPECT_THAT(Lines(*records), ElementsAre(1, 2));
  EXPECT_THAT(Boundaries(*records),
              ElementsAre(4, static_cast<int64_t>(text.size())));
}

TEST_F(CsvReaderTest, EmptyTrailingFieldIsKept) {
  auto records = ReadFile("a,\nb,\"\"\n");
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(Fields(*records), ElementsAre(Row{"a", ""}, Row{"b", ""}));
}

TEST_F(CsvReaderTest, RecordsAfterMultiLineRecordHaveTheirPhysicalLine) {
  for (const std::string eol : {"\n", "\r\n", "\r"}) {
    SCOPED_TRACE(absl::StrCat("eol size ", eol.size(), " first ",
                              static_cast<int>(eol[0])));
    const std::string text =
        absl::StrCat("h", eol, "\"one", eol, "two", eol, "three\"", eol, "x",
                     eol, "\"a", eol, "b\"", eol, "y", eol);
    auto records = ReadFile(text);
    ASSERT_TRUE(records.ok()) << records.status();
    EXPECT_THAT(Lines(*records), ElementsAre(1, 2, 5, 6, 8));
    EXPECT_THAT(
        Fields(*records),
        ElementsAre(Row{"h"},
                    Row{absl::StrCat("one", eol, "two", eol, "three")},
                    Row{"x"}, Row{absl::StrCat("a", eol, "b")}, Row{"y"}));
  }
}

TEST_F(CsvReaderTest, BoundaryIsJustPastEachRecordsLineEnd) {
  for (const std::string eol : {"\n", "\r\n", "\r"}) {
    SCOPED_TRACE(absl::StrCat("eol size ", eol.size(), " first ",
                              static_cast<int>(eol[0])));
    const std::string text = absl::StrCat("id,name", eol, "1,\"a", eol, "b\"",
                                          eol, "2,c", eol, "3,\"d,e\"", eol);
    auto records = ReadFile(text);
    ASSERT_TRUE(records.ok()) << records.status();
    ASSERT_EQ(records->size(), 4u);
    // Each boundary sits right after a line end, and the next record's first
    // byte (or the end of file) follows immediately.
    int64_t previous = 0;
    for (const Read& r : *records) {
      ASSERT_GT(r.boundary, previous);
      ASSERT_LE(r.boundary, static_cast<int64_t>(text.size()));
      EXPECT_EQ(text.substr(r.boundary - eol.size(), eol.size()), eol)
          << "boundary " << r.boundary;
      if (r.boundary < static_cast<int64_t>(text.size())) {
        EXPECT_NE(text[r.boundary], '\n') << "boundary " << r.boundary;
        EXPECT_NE(text[r.boundary], '\r') << "boundary " << r.boundary;
      }
      previous = r.boundary;
    }
    EXPECT_EQ(records->back().boundary, static_cast<int64_t>(text.size()));
  }
}

TEST_F(CsvReaderTest, CrlfSplitAcrossReadBlocksIsOneLineEnd) {
  // The reader reads 1 MiB blocks; put a CR as the last byte of the first
  // block and its LF as the first byte of the second.
  constexpr int64_t kBlock = 1 << 20;
  std::string text;
  int rows = 0;
  while (static_cast<int64_t>(text.size()) < kBlock - 100) {
    absl::StrAppend(&text, "r", rows++, ",xxxxxxxxxxxxxxxxxxxxxxxxxx\r\n");
  }
  const std::string last_row_of_block(kBlock - 1 - text.size(), 'y');
  absl::StrAppend(&text, last_row_of_block, "\r\n");
  ASSERT_EQ(text[kBlock - 1], '\r');
  ASSERT_EQ(text[kBlock], '\n');
  absl::StrAppend(&text, "after,1\r\nend,2\r\n");

  auto records = ReadFile(text);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), static_cast<size_t>(rows + 3));
  const Read& straddling = (*records)[rows];
  EXPECT_EQ(straddling.fields, Row{last_row_of_block});
  EXPECT_EQ(straddling.boundary, kBlock + 1);
  const Read& after = (*records)[rows + 1];
  EXPECT_EQ(after.fields, (Row{"after", "1"}));
  EXPECT_EQ(after.line, rows + 2);
  EXPECT_EQ(records->back().line, rows + 3);
  EXPECT_EQ(records->back().boundary, static_cast<int64_t>(text.size()));
}

// Builds a file of `rows` random records with quotes, delimiters, embedded
// LF/CRLF, empty fields, blank lines and mixed line ends, and the records
// a correct reader returns for it.
std::string GenerateMixedFile(int rows, uint32_t seed,
                              std::vector<Expected>* expected) {
  std::mt19937 rng(seed);
  auto pick = [&rng](int n) {
    return static_cast<int>(std::uniform_int_distribution<int>(0, n - 1)(rng));
  };
  std::string text;
  int64_t line = 1;
  // Counts line ends the way the reader must: CRLF, CR and LF are each one.
  auto count_lines = [&line](absl::string_view s, char previous) {
    for (char c : s) {
      if (c == '\r' || (c == '\n' && previous != '\r')) ++line;
      previous = c;
    }
  };
  const std::vector<std::string> eols = {"\n", "\r\n", "\r"};
  for (int i = 0; i < rows; ++i) {
    Expected e;
    std::string raw;
    const int fields = 1 + pick(5);
    for (int f = 0; f < fields; ++f) {
      if (f > 0) raw += ',';
      std::string value;
      switch (pick(7)) {
        case 0:
          value = absl::StrCat("v", i, "_", f);
          raw += value;
          break;
        case 1:
          break;  // Empty, unquoted.
        case 2:
          value = absl::StrCat("with,comma ", i);
          absl::StrAppend(&raw, "\"", value, "\"");
          break;
        case 3:
          value = absl::StrCat("say \"", i, "\"");
          absl::StrAppend(&raw, "\"say \"\"", i, "\"\"\"");
          break;
        case 4:
          value = absl::StrCat("multi\nline ", i);
          absl::StrAppend(&raw, "\"", value, "\"");
          break;
        case 5:
          value = absl::StrCat("crlf\r\nline\r\n", i);
          absl::StrAppend(&raw, "\"", value, "\"");
          break;
        case 6:
          value = absl::StrCat("\xC3\xA9t\xC3\xA9 ", i);
          absl::StrAppend(&raw, "\"", value, "\"");
          break;
      }
      e.fields.push_back(value);
    }
    if (fields == 1 && e.fields[0].empty()) {
      // A lone empty unquoted field is a blank line; quote it.
      raw = "\"\"";
    }
    const std::string& eol = eols[pick(3)];
    const bool last = i == rows - 1;
    // The last record has no line end, to cover that case too.
    if (!last) raw += eol;
    const char previous = text.empty() ? '\0' : text.back();
    e.line = line;
    count_lines(raw, previous);
    text += raw;
    e.boundary = static_cast<int64_t>(text.size());
    expected->push_back(std::move(e));
    // Sometimes a blank line, never right after a lone CR (that would make
    // a CRLF).
    if (!last && eol != "\r" && pick(10) == 0) {
      const std::string& blank = pick(2) == 0 ? "\n" : "\r\n";
      count_lines(blank, text.back());
      text += blank;
    }
  }
  return text;
}

void ExpectSameRecords(const std::vector<Read>& got,
                       const std::vector<Expected>& want, size_t first) {
  ASSERT_EQ(got.size(), want.size() - first);
  for (size_t i = 0; i < got.size(); ++i) {
    const Expected& e = want[first + i];
    ASSERT_EQ(got[i].fields, e.fields) << "record " << first + i;
    ASSERT_EQ(got[i].line, e.line) << "record " << first + i;
    ASSERT_EQ(got[i].boundary, e.boundary) << "record " << first + i;
  }
}

TEST_F(CsvReaderTest, GeneratedFileReadsBackExactly) {
  std::vector<Expected> expected;
  const std::string text = GenerateMixedFile(500, 20240601, &expected);
  std::unique_ptr<CsvReader> reader = Open(Write(text));
  ASSERT_NE(reader, nullptr);
  auto all = ReadRest(*reader);
  ASSERT_TRUE(all.ok()) << all.status();
  ExpectSameRecords(*all, expected, 0);
}

TEST_F(CsvReaderTest, SeekToEachBoundaryReadsExactlyTheRemainingRecords) {
  std::vector<Expected> expected;
  const std::string text = GenerateMixedFile(500, 7, &expected);
  std::unique_ptr<CsvReader> reader = Open(Write(text));
  ASSERT_NE(reader, nullptr);
  auto all = ReadRest(*reader);
  ASSERT_TRUE(all.ok()) << all.status();
  ASSERT_EQ(all->size(), expected.size());
  for (size_t i = 0; i < all->size(); ++i) {
    SCOPED_TRACE(absl::StrCat("resuming after record ", i, " at offset ",
                              (*all)[i].boundary));
    ASSERT_TRUE(reader->Seek((*all)[i].boundary, (*all)[i].next_line).ok());
    auto rest = ReadRest(*reader);
    ASSERT_TRUE(rest.ok()) << rest.status();
    ExpectSameRecords(*rest, expected, i + 1);
  }
}

TEST_F(CsvReaderTest, SeekToStartRereadsEverythingAndSkipsTheBom) {
  std::unique_ptr<CsvReader> reader = Open(Write("\xEF\xBB\xBFh\n1\n"));
  ASSERT_NE(reader, nullptr);
  auto first = ReadRest(*reader);
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(reader->Seek(0, 1).ok());
  auto second = ReadRest(*reader);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_THAT(Fields(*second), ElementsAre(Row{"h"}, Row{"1"}));
  EXPECT_EQ(Boundaries(*first), Boundaries(*second));
}

TEST_F(CsvReaderTest, SeekOutsideTheFileIsInvalidArgument) {
  std::unique_ptr<CsvReader> reader = Open(Write("a\nb\n"));
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->Seek(5, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reader->Seek(-1, 1).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(reader->Seek(2, 0).code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(reader->Seek(4, 3).ok());
  CsvRecord record;
  auto more = reader->Next(&record);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_FALSE(*more);
}

TEST_F(CsvReaderTest, UnterminatedQuoteAtEofIsInvalidArgumentNamingTheLine) {
  std::unique_ptr<CsvReader> reader =
      Open(Write("id,name\n1,ok\n2,\"never\nclosed\n"));
  ASSERT_NE(reader, nullptr);
  CsvRecord record;
  ASSERT_TRUE(reader->Next(&record).value_or(false));
  ASSERT_TRUE(reader->Next(&record).value_or(false));
  absl::StatusOr<bool> more = reader->Next(&record);
  ASSERT_FALSE(more.ok()) << "read a record: " << record.fields[1];
  EXPECT_EQ(more.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(more.status().message(), HasSubstr("line 3"));
  EXPECT_THAT(more.status().message(), HasSubstr("unterminated"));
}

TEST_F(CsvReaderTest, RecordOverMaxRecordBytesSpanningLinesIsInvalidArgument) {
  // An unterminated quote that swallows many lines.
  std::string text = "h\nok\n\"open";
  for (int i = 0; i < 200; ++i) absl::StrAppend(&text, "line ", i, "\n");
  absl::StrAppend(&text, "\"\n");
  CsvReaderOptions options;
  options.max_record_bytes = 1024;
  auto records = ReadFile(text, options);
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(records.status().message(), HasSubstr("line 3"));
  EXPECT_THAT(records.status().message(), HasSubstr("1024"));
}

TEST_F(CsvReaderTest, RecordOverMaxRecordBytesOnOneLineIsInvalidArgument) {
  const std::string text = absl::StrCat("h\n", std::string(4096, 'x'), "\n");
  CsvReaderOptions options;
  options.max_record_bytes = 1024;
  auto records = ReadFile(text, options);
  ASSERT_FALSE(records.ok()) << "read " << records->size() << " records";
  EXPECT_EQ(records.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(records.status().message(), HasSubstr("line 2"));
}

TEST_F(CsvReaderTest, RecordJustUnderMaxRecordBytesIsRead) {
  const std::string text = absl::StrCat("h\n", std::string(1000, 'x'), "\n");
  CsvReaderOptions options;
  options.max_record_bytes = 1024;
  auto records = ReadFile(text, options);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_EQ(records->size(), 2u);
}

TEST_F(CsvReaderTest, TenMegabyteQuotedFieldIsOneRecord) {
  std::string value(10 << 20, 'z');
  for (size_t i = 4096; i < value.size(); i += 65536) value[i] = '\n';
  const std::string text = absl::StrCat("h\n\"", value, "\"\nnext\n");
  auto records = ReadFile(text);
  ASSERT_TRUE(records.ok()) << records.status();
  ASSERT_EQ(records->size(), 3u);
  EXPECT_TRUE((*records)[1].fields[0] == value);
  EXPECT_EQ((*records)[2].fields, Row{"next"});
}

TEST_F(CsvReaderTest, TenMegabyteQuotedFieldOverTheBoundIsAnError) {
  const std::string text =
      absl::StrCat("h\n\"", std::string(10 << 20, 'z'), "\"\n");
  CsvReaderOptions options;
  options.max_record_bytes = 1 << 20;
  auto records = ReadFile(text, options);
  ASSERT_FALSE(records.ok());
  EXPECT_EQ(records.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(records.status().message(), HasSubstr("line 2"));
}

TEST_F(CsvReaderTest, BinaryGarbageEndsCleanly) {
  std::mt19937 rng(12345);
  std::string text(256 << 10, '\0');
  for (char& c : text) c = static_cast<char>(rng() & 0xFF);
  for (size_t i = 0; i < text.size(); i += 97) text[i] = '\0';
  for (int64_t max_record_bytes : {int64_t{16} << 20, int64_t{1024}}) {
    CsvReaderOptions options;
    options.max_record_bytes = max_record_bytes;
    options.max_fields = 8;
    std::unique_ptr<CsvReader> reader = Open(Write(text), options);
    ASSERT_NE(reader, nullptr);
    CsvRecord record;
    int64_t previous = reader->boundary();
    int records = 0;
    absl::StatusOr<bool> more = true;
    while (more.ok() && *more && records <= static_cast<int>(text.size())) {
      more = reader->Next(&record);
      if (more.ok() && *more) {
        ++records;
        EXPECT_LE(static_cast<int>(record.fields.size()), 8);
        EXPECT_GE(reader->boundary(), previous);
        EXPECT_LE(reader->boundary(), static_cast<int64_t>(text.size()));
        previous = reader->boundary();
      }
    }
    EXPECT_LE(records, static_cast<int>(text.size()));
    if (!more.ok()) {
      EXPECT_EQ(more.status().code(), absl::StatusCode::kInvalidArgument)
          << more.status();
    }
  }
}

TEST_F(CsvReaderTest, FieldsBeyondMaxFieldsAreCountedNotStored) {
  CsvReaderOptions options;
  options.max_fields = 3;
  std::unique_ptr<CsvReader> reader = Open(Write("a,b,c,d,e\n1,2\n"), options);
  ASSERT_NE(reader, nullptr);
  CsvRecord record;
  ASSERT_TRUE(reader->Next(&record).value_or(false));
  EXPECT_EQ(record.field_count, 5);
  EXPECT_THAT(record.fields, ElementsAre("a", "b", "c"));
  ASSERT_TRUE(reader->Next(&record).value_or(false));
  EXPECT_EQ(record.field_count, 2);
  EXPECT_EQ(record.fields[0], "1");
  EXPECT_EQ(record.fields[1], "2");
}

TEST_F(CsvReaderTest, EmptyFileHasNoRecords) {
  std::unique_ptr<CsvReader> reader = Open(Write(""));
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->file_size(), 0);
  CsvRecord record;
  absl::StatusOr<bool> more = reader->Next(&record);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_FALSE(*more);
  // And it stays at the end.
  more = reader->Next(&record);
  ASSERT_TRUE(more.ok()) << more.status();
  EXPECT_FALSE(*more);
}

TEST_F(CsvReaderTest, MissingFileIsAnErrorNamingThePath) {
  const std::string path = dir_->File("does-not-exist.csv");
  auto reader = CsvReader::Open(path, {});
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reader.status().message(), HasSubstr(path));
}

TEST_F(CsvReaderTest, DirectoryIsAnErrorNamingThePath) {
  const std::string path = dir_->path().string();
  auto reader = CsvReader::Open(path, {});
  ASSERT_FALSE(reader.ok());
  EXPECT_EQ(reader.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(reader.status().message(), HasSubstr(path));
  EXPECT_THAT(reader.status().message(), HasSubstr("not a regular file"));
}

TEST_F(CsvReaderTest, CustomDelimiterSplitsFieldsAndKeepsCommas) {
  CsvReaderOptions options;
  options.delimiter = ';';
  auto records = ReadFile("id;name\n1;Doe, Jane\n2;\"a;b\"\n", options);
  ASSERT_TRUE(records.ok()) << records.status();
  EXPECT_THAT(
      Fields(*records),
      ElementsAre(Row{"id", "name"}, Row{"1", "Doe, Jane"}, Row{"2", "a;b"}));
}

TEST_F(CsvReaderTest, FileSizeAndMtimeComeFromTheFile) {
  const std::string path = Write("abc\n");
  struct timespec times[2];
  times[0].tv_sec = times[1].tv_sec = 1700000000;
  times[0].tv_nsec = times[1].tv_nsec = 123456789;
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, 0), 0);
  std::unique_ptr<CsvReader> reader = Open(path);
  ASSERT_NE(reader, nullptr);
  EXPECT_EQ(reader->file_size(), 4);
  EXPECT_EQ(reader->file_mtime_ns(),
            int64_t{1700000000} * 1000000000 + 123456789);
}

}  // namespace
}  // namespace idsync
