// Tenants never reach the host through the connectors they configure: each
// attack as it was found with an ordinary tenant admin token (issue 16),
// through the real REST server. Files: host files, another tenant's export,
// the sealing key as a bind password, symlinks and ".." out of the import
// directory, a FIFO. Pushed files: who may push, how much, and a file
// replaced while a run reads it. Sources: loopback, metadata, names and
// numeric forms that reach them, a tenant's own networks, and /test errors
// that must not tell a closed port from an open one.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sodium.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/dispatcher/api/api_fixture.h"
#include "tests/testing/subprocess.h"

namespace idsync::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// A rest source's config: one identities stream at `url`, following
// Link headers, one attempt per request.
Json RestSourceConfig(const std::string& url) {
  return {{"timeout_seconds", 5},
          {"max_attempts", 1},
          {"streams",
           {{{"kind", "identities"},
             {"url", url},
             {"pagination", {{"style", "link"}}},
             {"fields", {{"external_id", "/id"}}}}}}};
}

std::string Sha256Hex(const std::string& data) {
  uint8_t digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest, reinterpret_cast<const uint8_t*>(data.data()),
                     data.size());
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<const char*>(digest), sizeof(digest)));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class ConfinementTest : public ApiTest {
 protected:
  ConfinementTest() {
    rest_options_ = [](RestServerOptions& o) { o.max_upload_bytes = 64 << 10; };
  }

  Reply Upload(int64_t connector_id, const std::string& token,
               const std::string& body, const std::string& query = "") {
    return Send(
        "PUT",
        absl::StrCat("/api/v1/connectors/", connector_id, "/file", query),
        token, body, {{"Content-Type", "text/csv"}});
  }
  // Names in `dir` an upload could have left behind (".<name>.upload-...").
  static std::vector<std::string> Leftovers(const std::string& dir) {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (absl::StrContains(name, ".upload-")) names.push_back(name);
    }
    return names;
  }
  int64_t ConnectorCount(const std::string& token) {
    return Get("/api/v1/connectors", token).json.value("total", int64_t{-1});
  }
  std::set<std::string> Departments(const std::string& token) {
    std::set<std::string> departments;
    for (const Json& i : ListAll("/api/v1/identities", token)) {
      if (i["source"] != "api") {
        departments.insert(i.value("department", std::string("?")));
      }
    }
    return departments;
  }
};

// --- Files

TEST_F(ConfinementTest, AHostFileIsNeverASource) {
  const int64_t before = ConnectorCount(admin_);
  for (const std::string& path :
       {std::string("/etc/passwd"), std::string("../../../../../etc/passwd"),
        TenantDir() + "/../../../../../../etc/passwd",
        std::string("/proc/self/environ"), db_path_}) {
    SCOPED_TRACE(path);
    Reply r = Post("/api/v1/connectors", admin_,
                   CsvConnectorBody("passwd-feed", path));
    ExpectError(r, 403, "permission_denied", "import directory");
    EXPECT_THAT(r.body, Not(HasSubstr("root:")));
  }
  EXPECT_EQ(ConnectorCount(admin_), before);

  // Nor by changing an accepted connector afterwards.
  const int64_t id = CreateCsvConnector(admin_, "hr", WriteCsv("hr.csv", 2));
  ExpectError(Patch(absl::StrCat("/api/v1/connectors/", id), admin_,
                    {{"config", {{"path", "/etc/passwd"}}}}),
              403, "permission_denied");
  EXPECT_EQ(Get(absl::StrCat("/api/v1/connectors/", id), admin_)
                .json["config"]["path"],
            TenantDir() + "/hr.csv");
}

TEST_F(ConfinementTest, AnotherTenantsExportIsNeverASource) {
  Bootstrap("globex");
  const std::string theirs = WriteCsv("hr.csv", 3, 0, "Globex", "globex");
  for (const std::string& path :
       {theirs, std::string("../globex/hr.csv"),
        TenantDir() + "/../globex/hr.csv", std::string("./../globex/hr.csv")}) {
    SCOPED_TRACE(path);
    ExpectError(
        Post("/api/v1/connectors", admin_, CsvConnectorBody("steal-hr", path)),
        403, "permission_denied");
  }
  // A relative path is taken from the tenant's own directory.
  const int64_t own = CreateCsvConnector(admin_, "own-hr", "hr.csv");
  WriteCsv("hr.csv", 2, 0, "Acme");
  Json run = WaitForRun(admin_, StartSync(admin_, own)["id"].get<int64_t>());
  EXPECT_EQ(run["status"], "succeeded") << run;
  EXPECT_EQ(Departments(admin_), std::set<std::string>{"Acme"});
}

TEST_F(ConfinementTest, ASymlinkOutOfTheImportDirectoryIsRefused) {
  Bootstrap("globex");
  const std::string theirs = WriteCsv("hr.csv", 3, 0, "Globex", "globex");
  const std::string mine = TenantDir();
  std::filesystem::create_symlink("/etc/passwd", mine + "/passwd.csv");
  std::filesystem::create_directory_symlink("../globex", mine + "/shared");
  for (const std::string& path :
       {mine + "/passwd.csv", std::string("shared/hr.csv"),
        std::string("passwd.csv")}) {
    SCOPED_TRACE(path);
    ExpectError(
        Post("/api/v1/connectors", admin_, CsvConnectorBody("link-hr", path)),
        403, "permission_denied", "symlinks");
  }

  // A file accepted at create, swapped for a symlink before a run: the run
  // fails, and what the tenant had stays (no deletions from a failed read).
  const int64_t id =
      CreateCsvConnector(admin_, "hr", WriteCsv("hr.csv", 2, 0, "Acme"));
  Json first = WaitForRun(admin_, StartSync(admin_, id)["id"].get<int64_t>());
  ASSERT_EQ(first["status"], "succeeded") << first;
  std::filesystem::remove(mine + "/hr.csv");
  std::filesystem::create_symlink(theirs, mine + "/hr.csv");
  Json swapped = WaitForRun(admin_, StartSync(admin_, id)["id"].get<int64_t>());
  EXPECT_EQ(swapped["status"], "failed") << swapped;
  EXPECT_THAT(swapped["error"].get<std::string>(),
              HasSubstr("outside this tenant's import directory"));
  EXPECT_THAT(swapped["error"].get<std::string>(), Not(HasSubstr("globex")));
  EXPECT_EQ(Departments(admin_), std::set<std::string>{"Acme"});
  EXPECT_EQ(ListAll("/api/v1/identities", admin_).size(), 2u);
}

TEST_F(ConfinementTest, TheSealingKeyIsNeverABindPassword) {
  // The key file an operator keeps next to the store.
  const std::string key_file = db_path_ + ".key";
  { std::ofstream(key_file) << kKey; }
  // A listener the attacker runs: nothing may ever be sent to it.
  httplib::Server listener;
  std::atomic<int> hits{0};
  listener.set_pre_routing_handler([&](const auto&, auto&) {
    ++hits;
    return httplib::Server::HandlerResponse::Unhandled;
  });
  const int port = listener.bind_to_any_port("127.0.0.1");
  std::thread serve([&] { listener.listen_after_bind(); });
  const std::string url = absl::StrCat("ldap://127.0.0.1:", port);
  const int64_t before = ConnectorCount(admin_);
  for (const std::string& file : {key_file, std::string("key.txt")}) {
    SCOPED_TRACE(file);
    Reply r = Post("/api/v1/connectors", admin_,
                   {{"business_id", "corp-ad"},
                    {"type", "ldap"},
                    {"config",
                     {{"url", url},
                      {"bind_dn", "cn=svc,dc=example,dc=com"},
                      {"bind_password_file", file},
                      {"user_base", "ou=people,dc=example,dc=com"}}}});
    ExpectError(r, 400, "invalid_argument", "bind_password_file");
    EXPECT_THAT(r.body, Not(HasSubstr(kKey)));
  }
  // TLS keys and CA files of the other connectors are files too.
  ExpectError(
      Post("/api/v1/connectors", admin_,
           {{"business_id", "grpc-src"},
            {"type", "remote"},
            {"config",
             {{"address", absl::StrCat("127.0.0.1:", port)},
              {"tls", {{"cert_file", key_file}, {"key_file", key_file}}}}}}),
      400, "invalid_argument", "not accepted here");
  ExpectError(Post("/api/v1/connectors", admin_,
                   {{"business_id", "crm"},
                    {"type", "rest"},
                    {"config",
                     {{"base_url", absl::StrCat("http://127.0.0.1:", port)},
                      {"ca_file", key_file},
                      {"streams",
                       {{{"kind", "identities"},
                         {"path", "/users"},
                         {"fields", {{"external_id", "/id"}}}}}}}}}),
              403, "permission_denied", "import directory");
  EXPECT_EQ(ConnectorCount(admin_), before);
  listener.stop();
  serve.join();
  EXPECT_EQ(hits.load(), 0);
}

TEST_F(ConfinementTest, AFifoFailsTheRunAtOnce) {
  const std::string fifo = TenantDir() + "/hr.csv";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0);
  const int64_t id = CreateCsvConnector(admin_, "hr", fifo);
  const absl::Time start = absl::Now();
  Json run = WaitForRun(admin_, StartSync(admin_, id)["id"].get<int64_t>(),
                        absl::Seconds(20));
  EXPECT_EQ(run["status"], "failed") << run;
  EXPECT_THAT(run["error"].get<std::string>(), HasSubstr("not a regular file"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

// --- Pushed files

TEST_F(ConfinementTest, APushedFileIsStoredThenSynced) {
  const int64_t id = CreateCsvConnector(admin_, "workday", "workday.csv");
  const std::string body = CsvText(3, 0, "Pushed");
  Reply pushed = Upload(id, admin_, body);
  ASSERT_EQ(pushed.status, 202) << pushed.Describe();
  EXPECT_EQ(pushed.json["connector_id"], id);
  EXPECT_EQ(pushed.json["path"], "workday.csv");
  EXPECT_EQ(pushed.json["bytes"], body.size());
  EXPECT_EQ(pushed.json["sha256"], Sha256Hex(body));
  EXPECT_EQ(pushed.Header("Cache-Control"), "no-store");
  const std::string stored = TenantDir() + "/workday.csv";
  EXPECT_EQ(ReadFile(stored), body);
  struct stat st;
  ASSERT_EQ(stat(stored.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  Json run = WaitForRun(admin_, pushed.json["run"]["id"].get<int64_t>());
  EXPECT_EQ(run["status"], "succeeded") << run;
  EXPECT_EQ(run["created"], 3);

  // Stored only: ?sync=false.
  const std::string next = CsvText(4, 0, "Pushed");
  Reply stored_only = Upload(id, admin_, next, "?sync=false");
  ASSERT_EQ(stored_only.status, 200) << stored_only.Describe();
  EXPECT_FALSE(stored_only.json.contains("run")) << stored_only.body;
  EXPECT_EQ(ReadFile(stored), next);
  // An unknown parameter: refused, and the file is as it was.
  ExpectError(Upload(id, admin_, CsvText(1, 0, "X"), "?sync=maybe"), 400,
              "invalid_argument", "sync=true|false");
  ExpectError(Upload(id, admin_, CsvText(1, 0, "X"), "?path=/etc/passwd"), 400,
              "invalid_argument");
  EXPECT_EQ(ReadFile(stored), next);
  EXPECT_THAT(Leftovers(TenantDir()), ::testing::IsEmpty());
}

TEST_F(ConfinementTest, AnUploadThatIsRefusedStoresNothing) {
  const std::string path = WriteCsv("hr.csv", 2, 0, "Before");
  const std::string before = ReadFile(path);
  const int64_t id = CreateCsvConnector(admin_, "hr", path);
  const std::string body = CsvText(5, 0, "Hostile");
  const std::string auditor = CreateToken(admin_, "ro", "auditor");
  const std::string globex = Bootstrap("globex");

  ExpectError(Upload(id, "", body), 401, "unauthenticated");
  ExpectError(Upload(id, "idsync_svc_forged", body), 401, "unauthenticated");
  ExpectError(Upload(id, auditor, body), 403, "permission_denied");
  ExpectError(Upload(id, globex, body), 404, "not_found");
  ExpectError(Upload(987654, admin_, body), 404, "not_found");
  ExpectError(Send("PUT", "/api/v1/connectors/x/file", admin_, body,
                   {{"Content-Type", "text/csv"}}),
              404, "not_found");
  // Larger than --max-upload-mb (64 KiB here): refused before it is read.
  ExpectError(Upload(id, admin_, CsvText(4000, 0, "Huge")), 413,
              "invalid_argument", "larger than 65536 bytes");
  // Only hosted csv connectors read a pushed file.
  Reply ldap = Post("/api/v1/connectors", admin_,
                    {{"business_id", "corp-ad"},
                     {"type", "ldap"},
                     {"config",
                      {{"url", "ldap://127.0.0.1:9"},
                       {"user_base", "ou=people,dc=example,dc=com"}}}});
  ASSERT_EQ(ldap.status, 201) << ldap.Describe();
  ExpectError(Upload(ldap.json["id"].get<int64_t>(), admin_, body), 409,
              "failed_precondition", "hosted csv");
  // Another method on the path.
  Reply post = Send("POST", absl::StrCat("/api/v1/connectors/", id, "/file"),
                    admin_, body, {{"Content-Type", "text/csv"}});
  EXPECT_EQ(post.status, 405) << post.Describe();
  EXPECT_EQ(post.Header("Allow"), "PUT");

  EXPECT_EQ(ReadFile(path), before);
  EXPECT_THAT(Leftovers(TenantDir()), ::testing::IsEmpty());
  EXPECT_THAT(Leftovers(TenantDir("globex")), ::testing::IsEmpty());
  EXPECT_EQ(Get(absl::StrCat("/api/v1/connectors/", id, "/runs"), admin_)
                .json["total"],
            0);
}

// A run reads the file it opened to its end: a push that replaces the file
// meanwhile is renamed over it, never written into it, so the run sees the
// old file or (had it not opened it yet) the new one, never a mix.
TEST_F(ConfinementTest, AFileReplacedDuringARunIsNotMixedIntoIt) {
  rest_->Stop();  // This one needs room for a larger file.
  RestServerOptions options;
  options.http.host = "127.0.0.1";
  options.http.port = 0;
  options.max_upload_bytes = 64 << 20;
  rest_ = std::make_unique<RestServer>(*service_, *store_, progress_, metrics_,
                                       *limiter_, options);
  ASSERT_TRUE(rest_->Start().ok());
  port_ = rest_->port();

  constexpr int kRows = 60000;
  const int64_t id =
      CreateCsvConnector(admin_, "hr", WriteCsv("hr.csv", kRows, 0, "Old"));
  const int64_t run_id = StartSync(admin_, id, {{"chunk_size", 500}})["id"];
  // Once the run has committed a chunk it has the old file open.
  bool reading = false;
  WaitUntil([&] {
    Json run = Get(absl::StrCat("/api/v1/sync-runs/", run_id), admin_).json;
    reading = run["status"] == "running" && run["processed"] != 0;
    return reading || run["status"] != "running";
  });
  Reply pushed = Upload(id, admin_, CsvText(kRows, 0, "New"), "?sync=false");
  ASSERT_EQ(pushed.status, 200) << pushed.Describe();
  Json run = WaitForRun(admin_, run_id);
  EXPECT_EQ(run["status"], "succeeded") << run;
  const std::set<std::string> departments = Departments(admin_);
  EXPECT_EQ(departments.size(), 1u);
  if (reading) {
    EXPECT_EQ(departments, std::set<std::string>{"Old"});
  }
  EXPECT_EQ(ListAll("/api/v1/identities", admin_).size(),
            static_cast<size_t>(kRows));
  // The next run reads what was pushed.
  Json next = WaitForRun(admin_, StartSync(admin_, id)["id"].get<int64_t>());
  EXPECT_EQ(next["status"], "succeeded") << next;
  EXPECT_EQ(Departments(admin_), std::set<std::string>{"New"});
}

// --- Source addresses

class ConfinedSourcesTest : public ConfinementTest {
 protected:
  ConfinedSourcesTest() {
    allow_private_sources_ = false;
    auto loopback = ParseIpNetwork("127.0.0.1/32");
    EXPECT_TRUE(loopback.ok()) << loopback.status();
    if (loopback.ok()) tenant_networks_["trusted"] = {*loopback};
  }

  static Json RestSource(const std::string& business_id, const std::string& url,
                         Json auth = nullptr) {
    Json body = {{"business_id", business_id},
                 {"type", "rest"},
                 {"config", RestSourceConfig(url)}};
    if (!auth.is_null()) body["auth_config"] = std::move(auth);
    return body;
  }
};

// Every form an attacker used to reach the host or its cloud's metadata
// service, for each kind of hosted source.
TEST_F(ConfinedSourcesTest, LoopbackPrivateAndMetadataTargetsAreRefused) {
  const std::vector<std::string> hosts = {
      "127.0.0.1",       "localhost",
      "2130706433",      "0177.0.0.1",
      "0x7f.1",          "127.1",
      "[::1]",           "[::ffff:127.0.0.1]",
      "10.0.0.5",        "192.168.1.1",
      "169.254.169.254", "[fd00:ec2::254]",
      "0.0.0.0",         "metadata.google.internal.",
  };
  const int64_t before = ConnectorCount(admin_);
  for (const std::string& host : hosts) {
    SCOPED_TRACE(host);
    Reply rest =
        Post("/api/v1/connectors", admin_,
             RestSource("crm", absl::StrCat("http://", host, ":8080/u")));
    EXPECT_EQ(rest.status, 400) << rest.Describe();
    EXPECT_THAT(rest.body, Not(HasSubstr("127.0.0.1\\\"")));
    Reply scim =
        Post("/api/v1/connectors", admin_,
             {{"business_id", "scim"},
              {"type", "scim"},
              {"config",
               {{"base_url", absl::StrCat("https://", host, "/scim/v2")}}}});
    EXPECT_EQ(scim.status, 400) << scim.Describe();
    Reply ldap = Post("/api/v1/connectors", admin_,
                      {{"business_id", "ad"},
                       {"type", "ldap"},
                       {"config",
                        {{"url", absl::StrCat("ldap://", host, ":389")},
                         {"user_base", "ou=people,dc=example,dc=com"}}}});
    EXPECT_EQ(ldap.status, 400) << ldap.Describe();
    Reply remote = Post("/api/v1/connectors", admin_,
                        {{"business_id", "grpc"},
                         {"type", "remote"},
                         {"config",
                          {{"address", absl::StrCat(host, ":50051")},
                           {"insecure_allow_remote", true}}}});
    EXPECT_EQ(remote.status, 400) << remote.Describe();
    // A public source whose OAuth2 token endpoint is the host.
    Reply token =
        Post("/api/v1/connectors", admin_,
             RestSource(absl::StrCat("crm-oauth-", &host - hosts.data()),
                        "https://93.184.215.14/users",
                        {{"type", "oauth2_client_credentials"},
                         {"token_url", absl::StrCat("http://", host, "/token")},
                         {"client_id", "c"},
                         {"client_secret", "s"}}));
    EXPECT_EQ(token.status, 400) << token.Describe();
  }
  EXPECT_EQ(ConnectorCount(admin_), before);
  ExpectError(Post("/api/v1/connectors", admin_,
                   {{"business_id", "sock"},
                    {"type", "remote"},
                    {"config", {{"address", "unix:/run/idsync/agent.sock"}}}}),
              400, "invalid_argument");

  // A public address is fine (nothing connects at create).
  Reply pub = Post("/api/v1/connectors", admin_,
                   RestSource("public", "https://93.184.215.14/users"));
  EXPECT_EQ(pub.status, 201) << pub.Describe();
}

// --tenant-source-cidrs trusted=127.0.0.1/32: that tenant reaches its own
// network, no other tenant does, and an address the source sends back (an
// OIDC discovery document whose token endpoint is another loopback address)
// is refused when connecting, before the client secret is sent.
TEST_F(ConfinedSourcesTest, ATenantsOwnNetworkIsOpenToItAlone) {
  const std::string trusted = Bootstrap("trusted");
  httplib::Server elsewhere;  // 127.0.0.2: loopback, outside the CIDR.
  std::atomic<int> elsewhere_hits{0};
  elsewhere.set_pre_routing_handler([&](const auto&, auto&) {
    ++elsewhere_hits;
    return httplib::Server::HandlerResponse::Unhandled;
  });
  const int elsewhere_port = elsewhere.bind_to_any_port("127.0.0.2");
  ASSERT_GT(elsewhere_port, 0);
  std::thread serve_elsewhere([&] { elsewhere.listen_after_bind(); });
  httplib::Server source;
  source.Get("/users", [&](const auto&, auto& res) {
    res.set_content(R"([{"id": "u1"}, {"id": "u2"}])", "application/json");
  });
  const int port = source.bind_to_any_port("127.0.0.1");
  const std::string origin = absl::StrCat("http://127.0.0.1:", port);
  source.Get("/.well-known/openid-configuration", [&](const auto&, auto& res) {
    res.set_content(
        Json({{"issuer", origin},
              {"token_endpoint",
               absl::StrCat("http://127.0.0.2:", elsewhere_port, "/token")}})
            .dump(),
        "application/json");
  });
  std::thread serve([&] { source.listen_after_bind(); });
  const std::string url = origin + "/users";

  ExpectError(Post("/api/v1/connectors", admin_, RestSource("crm", url)), 400,
              "invalid_argument");
  Reply created = Post("/api/v1/connectors", trusted, RestSource("crm", url));
  ASSERT_EQ(created.status, 201) << created.Describe();
  Json run = WaitForRun(
      trusted, StartSync(trusted, created.json["id"])["id"].get<int64_t>());
  EXPECT_EQ(run["status"], "succeeded") << run;
  EXPECT_EQ(run["created"], 2);

  Reply oauth = Post("/api/v1/connectors", trusted,
                     RestSource("crm-oauth", url,
                                {{"type", "oauth2_client_credentials"},
                                 {"issuer", origin},
                                 {"client_id", "idsync"},
                                 {"client_secret", "s3cret-client"}}));
  ASSERT_EQ(oauth.status, 201) << oauth.Describe();
  Json led = WaitForRun(
      trusted, StartSync(trusted, oauth.json["id"])["id"].get<int64_t>());
  EXPECT_EQ(led["status"], "failed") << led;
  EXPECT_THAT(led["error"].get<std::string>(),
              HasSubstr("refused to connect to non-public address"));
  EXPECT_EQ(elsewhere_hits.load(), 0);
  source.stop();
  elsewhere.stop();
  serve.join();
  serve_elsewhere.join();
}

// A TCP listener that answers every connection with `banner` and hangs up:
// an open port that is not an HTTP service.
class BannerServer {
 public:
  explicit BannerServer(std::string banner) : banner_(std::move(banner)) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        listen(fd_, 16) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "cannot listen";
      return;
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        const int c = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0) return;  // shutdown().
        (void)!write(c, banner_.data(), banner_.size());
        close(c);
      }
    });
  }
  ~BannerServer() {
    shutdown(fd_, SHUT_RDWR);
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }
  int port() const { return port_; }

 private:
  std::string banner_;
  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
};

// POST /connectors/{id}/test was a port scanner: its errors told a closed
// port from an open one that speaks another protocol or answers 404. Now
// all three read the same (the detail goes to the dispatcher's log).
TEST_F(ConfinementTest, TestingAConnectionDoesNotTellPortsApart) {
  absl::StatusOr<int> closed = FreeLoopbackPort();
  ASSERT_TRUE(closed.ok()) << closed.status();
  BannerServer ssh("SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n");
  httplib::Server web;
  const int web_port = web.bind_to_any_port("127.0.0.1");
  std::thread serve([&] { web.listen_after_bind(); });

  auto message = [&](const std::string& type, const std::string& name,
                     const Json& config) {
    Reply created =
        Post("/api/v1/connectors", admin_,
             {{"business_id", name}, {"type", type}, {"config", config}});
    EXPECT_EQ(created.status, 201) << created.Describe();
    Reply test =
        Post(absl::StrCat("/api/v1/connectors/",
                          created.json.value("id", int64_t{0}), "/test"),
             admin_);
    EXPECT_EQ(test.status, 200) << test.Describe();
    EXPECT_EQ(test.json["ok"], false) << test.body;
    return test.json.value("error", std::string());
  };
  for (const std::string type : {"rest", "scim", "ldap"}) {
    SCOPED_TRACE(type);
    std::vector<std::string> messages;
    for (int port : {*closed, ssh.port(), web_port}) {
      const std::string base =
          absl::StrCat(type == "ldap" ? "ldap" : "http", "://127.0.0.1:", port);
      Json config;
      if (type == "rest") {
        config = RestSourceConfig(base + "/users");
      } else if (type == "scim") {
        config = {{"base_url", base + "/scim/v2"}, {"max_attempts", 1}};
      } else {
        config = {{"url", base},
                  {"user_base", "ou=people,dc=example,dc=com"},
                  {"timeout_seconds", 5}};
      }
      messages.push_back(message(type, absl::StrCat(type, "-", port), config));
    }
    EXPECT_FALSE(messages[0].empty());
    EXPECT_EQ(messages[0], messages[1]);
    EXPECT_EQ(messages[0], messages[2]);
    EXPECT_THAT(messages[0], Not(HasSubstr(absl::StrCat(*closed))));
  }
  web.stop();
  serve.join();
}

}  // namespace
}  // namespace idsync::testing
