// TestServer: a real HTTP(S) server (cpp-httplib) on 127.0.0.1 and a free
// port, serving from its own thread, for tests of the HTTP client and of
// source authentication.
//
// Register routes with Handle/Get/Post before Start(); every request a route
// receives is recorded (before its handler runs) for assertions. Stop() (or
// the destructor) waits for running handlers, and a worker holding an idle
// keep-alive connection waits for its client: destroy clients first.
#ifndef IDSYNC_TESTS_CONNECTOR_HTTP_TEST_SERVER_H_
#define IDSYNC_TESTS_CONNECTOR_HTTP_TEST_SERVER_H_

#include <httplib.h>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace idsync::testing {

// One request as the server received it.
struct SeenRequest {
  std::string method;
  std::string path;    // Decoded, without the query.
  std::string target;  // As sent on the request line: path?query.
  httplib::Headers headers;
  std::string body;
  int remote_port = 0;

  // The first header named `name` (case-insensitive); "" when absent.
  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  size_t HeaderCount(const std::string& name) const {
    return headers.count(name);
  }
};

class TestServer {
 public:
  using Handler =
      std::function<void(const httplib::Request&, httplib::Response&)>;

  TestServer() : TestServer(std::make_unique<httplib::Server>()) {}
  // For an httplib::SSLServer.
  explicit TestServer(std::unique_ptr<httplib::Server> server)
      : server_(std::move(server)) {
    // Reuse connections as long as clients do (the library closes every
    // fifth request by default).
    server_->set_keep_alive_max_count(1000);
    // Headers and body go out in separate writes: without this, each
    // response waits for the client's delayed ACK (~40 ms).
    server_->set_tcp_nodelay(true);
  }
  ~TestServer() { Stop(); }
  TestServer(const TestServer&) = delete;
  TestServer& operator=(const TestServer&) = delete;

  // `method` is GET (which also serves HEAD), POST, PUT, PATCH or DELETE.
  void Handle(const std::string& method, const std::string& pattern,
              Handler handler) {
    auto recorded = [this, handler = std::move(handler)](
                        const httplib::Request& req, httplib::Response& res) {
      Record(req);
      handler(req, res);
    };
    if (method == "GET") {
      server_->Get(pattern, recorded);
    } else if (method == "POST") {
      server_->Post(pattern, recorded);
    } else if (method == "PUT") {
      server_->Put(pattern, recorded);
    } else if (method == "PATCH") {
      server_->Patch(pattern, recorded);
    } else if (method == "DELETE") {
      server_->Delete(pattern, recorded);
    } else {
      ADD_FAILURE() << "TestServer: no method " << method;
    }
  }
  void Get(const std::string& pattern, Handler handler) {
    Handle("GET", pattern, std::move(handler));
  }
  void Post(const std::string& pattern, Handler handler) {
    Handle("POST", pattern, std::move(handler));
  }

  // Starts serving; returns the base URL, e.g. "http://127.0.0.1:41234".
  std::string Start(absl::string_view scheme = "http") {
    port_ = server_->bind_to_any_port("127.0.0.1");
    EXPECT_GT(port_, 0) << "TestServer: cannot bind";
    thread_ = std::thread([this] { server_->listen_after_bind(); });
    // stop() before the loop runs would be lost, and join() would hang.
    while (!server_->is_running()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    base_ = absl::StrCat(scheme, "://127.0.0.1:", port_);
    return base_;
  }

  void Stop() {
    if (!thread_.joinable()) return;
    server_->stop();
    thread_.join();
  }

  int port() const { return port_; }
  std::string Url(absl::string_view path_and_query) const {
    return absl::StrCat(base_, path_and_query);
  }

  std::vector<SeenRequest> requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return seen_;
  }
  // The requests whose (decoded) path is `path`.
  std::vector<SeenRequest> RequestsTo(absl::string_view path) const {
    std::vector<SeenRequest> out;
    for (SeenRequest& r : requests()) {
      if (r.path == path) out.push_back(std::move(r));
    }
    return out;
  }
  size_t CountTo(absl::string_view path) const {
    return RequestsTo(path).size();
  }
  // How many client sockets the recorded requests came over.
  size_t DistinctClientPorts() const {
    std::set<int> ports;
    for (const SeenRequest& r : requests()) ports.insert(r.remote_port);
    return ports.size();
  }

 private:
  void Record(const httplib::Request& req) {
    SeenRequest r{req.method,  req.path, req.target,
                  req.headers, req.body, req.remote_port};
    std::lock_guard<std::mutex> lock(mu_);
    seen_.push_back(std::move(r));
  }

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::string base_;
  mutable std::mutex mu_;
  std::vector<SeenRequest> seen_;
};

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_CONNECTOR_HTTP_TEST_SERVER_H_
