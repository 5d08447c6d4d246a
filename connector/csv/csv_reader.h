// CsvReader: a pull-style RFC 4180 record reader over a file, built on libcsv,
// that knows the exact byte offset of every record boundary (so a run can
// resume there) and the line each record starts on (for reject messages).
// Memory is bounded by max_record_bytes, whatever the file size.
// Not thread-safe.
#ifndef IDSYNC_CONNECTOR_CSV_CSV_READER_H_
#define IDSYNC_CONNECTOR_CSV_CSV_READER_H_

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "connector/file_access.h"

struct csv_parser;

namespace idsync {

struct CsvReaderOptions {
  char delimiter = ',';
  // A record longer than this is a fatal error: it usually means an
  // unterminated quote swallowing the rest of the file.
  int64_t max_record_bytes = 16 << 20;
  // Fields kept per record; more are counted but not stored.
  int max_fields = 1024;
};

struct CsvRecord {
  std::vector<std::string> fields;  // The first min(field_count, max_fields).
  int field_count = 0;
  int64_t line = 0;  // 1-based line the record starts on.
};

class CsvReader {
 public:
  // Reads the regular file open on `fd`, from its start; a UTF-8 byte order
  // mark there is skipped.
  static absl::StatusOr<std::unique_ptr<CsvReader>> FromFd(
      UniqueFd fd, const CsvReaderOptions& options);
  // Opens `path` (any file the process may read) and reads it.
  static absl::StatusOr<std::unique_ptr<CsvReader>> Open(
      const std::string& path, const CsvReaderOptions& options);
  ~CsvReader();
  CsvReader(const CsvReader&) = delete;
  CsvReader& operator=(const CsvReader&) = delete;

  // Reads the next record into `*record`. Returns false at end of file.
  // kInvalidArgument for an unterminated quote or an oversized record.
  absl::StatusOr<bool> Next(CsvRecord* record);

  // Continues reading at `offset`, which must be a boundary() returned
  // earlier for the same file; `line` is the line number there.
  absl::Status Seek(int64_t offset, int64_t line);

  // The byte offset right after the last record returned: a record boundary.
  int64_t boundary() const { return boundary_; }
  int64_t line() const { return line_; }
  int64_t file_size() const { return file_size_; }
  int64_t file_mtime_ns() const { return file_mtime_ns_; }

 private:
  CsvReader(std::FILE* file, const CsvReaderOptions& options);
  absl::Status ResetParser();
  // Feeds one piece (ending at the first CR/LF) to libcsv.
  void Feed(const char* data, size_t size);
  absl::Status Fill();  // Reads the next block of the file.
  static void OnField(void* data, size_t size, void* self);
  static void OnRecordEnd(int terminator, void* self);

  // Constant after construction.
  const CsvReaderOptions options_;
  std::FILE* const file_;
  int64_t file_size_ = 0;
  int64_t file_mtime_ns_ = 0;

  std::unique_ptr<csv_parser> parser_;
  std::vector<char> block_;
  size_t block_pos_ = 0;
  size_t block_len_ = 0;
  int64_t block_offset_ = 0;  // File offset of block_[0].
  bool eof_ = false;
  bool finished_ = false;

  int64_t boundary_ = 0;
  int64_t line_ = 1;  // Line of the next byte to read.
  bool pending_cr_ =
      false;  // Last piece ended in CR; a following LF is the same line end.
  bool in_record_ = false;
  int64_t record_bytes_ = 0;
  bool record_done_ = false;  // Set by OnRecordEnd.
  CsvRecord current_;
};

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_CSV_CSV_READER_H_
