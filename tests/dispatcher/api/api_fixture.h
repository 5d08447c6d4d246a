// ApiTest: the dispatcher's REST server built in-process the way
// dispatcher/main.cc builds it (SQLite store in a temp dir, sealed secrets,
// the built-in connectors, sync workers, the service, a rate limiter on a
// FakeClock the test controls, the REST server on a free loopback port), and
// helpers that talk to it over real HTTP with httplib::Client. Nothing here
// calls a handler directly.
//
// Every successful write a test sends through Send() is remembered; TearDown
// checks that each one shows up in /api/v1/audit-events with its actor,
// action, resource and the X-Request-Id the server answered with.
//
// Time: by default every request advances the fake clock by one second, so
// the rate limiter (100/s, burst 200, as in main.cc) never refuses the
// fixture's own traffic; tests of the limiter freeze the clock.
#ifndef IDSYNC_TESTS_DISPATCHER_API_API_FIXTURE_H_
#define IDSYNC_TESTS_DISPATCHER_API_API_FIXTURE_H_

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <regex>
#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "connector/rate_limiter.h"
#include "connector/registry.h"
#include "dispatcher/api/control_plane_service.h"
#include "dispatcher/api/rest_server.h"
#include "dispatcher/metrics.h"
#include "dispatcher/record_hash.h"
#include "dispatcher/run_progress.h"
#include "dispatcher/secrets.h"
#include "dispatcher/source_policy.h"
#include "dispatcher/store/sqlite_store.h"
#include "dispatcher/sync_workers.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/fake_clock.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/test_dir.h"
#include "tests/testing/wait.h"

namespace idsync::testing {

using Json = nlohmann::json;

// One HTTP exchange as the client saw it.
struct Reply {
  int status = 0;  // 0: no response; see `error`.
  std::string body;
  httplib::Headers headers;
  Json json;  // The body parsed; discarded (is_discarded()) if not JSON.
  std::string error;

  std::string Header(const std::string& name) const {
    auto it = headers.find(name);
    return it == headers.end() ? "" : it->second;
  }
  bool HasHeader(const std::string& name) const {
    return headers.find(name) != headers.end();
  }
  // For assertion messages.
  std::string Describe() const {
    return absl::StrCat("HTTP ", status, error.empty() ? "" : " ", error, ": ",
                        body.substr(0, 600));
  }
};

// What one tenant holds after SeedTenant.
struct TenantData {
  std::string name;
  int64_t tenant_id = 0;
  std::string admin;  // Bootstrap admin token.
  std::string auditor;
  int64_t auditor_token_id = 0;
  int64_t identity_id = 0;  // Created through the API.
  int64_t connector_id = 0;
  int64_t run_id = 0;  // A finished sync of the connector.
  int64_t synced_identity_id = 0;
  int64_t account_id = 0;
  int64_t entitlement_id = 0;
  int64_t grant_id = 0;
  int64_t webhook_id = 0;   // Wants identity.*; on loopback.
  int64_t delivery_id = 0;  // Its delivery of the API identity's creation.
  int64_t agent_id = 0;     // A registered agent, "<marker>-agent".
  std::string agent_token;  // Its agent token (idsync_agt_...).
  std::string marker;       // Appears in this tenant's data and nowhere else.
};

// A parsed Server-Sent Event.
struct SseEvent {
  std::string event;
  std::string id;
  Json data;
};

class ApiTest : public ::testing::Test {
 protected:
  static constexpr char kKey[] = "0123456789abcdef0123456789abcdef";
  static constexpr char kCsvHeader[] =
      "employee_id,email,first_name,last_name,department\n";

  void SetUp() override {
    dir_ = std::make_unique<ScopedTestDir>("rest");
    db_path_ = dir_->File("store.db");
    auto store = SqliteStore::Open({db_path_});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto secrets = SecretBox::FromKey(kKey);
    ASSERT_TRUE(secrets.ok()) << secrets.status();
    secrets_.emplace(*std::move(secrets));
    RegisterBuiltinConnectors(registry_);
    // Tenants' files live in IMPORT/<tenant>/, as with --import-dir.
    import_dir_ = dir_->File("imports");
    std::filesystem::create_directories(import_dir_);
    SourcePolicyOptions source_options;
    source_options.import_dir = import_dir_;
    source_options.allow_private_sources = allow_private_sources_;
    source_options.tenant_networks = tenant_networks_;
    auto sources = SourcePolicy::Create(*store_, source_options);
    ASSERT_TRUE(sources.ok()) << sources.status();
    sources_ = *std::move(sources);
    SyncWorkers::Options worker_options;
    worker_options.max_concurrent = 2;
    worker_options.sources = sources_.get();
    workers_ = std::make_unique<SyncWorkers>(*store_, registry_, *secrets_,
                                             Clock::Real(), progress_, metrics_,
                                             worker_options);
    ControlPlaneServiceOptions service_options;
    service_options.allow_private_callbacks = allow_private_callbacks_;
    service_options.sources = sources_.get();
    service_options.metrics = &metrics_;
    service_ = std::make_unique<ControlPlaneService>(
        *store_, registry_, *secrets_, *workers_, service_options);
    limiter_ = std::make_unique<RateLimiter>(clock_, 100, 200);
    RestServerOptions options;
    options.http.host = "127.0.0.1";
    options.http.port = 0;
    options.metrics_token = kMetricsToken;
    rest_options_(options);
    rest_ = std::make_unique<RestServer>(*service_, *store_, progress_,
                                         metrics_, *limiter_, options);
    ASSERT_TRUE(rest_->Start().ok());
    port_ = rest_->port();
    ASSERT_GT(port_, 0);
    admin_ = Bootstrap("acme");
    tenant_id_ = TenantId("acme");
  }

  void TearDown() override {
    if (rest_ != nullptr && !HasFatalFailure()) {
      advance_clock_ = true;
      ExpectWritesAudited();
    }
    if (rest_ != nullptr) rest_->Stop();
    if (workers_ != nullptr) workers_->WaitIdle();
  }

  // --- Tenants and tokens

  // A new tenant's first admin token.
  std::string Bootstrap(const std::string& tenant) {
    auto token = ControlPlaneService::Bootstrap(*store_, tenant);
    EXPECT_TRUE(token.ok()) << token.status();
    if (token.ok()) admins_[TenantId(tenant)] = *token;
    return token.value_or("");
  }
  int64_t TenantId(const std::string& tenant) {
    auto id = store_->EnsureTenant(tenant);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.value_or(0);
  }
  // A service token created through the API; its id in *id.
  std::string CreateToken(const std::string& admin, const std::string& name,
                          const std::string& role, int64_t* id = nullptr) {
    Reply r = Post("/api/v1/tokens", admin, {{"name", name}, {"role", role}});
    EXPECT_EQ(r.status, 201) << r.Describe();
    if (r.status != 201) return "";
    if (id != nullptr) *id = r.json["token"]["id"].get<int64_t>();
    return r.json["secret"].get<std::string>();
  }
  // An agent token, written straight into the store (the API makes none).
  std::string InsertAgentToken(int64_t tenant_id) {
    const std::string secret = NewToken(kAgentTokenPrefix);
    absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
      TokenRow row;
      row.tenant_id = tenant_id;
      row.name = "onprem-agent";
      row.kind = "agent";
      row.role = "agent";
      row.prefix = secret.substr(0, kAgentTokenPrefix.size() + 4);
      return txn.InsertToken(row, TokenHash(secret)).status();
    });
    EXPECT_TRUE(s.ok()) << s;
    return secret;
  }

  // A registration token created through the API (201); its id in *id.
  std::string CreateRegistrationToken(const std::string& admin,
                                      const std::string& name,
                                      const std::string& group = "",
                                      int64_t* id = nullptr) {
    Json body = {{"name", name}};
    if (!group.empty()) body["group"] = group;
    Reply r = Post("/api/v1/agents/registration-tokens", admin, body);
    EXPECT_EQ(r.status, 201) << r.Describe();
    if (r.status != 201) return "";
    if (id != nullptr) *id = r.json["id"].get<int64_t>();
    return r.json["token"].get<std::string>();
  }
  // Registers an agent with a registration token the way the agent spine
  // does (Store::RegisterAgent); its new agent token in *agent_token.
  absl::StatusOr<AgentRow> RegisterWith(const std::string& registration,
                                        const std::string& name = "",
                                        std::string* agent_token = nullptr) {
    const std::string secret = NewToken(kAgentTokenPrefix);
    auto agent =
        store_->RegisterAgent(TokenHash(registration), name, TokenHash(secret),
                              secret.substr(0, kAgentTokenPrefix.size() + 4));
    if (agent.ok() && agent_token != nullptr) *agent_token = secret;
    return agent;
  }
  // A registration token through the API, then an agent registered with it;
  // the agent's id.
  int64_t RegisterAgent(const std::string& admin, const std::string& name,
                        const std::string& group = "",
                        std::string* agent_token = nullptr) {
    const std::string registration =
        CreateRegistrationToken(admin, name, group);
    if (registration.empty()) return 0;
    auto agent = RegisterWith(registration, "", agent_token);
    EXPECT_TRUE(agent.ok()) << agent.status();
    return agent.ok() ? agent->id : 0;
  }

  // --- HTTP

  std::unique_ptr<httplib::Client> Client() const {
    auto client = std::make_unique<httplib::Client>("127.0.0.1", port_);
    client->set_connection_timeout(10, 0);
    client->set_read_timeout(60, 0);
    client->set_write_timeout(60, 0);
    return client;
  }

  // Sends one request on a fresh connection. `token` empty: no
  // Authorization header.
  Reply Send(const std::string& method, const std::string& path,
             const std::string& token, const std::string& body = "",
             httplib::Headers headers = {}) {
    if (advance_clock_) clock_.Advance(absl::Seconds(1));
    httplib::Request req;
    req.method = method;
    req.path = path;
    req.headers = std::move(headers);
    if (!token.empty()) {
      req.headers.emplace("Authorization", absl::StrCat("Bearer ", token));
    }
    if (!body.empty()) {
      req.body = body;
      if (!req.has_header("Content-Type")) {
        req.headers.emplace("Content-Type", "application/json");
      }
    }
    Reply reply;
    httplib::Result result = Client()->send(req);
    if (!result) {
      reply.error = httplib::to_string(result.error());
      return reply;
    }
    reply.status = result->status;
    reply.body = result->body;
    reply.headers = result->headers;
    reply.json = Json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
    Remember(method, path, token, reply);
    return reply;
  }
  Reply Get(const std::string& path, const std::string& token) {
    return Send("GET", path, token);
  }
  Reply Post(const std::string& path, const std::string& token,
             const Json& body = nullptr, httplib::Headers headers = {}) {
    return Send("POST", path, token, body.is_null() ? "" : body.dump(),
                std::move(headers));
  }
  Reply Patch(const std::string& path, const std::string& token,
              const Json& body, httplib::Headers headers = {}) {
    return Send("PATCH", path, token, body.dump(), std::move(headers));
  }
  Reply Delete(const std::string& path, const std::string& token) {
    return Send("DELETE", path, token);
  }

  // Sends a request the way curl does when the server may refuse its body
  // before it is all sent: stops writing as soon as an answer arrives, then
  // reads it. (httplib::Client writes the whole body first and reports a
  // write error instead.) The body goes with a Content-Length, or `chunked`.
  Reply SendStreaming(const std::string& method, const std::string& path,
                      const std::string& token, const std::string& body,
                      bool chunked) {
    if (advance_clock_) clock_.Advance(absl::Seconds(1));
    Reply reply;
    std::string wire = absl::StrCat(
        method, " ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n",
        "Authorization: Bearer ", token, "\r\n",
        "Content-Type: application/json\r\nConnection: close\r\n",
        chunked ? "Transfer-Encoding: chunked\r\n"
                : absl::StrCat("Content-Length: ", body.size(), "\r\n"),
        "\r\n");
    if (chunked) {
      for (size_t at = 0; at < body.size(); at += 65536) {
        const std::string piece = body.substr(at, 65536);
        absl::StrAppend(&wire, absl::Hex(piece.size()), "\r\n", piece, "\r\n");
      }
      absl::StrAppend(&wire, "0\r\n\r\n");
    } else {
      wire += body;
    }
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port_));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    if (fd < 0 ||
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      reply.error = "cannot connect";
      if (fd >= 0) close(fd);
      return reply;
    }
    size_t sent = 0;
    while (sent < wire.size()) {
      pollfd p{fd, POLLIN | POLLOUT, 0};
      if (poll(&p, 1, 30000) <= 0) break;
      if (p.revents & (POLLIN | POLLHUP | POLLERR)) break;  // Answered.
      const ssize_t n =
          send(fd, wire.data() + sent,
               std::min<size_t>(65536, wire.size() - sent), MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    std::string response;
    char buffer[65536];
    while (true) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 30000) <= 0) break;
      const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
      if (n <= 0) break;
      response.append(buffer, static_cast<size_t>(n));
    }
    close(fd);
    const size_t head_end = response.find("\r\n\r\n");
    if (head_end == std::string::npos) {
      reply.error = absl::StrCat("no HTTP answer (sent ", sent, " of ",
                                 wire.size(), " bytes): ", response);
      return reply;
    }
    std::vector<std::string> lines =
        absl::StrSplit(response.substr(0, head_end), "\r\n");
    std::vector<std::string> status_line = absl::StrSplit(lines[0], ' ');
    if (status_line.size() < 2 ||
        !absl::SimpleAtoi(status_line[1], &reply.status)) {
      reply.error = absl::StrCat("bad status line: ", lines[0]);
      return reply;
    }
    for (size_t i = 1; i < lines.size(); ++i) {
      const size_t colon = lines[i].find(':');
      if (colon == std::string::npos) continue;
      reply.headers.emplace(
          lines[i].substr(0, colon),
          std::string(absl::StripAsciiWhitespace(lines[i].substr(colon + 1))));
    }
    reply.body = response.substr(head_end + 4);
    reply.json = Json::parse(reply.body, nullptr, /*allow_exceptions=*/false);
    Remember(method, path, token, reply);
    return reply;
  }

  // Every item of a list, following next_cursor.
  std::vector<Json> ListAll(const std::string& path, const std::string& token) {
    std::vector<Json> items;
    std::string cursor;
    const std::string sep = absl::StrContains(path, "?") ? "&" : "?";
    for (int page = 0; page < 10000; ++page) {
      Reply r = Get(absl::StrCat(path, sep, "limit=500",
                                 cursor.empty() ? "" : "&cursor=", cursor),
                    token);
      EXPECT_EQ(r.status, 200) << path << " " << r.Describe();
      if (r.status != 200) break;
      for (const Json& item : r.json["items"]) items.push_back(item);
      cursor = r.json["next_cursor"].get<std::string>();
      if (cursor.empty()) break;
    }
    return items;
  }

  // Reads a Server-Sent Events stream to its end.
  std::vector<SseEvent> ReadEvents(const std::string& path,
                                   const std::string& token, int* status) {
    std::vector<SseEvent> events;
    std::string buffer;
    auto parse = [&]() {
      size_t end;
      while ((end = buffer.find("\n\n")) != std::string::npos) {
        SseEvent e;
        bool any = false;
        for (absl::string_view line :
             absl::StrSplit(absl::string_view(buffer).substr(0, end), '\n')) {
          if (line.empty() || line[0] == ':') continue;  // Comment.
          any = true;
          if (absl::ConsumePrefix(&line, "event: ")) {
            e.event = std::string(line);
          } else if (absl::ConsumePrefix(&line, "id: ")) {
            e.id = std::string(line);
          } else if (absl::ConsumePrefix(&line, "data: ")) {
            e.data = Json::parse(line, nullptr, false);
          } else {
            ADD_FAILURE() << "unexpected SSE line: " << line;
          }
        }
        if (any) events.push_back(std::move(e));
        buffer.erase(0, end + 2);
      }
    };
    httplib::Headers headers = {{"Authorization", "Bearer " + token},
                                {"Accept", "text/event-stream"}};
    if (advance_clock_) clock_.Advance(absl::Seconds(1));
    auto client = Client();
    httplib::Result result = client->Get(
        path, headers,
        [&](const httplib::Response& response) {
          *status = response.status;
          return true;
        },
        [&](const char* data, size_t length) {
          buffer.append(data, length);
          parse();
          return true;
        });
    EXPECT_TRUE(result) << "transport error " << result.error();
    if (result) *status = result->status;
    if (result && result->status != 200) {
      buffer = result->body;  // An error body, not a stream.
      return events;
    }
    EXPECT_TRUE(buffer.empty()) << "stream ended mid-event: " << buffer;
    return events;
  }

  // --- Data

  Reply CreateIdentity(const std::string& token, const std::string& external_id,
                       Json fields = Json::object()) {
    fields["external_id"] = external_id;
    return Post("/api/v1/identities", token, fields);
  }

  // Inserts `n` identities "<prefix><i>" owned by the tenant's "api"
  // connector straight into the store, in one transaction; returns their ids.
  std::vector<int64_t> InsertIdentities(int64_t tenant_id,
                                        const std::string& prefix, int first,
                                        int n) {
    std::vector<int64_t> ids;
    absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
      auto api = txn.ApiConnector(tenant_id);
      if (!api.ok()) return api.status();
      std::string scratch;
      for (int i = first; i < first + n; ++i) {
        v1::RemoteIdentity r;
        r.set_external_id(absl::StrCat(prefix, i));
        r.set_email(absl::StrCat(prefix, i, "@example.com"));
        r.set_status("active");
        auto id = txn.InsertRecord(tenant_id, *api, v1::RECORD_KIND_IDENTITY, r,
                                   ContentHash(r, &scratch));
        if (!id.ok()) return id.status();
        ids.push_back(*id);
      }
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
    return ids;
  }

  // A webhook (201); its id, its secret in *secret.
  int64_t CreateWebhook(const std::string& token, const std::string& url,
                        const std::vector<std::string>& event_types,
                        std::string* secret = nullptr) {
    Reply r = Post("/api/v1/webhooks", token,
                   {{"url", url}, {"event_types", event_types}});
    EXPECT_EQ(r.status, 201) << r.Describe();
    if (r.status != 201) return 0;
    if (secret != nullptr) *secret = r.json["secret"].get<std::string>();
    return r.json["webhook"]["id"].get<int64_t>();
  }

  // The import directory of `tenant` (created).
  std::string TenantDir(const std::string& tenant = "acme") {
    const std::string dir = absl::StrCat(import_dir_, "/", tenant);
    std::filesystem::create_directories(dir);
    return dir;
  }
  // The text of a CSV file of identities E<first>..E<first+rows-1>.
  static std::string CsvText(int rows, int first = 0,
                             const std::string& department = "Engineering") {
    std::string text = kCsvHeader;
    for (int i = first; i < first + rows; ++i) {
      absl::StrAppend(&text, "E", i, ",e", i, "@example.com,First", i, ",Last",
                      i, ",", department, "\n");
    }
    return text;
  }
  // A CSV file of identities E<first>..E<first+rows-1>, in `tenant`'s
  // import directory (its absolute path).
  std::string WriteCsv(const std::string& name, int rows, int first = 0,
                       const std::string& department = "Engineering",
                       const std::string& tenant = "acme") {
    const std::string path = absl::StrCat(TenantDir(tenant), "/", name);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << CsvText(rows, first, department);
    out.close();
    EXPECT_TRUE(out.good()) << path;
    return path;
  }

  Json CsvConnectorBody(const std::string& business_id,
                        const std::string& path) {
    return {{"business_id", business_id},
            {"type", "csv"},
            {"config", {{"path", path}}}};
  }
  int64_t CreateCsvConnector(const std::string& token,
                             const std::string& business_id,
                             const std::string& path) {
    Reply r =
        Post("/api/v1/connectors", token, CsvConnectorBody(business_id, path));
    EXPECT_EQ(r.status, 201) << r.Describe();
    return r.status == 201 ? r.json["id"].get<int64_t>() : 0;
  }
  // Starts a sync (202) and returns the run.
  Json StartSync(const std::string& token, int64_t connector_id,
                 Json body = Json::object()) {
    Reply r = Post(absl::StrCat("/api/v1/connectors/", connector_id, "/sync"),
                   token, body);
    EXPECT_EQ(r.status, 202) << r.Describe();
    return r.json;
  }
  // Polls GET /api/v1/sync-runs/{id} until the run has ended.
  Json WaitForRun(const std::string& token, int64_t run_id,
                  absl::Duration timeout = absl::Seconds(60)) {
    Reply r;
    const bool ended = WaitUntil(
        [&] {
          r = Get(absl::StrCat("/api/v1/sync-runs/", run_id), token);
          EXPECT_EQ(r.status, 200) << r.Describe();
          return r.status != 200 || r.json["status"] != "running";
        },
        timeout, absl::Milliseconds(5));
    if (!ended)
      ADD_FAILURE() << "run " << run_id << " still running: " << r.body;
    return r.json;
  }

  // Inserts one account, entitlement and grant of `connector_id` straight
  // into the store (no built-in connector syncs them yet).
  void InsertRecords(TenantData& t, const std::string& marker) {
    auto insert = [&](WriteTxn& txn, v1::RecordKind kind,
                      const google::protobuf::Message& m) -> int64_t {
      std::string scratch;
      auto id = txn.InsertRecord(t.tenant_id, t.connector_id, kind, m,
                                 ContentHash(m, &scratch));
      EXPECT_TRUE(id.ok()) << id.status();
      return id.value_or(0);
    };
    absl::Status s = store_->Write([&](WriteTxn& txn) -> absl::Status {
      v1::RemoteAccount account;
      account.set_external_id(absl::StrCat(marker, "-account"));
      account.set_identity_external_id("E0");
      account.set_username(absl::StrCat(marker, "-user"));
      t.account_id = insert(txn, v1::RECORD_KIND_ACCOUNT, account);
      v1::RemoteEntitlement entitlement;
      entitlement.set_external_id(absl::StrCat(marker, "-group"));
      entitlement.set_name(absl::StrCat(marker, " group"));
      entitlement.set_type("group");
      t.entitlement_id = insert(txn, v1::RECORD_KIND_ENTITLEMENT, entitlement);
      v1::RemoteGrant grant;
      grant.set_account_external_id(account.external_id());
      grant.set_entitlement_external_id(entitlement.external_id());
      t.grant_id = insert(txn, v1::RECORD_KIND_GRANT, grant);
      return absl::OkStatus();
    });
    EXPECT_TRUE(s.ok()) << s;
  }

  // A tenant with one of everything: an API identity, a CSV connector with a
  // finished sync, an account, entitlement and grant, an auditor token.
  // `marker` is in its identity, connector and records.
  TenantData SeedTenant(const std::string& name, const std::string& marker,
                        std::string admin = "") {
    TenantData t;
    t.name = name;
    t.marker = marker;
    t.admin = admin.empty() ? Bootstrap(name) : admin;
    t.tenant_id = TenantId(name);
    t.webhook_id = CreateWebhook(
        t.admin, absl::StrCat("http://127.0.0.1:9/hooks/", marker),
        {"identity.*"});
    Reply identity = CreateIdentity(t.admin, absl::StrCat(marker, "-joiner"),
                                    {{"department", marker}});
    EXPECT_EQ(identity.status, 201) << identity.Describe();
    t.identity_id = identity.json.value("id", int64_t{0});
    Reply deliveries = Get(
        absl::StrCat("/api/v1/webhooks/", t.webhook_id, "/deliveries?limit=1"),
        t.admin);
    EXPECT_EQ(deliveries.status, 200) << deliveries.Describe();
    if (deliveries.status == 200 && !deliveries.json["items"].empty()) {
      t.delivery_id = deliveries.json["items"][0]["id"].get<int64_t>();
    }
    EXPECT_GT(t.delivery_id, 0) << "no delivery of the joiner's creation";
    t.connector_id = CreateCsvConnector(
        t.admin, absl::StrCat(marker, "-hr"),
        WriteCsv(absl::StrCat(marker, ".csv"), 2, 0, marker, name));
    Json run = StartSync(t.admin, t.connector_id);
    t.run_id = run.value("id", int64_t{0});
    EXPECT_EQ(WaitForRun(t.admin, t.run_id)["status"], "succeeded");
    Reply synced =
        Get(absl::StrCat("/api/v1/identities?source=", marker, "-hr&limit=1"),
            t.admin);
    EXPECT_EQ(synced.status, 200) << synced.Describe();
    if (synced.status == 200 && !synced.json["items"].empty()) {
      t.synced_identity_id = synced.json["items"][0]["id"].get<int64_t>();
    }
    InsertRecords(t, marker);
    t.auditor = CreateToken(t.admin, absl::StrCat(marker, "-auditor"),
                            "auditor", &t.auditor_token_id);
    t.agent_id = RegisterAgent(t.admin, absl::StrCat(marker, "-agent"),
                               absl::StrCat(marker, "-sites"), &t.agent_token);
    EXPECT_GT(t.agent_id, 0);
    return t;
  }

  // --- The store, read directly

  int64_t Count(const std::string& sql) {
    auto n = QueryInt(db_path_, sql);
    EXPECT_TRUE(n.ok()) << sql << ": " << n.status();
    return n.value_or(-1);
  }
  // Rows of the tables a write can touch, for "nothing was written".
  std::map<std::string, int64_t> RowCounts() {
    std::map<std::string, int64_t> counts;
    for (const char* table :
         {"identities", "accounts", "entitlements", "grants", "connectors",
          "sync_runs", "tokens", "audit_events", "idempotency_keys", "webhooks",
          "deliveries", "outbox", "agents"}) {
      counts[table] = Count(absl::StrCat("SELECT count(*) FROM ", table));
    }
    counts["webhook_changes"] =
        Count("SELECT coalesce(max(updated_at), 0) FROM webhooks");
    counts["pending_deliveries"] =
        Count("SELECT count(*) FROM deliveries WHERE state='pending'");
    counts["callback_secrets"] =
        Count("SELECT count(*) FROM tenants WHERE callback_secret IS NOT NULL");
    counts["revoked_tokens"] =
        Count("SELECT count(*) FROM tokens WHERE revoked_at IS NOT NULL");
    counts["inactive_identities"] =
        Count("SELECT count(*) FROM identities WHERE deleted_at IS NOT NULL");
    // An update stamps updated_at with the time of the write.
    counts["identity_changes"] =
        Count("SELECT coalesce(max(updated_at), 0) FROM identities");
    counts["connector_changes"] =
        Count("SELECT coalesce(max(updated_at), 0) FROM connectors");
    return counts;
  }

  // Checks the error shape {code, message, details, request_id}, the status,
  // and that request_id matches the X-Request-Id header.
  static void ExpectError(const Reply& r, int status, const std::string& code,
                          const std::string& message_part = "") {
    EXPECT_EQ(r.status, status) << r.Describe();
    ASSERT_TRUE(r.json.is_object()) << r.Describe();
    EXPECT_EQ(r.json.size(), 4u) << r.body;
    EXPECT_EQ(r.json.value("code", ""), code) << r.body;
    ASSERT_TRUE(r.json.contains("message") && r.json["message"].is_string())
        << r.body;
    EXPECT_FALSE(r.json["message"].get<std::string>().empty());
    if (!message_part.empty()) {
      EXPECT_TRUE(
          absl::StrContains(r.json["message"].get<std::string>(), message_part))
          << "message lacks '" << message_part << "': " << r.body;
    }
    EXPECT_TRUE(r.json.contains("details") && r.json["details"].is_object())
        << r.body;
    EXPECT_TRUE(absl::StartsWith(r.Header("Content-Type"), "application/json"))
        << r.Header("Content-Type");
    ASSERT_TRUE(r.json.contains("request_id")) << r.body;
    EXPECT_FALSE(r.json["request_id"].get<std::string>().empty());
    EXPECT_EQ(r.json["request_id"], r.Header("X-Request-Id"));
  }

  // --- Audit
  // ------------------------------------------------------------------

  struct WriteRecord {
    std::string method;
    std::string path;
    std::string token;
    int status = 0;
    std::string request_id;
    Json response;
  };

  void Remember(const std::string& method, const std::string& path,
                const std::string& token, const Reply& reply) {
    if (method == "GET" || reply.status < 200 || reply.status >= 300) return;
    if (reply.Header("Idempotent-Replayed") == "true") return;
    if (absl::EndsWith(path, "/test")) return;  // Not a write.
    absl::MutexLock lock(&writes_mu_);
    writes_.push_back({method, path, token, reply.status,
                       reply.Header("X-Request-Id"), reply.json});
  }

  // The audit event a successful write must have left: action, resource.
  static bool ExpectedAudit(const WriteRecord& w, std::string* action,
                            std::string* type, std::string* id) {
    struct Rule {
      const char* method;
      const char* pattern;
      const char* action;
      const char* type;
      int id_group;  // The id is this group of the path; 0: the response's.
    };
    static const Rule kRules[] = {
        {"POST", R"(/api/v1/identities)", "identity.create", "identity", 0},
        {"PATCH", R"(/api/v1/identities/(\d+))", "identity.update", "identity",
         1},
        {"POST", R"(/api/v1/identities/(\d+)/deactivate)",
         "identity.deactivate", "identity", 1},
        {"POST", R"(/api/v1/connectors)", "connector.create", "connector", 0},
        {"PATCH", R"(/api/v1/connectors/(\d+))", "connector.update",
         "connector", 1},
        {"DELETE", R"(/api/v1/connectors/(\d+))", "connector.delete",
         "connector", 1},
        {"PUT", R"(/api/v1/connectors/(\d+)/file)", "connector.file.upload",
         "connector", 1},
        {"POST", R"(/api/v1/connectors/(\d+)/sync)", "sync.start", "sync_run",
         0},
        {"POST", R"(/api/v1/sync-runs/(\d+)/cancel)", "sync.cancel", "sync_run",
         1},
        {"POST", R"(/api/v1/tokens)", "token.create", "token", 0},
        {"POST", R"(/api/v1/tokens/(\d+)/revoke)", "token.revoke", "token", 1},
        {"POST", R"(/api/v1/agents/registration-tokens)",
         "registration_token.create", "token", 0},
        {"DELETE", R"(/api/v1/agents/(\d+))", "agent.revoke", "agent", 1},
        {"POST", R"(/api/v1/webhooks)", "webhook.create", "webhook", 0},
        {"PATCH", R"(/api/v1/webhooks/(\d+))", "webhook.update", "webhook", 1},
        {"DELETE", R"(/api/v1/webhooks/(\d+))", "webhook.delete", "webhook", 1},
        {"POST", R"(/api/v1/webhooks/(\d+)/deliveries/(\d+)/replay)",
         "delivery.replay", "delivery", 2},
    };
    const std::string path = w.path.substr(0, w.path.find('?'));
    for (const Rule& rule : kRules) {
      std::smatch m;
      if (w.method != rule.method ||
          !std::regex_match(path, m, std::regex(rule.pattern))) {
        continue;
      }
      *action = rule.action;
      *type = rule.type;
      if (rule.id_group > 0) {
        *id = m[rule.id_group].str();
      } else if (w.response.contains(rule.type) &&
                 w.response[rule.type].is_object()) {  // {token, secret}, ...
        *id = absl::StrCat(w.response[rule.type].value("id", int64_t{0}));
      } else {
        *id = absl::StrCat(w.response.value("id", int64_t{0}));
      }
      return true;
    }
    return false;
  }

  // Every remembered write is in its tenant's /api/v1/audit-events.
  void ExpectWritesAudited() {
    std::vector<WriteRecord> writes;
    {
      absl::MutexLock lock(&writes_mu_);
      writes = writes_;
    }
    std::map<int64_t, std::map<std::string, Json>> by_tenant;  // request id.
    for (const WriteRecord& w : writes) {
      std::string action, type, id;
      ASSERT_TRUE(ExpectedAudit(w, &action, &type, &id))
          << "no audit rule for " << w.method << " " << w.path;
      auto token = store_->FindToken(TokenHash(w.token));
      ASSERT_TRUE(token.ok()) << token.status();
      auto& events = by_tenant[token->tenant_id];
      if (events.empty()) {
        auto admin = admins_.find(token->tenant_id);
        ASSERT_NE(admin, admins_.end()) << "tenant " << token->tenant_id;
        for (Json& e : ListAll("/api/v1/audit-events", admin->second)) {
          const std::string request_id = e["request_id"].get<std::string>();
          if (request_id.empty()) continue;  // Bootstrap.
          // One request may do two things (an upload that starts a sync),
          // but each once.
          const std::string key =
              absl::StrCat(request_id, " ", e["action"].get<std::string>());
          EXPECT_EQ(events.count(key), 0u) << "two audit events " << key;
          events[key] = std::move(e);
        }
      }
      SCOPED_TRACE(absl::StrCat(w.method, " ", w.path, " -> ", w.status,
                                " request_id ", w.request_id));
      auto it = events.find(absl::StrCat(w.request_id, " ", action));
      ASSERT_NE(it, events.end()) << "no audit event for this write";
      const Json& e = it->second;
      EXPECT_EQ(e["action"], action);
      EXPECT_EQ(e["resource_type"], type);
      EXPECT_EQ(e["resource_id"], id);
      EXPECT_EQ(e["actor"],
                absl::StrCat(token->name, " (token ", token->id, ")"));
      EXPECT_TRUE(e["at"].is_string());
    }
  }

  std::unique_ptr<ScopedTestDir> dir_;
  std::string db_path_;
  std::unique_ptr<SqliteStore> store_;
  std::string import_dir_;
  std::unique_ptr<SourcePolicy> sources_;  // Before what uses it.
  std::optional<SecretBox> secrets_;
  ConnectorRegistry registry_;
  RunProgress progress_;
  Metrics metrics_;
  FakeClock clock_;
  std::unique_ptr<SyncWorkers> workers_;
  std::unique_ptr<ControlPlaneService> service_;
  std::unique_ptr<RateLimiter> limiter_;
  std::unique_ptr<RestServer> rest_;
  int port_ = 0;
  std::atomic<bool> advance_clock_{true};
  // Set before SetUp (in a fixture's constructor) to refuse private webhook
  // and callback targets as production does by default.
  bool allow_private_callbacks_ = true;
  // Likewise for hosted sources (REST, SCIM, LDAP, remote).
  bool allow_private_sources_ = true;
  // Networks a tenant's sources may reach besides public addresses, by
  // tenant name (--tenant-source-cidrs).
  std::map<std::string, std::vector<IpNetwork>> tenant_networks_;
  // Changes the REST server's options before it starts.
  std::function<void(RestServerOptions&)> rest_options_ =
      [](RestServerOptions&) {};
  static constexpr char kMetricsToken[] = "operator-metrics-token-0123456789";

  std::string admin_;  // Tenant "acme".
  int64_t tenant_id_ = 0;
  // Admin tokens of the tenants bootstrapped here, by tenant id (TearDown
  // reads audit events with them).
  std::map<int64_t, std::string> admins_;

  absl::Mutex writes_mu_;
  std::vector<WriteRecord> writes_ ABSL_GUARDED_BY(writes_mu_);
};

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_DISPATCHER_API_API_FIXTURE_H_
