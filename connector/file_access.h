// FileAccess: the files a connector may read. A connector never opens a
// path it was configured with itself; it asks the FileAccess its spec
// carries (ConnectorSpec::access), so a connector created by a tenant admin
// through the API reads only that tenant's import directory, while the same
// connector run by the CLI or from an agent's own config reads what the
// operator names. Implementations are thread-safe.
#ifndef IDSYNC_CONNECTOR_FILE_ACCESS_H_
#define IDSYNC_CONNECTOR_FILE_ACCESS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace idsync {

// An open file descriptor, closed with the object.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  explicit operator bool() const { return fd_ >= 0; }
  // "/proc/self/fd/N": the open file, by a path, for libraries that take
  // only paths (libldap's CA file). Valid while this object is open.
  std::string ProcPath() const;

 private:
  int fd_ = -1;
};

class FileAccess {
 public:
  virtual ~FileAccess() = default;

  // Opens `path` for reading: a regular file only (a FIFO, device or
  // directory would block a run or read forever). The open never blocks.
  // Errors name `what` (a noun: "CSV file") and the path as given, never
  // what it resolves to: kPermissionDenied when the path leaves what this
  // access allows; kInvalidArgument when there is no such file, it cannot
  // be read, or it is not a regular file.
  virtual absl::StatusOr<UniqueFd> OpenRead(absl::string_view path,
                                            absl::string_view what) const = 0;

  // Checks `path` at configuration time, when the file may not exist yet
  // (it may be uploaded later): kPermissionDenied if it could never be
  // opened through this access. An existing file is resolved as OpenRead
  // would.
  virtual absl::Status CheckPath(absl::string_view path,
                                 absl::string_view what) const = 0;

  // Whether config keys that name secret files (bind_password_file, TLS
  // keys) are accepted. Never for confined access: secrets come from
  // auth_config there.
  virtual bool secret_files() const = 0;

  // Where a relative path is taken from; "" for the working directory.
  virtual std::string root() const = 0;
};

// The whole of the file at `path`, opened through `files`.
// kInvalidArgument when it holds more than `max_bytes`; OpenRead's errors.
absl::StatusOr<std::string> ReadWholeFile(const FileAccess& files,
                                          absl::string_view path,
                                          absl::string_view what,
                                          size_t max_bytes);

// Any file the process may read, relative paths from the working
// directory; secret files allowed. For the operator's own configs (the CLI,
// an agent's local connectors).
std::shared_ptr<const FileAccess> HostFiles();

// Only files beneath `root` (an existing directory; relative paths are taken
// from it, absolute ones must lie under it). Symlinks and ".." are followed
// by the kernel and must stay beneath `root` (openat2 RESOLVE_BENEATH), so a
// symlink swapped in after a check cannot lead out. No secret files.
std::shared_ptr<const FileAccess> ConfinedFiles(std::string root);

// For a writer confined as ConfinedFiles(root) reads: the directory that
// holds `path` (beneath `root`, symlinks and ".." followed by the kernel and
// refused when they lead out) and the file's name in it. kPermissionDenied
// for a path that leaves `root`; kInvalidArgument for a missing directory
// or a path that names no file.
struct ParentDir {
  UniqueFd dir;  // O_RDONLY | O_DIRECTORY: for openat, renameat, fsync.
  std::string name;
};
absl::StatusOr<ParentDir> OpenParentBeneath(const std::string& root,
                                            absl::string_view path,
                                            absl::string_view what);

// No files at all, with `reason` in every refusal (e.g. "the dispatcher runs
// without --import-dir").
std::shared_ptr<const FileAccess> NoFiles(std::string reason);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_FILE_ACCESS_H_
