#include "connector/file_access.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "connector/status_macros.h"
#include "connector/text.h"

namespace idsync {
namespace {

constexpr int kReadFlags = O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY;

std::string Quoted(absl::string_view path) {
  return absl::StrCat("'", Excerpt(path, 200), "'");
}

absl::Status CheckText(absl::string_view path, absl::string_view what) {
  if (path.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(what, " is empty"));
  }
  if (path.find('\0') != absl::string_view::npos || path.size() > PATH_MAX) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " is not a usable file path"));
  }
  return absl::OkStatus();
}

// `fd` (opened non-blocking) as a blocking descriptor of a regular file.
absl::StatusOr<UniqueFd> RegularFile(UniqueFd fd, absl::string_view path,
                                     absl::string_view what) {
  struct stat st;
  if (fstat(fd.get(), &st) != 0) {
    return absl::InternalError(absl::StrCat(
        "cannot stat ", what, " ", Quoted(path), ": ", std::strerror(errno)));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " ", Quoted(path),
        " is not a regular file (a FIFO, device or directory cannot be "
        "read as a source file)"));
  }
  const int flags = fcntl(fd.get(), F_GETFL);
  if (flags >= 0) fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK);
  return fd;
}

absl::Status OpenError(int err, absl::string_view path,
                       absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat(
      "cannot open ", what, " ", Quoted(path), ": ", std::strerror(err)));
}

// `path` relative to `root`: relative paths as they are, absolute ones
// only under the root (as spelled; the kernel checks the rest).
absl::Status Relative(const std::string& root, absl::string_view path,
                      absl::string_view what, std::string* relative);

absl::Status Outside(absl::string_view path, absl::string_view what) {
  return absl::PermissionDeniedError(absl::StrCat(
      what, " ", Quoted(path),
      " is outside this tenant's import directory: name a file in it, by a "
      "path relative to it (symlinks and '..' that lead out are refused)"));
}

absl::Status Relative(const std::string& root, absl::string_view path,
                      absl::string_view what, std::string* relative) {
  if (absl::Status s = CheckText(path, what); !s.ok()) return s;
  if (path.front() != '/') {
    *relative = std::string(path);
    return absl::OkStatus();
  }
  const std::string prefix = absl::StrCat(root, "/");
  if (!absl::StartsWith(path, prefix) || path.size() == prefix.size()) {
    return Outside(path, what);
  }
  *relative = std::string(path.substr(prefix.size()));
  return absl::OkStatus();
}

// openat2 with RESOLVE_BENEATH: the kernel refuses (EXDEV) any step that
// leaves `dir`, whether by "..", an absolute symlink or a relative one.
int Beneath(int dir, const std::string& relative, int flags) {
  open_how how{};
  how.flags = static_cast<uint64_t>(flags);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(
      syscall(SYS_openat2, dir, relative.c_str(), &how, sizeof(how)));
}

class HostFileAccess final : public FileAccess {
 public:
  absl::StatusOr<UniqueFd> OpenRead(absl::string_view path,
                                    absl::string_view what) const override {
    if (absl::Status s = CheckText(path, what); !s.ok()) return s;
    UniqueFd fd(::open(std::string(path).c_str(), kReadFlags));
    if (!fd) return OpenError(errno, path, what);
    return RegularFile(std::move(fd), path, what);
  }
  absl::Status CheckPath(absl::string_view path,
                         absl::string_view what) const override {
    return CheckText(path, what);
  }
  bool secret_files() const override { return true; }
  std::string root() const override { return ""; }
};

class ConfinedFileAccess final : public FileAccess {
 public:
  explicit ConfinedFileAccess(std::string root) : root_(std::move(root)) {
    while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  }

  absl::StatusOr<UniqueFd> OpenRead(absl::string_view path,
                                    absl::string_view what) const override {
    std::string relative;
    if (absl::Status s = Relative(root_, path, what, &relative); !s.ok()) {
      return s;
    }
    UniqueFd dir(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir) {
      return absl::InvalidArgumentError(
          absl::StrCat("cannot open ", what, " ", Quoted(path),
                       ": the import directory has no files yet"));
    }
    UniqueFd fd(Beneath(dir.get(), relative, kReadFlags));
    if (!fd) {
      if (errno == EXDEV || errno == ELOOP) return Outside(path, what);
      return OpenError(errno, path, what);
    }
    return RegularFile(std::move(fd), path, what);
  }

  absl::Status CheckPath(absl::string_view path,
                         absl::string_view what) const override {
    std::string relative;
    if (absl::Status s = Relative(root_, path, what, &relative); !s.ok()) {
      return s;
    }
    UniqueFd dir(::open(root_.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!dir) return absl::OkStatus();  // Nothing there yet.
    UniqueFd fd(Beneath(dir.get(), relative, O_PATH | O_CLOEXEC));
    if (!fd && (errno == EXDEV || errno == ELOOP)) return Outside(path, what);
    return absl::OkStatus();  // Absent files may come later.
  }

  bool secret_files() const override { return false; }
  std::string root() const override { return root_; }

 private:
  std::string root_;
};

class NoFileAccess final : public FileAccess {
 public:
  explicit NoFileAccess(std::string reason) : reason_(std::move(reason)) {}
  absl::StatusOr<UniqueFd> OpenRead(absl::string_view path,
                                    absl::string_view what) const override {
    return CheckPath(path, what);
  }
  absl::Status CheckPath(absl::string_view path,
                         absl::string_view what) const override {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot open ", what, " ", Quoted(path),
                     ": no files may be read here (", reason_, ")"));
  }
  bool secret_files() const override { return false; }
  std::string root() const override { return ""; }

 private:
  const std::string reason_;
};

}  // namespace

UniqueFd::~UniqueFd() {
  if (fd_ >= 0) ::close(fd_);
}

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.release();
  }
  return *this;
}

std::string UniqueFd::ProcPath() const {
  return absl::StrCat("/proc/self/fd/", fd_);
}

absl::StatusOr<std::string> ReadWholeFile(const FileAccess& files,
                                          absl::string_view path,
                                          absl::string_view what,
                                          size_t max_bytes) {
  absl::StatusOr<UniqueFd> fd = files.OpenRead(path, what);
  if (!fd.ok()) return fd.status();
  std::string text;
  char buffer[16384];
  while (true) {
    const ssize_t n = ::read(fd->get(), buffer, sizeof(buffer));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return OpenError(errno, path, what);
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > max_bytes) {
      return absl::InvalidArgumentError(absl::StrCat(
          what, " ", Quoted(path), " is larger than ", max_bytes, " bytes"));
    }
    text.append(buffer, static_cast<size_t>(n));
  }
  return text;
}

absl::StatusOr<ParentDir> OpenParentBeneath(const std::string& root,
                                            absl::string_view path,
                                            absl::string_view what) {
  std::string relative;
  IDSYNC_RETURN_IF_ERROR(Relative(root, path, what, &relative));
  const size_t slash = relative.rfind('/');
  ParentDir parent;
  parent.name =
      slash == std::string::npos ? relative : relative.substr(slash + 1);
  const std::string dir =
      slash == std::string::npos ? "." : relative.substr(0, slash);
  if (parent.name.empty() || parent.name == "." || parent.name == "..") {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " ", Quoted(path), " does not name a file"));
  }
  UniqueFd top(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!top) return OpenError(errno, path, what);
  parent.dir =
      UniqueFd(Beneath(top.get(), dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent.dir) {
    if (errno == EXDEV || errno == ELOOP) return Outside(path, what);
    return OpenError(errno, path, what);
  }
  return parent;
}

std::shared_ptr<const FileAccess> HostFiles() {
  static const auto* access =
      new std::shared_ptr<const FileAccess>(std::make_shared<HostFileAccess>());
  return *access;
}

std::shared_ptr<const FileAccess> ConfinedFiles(std::string root) {
  return std::make_shared<ConfinedFileAccess>(std::move(root));
}

std::shared_ptr<const FileAccess> NoFiles(std::string reason) {
  return std::make_shared<NoFileAccess>(std::move(reason));
}

}  // namespace idsync
