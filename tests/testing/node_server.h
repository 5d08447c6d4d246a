// NodeServer: a test server written in Node (e.g.
// tests/integration/rest/api_shapes.mjs) run as `node <script> args...`.
// The script listens on a loopback port and prints one line {"port":N} on
// stdout when ready; Start() waits for that line (at most 20 s). The server's
// stdin is a pipe that only we hold, so it also goes away if the test process
// dies; the destructor kills it (SIGKILL) and reaps it. Its stderr goes to a
// temporary file, quoted in errors. npm packages come from
// <source>/node_modules (`npm ci` at the repository root). Not thread-safe.
#ifndef IDSYNC_TESTS_TESTING_NODE_SERVER_H_
#define IDSYNC_TESTS_TESTING_NODE_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace idsync::testing {

class NodeServer {
 public:
  // `script` is relative to the source tree (or absolute). Fails with
  // FailedPrecondition if node or node_modules is missing, naming the fix.
  static absl::StatusOr<std::unique_ptr<NodeServer>> Start(
      const std::string& script, const std::vector<std::string>& args);
  ~NodeServer();
  NodeServer(const NodeServer&) = delete;
  NodeServer& operator=(const NodeServer&) = delete;

  int port() const { return port_; }
  std::string url() const;  // http://127.0.0.1:PORT

  // One plain HTTP/1.0 request to the server (any path, e.g.
  // "/__control/stats"; a body is sent as application/json). `headers` are
  // extra request header lines ("Authorization: Bearer x"), none by default.
  // Returns the response body for a 2xx status, else an error with the status
  // and body.
  absl::StatusOr<std::string> Control(
      const std::string& method, const std::string& path,
      const std::string& body = "",
      const std::vector<std::string>& headers = {});

  // What the server wrote to stderr so far.
  std::string Stderr() const;

  // Kills the server at once (SIGKILL) and reaps it.
  void Kill();

 private:
  NodeServer() = default;

  pid_t pid_ = -1;
  int stdin_fd_ = -1;   // Our end of the server's stdin.
  int stdout_fd_ = -1;  // Our end of the server's stdout.
  int port_ = 0;
  std::string err_path_;
};

// The repository's source directory (where node_modules lives).
std::string SourceDir();

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_TESTING_NODE_SERVER_H_
