// Fuzzes the CSV reader (connector/csv/csv_reader.h) and the "csv" connector
// on one file whose bytes are the input. The file is a memfd, opened by its
// /proc/self/fd path: nothing is written to disk.
//
// Invariants checked besides ASan/UBSan:
//  - Seek to a record boundary the reader reported, then Next, gives the same
//    record again (what a resumed run relies on);
//  - every chunk the connector emits survives the protobuf wire (valid UTF-8);
//  - a run resumed from its first chunk's token emits exactly the rest.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "connector/csv/csv_connector.h"
#include "connector/csv/csv_reader.h"
#include "google/protobuf/util/message_differencer.h"
#include "tests/fuzz/fuzz_util.h"

namespace idsync {
namespace {

using fuzz::Check;

// Records compared in the Seek check; bounds the time per input.
constexpr size_t kMaxRecords = 512;

int MemFile() {
  static const int fd = memfd_create("csv_fuzz", 0);
  Check(fd >= 0, "memfd_create failed");
  return fd;
}

const std::string& MemPath() {
  static const std::string* path =
      new std::string(absl::StrCat("/proc/self/fd/", MemFile()));
  return *path;
}

void SetContent(const uint8_t* data, size_t size) {
  const int fd = MemFile();
  Check(ftruncate(fd, 0) == 0, "ftruncate failed");
  size_t done = 0;
  while (done < size) {
    const ssize_t n =
        pwrite(fd, data + done, size - done, static_cast<off_t>(done));
    Check(n > 0, "pwrite failed");
    done += static_cast<size_t>(n);
  }
}

bool SameRecord(const CsvRecord& a, const CsvRecord& b) {
  if (a.field_count != b.field_count || a.line != b.line) return false;
  const size_t kept = static_cast<size_t>(a.field_count) < a.fields.size()
                          ? static_cast<size_t>(a.field_count)
                          : a.fields.size();
  for (size_t i = 0; i < kept; ++i) {
    if (i >= b.fields.size() || a.fields[i] != b.fields[i]) return false;
  }
  return true;
}

void FuzzReader(const CsvReaderOptions& options) {
  auto reader = CsvReader::Open(MemPath(), options);
  Check(reader.ok(), "the memfd did not open");
  struct Entry {
    int64_t boundary, line;  // Before the record.
    CsvRecord record;
  };
  std::vector<Entry> entries;
  while (entries.size() < kMaxRecords) {
    Entry e{(*reader)->boundary(), (*reader)->line(), {}};
    absl::StatusOr<bool> more = (*reader)->Next(&e.record);
    if (!more.ok() || !*more) break;
    Check((*reader)->boundary() > e.boundary &&
              (*reader)->boundary() <= (*reader)->file_size(),
          "a record did not move the boundary forward within the file");
    entries.push_back(std::move(e));
  }
  if (entries.empty()) return;
  // The first, a middle and the last record, reached by Seek. (One reader:
  // each holds a 1 MiB buffer, the main cost per input.)
  for (size_t i : {size_t{0}, entries.size() / 2, entries.size() - 1}) {
    Check((*reader)->Seek(entries[i].boundary, entries[i].line).ok(),
          "Seek to a reported boundary failed");
    CsvRecord record;
    absl::StatusOr<bool> more = (*reader)->Next(&record);
    Check(more.ok() && *more, "no record after Seek to a boundary");
    Check(SameRecord(record, entries[i].record),
          "Seek to a boundary gave a different record");
  }
}

class CollectSink : public RecordSink {
 public:
  absl::Status Write(idsync::v1::SyncChunk chunk) override {
    Check(fuzz::WireSafe(chunk), "a csv chunk does not survive the wire");
    chunks.push_back(std::move(chunk));
    return absl::OkStatus();
  }
  void SetNextSyncToken(std::string token) override {}
  std::vector<idsync::v1::SyncChunk> chunks;
};

// `resumed` equals `full` from chunk `from` on, sequence numbers aside.
bool SameTail(const std::vector<idsync::v1::SyncChunk>& full, size_t from,
              const std::vector<idsync::v1::SyncChunk>& resumed) {
  if (full.size() - from != resumed.size()) return false;
  for (size_t i = 0; i < resumed.size(); ++i) {
    idsync::v1::SyncChunk a = full[from + i];
    idsync::v1::SyncChunk b = resumed[i];
    a.clear_sequence();
    b.clear_sequence();
    if (!google::protobuf::util::MessageDifferencer::Equals(a, b)) {
      return false;
    }
  }
  return true;
}

// With `resume`, also resumes from the first chunk's token (a second reader).
void FuzzConnector(absl::string_view delimiter, int64_t max_field_bytes,
                   bool resume) {
  ConnectorSpec spec;
  auto& fields = *spec.config.mutable_fields();
  fields["path"].set_string_value(MemPath());
  fields["delimiter"].set_string_value(std::string(delimiter));
  fields["max_field_bytes"].set_number_value(
      static_cast<double>(max_field_bytes));
  fields["max_record_bytes"].set_number_value(1024);
  auto connector = CreateCsvConnector(spec);
  Check(connector.ok(), "the csv config was refused");
  idsync::v1::SyncRequest request;
  request.set_chunk_size(3);
  CollectSink full;
  if (!(*connector)->Sync(request, full).ok() || !resume ||
      full.chunks.size() < 2) {
    return;
  }
  request.set_resume_token(full.chunks[0].resume_token());
  CollectSink resumed;
  Check((*connector)->Sync(request, resumed).ok(),
        "a run resumed from its own first token failed");
  Check(SameTail(full.chunks, 1, resumed.chunks),
        "a resumed run did not emit exactly the rest");
}

}  // namespace
}  // namespace idsync

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  idsync::SetContent(data, size);
  // One scenario per input, picked by a hash of all its bytes, so that every
  // mutation may switch: each CsvReader zero-fills a 1 MiB buffer, which
  // under ASan costs more than the parsing itself.
  uint32_t hash = 2166136261u;  // FNV-1a
  for (size_t i = 0; i < size; ++i) hash = (hash ^ data[i]) * 16777619u;
  switch (hash % 4) {
    case 0:
      idsync::FuzzReader(idsync::CsvReaderOptions{});
      break;
    case 1: {
      // Small limits and another delimiter reach the size errors.
      idsync::CsvReaderOptions small;
      small.delimiter = ';';
      small.max_record_bytes = 64;
      small.max_fields = 3;
      idsync::FuzzReader(small);
      break;
    }
    case 2:
      idsync::FuzzConnector(",", 65536, /*resume=*/false);
      break;
    default:
      idsync::FuzzConnector(";", 8, /*resume=*/true);
      break;
  }
  return 0;
}
