// Secret hygiene end to end: the real idsync-dispatcher binary driven
// through REST and gRPC with recognisable secrets (a directory bind
// password, OAuth2 client secrets, API keys, an HMAC key, the admin token, a
// service token, a registration token, an agent token, webhook and callback
// signing secrets), against real peers (slapd, an oidc-provider, an API-key
// server, a webhook receiver), with syncs and connection tests that succeed
// and ones that fail. Then every byte the dispatcher left behind (the store,
// its WAL and shared-memory files, its stdout and stderr) and every answer it
// gave (bodies, headers, gRPC messages and errors) is searched for each
// secret: none may appear, except in the one answer that hands a new secret
// out. Tokens must be stored as their SHA-256 and secrets sealed, which is
// checked on the store, not assumed.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/json_util.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "idsync/v1/agent.grpc.pb.h"
#include "idsync/v1/control_plane.grpc.pb.h"
#include "nlohmann/json.hpp"
#include "tests/integration/dispatcher_fixture.h"
#include "tests/integration/ldap_directory.h"
#include "tests/testing/node_server.h"
#include "tests/testing/slapd_server.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/subprocess.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::idsync::testing::NodeServer;
using ::idsync::testing::SlapdServer;
using Json = nlohmann::json;

// Secrets this test chooses. The peers fix a few of their own: the
// oidc-provider's client secret and the API-key server's key
// (tests/integration/rest/shapes.mjs).
constexpr char kLdapPassword[] = "SECRET-ldap-pw-7f3a";       // The right one.
constexpr char kLdapWrong[] = "SECRET-ldap-wrong-2b8e";       // Bind fails.
constexpr char kLdapRotated[] = "SECRET-ldap-rotated-5c1f";   // PATCHed in.
constexpr char kLdapUnreachable[] = "SECRET-ldap-down-8d2a";  // No server.
constexpr char kOAuthSecret[] = "idsync-test-secret";         // The server's.
constexpr char kOAuthWrong[] = "SECRET-oauth-client-9c1d";
constexpr char kApiKey[] = "ak_raw_key_123";  // The server's.
constexpr char kApiKeyWrong[] = "SECRET-apikey-wrong-6d0f";
constexpr char kHmacSecret[] = "SECRET-hmac-4e7a";
constexpr char kTypoToken[] = "SECRET-typo-31aa";  // Under a misspelt key.
constexpr char kAgentConnector[] = "SECRET-agent-conn-0b9e";  // Refused.
constexpr char kBadConfig[] = "SECRET-badcfg-77e1";           // Refused.
constexpr char kGrpcPassword[] = "SECRET-grpc-conn-93d0";
constexpr char kWrongRegistration[] = "idsync_reg_SECRET-wrong-reg-4a4a";
constexpr char kHookUrlToken[] = "SECRET-hookurl-5e2b";  // In a webhook URL.

constexpr char kShapes[] = "tests/integration/rest/api_shapes.mjs";
constexpr char kReceiver[] = "tests/integration/webhooks/receiver.mjs";

// Occurrences of `part` in `text`.
int Count(absl::string_view text, absl::string_view part) {
  if (part.empty()) return 0;
  int n = 0;
  for (size_t at = text.find(part); at != absl::string_view::npos;
       at = text.find(part, at + 1)) {
    ++n;
  }
  return n;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// SHA-256 of `data` in hex, by coreutils' sha256sum: independent of the
// dispatcher's own hashing.
std::string Sha256Hex(const std::string& data) {
  static int n = 0;
  const std::string path =
      absl::StrCat(::testing::TempDir(), "/sha_input_", getpid(), "_", ++n);
  std::ofstream(path, std::ios::binary) << data;
  auto r = testing::RunProcess({"/usr/bin/sha256sum", path});
  std::filesystem::remove(path);
  EXPECT_TRUE(r.ok() && r->exit_code == 0)
      << (r.ok() ? r->err : r.status().ToString());
  return r.ok() ? r->out.substr(0, 64) : "";
}

std::string Deterministic(const google::protobuf::Message& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

google::protobuf::Struct ToStruct(const Json& j) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(j.dump(), &s).ok());
  return s;
}

Json ReadJson(const std::string& path) {
  return Json::parse(ReadAll(path), nullptr, false);
}

class SecretHygieneTest : public testing::DispatcherTest {
 protected:
  // A secret, and the answers that may show it (each exactly once).
  struct Secret {
    std::string name;
    std::string value;
    std::set<size_t> shown_in;
    bool in_store = false;  // Kept in the store by design (not a secret
                            // there): only answers and logs are checked.
  };
  // An answer: what was asked, and everything that came back.
  struct Answer {
    std::string request;
    std::string text;
  };

  void SetUp() override {
    dispatcher_args_ = {"--allow-private-callbacks", "--allow-private-sources"};
    DispatcherTest::SetUp();
    Add("admin token (bootstrap)", token_);
  }

  Secret& Add(const std::string& name, const std::string& value) {
    secrets_.push_back({name, value, {}, false});
    return secrets_.back();
  }
  Secret& Find(const std::string& name) {
    for (Secret& s : secrets_) {
      if (s.name == name) return s;
    }
    ADD_FAILURE() << "no secret " << name;
    return secrets_.front();
  }
  // The last answer is allowed to show `name`, once.
  void ShownInLast(const std::string& name) {
    Find(name).shown_in.insert(answers_.size() - 1);
  }

  // A REST call whose whole answer is kept for the search.
  Json Api(const std::string& method, const std::string& path,
           const Json& body = nullptr, HttpHeaders extra = {},
           const std::string& token = "") {
    auto r = Call(method, path, body, std::move(extra), token);
    EXPECT_TRUE(r.ok()) << method << " " << path << ": " << r.status();
    Answer a;
    a.request = absl::StrCat(method, " ", path);
    if (!r.ok()) {
      a.text = r.status().ToString();
      answers_.push_back(std::move(a));
      last_status_ = 0;
      return Json();
    }
    a.text = absl::StrCat("HTTP ", r->status, "\n");
    for (const auto& [name, value] : r->headers) {
      absl::StrAppend(&a.text, name, ": ", value, "\n");
    }
    absl::StrAppend(&a.text, "\n", r->body);
    answers_.push_back(std::move(a));
    last_status_ = r->status;
    return Json::parse(r->body, nullptr, false);
  }
  // A call that must succeed.
  Json Must(const std::string& method, const std::string& path,
            const Json& body = nullptr, HttpHeaders extra = {}) {
    Json j = Api(method, path, body, std::move(extra));
    EXPECT_LT(last_status_, 300) << method << " " << path << ": " << j.dump();
    return j;
  }
  void KeepGrpc(const std::string& request, const grpc::Status& status,
                const google::protobuf::Message* response) {
    answers_.push_back(
        {absl::StrCat("gRPC ", request),
         absl::StrCat(status.error_code(), " ", status.error_message(), " ",
                      status.error_details(), "\n",
                      response != nullptr ? response->DebugString() : "")});
  }

  int64_t CreateConnector(const std::string& business_id,
                          const std::string& type, const Json& config,
                          const Json& auth, HttpHeaders extra = {}) {
    Json c = Must("POST", "/api/v1/connectors",
                  {{"business_id", business_id},
                   {"type", type},
                   {"config", config},
                   {"auth_config", auth}},
                  std::move(extra));
    EXPECT_EQ(c["auth_config_set"], true) << c.dump();
    EXPECT_FALSE(c.contains("auth_config")) << c.dump();
    return c.value("id", int64_t{0});
  }
  std::string ConnectorPath(int64_t id, absl::string_view suffix = "") {
    return absl::StrCat("/api/v1/connectors/", id, suffix);
  }
  // Starts a sync, returns the run id.
  int64_t StartSync(int64_t connector, Json body = Json::object()) {
    return Must("POST", ConnectorPath(connector, "/sync"), body)
        .value("id", int64_t{0});
  }
  // Waits for a run to end; returns it.
  Json WaitRun(int64_t run) {
    Json r;
    for (int i = 0; i < 400; ++i) {
      r = Api("GET", absl::StrCat("/api/v1/sync-runs/", run));
      if (r.value("status", "") != "running") return r;
      absl::SleepFor(absl::Milliseconds(25));
    }
    ADD_FAILURE() << "run " << run << " did not end: " << r.dump();
    return r;
  }
  Json TestConnection(int64_t connector) {
    return Must("POST", ConnectorPath(connector, "/test"));
  }

  // Every regular file the dispatcher wrote in its directory (the store,
  // -wal, -shm, the key file, its stdout and stderr), by name.
  std::map<std::string, std::string> Files() {
    std::map<std::string, std::string> files;
    for (const auto& entry :
         std::filesystem::recursive_directory_iterator(dir_)) {
      if (entry.is_regular_file()) {
        files[entry.path().string()] = ReadAll(entry.path().string());
      }
    }
    return files;
  }

  // No secret (nor the raw key bytes of a signing secret) in `bytes`.
  void ExpectNoSecretIn(const std::string& where, const std::string& bytes,
                        bool store) {
    for (const Secret& s : secrets_) {
      if (store && s.in_store) continue;
      EXPECT_EQ(Count(bytes, s.value), 0)
          << s.name << " (" << s.value << ") in plaintext in " << where;
      std::string key;
      if (absl::StartsWith(s.value, "whsec_") &&
          absl::Base64Unescape(s.value.substr(6), &key)) {
        EXPECT_EQ(Count(bytes, key), 0)
            << "the raw key of " << s.name << " in " << where;
      }
    }
  }

  int64_t Query(const std::string& sql) {
    auto v = testing::QueryInt(db_, sql);
    EXPECT_TRUE(v.ok()) << v.status() << ": " << sql;
    return v.ok() ? *v : -1;
  }

  std::vector<Secret> secrets_;
  std::vector<Answer> answers_;
  int last_status_ = 0;
};

TEST_F(SecretHygieneTest, NoPlaintextSecretInTheStoreLogsOrAnswers) {
  // --- Peers: a directory whose service account has kLdapPassword, an
  // oidc-provider, an API-key server checking kHmacSecret, a receiver.
  testing::ScopedTestDir peers("peers");
  auto hash = SlapdServer::HashPassword(kLdapPassword);
  ASSERT_TRUE(hash.ok()) << hash.status();
  testing::SlapdConfig slapd_config;
  slapd_config.ldif = testing::GenerateDirectory(12, 3, *hash).ldif;
  auto slapd = SlapdServer::Start(peers.path().string(), slapd_config);
  ASSERT_TRUE(slapd.ok()) << slapd.status();
  auto oidc = NodeServer::Start(kShapes, {"--shape", "oidc", "--count", "30"});
  ASSERT_TRUE(oidc.ok()) << oidc.status();
  auto apikey = NodeServer::Start(
      kShapes,
      {"--shape", "apikey", "--count", "30", "--hmac-secret", kHmacSecret});
  ASSERT_TRUE(apikey.ok()) << apikey.status();
  auto receiver = NodeServer::Start(kReceiver, {});
  ASSERT_TRUE(receiver.ok()) << receiver.status();
  absl::StatusOr<int> closed_port = testing::FreeLoopbackPort();
  ASSERT_TRUE(closed_port.ok());

  for (const char* value :
       {kLdapPassword, kLdapWrong, kLdapRotated, kLdapUnreachable, kOAuthSecret,
        kOAuthWrong, kApiKey, kApiKeyWrong, kHmacSecret, kTypoToken,
        kAgentConnector, kBadConfig, kGrpcPassword, kWrongRegistration}) {
    Add(value, value);
  }
  Add("webhook URL token", kHookUrlToken).in_store = true;

  // --- Tokens: a service token and a registration token, created with an
  // Idempotency-Key and replayed.
  const HttpHeaders token_key = {{"Idempotency-Key", "token-1"}};
  const Json token = Must("POST", "/api/v1/tokens",
                          {{"name", "ci"}, {"role", "admin"}}, token_key);
  const std::string api_token = token.value("secret", "");
  ASSERT_TRUE(absl::StartsWith(api_token, "idsync_svc_")) << token.dump();
  Add("service token", api_token);
  ShownInLast("service token");
  Json replayed = Must("POST", "/api/v1/tokens",
                       {{"name", "ci"}, {"role", "admin"}}, token_key);
  EXPECT_EQ(replayed.value("secret", "?"), "") << replayed.dump();
  Api("GET", "/api/v1/tokens", nullptr, {}, api_token);
  EXPECT_EQ(last_status_, 200);

  const HttpHeaders registration_key = {{"Idempotency-Key", "registration-1"}};
  const Json registration =
      Must("POST", "/api/v1/agents/registration-tokens",
           {{"name", "onprem-1"}, {"group", "dc"}}, registration_key);
  const std::string registration_token = registration.value("token", "");
  ASSERT_TRUE(absl::StartsWith(registration_token, "idsync_reg_"));
  Add("registration token", registration_token);
  ShownInLast("registration token");
  replayed = Must("POST", "/api/v1/agents/registration-tokens",
                  {{"name", "onprem-1"}, {"group", "dc"}}, registration_key);
  EXPECT_EQ(replayed.value("token", "?"), "") << replayed.dump();

  // --- An agent registers on the spine (gRPC); its token, the spent
  // registration token and a made-up one are then tried.
  auto channel =
      grpc::CreateChannel(Spine(), grpc::InsecureChannelCredentials());
  auto spine = v1::AgentSpine::NewStub(channel);
  auto register_agent = [&](const std::string& registration_token,
                            v1::RegisterAgentResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() +
                         std::chrono::seconds(10));
    v1::RegisterAgentRequest request;
    request.set_registration_token(registration_token);
    request.set_name("onprem-1");
    grpc::Status status = spine->Register(&context, request, response);
    KeepGrpc("AgentSpine.Register", status, response);
    return status;
  };
  v1::RegisterAgentResponse agent;
  ASSERT_TRUE(register_agent(registration_token, &agent).ok());
  const std::string agent_token = agent.agent_token();
  ASSERT_TRUE(absl::StartsWith(agent_token, "idsync_agt_"));
  Add("agent token", agent_token);
  ShownInLast("agent token");
  v1::RegisterAgentResponse again;
  EXPECT_FALSE(register_agent(registration_token, &again).ok());
  EXPECT_FALSE(register_agent(kWrongRegistration, &again).ok());
  Api("GET", "/api/v1/connectors", nullptr, {}, agent_token);
  EXPECT_EQ(last_status_, 403);
  Api("GET", "/api/v1/connectors", nullptr, {}, registration_token);
  EXPECT_GE(last_status_, 401);
  Api("GET", "/api/v1/connectors", nullptr, {}, token_ + "x");
  EXPECT_EQ(last_status_, 401);

  // --- Webhooks: one at the receiver (with a token of its own in the URL
  // query), one at a closed port; and the callback secret.
  const std::string hook_url =
      absl::StrCat(receiver.value()->url(), "/hooks?token=", kHookUrlToken);
  const HttpHeaders hook_key = {{"Idempotency-Key", "hook-1"}};
  const Json hook = Must("POST", "/api/v1/webhooks",
                         {{"url", hook_url}, {"event_types", {"*"}}}, hook_key);
  const int64_t hook_id = hook["webhook"].value("id", int64_t{0});
  Add("webhook secret", hook.value("secret", ""));
  ShownInLast("webhook secret");
  ShownInLast("webhook URL token");
  ASSERT_TRUE(receiver.value()
                  ->Control("POST", "/__control/secret",
                            Json{{"secret", hook["secret"]}}.dump())
                  .ok());
  replayed = Must("POST", "/api/v1/webhooks",
                  {{"url", hook_url}, {"event_types", {"*"}}}, hook_key);
  EXPECT_EQ(replayed.value("secret", "?"), "") << replayed.dump();
  ShownInLast("webhook URL token");
  const Json dead =
      Must("POST", "/api/v1/webhooks",
           {{"url", absl::StrCat("http://127.0.0.1:", *closed_port, "/dead")},
            {"event_types", {"sync.*"}}});
  const int64_t dead_id = dead["webhook"].value("id", int64_t{0});
  Add("second webhook secret", dead.value("secret", ""));
  ShownInLast("second webhook secret");
  const Json callback = Must("GET", "/api/v1/callback-secret");
  Add("callback secret", callback.value("secret", ""));
  ShownInLast("callback secret");
  ASSERT_TRUE(absl::StartsWith(callback.value("secret", ""), "whsec_"));

  // --- Connectors, each with secrets in auth_config; tests and syncs that
  // succeed and ones that fail (their errors are searched too).
  const Json ldap_config = {{"url", slapd.value()->url()},
                            {"bind_dn", testing::kServiceDn},
                            {"user_base", testing::kPeopleBase},
                            {"group_base", testing::kGroupBase},
                            {"timeout_seconds", 5}};
  std::vector<int64_t> runs;
  const int64_t ldap = CreateConnector("corp-ad", "ldap", ldap_config,
                                       {{"password", kLdapPassword}});
  EXPECT_EQ(TestConnection(ldap)["ok"], true);
  runs.push_back(StartSync(ldap));

  const int64_t ldap_wrong = CreateConnector(
      "corp-ad-wrong", "ldap", ldap_config, {{"password", kLdapWrong}},
      {{"Idempotency-Key", "connector-1"}});
  Json tested = TestConnection(ldap_wrong);
  EXPECT_EQ(tested["ok"], false) << tested.dump();
  EXPECT_THAT(tested.value("error", ""),
              ::testing::HasSubstr("Invalid credentials"));
  runs.push_back(StartSync(ldap_wrong));
  Json patched = Must("PATCH", ConnectorPath(ldap_wrong),
                      {{"auth_config", {{"password", kLdapRotated}}}});
  EXPECT_FALSE(patched.contains("auth_config")) << patched.dump();
  EXPECT_EQ(TestConnection(ldap_wrong)["ok"], false);

  Json unreachable_config = ldap_config;
  unreachable_config["url"] = absl::StrCat("ldap://127.0.0.1:", *closed_port);
  const int64_t ldap_down =
      CreateConnector("corp-ad-down", "ldap", unreachable_config,
                      {{"password", kLdapUnreachable}});
  EXPECT_EQ(TestConnection(ldap_down)["ok"], false);
  runs.push_back(StartSync(ldap_down));

  const std::string docs =
      absl::StrCat(testing::SourceDir(), "/docs/connectors/rest/");
  Json oidc_config = ReadJson(docs + "oidc.json");
  oidc_config["base_url"] = oidc.value()->url();
  Json oidc_auth = ReadJson(docs + "oidc.auth.json");
  oidc_auth["issuer"] = oidc.value()->url() + "/oidc";
  ASSERT_EQ(oidc_auth["client_secret"], kOAuthSecret);
  const int64_t rest_oidc =
      CreateConnector("hr-api", "rest", oidc_config, oidc_auth);
  runs.push_back(StartSync(
      rest_oidc, {{"callback_url", receiver.value()->url() + "/progress"}}));
  oidc_auth["client_secret"] = kOAuthWrong;
  const int64_t rest_oidc_wrong =
      CreateConnector("hr-api-wrong", "rest", oidc_config, oidc_auth);
  EXPECT_EQ(TestConnection(rest_oidc_wrong)["ok"], false);
  runs.push_back(StartSync(rest_oidc_wrong));

  Json apikey_config = ReadJson(docs + "apikey.json");
  apikey_config["base_url"] = apikey.value()->url();
  Json apikey_auth = ReadJson(docs + "apikey.auth.json");
  ASSERT_EQ(apikey_auth["key"], kApiKey);
  apikey_auth["hmac"]["secret"] = kHmacSecret;
  const int64_t rest_key =
      CreateConnector("crm-api", "rest", apikey_config, apikey_auth);
  runs.push_back(StartSync(rest_key));
  apikey_auth["key"] = kApiKeyWrong;
  const int64_t rest_key_wrong =
      CreateConnector("crm-api-wrong", "rest", apikey_config, apikey_auth);
  runs.push_back(StartSync(rest_key_wrong));
  const int64_t rest_typo =
      CreateConnector("crm-api-typo", "rest", apikey_config,
                      {{"type", "bearer"}, {"tokne", kTypoToken}});
  runs.push_back(StartSync(rest_typo));

  // Refused creations that carry secrets: their errors must not echo them.
  Api("POST", "/api/v1/connectors",
      {{"business_id", "onprem-ad"},
       {"type", "ldap"},
       {"mode", "agent"},
       {"agent", "dc"},
       {"config", ldap_config},
       {"auth_config", {{"password", kAgentConnector}}}});
  EXPECT_EQ(last_status_, 400);
  Json bad_config = ldap_config;
  bad_config["bind_pasword"] = "x";
  Api("POST", "/api/v1/connectors",
      {{"business_id", "bad"},
       {"type", "ldap"},
       {"config", bad_config},
       {"auth_config", {{"password", kBadConfig}}}});
  EXPECT_EQ(last_status_, 400);

  // The same through gRPC, with an idempotency-key and a replay.
  auto control = v1::ControlPlane::NewStub(channel);
  v1::CreateConnectorRequest grpc_create;
  grpc_create.set_business_id("corp-ad-grpc");
  grpc_create.set_type("ldap");
  *grpc_create.mutable_config() = ToStruct(ldap_config);
  *grpc_create.mutable_auth_config() = ToStruct({{"password", kGrpcPassword}});
  int64_t grpc_connector = 0;
  for (int i = 0; i < 2; ++i) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token_);
    context.AddMetadata("idempotency-key", "grpc-connector-1");
    v1::ConfiguredConnector created;
    grpc::Status status =
        control->CreateConnector(&context, grpc_create, &created);
    KeepGrpc("ControlPlane.CreateConnector", status, &created);
    ASSERT_TRUE(status.ok()) << status.error_message();
    grpc_connector = created.id();
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token_);
    v1::GetByIdRequest get;
    get.set_id(grpc_connector);
    v1::TestConnectorResponse test;
    grpc::Status status = control->TestConnector(&context, get, &test);
    KeepGrpc("ControlPlane.TestConnector", status, &test);
    EXPECT_FALSE(test.ok());
  }
  runs.push_back(StartSync(grpc_connector));

  // --- Every run to its end, failed where its secret is wrong (so each
  // secret was used); each run's events.
  const std::vector<std::string> errors = {"",
                                           "Invalid credentials",
                                           "Can't contact LDAP server",
                                           "",
                                           "(invalid_client)",
                                           "",
                                           "(invalid_api_key)",
                                           "unknown key 'tokne'",
                                           "Invalid credentials"};
  ASSERT_EQ(runs.size(), errors.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    const Json done = WaitRun(runs[i]);
    EXPECT_EQ(done.value("status", "?"),
              errors[i].empty() ? "succeeded" : "failed")
        << done.dump();
    EXPECT_THAT(done.value("error", ""), ::testing::HasSubstr(errors[i]));
    Api("GET", absl::StrCat("/api/v1/sync-runs/", runs[i], "/events"));
  }

  // Deliveries: the receiver's arrive; the dead endpoint's fail once.
  auto waited = receiver.value()->Control(
      "GET", "/__control/wait?count=1&timeout_ms=15000");
  ASSERT_TRUE(waited.ok()) << waited.status();
  bool attempted = false;
  for (int i = 0; i < 300 && !attempted; ++i) {
    const Json list =
        Api("GET", absl::StrCat("/api/v1/webhooks/", dead_id, "/deliveries"));
    for (const Json& d : list.value("items", Json::array())) {
      attempted = attempted || d.value("attempts", 0) > 0;
    }
    if (!attempted) absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(attempted) << "no delivery to the closed port was tried";

  // --- Read everything back.
  const Json connectors = Must("GET", "/api/v1/connectors?limit=500");
  for (const Json& c : connectors.value("items", Json::array())) {
    EXPECT_FALSE(c.contains("auth_config")) << c.dump();
    const int64_t id = c.value("id", int64_t{0});
    Must("GET", ConnectorPath(id));
    Must("GET", ConnectorPath(id, "/runs?limit=500"));
  }
  const Json audit = Must("GET", "/api/v1/audit-events?limit=500");
  EXPECT_GT(audit.value("total", 0), 15) << audit.dump();
  Must("GET", "/api/v1/webhooks");
  ShownInLast("webhook URL token");
  Must("GET", absl::StrCat("/api/v1/webhooks/", hook_id));
  ShownInLast("webhook URL token");
  Must("GET", absl::StrCat("/api/v1/webhooks/", hook_id, "/deliveries"));
  Must("GET", absl::StrCat("/api/v1/webhooks/", dead_id, "/deliveries"));
  Must("GET", "/api/v1/tokens?limit=500");
  Must("GET", "/api/v1/agents");
  Must("GET", absl::StrCat("/api/v1/agents/", agent.agent_id()));
  Must("GET", "/api/v1/identities?limit=500");
  Must("GET", "/api/v1/accounts?limit=500");
  Must("GET", "/api/v1/entitlements?limit=500");
  Must("GET", "/api/v1/grants?limit=500");
  Must("GET", "/api/v1/callback-secret");
  ShownInLast("callback secret");
  // The operator's metrics, on their own address.
  {
    absl::StatusOr<HttpResponse> m = Metrics();
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ(m->status, 200);
    Answer a;
    a.request = "GET metrics listener /metrics";
    a.text = m->body;
    answers_.push_back(std::move(a));
  }
  {
    grpc::ClientContext context;
    context.AddMetadata("authorization", "Bearer " + token_);
    v1::ListConnectorsResponse list;
    grpc::Status status =
        control->ListConnectors(&context, v1::PageRequest(), &list);
    KeepGrpc("ControlPlane.ListConnectors", status, &list);
    EXPECT_TRUE(status.ok());
  }

  // --- Tokens are stored as their SHA-256; secrets are sealed.
  for (const char* name : {"admin token (bootstrap)", "service token",
                           "registration token", "agent token"}) {
    EXPECT_EQ(Query(absl::StrCat("SELECT count(*) FROM tokens WHERE hash = X'",
                                 Sha256Hex(Find(name).value), "'")),
              1)
        << name << " is not stored as its SHA-256";
  }
  EXPECT_EQ(Query("SELECT count(*) FROM tokens"), 4);
  // Every connector with auth_config holds a sealed blob: longer than any
  // secret in it by at least a nonce and a MAC, not JSON, each different.
  EXPECT_EQ(Query("SELECT count(*) FROM connectors WHERE auth_config IS NOT "
                  "NULL AND length(auth_config) >= 40"),
            9);
  EXPECT_EQ(Query("SELECT count(*) FROM connectors WHERE "
                  "substr(auth_config, 1, 1) = X'7B' OR instr(auth_config, "
                  "CAST('password' AS BLOB)) > 0"),
            0);
  EXPECT_EQ(Query("SELECT count(DISTINCT auth_config) FROM connectors"), 9);
  EXPECT_EQ(Query("SELECT count(*) FROM webhooks WHERE length(secret) >= " +
                  absl::StrCat(Find("webhook secret").value.size() + 40)),
            2);
  EXPECT_EQ(Query("SELECT count(*) FROM tenants WHERE "
                  "length(callback_secret) >= " +
                  absl::StrCat(Find("callback secret").value.size() + 40)),
            1);
  struct stat key_file;
  ASSERT_EQ(stat((db_ + ".key").c_str(), &key_file), 0);
  EXPECT_EQ(key_file.st_mode & 0777, 0600);
  // The URL token is only where the URL is: the webhook row, not the audit
  // log (URLs without their query) nor the deliveries.
  EXPECT_EQ(Query(absl::StrCat("SELECT count(*) FROM audit_events WHERE "
                               "instr(details, '",
                               kHookUrlToken, "') > 0")),
            0);
  EXPECT_EQ(
      Query(absl::StrCat("SELECT count(*) FROM deliveries WHERE instr(url, '",
                         kHookUrlToken, "') > 0 OR instr(last_error, '",
                         kHookUrlToken, "') > 0")),
      0);
  EXPECT_EQ(Query(absl::StrCat("SELECT count(*) FROM outbox WHERE "
                               "instr(data, '",
                               kHookUrlToken, "') > 0")),
            0);

  // --- The search. First while it runs (the WAL is still there)...
  std::map<std::string, std::string> files = Files();
  EXPECT_TRUE(files.count(db_ + "-wal")) << "no WAL to search";
  // The search sees what the store holds in the clear: the webhook URL.
  std::string store_bytes;
  for (const auto& [path, bytes] : files) {
    if (absl::StartsWith(path, db_)) store_bytes += bytes;
  }
  EXPECT_GT(Count(store_bytes, kHookUrlToken), 0) << "the search is blind";
  for (const auto& [path, bytes] : files) {
    ExpectNoSecretIn(path, bytes, absl::StartsWith(path, db_));
  }
  // ...then after a clean stop (logs flushed, WAL checkpointed).
  dispatcher_->Kill(SIGTERM);
  const testing::ProcessResult stopped = dispatcher_->Wait();
  dispatcher_.reset();
  EXPECT_THAT(stopped.err + stopped.out,
              ::testing::HasSubstr("agent 1 'onprem-1' registered"))
      << "the dispatcher's log was not captured";
  ExpectNoSecretIn("the dispatcher's stdout", stopped.out, false);
  ExpectNoSecretIn("the dispatcher's stderr", stopped.err, false);
  for (const auto& [path, bytes] : Files()) {
    ExpectNoSecretIn(path, bytes, absl::StartsWith(path, db_));
  }
  // Every answer: a secret only where it is handed out, there exactly once.
  for (size_t i = 0; i < answers_.size(); ++i) {
    for (const Secret& s : secrets_) {
      const int expected = s.shown_in.count(i) ? 1 : 0;
      EXPECT_EQ(Count(answers_[i].text, s.value), expected)
          << s.name << " (" << s.value << ") in the answer to "
          << answers_[i].request << ":\n"
          << answers_[i].text.substr(0, 2000);
    }
  }
}

// A write's Idempotency-Key record keeps a hash of the request, to tell a
// retry from a different request. For a request that carries a secret
// (auth_config) an unkeyed SHA-256 of its bytes lets anyone holding the store
// (but not the key file) test guesses of the secret offline, around the
// sealing.
TEST_F(SecretHygieneTest, IdempotencyRecordsHoldNoUnkeyedHashOfASecret) {
  const Json body = {{"business_id", "corp-ad"},
                     {"type", "ldap"},
                     {"config",
                      {{"url", "ldap://127.0.0.1:1"},
                       {"bind_dn", testing::kServiceDn},
                       {"user_base", testing::kPeopleBase}}},
                     {"auth_config", {{"password", kLdapPassword}}}};
  auto r = Call("POST", "/api/v1/connectors", body,
                {{"Idempotency-Key", "connector-1"}});
  ASSERT_TRUE(r.ok() && r->status == 201) << (r.ok() ? r->body : "");
  EXPECT_EQ(
      Query(absl::StrCat(
          "SELECT count(*) FROM idempotency_keys WHERE request_hash = X'",
          Sha256Hex(absl::StrCat("POST\n/api/v1/connectors\n", body.dump())),
          "'")),
      0)
      << "the REST idempotency record holds SHA-256(request with the "
         "password)";

  auto channel =
      grpc::CreateChannel(Spine(), grpc::InsecureChannelCredentials());
  auto control = v1::ControlPlane::NewStub(channel);
  v1::CreateConnectorRequest create;
  create.set_business_id("corp-ad-grpc");
  create.set_type("ldap");
  *create.mutable_config() = ToStruct(body["config"]);
  *create.mutable_auth_config() = ToStruct({{"password", kGrpcPassword}});
  grpc::ClientContext context;
  context.AddMetadata("authorization", "Bearer " + token_);
  context.AddMetadata("idempotency-key", "grpc-connector-1");
  v1::ConfiguredConnector created;
  grpc::Status status = control->CreateConnector(&context, create, &created);
  ASSERT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(Query(absl::StrCat(
                "SELECT count(*) FROM idempotency_keys WHERE request_hash = X'",
                Sha256Hex(absl::StrCat("grpc\nCreateConnector\n",
                                       Deterministic(create))),
                "'")),
            0)
      << "the gRPC idempotency record holds SHA-256(request with the "
         "password)";
}

}  // namespace
}  // namespace idsync
