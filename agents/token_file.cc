#include "agents/token_file.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace idsync {
namespace {

absl::Status Errno(absl::string_view what, const std::string& path) {
  const int e = errno;
  const std::string message =
      absl::StrCat(what, " ", path, ": ", std::strerror(e));
  if (e == ENOENT) return absl::NotFoundError(message);
  if (e == EACCES || e == EPERM) return absl::PermissionDeniedError(message);
  if (e == EEXIST) return absl::AlreadyExistsError(message);
  return absl::InternalError(message);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int Release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_;
};

std::string Parent(const std::string& path) {
  std::string parent = std::filesystem::path(path).parent_path().string();
  return parent.empty() ? "." : parent;
}

absl::Status MakeParentDirs(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) return absl::OkStatus();
  // Create missing directories one by one so each gets 0700.
  std::filesystem::path built;
  for (const auto& part : dir) {
    built /= part;
    if (mkdir(built.c_str(), 0700) != 0 && errno != EEXIST) {
      return Errno("cannot create directory", built.string());
    }
  }
  return absl::OkStatus();
}

absl::Status FsyncDir(const std::string& dir) {
  Fd fd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.get() < 0) return Errno("cannot open directory", dir);
  if (fsync(fd.get()) != 0) return Errno("cannot sync directory", dir);
  return absl::OkStatus();
}

// Moves `from` to `to`; with !overwrite, fails with EEXIST if `to` exists.
int MoveIntoPlace(const std::string& from, const std::string& to,
                  bool overwrite) {
  if (overwrite) return rename(from.c_str(), to.c_str());
  if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(),
                RENAME_NOREPLACE) == 0) {
    return 0;
  }
  if (errno != EINVAL && errno != ENOSYS) return -1;
  // The file system has no RENAME_NOREPLACE: link(2) refuses to overwrite.
  if (link(from.c_str(), to.c_str()) != 0) return -1;
  unlink(from.c_str());
  return 0;
}

}  // namespace

bool IsValidTokenText(absl::string_view token) {
  if (token.empty()) return false;
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

absl::StatusOr<std::string> DefaultTokenFile() {
  const char* env = std::getenv("IDSYNC_AGENT_TOKEN_FILE");
  if (env != nullptr && *env != '\0') return std::string(env);
  const char* home = std::getenv("HOME");
  if (home == nullptr || *home == '\0') {
    return absl::FailedPreconditionError(
        "HOME is not set: give the token file with --token-file or "
        "IDSYNC_AGENT_TOKEN_FILE");
  }
  return absl::StrCat(home, "/.config/idsync/agent.token");
}

absl::Status PrepareTokenFile(const std::string& path, bool overwrite) {
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!overwrite) {
      return absl::AlreadyExistsError(absl::StrCat(
          "token file ", path,
          " already exists (this agent is registered; use --force to "
          "replace it)"));
    }
    if (!S_ISREG(st.st_mode)) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, " exists and is not a regular file"));
    }
  } else if (errno != ENOENT) {
    return Errno("cannot check", path);
  }
  absl::Status s = MakeParentDirs(path);
  if (!s.ok()) return s;
  const std::string dir = Parent(path);
  if (access(dir.c_str(), W_OK | X_OK) != 0) {
    return Errno("cannot write the token file in", dir);
  }
  return absl::OkStatus();
}

absl::Status WriteTokenFile(const std::string& path, absl::string_view token,
                            bool overwrite) {
  if (!IsValidTokenText(token)) {
    return absl::InvalidArgumentError(
        "the agent token is empty or holds characters a token cannot have");
  }
  absl::Status s = MakeParentDirs(path);
  if (!s.ok()) return s;
  static std::atomic<int> counter{0};
  const std::string tmp = absl::StrCat(path, ".tmp-", getpid(), "-", counter++);
  Fd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
             0600));
  if (fd.get() < 0) return Errno("cannot create", tmp);
  auto fail = [&](absl::Status status) {
    unlink(tmp.c_str());
    return status;
  };
  // The umask can only remove bits; make the mode exact anyway.
  if (fchmod(fd.get(), 0600) != 0) return fail(Errno("cannot chmod", tmp));
  const std::string content = absl::StrCat(token, "\n");
  size_t done = 0;
  while (done < content.size()) {
    ssize_t n = write(fd.get(), content.data() + done, content.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(Errno("cannot write", tmp));
    done += static_cast<size_t>(n);
  }
  if (fsync(fd.get()) != 0) return fail(Errno("cannot sync", tmp));
  if (close(fd.Release()) != 0) return fail(Errno("cannot close", tmp));
  if (MoveIntoPlace(tmp, path, overwrite) != 0) {
    if (errno == EEXIST) {
      unlink(tmp.c_str());
      return absl::AlreadyExistsError(absl::StrCat(
          "token file ", path, " already exists (use --force to replace it)"));
    }
    return fail(Errno("cannot rename the token file into", path));
  }
  return FsyncDir(Parent(path));
}

absl::StatusOr<std::string> ReadTokenFile(const std::string& path) {
  Fd fd(open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (fd.get() < 0) {
    if (errno == ELOOP) {
      return absl::PermissionDeniedError(
          absl::StrCat("token file ", path, " is a symbolic link"));
    }
    return Errno("cannot open token file", path);
  }
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Errno("cannot stat", path);
  if (!S_ISREG(st.st_mode)) {
    return absl::PermissionDeniedError(
        absl::StrCat("token file ", path, " is not a regular file"));
  }
  if (st.st_uid != geteuid()) {
    return absl::PermissionDeniedError(
        absl::StrCat("token file ", path, " is owned by another user (uid ",
                     st.st_uid, ")"));
  }
  if ((st.st_mode & 077) != 0) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "token file %s has mode %04o; it must be readable by its owner only "
        "(chmod 600 %s)",
        path, st.st_mode & 07777, path));
  }
  constexpr size_t kMaxBytes = 4096;
  std::string content(kMaxBytes + 1, '\0');
  size_t got = 0;
  while (got < content.size()) {
    ssize_t n = read(fd.get(), content.data() + got, content.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Errno("cannot read", path);
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  if (got > kMaxBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("token file ", path, " is too large to hold a token"));
  }
  content.resize(got);
  absl::string_view token = absl::StripAsciiWhitespace(content);
  if (!IsValidTokenText(token)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "token file ", path,
        token.empty() ? " is empty" : " holds characters a token cannot have"));
  }
  return std::string(token);
}

}  // namespace idsync
