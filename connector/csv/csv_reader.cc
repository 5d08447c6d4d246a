#include "connector/csv/csv_reader.h"

#include <csv.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "connector/status_macros.h"

namespace idsync {
namespace {

constexpr size_t kBlockSize = 1 << 20;
// A piece never exceeds this, so the record-size bound is checked often.
constexpr size_t kMaxPiece = 64 << 10;
constexpr char kBom[] = "\xEF\xBB\xBF";

}  // namespace

absl::StatusOr<std::unique_ptr<CsvReader>> CsvReader::Open(
    const std::string& path, const CsvReaderOptions& options) {
  IDSYNC_ASSIGN_OR_RETURN(UniqueFd fd, HostFiles()->OpenRead(path, "CSV file"));
  return FromFd(std::move(fd), options);
}

absl::StatusOr<std::unique_ptr<CsvReader>> CsvReader::FromFd(
    UniqueFd fd, const CsvReaderOptions& options) {
  struct stat st;
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError("the CSV source is not a regular file");
  }
  std::FILE* file = fdopen(fd.get(), "rb");
  if (file == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot read the CSV file: ", std::strerror(errno)));
  }
  fd.release();  // The FILE owns it now.
  std::unique_ptr<CsvReader> reader(new CsvReader(file, options));
  reader->file_size_ = st.st_size;
  reader->file_mtime_ns_ =
      static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  IDSYNC_RETURN_IF_ERROR(reader->Seek(0, 1));
  return reader;
}

CsvReader::CsvReader(std::FILE* file, const CsvReaderOptions& options)
    : options_(options), file_(file), block_(kBlockSize) {}

CsvReader::~CsvReader() {
  if (parser_ != nullptr) csv_free(parser_.get());
  std::fclose(file_);
}

absl::Status CsvReader::ResetParser() {
  if (parser_ != nullptr) csv_free(parser_.get());
  parser_ = std::make_unique<csv_parser>();
  // CSV_STRICT_FINI: an unterminated quote at end of file is an error.
  if (csv_init(parser_.get(), CSV_STRICT_FINI) != 0) {
    parser_.reset();
    return absl::ResourceExhaustedError("cannot initialise the CSV parser");
  }
  csv_set_delim(parser_.get(), static_cast<unsigned char>(options_.delimiter));
  // libcsv grows its field buffer by this much per realloc (default 128
  // bytes): a 10 MiB field took 80,000 reallocs, quadratic wherever realloc
  // copies (ASan: minutes).
  csv_set_blk_size(parser_.get(), 64 << 10);
  return absl::OkStatus();
}

absl::Status CsvReader::Seek(int64_t offset, int64_t line) {
  if (offset < 0 || offset > file_size_ || line < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("CSV offset ", offset, " is outside the file"));
  }
  if (fseeko(file_, offset, SEEK_SET) != 0) {
    return absl::InternalError(
        absl::StrCat("CSV seek failed: ", std::strerror(errno)));
  }
  IDSYNC_RETURN_IF_ERROR(ResetParser());
  block_pos_ = block_len_ = 0;
  block_offset_ = offset;
  eof_ = finished_ = false;
  boundary_ = offset;
  line_ = line;
  pending_cr_ = in_record_ = record_done_ = false;
  record_bytes_ = 0;
  if (offset == 0) {
    IDSYNC_RETURN_IF_ERROR(Fill());
    if (block_len_ >= 3 && std::memcmp(block_.data(), kBom, 3) == 0) {
      block_pos_ = 3;
      boundary_ = 3;
    }
  }
  return absl::OkStatus();
}

absl::Status CsvReader::Fill() {
  block_offset_ += static_cast<int64_t>(block_len_);
  block_pos_ = 0;
  block_len_ = std::fread(block_.data(), 1, block_.size(), file_);
  if (block_len_ < block_.size()) {
    if (std::ferror(file_)) {
      return absl::UnavailableError(
          absl::StrCat("CSV read failed: ", std::strerror(errno)));
    }
    eof_ = true;
  }
  return absl::OkStatus();
}

void CsvReader::OnField(void* data, size_t size, void* self_ptr) {
  auto* self = static_cast<CsvReader*>(self_ptr);
  CsvRecord& r = self->current_;
  if (r.field_count < self->options_.max_fields) {
    if (static_cast<int>(r.fields.size()) <= r.field_count)
      r.fields.emplace_back();
    r.fields[r.field_count].assign(static_cast<const char*>(data), size);
  }
  ++r.field_count;
}

void CsvReader::OnRecordEnd(int terminator, void* self_ptr) {
  static_cast<CsvReader*>(self_ptr)->record_done_ = true;
}

void CsvReader::Feed(const char* data, size_t size) {
  if (!in_record_) {
    // A record starts at its first byte that libcsv does not skip: not a
    // line end, nor a space or tab before the first field (so a line of
    // blanks is skipped as libcsv skips it).
    for (size_t i = 0; i < size; ++i) {
      const char c = data[i];
      if (c != '\n' && c != '\r' &&
          ((c != ' ' && c != '\t') || c == options_.delimiter)) {
        in_record_ = true;
        current_.field_count = 0;
        current_.line = line_;
        record_bytes_ = 0;
        break;
      }
    }
  }
  csv_parse(parser_.get(), data, size, &CsvReader::OnField,
            &CsvReader::OnRecordEnd, this);
  if (in_record_) record_bytes_ += static_cast<int64_t>(size);
  // Line counting: CR, LF and CRLF each end a line. A CR counts at once (so
  // line_ is right for the next byte); an LF right after it does not.
  for (size_t i = 0; i < size; ++i) {
    if (data[i] == '\r') {
      ++line_;
      pending_cr_ = true;
    } else {
      if (data[i] == '\n' && !pending_cr_) ++line_;
      pending_cr_ = false;
    }
  }
}

absl::StatusOr<bool> CsvReader::Next(CsvRecord* record) {
  while (!finished_) {
    if (block_pos_ == block_len_) {
      if (eof_) {
        finished_ = true;
        int64_t start_line = current_.line;
        // libcsv honours CSV_STRICT_FINI only together with CSV_STRICT; set
        // both now, so the lenient parsing of quotes above is unchanged.
        csv_set_opts(parser_.get(), CSV_STRICT | CSV_STRICT_FINI);
        if (csv_fini(parser_.get(), &CsvReader::OnField,
                     &CsvReader::OnRecordEnd, this) != 0) {
          return absl::InvalidArgumentError(absl::StrCat(
              "line ", start_line,
              ": unterminated quoted field (a closing \" is missing)"));
        }
        if (record_done_) {
          record_done_ = in_record_ = false;
          boundary_ = file_size_;
          std::swap(*record, current_);
          return true;
        }
        return false;
      }
      IDSYNC_RETURN_IF_ERROR(Fill());
      continue;
    }
    // The next piece ends at the first CR/LF, so if libcsv ends a record
    // while parsing it, the record boundary is exactly the piece's end.
    const char* start = block_.data() + block_pos_;
    size_t avail = std::min(block_len_ - block_pos_, kMaxPiece);
    size_t n = 0;
    while (n < avail && start[n] != '\n' && start[n] != '\r') ++n;
    if (n < avail) ++n;  // Include the line end.
    Feed(start, n);
    block_pos_ += n;
    if (in_record_ && record_bytes_ > options_.max_record_bytes) {
      finished_ = true;
      return absl::InvalidArgumentError(absl::StrCat(
          "line ", current_.line, ": record exceeds ",
          options_.max_record_bytes, " bytes (is a closing \" missing?)"));
    }
    if (record_done_) {
      record_done_ = in_record_ = false;
      // A record ended by the CR of a CRLF ends after the LF, which may be in
      // the next block.
      if (start[n - 1] == '\r') {
        if (block_pos_ == block_len_ && !eof_) IDSYNC_RETURN_IF_ERROR(Fill());
        if (block_pos_ < block_len_ && block_[block_pos_] == '\n') {
          Feed(block_.data() + block_pos_, 1);
          ++block_pos_;
        }
      }
      boundary_ = block_offset_ + static_cast<int64_t>(block_pos_);
      std::swap(*record, current_);
      return true;
    }
  }
  return false;
}

}  // namespace idsync
