#include "tests/testing/node_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

extern char** environ;

#ifndef IDSYNC_SOURCE_DIR
#error "IDSYNC_SOURCE_DIR must be defined (tests/testing/CMakeLists.txt)"
#endif

namespace idsync::testing {
namespace {

constexpr auto kStartTimeout = std::chrono::seconds(20);
constexpr int kControlTimeoutSeconds = 30;

bool Exists(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0;
}

// $IDSYNC_NODE, else the first `node` on $PATH; empty if none.
std::string FindNode() {
  if (const char* env = std::getenv("IDSYNC_NODE"); env != nullptr && *env) {
    return access(env, X_OK) == 0 ? env : "";
  }
  const char* path = std::getenv("PATH");
  for (absl::string_view dir :
       absl::StrSplit(path != nullptr ? path : "/usr/bin:/bin", ':')) {
    if (dir.empty()) continue;
    std::string candidate = absl::StrCat(dir, "/node");
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Moves a close-on-exec descriptor above 2, so that dup2 onto 0..2 in the
// child always makes a fresh (inheritable) copy.
int HighFd(int fd) {
  if (fd > 2) return fd;
  const int high = fcntl(fd, F_DUPFD_CLOEXEC, 3);
  close(fd);
  return high;
}

void CloseFd(int& fd) {
  if (fd >= 0) close(fd);
  fd = -1;
}

// {"port":12345} -> 12345.
int ParsePort(absl::string_view line) {
  const size_t at = line.find("\"port\":");
  if (at == absl::string_view::npos) return 0;
  line.remove_prefix(at + 7);
  const size_t end = line.find_first_not_of("0123456789 ");
  int port = 0;
  if (!absl::SimpleAtoi(line.substr(0, end), &port)) return 0;
  return port > 0 && port < 65536 ? port : 0;
}

}  // namespace

std::string SourceDir() { return IDSYNC_SOURCE_DIR; }

absl::StatusOr<std::unique_ptr<NodeServer>> NodeServer::Start(
    const std::string& script, const std::vector<std::string>& args) {
  const std::string node = FindNode();
  if (node.empty()) {
    return absl::FailedPreconditionError(
        "node not found (on PATH, or $IDSYNC_NODE): run scripts/setup "
        "(nodejs), then `npm ci` at the repository root");
  }
  const std::string source = SourceDir();
  if (!Exists(source + "/node_modules")) {
    return absl::FailedPreconditionError(absl::StrCat(
        source, "/node_modules is missing: run `npm ci` in ", source));
  }
  const std::string script_path =
      !script.empty() && script[0] == '/' ? script : source + "/" + script;
  if (!Exists(script_path)) {
    return absl::NotFoundError(absl::StrCat("no such script: ", script_path));
  }

  std::unique_ptr<NodeServer> server(new NodeServer());
  const char* tmp = std::getenv("TMPDIR");
  std::string err_template = absl::StrCat(tmp != nullptr && *tmp ? tmp : "/tmp",
                                          "/node_server_XXXXXX");
  int err_fd = mkostemp(err_template.data(), O_CLOEXEC);
  if (err_fd < 0) {
    return absl::InternalError(
        absl::StrCat("mkostemp: ", std::strerror(errno)));
  }
  server->err_path_ = err_template;
  err_fd = HighFd(err_fd);
  int in_pipe[2], out_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) {
    close(err_fd);
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  if (pipe2(out_pipe, O_CLOEXEC) != 0) {
    close(err_fd);
    close(in_pipe[0]);
    close(in_pipe[1]);
    return absl::InternalError(absl::StrCat("pipe2: ", std::strerror(errno)));
  }
  for (int* fd : {&in_pipe[0], &in_pipe[1], &out_pipe[0], &out_pipe[1]}) {
    *fd = HighFd(*fd);
  }
  server->stdin_fd_ = in_pipe[1];
  server->stdout_fd_ = out_pipe[0];

  std::vector<std::string> argv = {node, script_path};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_pipe[0], 0);
  posix_spawn_file_actions_adddup2(&actions, out_pipe[1], 1);
  posix_spawn_file_actions_adddup2(&actions, err_fd, 2);
  const int rc = posix_spawn(&server->pid_, node.c_str(), &actions, nullptr,
                             cargv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(in_pipe[0]);
  close(out_pipe[1]);
  close(err_fd);
  if (rc != 0) {
    server->pid_ = -1;
    return absl::InternalError(
        absl::StrCat("cannot start ", node, ": ", std::strerror(rc)));
  }

  // Read stdout until the first newline, the deadline or EOF.
  std::string line;
  const auto deadline = std::chrono::steady_clock::now() + kStartTimeout;
  bool eof = false;
  while (line.find('\n') == std::string::npos && !eof) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{server->stdout_fd_, POLLIN, 0};
    const int n = poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    char buf[256];
    const ssize_t got = read(server->stdout_fd_, buf, sizeof(buf));
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      eof = true;
    } else {
      line.append(buf, static_cast<size_t>(got));
    }
  }
  server->port_ = ParsePort(line.substr(0, line.find('\n')));
  if (server->port_ == 0) {
    server->Kill();
    const std::string err = server->Stderr();
    const std::string what =
        absl::StrCat("node ", script, " did not report a port",
                     eof ? " (it exited)" : " within 20 s", "; stdout: ", line,
                     "; stderr: ", err);
    if (err.find("ERR_MODULE_NOT_FOUND") != std::string::npos ||
        err.find("Cannot find package") != std::string::npos) {
      return absl::FailedPreconditionError(
          absl::StrCat("run `npm ci` in ", source, ": ", what));
    }
    return absl::InternalError(what);
  }
  return server;
}

NodeServer::~NodeServer() {
  Kill();
  if (!err_path_.empty()) unlink(err_path_.c_str());
}

void NodeServer::Kill() {
  CloseFd(stdin_fd_);
  if (pid_ > 0) {
    kill(pid_, SIGKILL);
    while (waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }
  CloseFd(stdout_fd_);
}

std::string NodeServer::url() const {
  return absl::StrCat("http://127.0.0.1:", port_);
}

std::string NodeServer::Stderr() const { return ReadFile(err_path_); }

absl::StatusOr<std::string> NodeServer::Control(
    const std::string& method, const std::string& path, const std::string& body,
    const std::vector<std::string>& headers) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError("socket() failed");
  timeval timeout{kControlTimeoutSeconds, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port_));
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    close(fd);
    return absl::UnavailableError(
        absl::StrCat("cannot connect to ", url(), ": ", std::strerror(errno)));
  }
  std::string request =
      absl::StrCat(method, " ", path, " HTTP/1.0\r\nHost: 127.0.0.1:", port_,
                   "\r\nAccept: application/json\r\n");
  if (!body.empty()) {
    absl::StrAppend(&request, "Content-Type: application/json\r\n");
  }
  for (const std::string& header : headers) {
    absl::StrAppend(&request, header, "\r\n");
  }
  absl::StrAppend(&request, "Content-Length: ", body.size(), "\r\n\r\n", body);
  for (size_t sent = 0; sent < request.size();) {
    const ssize_t n =
        send(fd, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      close(fd);
      return absl::UnavailableError(
          absl::StrCat("send to ", url(), ": ", std::strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  std::string response;
  char buf[8192];
  for (;;) {
    const ssize_t n = recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return absl::DeadlineExceededError(
          absl::StrCat(method, " ", path, ": ", std::strerror(errno)));
    }
    if (n == 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  close(fd);

  // "HTTP/1.1 200 OK\r\n...\r\n\r\nbody"
  const size_t head_end = response.find("\r\n\r\n");
  int status = 0;
  std::vector<absl::string_view> status_line = absl::StrSplit(
      absl::string_view(response).substr(0, response.find("\r\n")), ' ');
  if (head_end == std::string::npos || status_line.size() < 2 ||
      !absl::SimpleAtoi(status_line[1], &status)) {
    return absl::InternalError(
        absl::StrCat(method, " ", path,
                     ": not an HTTP response: ", response.substr(0, 200)));
  }
  std::string response_body = response.substr(head_end + 4);
  if (status < 200 || status > 299) {
    return absl::FailedPreconditionError(absl::StrCat(
        method, " ", path, ": HTTP ", status, ": ", response_body));
  }
  return response_body;
}

}  // namespace idsync::testing
