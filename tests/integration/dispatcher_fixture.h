// A real idsync-dispatcher process for end-to-end tests: tenant "acme" and
// its admin token bootstrapped in a fresh store, REST and gRPC on loopback
// ports chosen once, so a restarted dispatcher is found at the same address.
// Needs IDSYNC_DISPATCHER_BIN.
#ifndef IDSYNC_TESTS_INTEGRATION_DISPATCHER_FIXTURE_H_
#define IDSYNC_TESTS_INTEGRATION_DISPATCHER_FIXTURE_H_

#include <signal.h>

#include <filesystem>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "connector/http/http_client.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_dir.h"
#include "tests/testing/wait.h"

namespace idsync::testing {

class DispatcherTest : public ::testing::Test {
 protected:
  using Json = nlohmann::json;

  void SetUp() override {
    tmp_ = std::make_unique<ScopedTestDir>("e2e");
    dir_ = tmp_->path().string();
    db_ = tmp_->File("dispatcher.db");
    // Tenant acme's files, as an operator sets --import-dir up.
    import_dir_ = tmp_->File("imports");
    std::filesystem::create_directories(import_dir_ + "/acme");
    auto boot = RunProcess(
        {IDSYNC_DISPATCHER_BIN, "bootstrap", "--tenant", "acme", "--db", db_});
    ASSERT_TRUE(boot.ok() && boot->exit_code == 0)
        << (boot.ok() ? boot->err : boot.status().ToString());
    token_ = std::string(absl::StripAsciiWhitespace(boot->out));
    HttpClientOptions o;
    o.max_attempts = 1;
    auto client = HttpClient::Create(o);
    ASSERT_TRUE(client.ok()) << client.status();
    http_ = *std::move(client);
    for (int* port : {&http_port_, &grpc_port_, &metrics_port_}) {
      absl::StatusOr<int> free = FreeLoopbackPort();
      ASSERT_TRUE(free.ok()) << free.status();
      *port = *free;
    }
    StartDispatcher();
  }
  void TearDown() override { Reap(dispatcher_); }

  // Kills `process` if it runs; shows its output when the test failed.
  void Reap(std::optional<ChildProcess>& process) {
    if (!process.has_value()) return;
    process->Kill(SIGKILL);
    const ProcessResult r = process->Wait();
    if (HasFailure()) std::cerr << r.out << r.err;
    process.reset();
  }

  std::string Spine() const { return absl::StrCat("127.0.0.1:", grpc_port_); }
  // A file in tenant acme's import directory (where its connectors read).
  std::string ImportPath(const std::string& name) const {
    return absl::StrCat(import_dir_, "/acme/", name);
  }

  // Starts `serve` with dispatcher_args_ added; waits for /health.
  void StartDispatcher() {
    std::vector<std::string> argv = {IDSYNC_DISPATCHER_BIN,
                                     "serve",
                                     "--db",
                                     db_,
                                     "--http-listen",
                                     absl::StrCat("127.0.0.1:", http_port_),
                                     "--grpc-listen",
                                     Spine(),
                                     "--import-dir",
                                     import_dir_,
                                     "--metrics-listen",
                                     absl::StrCat("127.0.0.1:", metrics_port_)};
    argv.insert(argv.end(), dispatcher_args_.begin(), dispatcher_args_.end());
    auto child = ChildProcess::Start(argv, dir_);
    ASSERT_TRUE(child.ok()) << child.status();
    dispatcher_ = *std::move(child);
    ASSERT_TRUE(WaitUntil(
        [&] {
          auto r = Call("GET", "/health");
          return r.ok() && r->status == 200;
        },
        absl::Seconds(10)))
        << "the dispatcher did not come up";
  }
  void StopDispatcher(int signal) {
    dispatcher_->Kill(signal);
    dispatcher_->Wait();
    dispatcher_.reset();
  }

  // GET of the operator's metrics listener (no token).
  absl::StatusOr<HttpResponse> Metrics() {
    HttpRequest req;
    req.url = absl::StrCat("http://127.0.0.1:", metrics_port_, "/metrics");
    return http_->SendOnce(req);
  }

  // A REST call as the admin (or as `token`).
  absl::StatusOr<HttpResponse> Call(const std::string& method,
                                    const std::string& path,
                                    const Json& body = nullptr,
                                    HttpHeaders extra = {},
                                    const std::string& token = "") {
    HttpRequest req;
    req.method = method;
    req.url = absl::StrCat("http://127.0.0.1:", http_port_, path);
    req.headers = std::move(extra);
    req.headers.emplace_back("Authorization",
                             "Bearer " + (token.empty() ? token_ : token));
    if (!body.is_null()) {
      req.body = body.dump();
      req.headers.emplace_back("Content-Type", "application/json");
    }
    return http_->SendOnce(req);
  }
  // A call that must succeed; its JSON answer.
  Json Ok(const std::string& method, const std::string& path,
          const Json& body = nullptr, HttpHeaders extra = {}) {
    auto r = Call(method, path, body, std::move(extra));
    EXPECT_TRUE(r.ok()) << r.status();
    if (!r.ok()) return Json();
    EXPECT_LT(r->status, 300) << method << " " << path << ": " << r->body;
    return Json::parse(r->body, nullptr, false);
  }

  std::unique_ptr<ScopedTestDir> tmp_;
  std::string dir_, db_, token_, import_dir_;
  int http_port_ = 0, grpc_port_ = 0, metrics_port_ = 0;
  std::vector<std::string> dispatcher_args_;  // Set before SetUp.
  std::unique_ptr<HttpClient> http_;
  std::optional<ChildProcess> dispatcher_;
};

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_INTEGRATION_DISPATCHER_FIXTURE_H_
