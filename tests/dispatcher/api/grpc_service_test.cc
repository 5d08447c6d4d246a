// The gRPC face of the control plane, through the generated client stub:
// the real service layer on a SQLite store, served in-process by a real
// grpc::Server with the health and reflection services, as main.cc wires it.
#include "dispatcher/api/grpc_service.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>

#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "connector/rate_limiter.h"
#include "connector/registry.h"
#include "dispatcher/agents/agent_hub.h"
#include "dispatcher/api/control_plane_service.h"
#include "dispatcher/api/status_mapping.h"
#include "dispatcher/metrics.h"
#include "dispatcher/run_progress.h"
#include "dispatcher/secrets.h"
#include "dispatcher/store/sqlite_store.h"
#include "dispatcher/sync_workers.h"
#include "gmock/gmock.h"
#include "google/protobuf/unknown_field_set.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "idsync/v1/control_plane.grpc.pb.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/store_signature.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

namespace v1 = idsync::v1;
using ::google::protobuf::util::MessageDifferencer;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// The failure's gRPC code, and the HTTP status the REST face gives the same
// failure (both come from one absl::StatusCode; see status_mapping.cc).
void ExpectCode(const grpc::Status& status, grpc::StatusCode code,
                int http_status) {
  EXPECT_EQ(status.error_code(), code) << status.error_message();
  EXPECT_EQ(HttpStatus(static_cast<absl::StatusCode>(status.error_code())),
            http_status)
      << status.error_message();
}

std::string InitialMetadata(const grpc::ClientContext& context,
                            const std::string& key) {
  const auto& md = context.GetServerInitialMetadata();
  auto it = md.find(key);
  return it == md.end() ? ""
                        : std::string(it->second.data(), it->second.size());
}

// Waits for the next event of `cq`; true if it is `tag` and succeeded.
bool Next(grpc::CompletionQueue& cq, void* tag) {
  void* got = nullptr;
  bool ok = false;
  return cq.Next(&got, &ok) && got == tag && ok;
}

// Shuts `cq` down and drains it, as its destructor requires.
void Drain(grpc::CompletionQueue& cq) {
  cq.Shutdown();
  void* tag = nullptr;
  bool ok = false;
  while (cq.Next(&tag, &ok)) {
  }
}

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string FromBuffer(const grpc::ByteBuffer& buffer) {
  grpc::Slice slice;
  if (!buffer.DumpToSingleSlice(&slice).ok()) return "";
  return std::string(reinterpret_cast<const char*>(slice.begin()),
                     slice.size());
}

// The length-delimited fields `number` of a serialized message, read without
// its schema (for services whose generated code Debian does not ship).
std::vector<std::string> Submessages(const std::string& bytes, int number) {
  google::protobuf::UnknownFieldSet fields;
  std::vector<std::string> out;
  if (!fields.ParseFromString(bytes)) return out;
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& f = fields.field(i);
    if (f.number() == number &&
        f.type() == google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) {
      out.push_back(f.length_delimited());
    }
  }
  return out;
}

class GrpcServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::make_unique<testing::ScopedTestDir>("grpc_service");
    auto store = SqliteStore::Open({dir_->File("store.db")});
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    auto secrets = SecretBox::FromKey(std::string(32, 'k'));
    ASSERT_TRUE(secrets.ok()) << secrets.status();
    secrets_ = std::make_unique<SecretBox>(*std::move(secrets));
    RegisterBuiltinConnectors(registry_);
    workers_ = std::make_unique<SyncWorkers>(*store_, registry_, *secrets_,
                                             worker_clock_, progress_, metrics_,
                                             SyncWorkers::Options{});
    ControlPlaneServiceOptions service_options;
    service_options.allow_private_callbacks = allow_private_callbacks_;
    if (with_agent_hub_) {
      hub_ = std::make_unique<AgentHub>(*store_, Clock::Real());
      service_options.agents = hub_.get();
    }
    service_ = std::make_unique<ControlPlaneService>(
        *store_, registry_, *secrets_, *workers_, service_options);
    limiter_ = std::make_unique<RateLimiter>(limiter_clock_, 100, 200);
    grpc_service_ = std::make_unique<ControlPlaneGrpc>(*service_, *store_,
                                                       progress_, *limiter_);

    grpc::EnableDefaultHealthCheckService(true);
    grpc::reflection::InitProtoReflectionServerBuilderPlugin();
    grpc::ServerBuilder builder;
    builder.RegisterService(grpc_service_.get());
    if (hub_ != nullptr) builder.RegisterService(hub_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    channel_ = server_->InProcessChannel(grpc::ChannelArguments());
    stub_ = v1::ControlPlane::NewStub(channel_);

    auto admin = ControlPlaneService::Bootstrap(*store_, "acme");
    ASSERT_TRUE(admin.ok()) << admin.status();
    admin_ = *admin;
    auto other = ControlPlaneService::Bootstrap(*store_, "globex");
    ASSERT_TRUE(other.ok()) << other.status();
    other_admin_ = *other;
  }

  void TearDown() override {
    if (server_ != nullptr && hub_ != nullptr) {
      // Agent streams a test left open are cut after a grace period.
      server_->Shutdown(std::chrono::system_clock::now() +
                        std::chrono::seconds(5));
    } else if (server_ != nullptr) {
      server_->Shutdown();
    }
    if (workers_ != nullptr) workers_->WaitIdle();
  }

  static void Authorize(grpc::ClientContext* context,
                        const std::string& token) {
    context->AddMetadata("authorization", absl::StrCat("Bearer ", token));
  }

  v1::Identity Create(const std::string& token, const std::string& external_id,
                      grpc::Status* status = nullptr) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::CreateIdentityRequest request;
    request.set_external_id(external_id);
    request.set_email(absl::StrCat(external_id, "@example.com"));
    request.set_first_name("Ada");
    request.set_last_name("Lovelace");
    request.set_department("Engineering");
    v1::Identity identity;
    grpc::Status s = stub_->CreateIdentity(&context, request, &identity);
    if (status != nullptr) {
      *status = s;
    } else {
      EXPECT_TRUE(s.ok()) << s.error_message();
    }
    return identity;
  }

  // A new service token of `role` in acme; its secret.
  std::string NewToken(const std::string& name, const std::string& role,
                       int64_t* id = nullptr) {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::CreateTokenRequest request;
    request.set_name(name);
    request.set_role(role);
    v1::CreateTokenResponse response;
    grpc::Status s = stub_->CreateToken(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (id != nullptr) *id = response.token().id();
    return response.secret();
  }

  grpc::Status ListIdentities(const std::string& token,
                              const v1::ListIdentitiesRequest& request,
                              v1::ListIdentitiesResponse* response) {
    grpc::ClientContext context;
    Authorize(&context, token);
    return stub_->ListIdentities(&context, request, response);
  }

  int64_t IdentityCount(const std::string& token) {
    v1::ListIdentitiesRequest request;
    request.set_include_inactive(true);
    v1::ListIdentitiesResponse response;
    grpc::Status s = ListIdentities(token, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response.total();
  }

  int64_t TenantId(const std::string& name) {
    auto id = store_->EnsureTenant(name);
    EXPECT_TRUE(id.ok()) << id.status();
    return id.ok() ? *id : 0;
  }

  // A csv connector over a generated HR file of `rows` people.
  v1::ConfiguredConnector CsvConnector(const std::string& business_id,
                                       int rows) {
    const std::string path = dir_->File(absl::StrCat(business_id, ".csv"));
    std::ofstream csv(path);
    csv << "employee_id,email,first_name,last_name,department\n";
    for (int i = 1; i <= rows; ++i) {
      csv << "E" << i << ",e" << i << "@example.com,First" << i << ",Last" << i
          << ",Dept" << (i % 3) << "\n";
    }
    csv.close();
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::CreateConnectorRequest request;
    request.set_business_id(business_id);
    request.set_type("csv");
    (*request.mutable_config()->mutable_fields())["path"].set_string_value(
        path);
    v1::ConfiguredConnector connector;
    grpc::Status s = stub_->CreateConnector(&context, request, &connector);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return connector;
  }

  std::unique_ptr<testing::ScopedTestDir> dir_;
  std::unique_ptr<SqliteStore> store_;
  std::unique_ptr<SecretBox> secrets_;
  ConnectorRegistry registry_;
  RunProgress progress_;
  Metrics metrics_;
  testing::FakeClock worker_clock_;
  testing::FakeClock limiter_clock_;  // Frozen unless a test advances it.
  std::unique_ptr<SyncWorkers> workers_;
  std::unique_ptr<AgentHub> hub_;  // With with_agent_hub_; outlives server_.
  std::unique_ptr<ControlPlaneService> service_;
  std::unique_ptr<RateLimiter> limiter_;
  std::unique_ptr<ControlPlaneGrpc> grpc_service_;
  std::unique_ptr<grpc::Server> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::ControlPlane::Stub> stub_;
  std::string admin_;        // Tenant acme.
  std::string other_admin_;  // Tenant globex.
  // Webhooks and callbacks on loopback are allowed unless a fixture's
  // constructor says otherwise.
  bool allow_private_callbacks_ = true;
  // Serve AgentSpine from an AgentHub and give it to the service, as
  // main.cc does.
  bool with_agent_hub_ = false;
};

TEST_F(GrpcServiceTest, MissingMalformedUnknownAndRevokedTokensAreRefused) {
  v1::ListIdentitiesResponse response;
  {
    grpc::ClientContext context;
    ExpectCode(stub_->ListIdentities(&context, {}, &response),
               grpc::StatusCode::UNAUTHENTICATED, 401);
  }
  for (const std::string& header :
       {std::string("Basic dXNlcjpwdw=="), std::string("Bearer"),
        std::string("Bearer not-an-idsync-token"),
        absl::StrCat("Bearer ", kServiceTokenPrefix,
                     "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")}) {
    grpc::ClientContext context;
    context.AddMetadata("authorization", header);
    ExpectCode(stub_->ListIdentities(&context, {}, &response),
               grpc::StatusCode::UNAUTHENTICATED, 401);
  }

  int64_t id = 0;
  const std::string token = NewToken("ci", "admin", &id);
  EXPECT_TRUE(ListIdentities(token, {}, &response).ok());
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::GetByIdRequest revoke;
    revoke.set_id(id);
    v1::Token revoked;
    ASSERT_TRUE(stub_->RevokeToken(&context, revoke, &revoked).ok());
    EXPECT_TRUE(revoked.has_revoked_at());
  }
  grpc::Status s = ListIdentities(token, {}, &response);
  ExpectCode(s, grpc::StatusCode::UNAUTHENTICATED, 401);
  EXPECT_THAT(s.error_message(), HasSubstr("revoked"));
}

TEST_F(GrpcServiceTest, AuditorReadsButEveryWriteIsRefused) {
  Create(admin_, "E1");
  const std::string auditor = NewToken("dashboard", "auditor");
  EXPECT_EQ(IdentityCount(auditor), 1);

  grpc::Status s;
  Create(auditor, "E2", &s);
  ExpectCode(s, grpc::StatusCode::PERMISSION_DENIED, 403);
  {
    grpc::ClientContext context;
    Authorize(&context, auditor);
    v1::CreateTokenRequest request;
    request.set_name("escalate");
    request.set_role("admin");
    v1::CreateTokenResponse response;
    ExpectCode(stub_->CreateToken(&context, request, &response),
               grpc::StatusCode::PERMISSION_DENIED, 403);
  }
  {
    grpc::ClientContext context;
    Authorize(&context, auditor);
    v1::CreateConnectorRequest request;
    request.set_business_id("hr");
    request.set_type("csv");
    v1::ConfiguredConnector response;
    ExpectCode(stub_->CreateConnector(&context, request, &response),
               grpc::StatusCode::PERMISSION_DENIED, 403);
  }
  EXPECT_EQ(IdentityCount(admin_), 1);
}

TEST_F(GrpcServiceTest, AgentTokenIsRefusedOutsideTheSpine) {
  const std::string agent = idsync::NewToken(kAgentTokenPrefix);
  const int64_t tenant = TenantId("acme");
  ASSERT_TRUE(store_
                  ->Write([&](WriteTxn& txn) -> absl::Status {
                    TokenRow row;
                    row.tenant_id = tenant;
                    row.name = "onprem-agent";
                    row.kind = "agent";
                    row.role = "agent";
                    row.prefix = agent.substr(0, 15);
                    return txn.InsertToken(row, TokenHash(agent)).status();
                  })
                  .ok());
  v1::ListIdentitiesResponse response;
  grpc::Status s = ListIdentities(agent, {}, &response);
  ExpectCode(s, grpc::StatusCode::PERMISSION_DENIED, 403);
  EXPECT_THAT(s.error_message(), HasSubstr("agent"));
  Create(agent, "E1", &s);
  ExpectCode(s, grpc::StatusCode::PERMISSION_DENIED, 403);
}

TEST_F(GrpcServiceTest, JoinerIsCreatedReadUpdatedAndDeactivated) {
  grpc::ClientContext create_context;
  Authorize(&create_context, admin_);
  v1::CreateIdentityRequest create;
  create.set_external_id("E100");
  create.set_email("grace@example.com");
  create.set_first_name("Grace");
  create.set_last_name("Hopper");
  create.set_department("Navy");
  create.set_manager_external_id("E1");
  (*create.mutable_attributes())["cost_center"] = "CC-7";
  v1::Identity created;
  ASSERT_TRUE(stub_->CreateIdentity(&create_context, create, &created).ok());
  EXPECT_GT(created.id(), 0);
  EXPECT_EQ(created.source(), "api");
  EXPECT_EQ(created.status(), "active");
  EXPECT_TRUE(created.active());
  EXPECT_EQ(created.attributes().at("cost_center"), "CC-7");
  EXPECT_THAT(InitialMetadata(create_context, "x-request-id"),
              ::testing::Not(IsEmpty()));

  v1::GetByIdRequest by_id;
  by_id.set_id(created.id());
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::Identity got;
    ASSERT_TRUE(stub_->GetIdentity(&context, by_id, &got).ok());
    EXPECT_TRUE(MessageDifferencer::Equals(got, created))
        << got.DebugString() << "\nvs\n"
        << created.DebugString();
  }
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::UpdateIdentityRequest update;
    update.set_id(created.id());
    update.set_department("Research");
    (*update.mutable_attributes())["cost_center"] = "";  // Removes it.
    v1::Identity updated;
    ASSERT_TRUE(stub_->UpdateIdentity(&context, update, &updated).ok());
    EXPECT_EQ(updated.department(), "Research");
    EXPECT_EQ(updated.first_name(), "Grace");  // Absent: unchanged.
    EXPECT_FALSE(updated.attributes().contains("cost_center"));
  }
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::Identity deactivated;
    ASSERT_TRUE(stub_->DeactivateIdentity(&context, by_id, &deactivated).ok());
    EXPECT_FALSE(deactivated.active());
    EXPECT_TRUE(deactivated.has_deactivated_at());
  }
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::Identity got;
    ASSERT_TRUE(stub_->GetIdentity(&context, by_id, &got).ok());
    EXPECT_FALSE(got.active());
    EXPECT_EQ(got.department(), "Research");
  }
  {
    // A deactivated identity cannot change: 409 on REST.
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::UpdateIdentityRequest update;
    update.set_id(created.id());
    update.set_department("Sales");
    v1::Identity updated;
    ExpectCode(stub_->UpdateIdentity(&context, update, &updated),
               grpc::StatusCode::FAILED_PRECONDITION, 409);
  }
  // Active identities only by default; the joiner is gone from that list.
  v1::ListIdentitiesResponse active;
  ASSERT_TRUE(ListIdentities(admin_, {}, &active).ok());
  EXPECT_EQ(active.total(), 0);

  grpc::Status s;
  Create(admin_, "E100", &s);
  ExpectCode(s, grpc::StatusCode::ALREADY_EXISTS, 409);
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::CreateIdentityRequest bad;
    bad.set_external_id("E101");
    bad.set_email("not-an-email");
    v1::Identity ignored;
    ExpectCode(stub_->CreateIdentity(&context, bad, &ignored),
               grpc::StatusCode::INVALID_ARGUMENT, 400);
  }
  EXPECT_EQ(IdentityCount(admin_), 1);

  {
    // Every write left its audit event.
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::ListAuditEventsRequest request;
    request.set_resource_type("identity");
    v1::ListAuditEventsResponse events;
    ASSERT_TRUE(stub_->ListAuditEvents(&context, request, &events).ok());
    std::vector<std::string> actions;
    for (const auto& e : events.items()) actions.push_back(e.action());
    EXPECT_THAT(actions, ::testing::UnorderedElementsAre(
                             "identity.create", "identity.update",
                             "identity.deactivate"));
  }
}

TEST_F(GrpcServiceTest, CursorPagingVisitsEveryIdentityOnce) {
  for (int i = 1; i <= 7; ++i) Create(admin_, absl::StrCat("E", i));
  std::vector<std::string> seen;
  v1::ListIdentitiesRequest request;
  request.set_limit(3);
  std::vector<int> page_sizes;
  while (true) {
    v1::ListIdentitiesResponse page;
    ASSERT_TRUE(ListIdentities(admin_, request, &page).ok());
    EXPECT_EQ(page.total(), page_sizes.empty() ? 7 : 8);
    EXPECT_EQ(page.limit(), 3);
    page_sizes.push_back(page.items_size());
    for (const auto& identity : page.items()) {
      seen.push_back(identity.external_id());
    }
    if (page.next_cursor().empty()) break;
    // A joiner arriving mid-walk comes after the cursor: seen once.
    if (page_sizes.size() == 1) Create(admin_, "E8");
    request.set_cursor(page.next_cursor());
    ASSERT_LE(page_sizes.size(), 4u);
  }
  EXPECT_THAT(seen, ::testing::ElementsAre("E1", "E2", "E3", "E4", "E5", "E6",
                                           "E7", "E8"));
  EXPECT_THAT(page_sizes, ::testing::ElementsAre(3, 3, 2));

  v1::ListIdentitiesResponse page;
  request.set_cursor("not-a-cursor");
  ExpectCode(ListIdentities(admin_, request, &page),
             grpc::StatusCode::INVALID_ARGUMENT, 400);
  request.clear_cursor();
  request.set_limit(501);
  ExpectCode(ListIdentities(admin_, request, &page),
             grpc::StatusCode::INVALID_ARGUMENT, 400);
  request.set_limit(2);
  request.set_offset(6);
  ASSERT_TRUE(ListIdentities(admin_, request, &page).ok());
  ASSERT_EQ(page.items_size(), 2);
  EXPECT_EQ(page.items(0).external_id(), "E7");
  EXPECT_EQ(page.offset(), 6);
}

TEST_F(GrpcServiceTest, AnotherTenantsIdsAreNotFound) {
  const v1::Identity identity = Create(admin_, "E1");
  const v1::ConfiguredConnector connector = CsvConnector("hr", 3);
  int64_t token_id = 0;
  NewToken("ci", "auditor", &token_id);

  auto by_id = [](int64_t id) {
    v1::GetByIdRequest r;
    r.set_id(id);
    return r;
  };
  auto as_other = [&](grpc::ClientContext* context) {
    Authorize(context, other_admin_);
  };
  {
    grpc::ClientContext context;
    as_other(&context);
    v1::Identity out;
    ExpectCode(stub_->GetIdentity(&context, by_id(identity.id()), &out),
               grpc::StatusCode::NOT_FOUND, 404);
  }
  {
    grpc::ClientContext context;
    as_other(&context);
    v1::UpdateIdentityRequest update;
    update.set_id(identity.id());
    update.set_department("Stolen");
    v1::Identity out;
    ExpectCode(stub_->UpdateIdentity(&context, update, &out),
               grpc::StatusCode::NOT_FOUND, 404);
  }
  {
    grpc::ClientContext context;
    as_other(&context);
    v1::Identity out;
    ExpectCode(stub_->DeactivateIdentity(&context, by_id(identity.id()), &out),
               grpc::StatusCode::NOT_FOUND, 404);
  }
  {
    grpc::ClientContext context;
    as_other(&context);
    v1::ConfiguredConnector out;
    ExpectCode(stub_->GetConnector(&context, by_id(connector.id()), &out),
               grpc::StatusCode::NOT_FOUND, 404);
  }
  {
    grpc::ClientContext context;
    as_other(&context);
    v1::StartSyncRequest start;
    start.set_connector_id(connector.id());
    v1::SyncRun out;
    ExpectCode(stub_->StartSync(&context, start, &out),
               grpc::StatusCode::NOT_FOUND, 404);
  }
  {
    grpc::ClientContext context;
    as_other(&context);
    v1::DeleteConnectorResponse out;
    ExpectCode(stub_->DeleteConnector(&context, by_id(connector.id()), &out),
               grpc::StatusCode::NOT_FOUND, 404);
  }
  {
    grpc::ClientContext context;
    as_other(&context);
    v1::Token out;
    ExpectCode(stub_->RevokeToken(&context, by_id(token_id), &out),
               grpc::StatusCode::NOT_FOUND, 404);
  }
  // Lists show the caller's tenant only.
  EXPECT_EQ(IdentityCount(other_admin_), 0);
  {
    grpc::ClientContext context;
    as_other(&context);
    v1::ListConnectorsResponse out;
    ASSERT_TRUE(stub_->ListConnectors(&context, {}, &out).ok());
    EXPECT_EQ(out.total(), 0);
  }
  {
    grpc::ClientContext context;
    as_other(&context);
    v1::ListTokensResponse out;
    ASSERT_TRUE(stub_->ListTokens(&context, {}, &out).ok());
    ASSERT_EQ(out.total(), 1);  // Its own bootstrap token.
    EXPECT_EQ(out.items(0).name(), "bootstrap-admin");
  }
  // Nothing of acme's changed.
  grpc::ClientContext context;
  Authorize(&context, admin_);
  v1::Identity still;
  ASSERT_TRUE(stub_->GetIdentity(&context, by_id(identity.id()), &still).ok());
  EXPECT_TRUE(still.active());
  EXPECT_EQ(still.department(), "Engineering");
}

TEST_F(GrpcServiceTest, IdempotencyKeyReplaysTheFirstResponse) {
  v1::CreateIdentityRequest request;
  request.set_external_id("E1");
  request.set_email("e1@example.com");
  auto call = [&](const std::string& key, const v1::CreateIdentityRequest& r,
                  v1::Identity* out, std::string* replayed) {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    context.AddMetadata("idempotency-key", key);
    grpc::Status s = stub_->CreateIdentity(&context, r, out);
    *replayed = s.ok() ? InitialMetadata(context, "idempotent-replayed") : "";
    return s;
  };
  v1::Identity first, second;
  std::string replayed;
  ASSERT_TRUE(call("joiner-E1", request, &first, &replayed).ok());
  EXPECT_EQ(replayed, "");
  ASSERT_TRUE(call("joiner-E1", request, &second, &replayed).ok());
  EXPECT_EQ(replayed, "true");
  EXPECT_TRUE(MessageDifferencer::Equals(first, second))
      << first.DebugString() << "\nvs\n"
      << second.DebugString();

  // Same key, another request: refused (422 with code invalid_argument on
  // REST).
  v1::CreateIdentityRequest other = request;
  other.set_email("changed@example.com");
  v1::Identity ignored;
  grpc::Status s = call("joiner-E1", other, &ignored, &replayed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("different request"));
  EXPECT_EQ(IdentityCount(admin_), 1);

  // A refused request is not stored: the key serves the corrected one.
  v1::CreateIdentityRequest bad;
  bad.set_external_id("E2");
  bad.set_email("no-at-sign");
  ExpectCode(call("joiner-E2", bad, &ignored, &replayed),
             grpc::StatusCode::INVALID_ARGUMENT, 400);
  bad.set_email("e2@example.com");
  v1::Identity e2;
  ASSERT_TRUE(call("joiner-E2", bad, &e2, &replayed).ok());
  EXPECT_EQ(replayed, "");
  EXPECT_EQ(e2.external_id(), "E2");

  // A key whose first request is still executing: 409 on REST.
  ASSERT_TRUE(store_
                  ->BeginIdempotent(TenantId("acme"), "joiner-E3", "h",
                                    absl::Minutes(1))
                  .ok());
  bad.set_external_id("E3");
  bad.set_email("e3@example.com");
  ExpectCode(call("joiner-E3", bad, &ignored, &replayed),
             grpc::StatusCode::ABORTED, 409);

  // Keys are per tenant: globex may use the same one.
  grpc::ClientContext context;
  Authorize(&context, other_admin_);
  context.AddMetadata("idempotency-key", "joiner-E1");
  v1::Identity theirs;
  ASSERT_TRUE(stub_->CreateIdentity(&context, request, &theirs).ok());
  EXPECT_EQ(InitialMetadata(context, "idempotent-replayed"), "");
  EXPECT_EQ(IdentityCount(admin_), 2);
  EXPECT_EQ(IdentityCount(other_admin_), 1);

  grpc::ClientContext audit_context;
  Authorize(&audit_context, admin_);
  v1::ListAuditEventsRequest audit;
  audit.set_action("identity.create");
  v1::ListAuditEventsResponse events;
  ASSERT_TRUE(stub_->ListAuditEvents(&audit_context, audit, &events).ok());
  EXPECT_EQ(events.total(), 2);  // E1 once, E2 once.
}

// A retry is a new message on the server: its map fields (attributes, a
// connector's config) must hash the same whatever order they iterate in.
TEST_F(GrpcServiceTest, AuditorCannotReplayAnAdminsTokenCreation) {
  const std::string auditor = NewToken("reader", "auditor");
  v1::CreateTokenRequest request;
  request.set_name("ci");
  request.set_role("admin");
  auto call = [&](const std::string& token, v1::CreateTokenResponse* out) {
    grpc::ClientContext context;
    Authorize(&context, token);
    context.AddMetadata("idempotency-key", "new-ci-token");
    return stub_->CreateToken(&context, request, out);
  };
  v1::CreateTokenResponse first, replay, stolen;
  ASSERT_TRUE(call(admin_, &first).ok());
  EXPECT_FALSE(first.secret().empty());
  // The auditor repeats the admin's key and request: refused, no secret.
  grpc::Status s = call(auditor, &stolen);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(stolen.secret(), "");
  // The admin's own retry replays the token, but the secret is never stored.
  ASSERT_TRUE(call(admin_, &replay).ok());
  EXPECT_EQ(replay.token().id(), first.token().id());
  EXPECT_EQ(replay.secret(), "");
  EXPECT_EQ(testing::QueryInt(dir_->File("store.db"),
                              absl::StrCat("SELECT count(*) FROM "
                                           "idempotency_keys WHERE "
                                           "instr(response, '",
                                           first.secret(), "') > 0"))
                .value_or(-1),
            0);
}

TEST_F(GrpcServiceTest, RetriesOfRequestsWithMapsAreReplays) {
  v1::CreateIdentityRequest joiner;
  joiner.set_external_id("E1");
  for (int i = 0; i < 30; ++i) {
    (*joiner.mutable_attributes())[absl::StrCat("attr", i)] = "v";
  }
  const std::string csv = dir_->File("hr.csv");
  std::ofstream(csv) << "employee_id,email\nE1,e1@example.com\n";
  v1::CreateConnectorRequest connector;
  connector.set_business_id("hr");
  connector.set_type("csv");
  auto& config = *connector.mutable_config()->mutable_fields();
  config["path"].set_string_value(csv);
  config["delimiter"].set_string_value(",");
  config["max_field_bytes"].set_number_value(4096);
  config["max_record_bytes"].set_number_value(65536);
  auto& mapping = *config["mapping"].mutable_struct_value()->mutable_fields();
  mapping["employee_id"].set_string_value("external_id");
  mapping["email"].set_string_value("email");

  for (int attempt = 0; attempt < 5; ++attempt) {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    context.AddMetadata("idempotency-key", "joiner-E1");
    v1::Identity identity;
    grpc::Status s = stub_->CreateIdentity(&context, joiner, &identity);
    ASSERT_TRUE(s.ok()) << "attempt " << attempt << ": " << s.error_message();
    EXPECT_EQ(InitialMetadata(context, "idempotent-replayed"),
              attempt == 0 ? "" : "true");
  }
  for (int attempt = 0; attempt < 5; ++attempt) {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    context.AddMetadata("idempotency-key", "connector-hr");
    v1::ConfiguredConnector created;
    grpc::Status s = stub_->CreateConnector(&context, connector, &created);
    ASSERT_TRUE(s.ok()) << "attempt " << attempt << ": " << s.error_message();
    EXPECT_EQ(InitialMetadata(context, "idempotent-replayed"),
              attempt == 0 ? "" : "true");
  }
  EXPECT_EQ(IdentityCount(admin_), 1);
}

TEST_F(GrpcServiceTest, RateLimitAllowsTheBurstThenRefuses) {
  const std::string token = NewToken("burst", "auditor");
  v1::ListIdentitiesRequest request;
  request.set_limit(1);
  v1::ListIdentitiesResponse response;
  int accepted = 0;
  grpc::Status refused;
  for (int i = 0; i < 250; ++i) {
    grpc::Status s = ListIdentities(token, request, &response);
    if (s.ok()) {
      ++accepted;
    } else if (refused.ok()) {
      refused = s;
    }
  }
  // The clock is frozen: exactly the burst.
  EXPECT_EQ(accepted, 200);
  ExpectCode(refused, grpc::StatusCode::RESOURCE_EXHAUSTED, 429);
  EXPECT_THAT(refused.error_message(), HasSubstr("retry in"));

  // Buckets are per token.
  EXPECT_TRUE(ListIdentities(admin_, request, &response).ok());

  // 100 a second refill.
  limiter_clock_.Advance(absl::Seconds(1));
  accepted = 0;
  for (int i = 0; i < 150; ++i) {
    if (ListIdentities(token, request, &response).ok()) ++accepted;
  }
  EXPECT_EQ(accepted, 100);
}

TEST_F(GrpcServiceTest, StartSyncAndWatchTheRunUntilItEnds) {
  const v1::ConfiguredConnector connector = CsvConnector("workday-hr", 30);
  ASSERT_GT(connector.id(), 0);
  EXPECT_EQ(connector.mode(), "hosted");
  EXPECT_FALSE(connector.auth_config_set());
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::GetByIdRequest by_id;
    by_id.set_id(connector.id());
    v1::TestConnectorResponse tested;
    ASSERT_TRUE(stub_->TestConnector(&context, by_id, &tested).ok());
    EXPECT_TRUE(tested.ok()) << tested.error();
  }

  v1::SyncRun started;
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::StartSyncRequest start;
    start.set_connector_id(connector.id());
    start.set_chunk_size(5);
    ASSERT_TRUE(stub_->StartSync(&context, start, &started).ok());
  }
  EXPECT_GT(started.id(), 0);
  EXPECT_EQ(started.connector_id(), connector.id());
  EXPECT_EQ(started.status(), "running");
  EXPECT_EQ(started.chunk_size(), 5);

  grpc::ClientContext watch_context;
  Authorize(&watch_context, admin_);
  v1::GetByIdRequest watch;
  watch.set_id(started.id());
  std::unique_ptr<grpc::ClientReader<v1::SyncRun>> reader =
      stub_->WatchSyncRun(&watch_context, watch);
  std::vector<v1::SyncRun> updates;
  v1::SyncRun update;
  while (reader->Read(&update)) updates.push_back(update);
  grpc::Status finished = reader->Finish();
  ASSERT_TRUE(finished.ok()) << finished.error_message();

  ASSERT_FALSE(updates.empty());
  RecordProperty("updates", static_cast<int>(updates.size()));
  for (size_t i = 0; i < updates.size(); ++i) {
    EXPECT_EQ(updates[i].id(), started.id());
    if (i > 0) {
      EXPECT_GE(updates[i].processed(), updates[i - 1].processed());
    }
    if (i + 1 < updates.size()) {
      EXPECT_EQ(updates[i].status(), "running");
    }
  }
  const v1::SyncRun& last = updates.back();
  EXPECT_EQ(last.status(), "succeeded") << last.error();
  EXPECT_EQ(last.phase(), "done");
  EXPECT_EQ(last.processed(), 30);
  EXPECT_EQ(last.created(), 30);
  EXPECT_EQ(last.updated(), 0);
  EXPECT_EQ(last.rejected(), 0);
  EXPECT_EQ(last.chunks(), 6);
  EXPECT_TRUE(last.has_finished_at());

  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::SyncRun got;
    ASSERT_TRUE(stub_->GetSyncRun(&context, watch, &got).ok());
    EXPECT_TRUE(MessageDifferencer::Equals(got, last))
        << got.DebugString() << "\nvs\n"
        << last.DebugString();
  }
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::ListSyncRunsRequest runs;
    runs.set_connector_id(connector.id());
    v1::ListSyncRunsResponse listed;
    ASSERT_TRUE(stub_->ListSyncRuns(&context, runs, &listed).ok());
    ASSERT_EQ(listed.total(), 1);
    EXPECT_EQ(listed.items(0).id(), started.id());
  }
  {
    // An ended run cannot be cancelled: 409 on REST.
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::SyncRun out;
    ExpectCode(stub_->CancelSyncRun(&context, watch, &out),
               grpc::StatusCode::FAILED_PRECONDITION, 409);
  }
  v1::ListIdentitiesRequest by_source;
  by_source.set_source("workday-hr");
  by_source.set_limit(500);
  v1::ListIdentitiesResponse synced;
  ASSERT_TRUE(ListIdentities(admin_, by_source, &synced).ok());
  EXPECT_EQ(synced.total(), 30);
  ASSERT_EQ(synced.items_size(), 30);
  EXPECT_EQ(synced.items(0).external_id(), "E1");
  EXPECT_EQ(synced.items(0).email(), "e1@example.com");
  EXPECT_EQ(synced.items(0).connector_id(), connector.id());

  // A run that does not exist, and the watch of another tenant's run.
  grpc::ClientContext missing_context;
  Authorize(&missing_context, admin_);
  v1::GetByIdRequest missing;
  missing.set_id(started.id() + 1000);
  auto missing_reader = stub_->WatchSyncRun(&missing_context, missing);
  while (missing_reader->Read(&update)) {
  }
  ExpectCode(missing_reader->Finish(), grpc::StatusCode::NOT_FOUND, 404);
  grpc::ClientContext other_context;
  Authorize(&other_context, other_admin_);
  auto other_reader = stub_->WatchSyncRun(&other_context, watch);
  EXPECT_FALSE(other_reader->Read(&update));
  ExpectCode(other_reader->Finish(), grpc::StatusCode::NOT_FOUND, 404);
}

TEST_F(GrpcServiceTest, HealthServiceReportsServing) {
  grpc::GenericStub generic(channel_);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  // Only a safety net: a broken server fails the test instead of hanging it.
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  // grpc.health.v1.HealthCheckRequest{service: ""} is the empty message.
  std::unique_ptr<grpc::ClientAsyncResponseReader<grpc::ByteBuffer>> call =
      generic.PrepareUnaryCall(&context, "/grpc.health.v1.Health/Check",
                               ToBuffer(""), &cq);
  call->StartCall();
  grpc::ByteBuffer response;
  grpc::Status status;
  int tag = 0;
  call->Finish(&response, &status, &tag);
  ASSERT_TRUE(Next(cq, &tag));
  ASSERT_TRUE(status.ok()) << status.error_message();
  // HealthCheckResponse{status: SERVING (1)}.
  google::protobuf::UnknownFieldSet fields;
  ASSERT_TRUE(fields.ParseFromString(FromBuffer(response)));
  ASSERT_EQ(fields.field_count(), 1);
  EXPECT_EQ(fields.field(0).number(), 1);
  EXPECT_EQ(fields.field(0).varint(), 1u);
  Drain(cq);
}

TEST_F(GrpcServiceTest, ReflectionListsTheControlPlane) {
  grpc::GenericStub generic(channel_);
  grpc::CompletionQueue cq;
  grpc::ClientContext context;
  // Only a safety net: a broken server fails the test instead of hanging it.
  context.set_deadline(std::chrono::system_clock::now() +
                       std::chrono::seconds(30));
  auto call = generic.PrepareCall(
      &context,
      "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", &cq);
  ASSERT_NE(call, nullptr);
  int start = 0, write = 0, read = 0, done = 0, finish = 0;
  call->StartCall(&start);
  ASSERT_TRUE(Next(cq, &start));
  // ServerReflectionRequest{list_services (7): ""}.
  google::protobuf::UnknownFieldSet request;
  request.AddLengthDelimited(7, "");
  std::string bytes;
  ASSERT_TRUE(request.SerializeToString(&bytes));
  call->Write(ToBuffer(bytes), &write);
  ASSERT_TRUE(Next(cq, &write));
  grpc::ByteBuffer response;
  call->Read(&response, &read);
  ASSERT_TRUE(Next(cq, &read));
  call->WritesDone(&done);
  ASSERT_TRUE(Next(cq, &done));
  grpc::Status status;
  call->Finish(&status, &finish);
  ASSERT_TRUE(Next(cq, &finish));
  ASSERT_TRUE(status.ok()) << status.error_message();

  // ServerReflectionResponse.list_services_response (6) .service (1) .name
  // (1).
  std::vector<std::string> services;
  for (const std::string& list : Submessages(FromBuffer(response), 6)) {
    for (const std::string& service : Submessages(list, 1)) {
      for (const std::string& name : Submessages(service, 1)) {
        services.push_back(name);
      }
    }
  }
  EXPECT_THAT(services, ::testing::IsSupersetOf(
                            {"idsync.v1.ControlPlane", "grpc.health.v1.Health",
                             "grpc.reflection.v1alpha.ServerReflection"}));
  Drain(cq);
}

// --- Webhooks and callbacks -------------------------------------------------

class GrpcWebhookTest : public GrpcServiceTest {
 protected:
  grpc::Status CreateWebhook(const std::string& token, const std::string& url,
                             const std::vector<std::string>& types,
                             v1::CreateWebhookResponse* response,
                             const std::string& idempotency_key = "") {
    grpc::ClientContext context;
    Authorize(&context, token);
    if (!idempotency_key.empty()) {
      context.AddMetadata("idempotency-key", idempotency_key);
    }
    v1::CreateWebhookRequest request;
    request.set_url(url);
    for (const std::string& t : types) request.add_event_types(t);
    return stub_->CreateWebhook(&context, request, response);
  }
  grpc::Status GetWebhook(const std::string& token, int64_t id,
                          v1::Webhook* out) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::GetByIdRequest request;
    request.set_id(id);
    return stub_->GetWebhook(&context, request, out);
  }
  grpc::Status Deliveries(const std::string& token, int64_t webhook_id,
                          v1::ListDeliveriesResponse* out) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::ListDeliveriesRequest request;
    request.set_webhook_id(webhook_id);
    return stub_->ListDeliveries(&context, request, out);
  }
  grpc::Status Replay(const std::string& token, int64_t webhook_id,
                      int64_t delivery_id, v1::Delivery* out) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::ReplayDeliveryRequest request;
    request.set_webhook_id(webhook_id);
    request.set_delivery_id(delivery_id);
    return stub_->ReplayDelivery(&context, request, out);
  }
  grpc::Status CallbackSecret(const std::string& token,
                              v1::CallbackSecret* out) {
    grpc::ClientContext context;
    Authorize(&context, token);
    return stub_->GetCallbackSecret(&context, v1::GetCallbackSecretRequest(),
                                    out);
  }
  int64_t Count(const std::string& sql) {
    return testing::QueryInt(dir_->File("store.db"), sql).value_or(-1);
  }
};

class GrpcWebhookTargetTest : public GrpcWebhookTest {
 protected:
  GrpcWebhookTargetTest() { allow_private_callbacks_ = false; }
};

TEST_F(GrpcWebhookTest, CreateReadUpdateListAndDelete) {
  v1::CreateWebhookResponse created;
  ASSERT_TRUE(CreateWebhook(admin_, "http://127.0.0.1:9/hook",
                            {"identity.*", "sync.failed"}, &created)
                  .ok());
  const v1::Webhook& webhook = created.webhook();
  EXPECT_GT(webhook.id(), 0);
  EXPECT_TRUE(webhook.enabled());
  EXPECT_THAT(webhook.event_types(),
              ::testing::ElementsAre("identity.*", "sync.failed"));
  EXPECT_TRUE(absl::StartsWith(created.secret(), "whsec_"));
  EXPECT_TRUE(SigningKey(created.secret()).ok());

  const std::string auditor = NewToken("reader", "auditor");
  v1::Webhook got;
  ASSERT_TRUE(GetWebhook(auditor, webhook.id(), &got).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(got, webhook)) << got.DebugString();
  {
    grpc::ClientContext context;
    Authorize(&context, auditor);
    v1::ListWebhooksResponse list;
    ASSERT_TRUE(stub_->ListWebhooks(&context, v1::PageRequest(), &list).ok());
    ASSERT_EQ(list.items_size(), 1);
    EXPECT_EQ(list.total(), 1);
    EXPECT_TRUE(MessageDifferencer::Equals(list.items(0), webhook));
  }
  v1::CreateWebhookResponse refused;
  ExpectCode(CreateWebhook(auditor, "http://127.0.0.1:9/x", {"*"}, &refused),
             grpc::StatusCode::PERMISSION_DENIED, 403);
  ExpectCode(GetWebhook(other_admin_, webhook.id(), &got),
             grpc::StatusCode::NOT_FOUND, 404);

  v1::UpdateWebhookRequest update;
  update.set_id(webhook.id());
  update.set_url("https://127.0.0.1:8443/v2");
  update.add_event_types("*");
  update.set_enabled(false);
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::Webhook updated;
    ASSERT_TRUE(stub_->UpdateWebhook(&context, update, &updated).ok());
    EXPECT_EQ(updated.url(), "https://127.0.0.1:8443/v2");
    EXPECT_THAT(updated.event_types(), ::testing::ElementsAre("*"));
    EXPECT_FALSE(updated.enabled());
    ASSERT_TRUE(GetWebhook(admin_, webhook.id(), &got).ok());
    EXPECT_TRUE(MessageDifferencer::Equals(got, updated));
  }
  {
    grpc::ClientContext context;
    Authorize(&context, other_admin_);
    v1::Webhook out;
    ExpectCode(stub_->UpdateWebhook(&context, update, &out),
               grpc::StatusCode::NOT_FOUND, 404);
  }
  v1::GetByIdRequest by_id;
  by_id.set_id(webhook.id());
  {
    grpc::ClientContext context;
    Authorize(&context, other_admin_);
    v1::DeleteWebhookResponse out;
    ExpectCode(stub_->DeleteWebhook(&context, by_id, &out),
               grpc::StatusCode::NOT_FOUND, 404);
  }
  {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::DeleteWebhookResponse out;
    ASSERT_TRUE(stub_->DeleteWebhook(&context, by_id, &out).ok());
    EXPECT_TRUE(out.deleted());
    EXPECT_EQ(out.id(), webhook.id());
  }
  ExpectCode(GetWebhook(admin_, webhook.id(), &got),
             grpc::StatusCode::NOT_FOUND, 404);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM audit_events WHERE "
                               "action LIKE 'webhook.%' AND details LIKE "
                               "'%whsec_%'")),
            0);
  EXPECT_EQ(Count("SELECT count(*) FROM audit_events WHERE action LIKE "
                  "'webhook.%'"),
            3);
}

TEST_F(GrpcWebhookTest, IdempotentReplayOfCreateHasNoSecret) {
  v1::CreateWebhookResponse first, replay;
  ASSERT_TRUE(
      CreateWebhook(admin_, "http://127.0.0.1:9/hook", {"*"}, &first, "hook-1")
          .ok());
  ASSERT_FALSE(first.secret().empty());
  ASSERT_TRUE(
      CreateWebhook(admin_, "http://127.0.0.1:9/hook", {"*"}, &replay, "hook-1")
          .ok());
  EXPECT_TRUE(MessageDifferencer::Equals(replay.webhook(), first.webhook()));
  EXPECT_EQ(replay.secret(), "");
  EXPECT_EQ(Count("SELECT count(*) FROM webhooks"), 1);
  EXPECT_EQ(Count(absl::StrCat("SELECT count(*) FROM idempotency_keys WHERE "
                               "instr(response, '",
                               first.secret().substr(6), "') > 0")),
            0);
}

TEST_F(GrpcWebhookTest, BadEventTypesAreRefusedNamingTheEntry) {
  v1::CreateWebhookResponse out;
  grpc::Status s =
      CreateWebhook(admin_, "http://127.0.0.1:9/hook",
                    {"identity.created", "identity.exploded"}, &out);
  ExpectCode(s, grpc::StatusCode::INVALID_ARGUMENT, 400);
  EXPECT_THAT(s.error_message(), HasSubstr("identity.exploded"));
  ExpectCode(CreateWebhook(admin_, "http://127.0.0.1:9/hook", {}, &out),
             grpc::StatusCode::INVALID_ARGUMENT, 400);
  EXPECT_EQ(Count("SELECT count(*) FROM webhooks"), 0);
}

TEST_F(GrpcWebhookTargetTest, PrivateTargetsAreRefused) {
  const v1::ConfiguredConnector connector = CsvConnector("hr", 2);
  for (const std::string url :
       {"http://127.0.0.1/", "http://169.254.169.254/", "http://[::1]/",
        "http://10.0.0.7/", "http://localhost/"}) {
    SCOPED_TRACE(url);
    v1::CreateWebhookResponse out;
    grpc::Status s = CreateWebhook(admin_, url, {"*"}, &out);
    ExpectCode(s, grpc::StatusCode::INVALID_ARGUMENT, 400);
    EXPECT_THAT(s.error_message(), HasSubstr("'url'"));
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::StartSyncRequest start;
    start.set_connector_id(connector.id());
    start.set_callback_url(url);
    v1::SyncRun run;
    s = stub_->StartSync(&context, start, &run);
    ExpectCode(s, grpc::StatusCode::INVALID_ARGUMENT, 400);
    EXPECT_THAT(s.error_message(), HasSubstr("'callback_url'"));
  }
  EXPECT_EQ(Count("SELECT count(*) FROM webhooks"), 0);
  EXPECT_EQ(Count("SELECT count(*) FROM sync_runs"), 0);
}

TEST_F(GrpcWebhookTest, DeliveriesAreListedAndReplayed) {
  v1::CreateWebhookResponse created;
  ASSERT_TRUE(CreateWebhook(admin_, "http://127.0.0.1:9/hook",
                            {"identity.created"}, &created)
                  .ok());
  const int64_t webhook = created.webhook().id();
  Create(admin_, "E1");
  v1::ListDeliveriesResponse list;
  ASSERT_TRUE(Deliveries(admin_, webhook, &list).ok());
  ASSERT_EQ(list.items_size(), 1);
  const v1::Delivery delivery = list.items(0);
  EXPECT_EQ(delivery.event_type(), "identity.created");
  EXPECT_EQ(delivery.state(), "pending");
  EXPECT_TRUE(absl::StartsWith(delivery.event_id(), "msg_"));
  ExpectCode(Deliveries(other_admin_, webhook, &list),
             grpc::StatusCode::NOT_FOUND, 404);

  ASSERT_TRUE(testing::ExecSql(dir_->File("store.db"),
                               absl::StrCat("UPDATE deliveries SET "
                                            "state='dead', attempts=5 WHERE "
                                            "id=",
                                            delivery.id()))
                  .ok());
  v1::Delivery replayed;
  const std::string auditor = NewToken("reader", "auditor");
  ExpectCode(Replay(auditor, webhook, delivery.id(), &replayed),
             grpc::StatusCode::PERMISSION_DENIED, 403);
  ExpectCode(Replay(other_admin_, webhook, delivery.id(), &replayed),
             grpc::StatusCode::NOT_FOUND, 404);
  ExpectCode(Replay(admin_, webhook, delivery.id() + 1000, &replayed),
             grpc::StatusCode::NOT_FOUND, 404);
  ASSERT_TRUE(Replay(admin_, webhook, delivery.id(), &replayed).ok());
  EXPECT_EQ(replayed.id(), delivery.id());
  EXPECT_EQ(replayed.state(), "pending");
  EXPECT_EQ(replayed.attempts(), 0);
  ASSERT_TRUE(Deliveries(auditor, webhook, &list).ok());
  ASSERT_EQ(list.items_size(), 1);
  EXPECT_EQ(list.items(0).state(), "pending");
  EXPECT_EQ(list.items(0).attempts(), 0);
}

TEST_F(GrpcWebhookTest, CallbackSecretIsAdminOnlyAndStable) {
  const std::string auditor = NewToken("reader", "auditor");
  v1::CallbackSecret first, second, theirs;
  ExpectCode(CallbackSecret(auditor, &first),
             grpc::StatusCode::PERMISSION_DENIED, 403);
  ASSERT_TRUE(CallbackSecret(admin_, &first).ok());
  EXPECT_TRUE(absl::StartsWith(first.secret(), "whsec_"));
  ASSERT_TRUE(CallbackSecret(admin_, &second).ok());
  EXPECT_EQ(second.secret(), first.secret());
  ASSERT_TRUE(CallbackSecret(other_admin_, &theirs).ok());
  EXPECT_NE(theirs.secret(), first.secret());
}

// --- Agents ------------------------------------------------------------------

// With an AgentHub serving AgentSpine on the same server, as main.cc runs it.
class GrpcAgentTest : public GrpcServiceTest {
 protected:
  GrpcAgentTest() { with_agent_hub_ = true; }

  // An agent's stream to the hub.
  struct AgentStream {
    std::unique_ptr<grpc::ClientContext> context;
    std::unique_ptr<
        grpc::ClientReaderWriter<v1::AgentMessage, v1::DispatcherMessage>>
        stream;
  };

  grpc::Status CreateRegistration(const std::string& token,
                                  const std::string& name,
                                  const std::string& group,
                                  v1::CreateRegistrationTokenResponse* out,
                                  const std::string& idempotency_key = "") {
    grpc::ClientContext context;
    Authorize(&context, token);
    if (!idempotency_key.empty()) {
      context.AddMetadata("idempotency-key", idempotency_key);
    }
    v1::CreateRegistrationTokenRequest request;
    request.set_name(name);
    request.set_group(group);
    return stub_->CreateRegistrationToken(&context, request, out);
  }

  // Registers through the store, as the spine does; the agent token in
  // *agent_token.
  absl::StatusOr<AgentRow> RegisterWith(const std::string& registration,
                                        std::string* agent_token = nullptr) {
    const std::string secret = idsync::NewToken(kAgentTokenPrefix);
    auto agent =
        store_->RegisterAgent(TokenHash(registration), "", TokenHash(secret),
                              secret.substr(0, kAgentTokenPrefix.size() + 4));
    if (agent.ok() && agent_token != nullptr) *agent_token = secret;
    return agent;
  }

  // A registration token from `admin`, then an agent registered with it.
  int64_t NewAgent(const std::string& admin, const std::string& name,
                   const std::string& group, std::string* agent_token) {
    v1::CreateRegistrationTokenResponse registration;
    grpc::Status s = CreateRegistration(admin, name, group, &registration);
    EXPECT_TRUE(s.ok()) << s.error_message();
    auto agent = RegisterWith(registration.token(), agent_token);
    EXPECT_TRUE(agent.ok()) << agent.status();
    return agent.ok() ? agent->id : 0;
  }

  grpc::Status GetAgent(const std::string& token, int64_t id, v1::Agent* out) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::GetByIdRequest request;
    request.set_id(id);
    return stub_->GetAgent(&context, request, out);
  }
  grpc::Status ListAgents(const std::string& token,
                          v1::ListAgentsResponse* out) {
    grpc::ClientContext context;
    Authorize(&context, token);
    return stub_->ListAgents(&context, v1::PageRequest(), out);
  }
  grpc::Status DeleteAgent(const std::string& token, int64_t id,
                           v1::Agent* out) {
    grpc::ClientContext context;
    Authorize(&context, token);
    v1::GetByIdRequest request;
    request.set_id(id);
    return stub_->DeleteAgent(&context, request, out);
  }

  // Opens the agent's stream and says hello; *welcome is the answer (the
  // stream is open if it came).
  AgentStream Connect(const std::string& agent_token,
                      v1::DispatcherMessage* welcome) {
    AgentStream a;
    a.context = std::make_unique<grpc::ClientContext>();
    a.context->AddMetadata("authorization",
                           absl::StrCat("Bearer ", agent_token));
    // Only a safety net: a broken hub fails the test instead of hanging it.
    a.context->set_deadline(std::chrono::system_clock::now() +
                            std::chrono::seconds(30));
    a.stream = spine_->Connect(a.context.get());
    v1::AgentMessage hello;
    hello.mutable_hello()->set_version("2.1.0");
    hello.mutable_hello()->add_connector_types("csv");
    hello.mutable_hello()->add_connector_types("ldap");
    hello.mutable_hello()->set_capacity(1);
    a.stream->Write(hello);
    if (!a.stream->Read(welcome)) welcome->Clear();
    return a;
  }

  // Reads until the hub closes the stream; how long that took.
  static absl::Duration WaitForClose(AgentStream& a, grpc::Status* status) {
    const absl::Time start = absl::Now();
    v1::DispatcherMessage m;
    while (a.stream->Read(&m)) {
    }
    *status = a.stream->Finish();
    return absl::Now() - start;
  }

  void SetUp() override {
    GrpcServiceTest::SetUp();
    if (channel_ != nullptr) spine_ = v1::AgentSpine::NewStub(channel_);
  }

  std::unique_ptr<v1::AgentSpine::Stub> spine_;
};

TEST_F(GrpcAgentTest, RegistrationTokenIsAdminOnlyAndShownOnce) {
  v1::CreateRegistrationTokenResponse first, replay, refused;
  ASSERT_TRUE(
      CreateRegistration(admin_, "branch-dc1", "sites", &first, "reg-1").ok());
  EXPECT_TRUE(absl::StartsWith(first.token(), "idsync_reg_")) << first.token();
  EXPECT_GT(first.id(), 0);
  EXPECT_EQ(first.name(), "branch-dc1");
  EXPECT_EQ(first.group(), "sites");
  EXPECT_TRUE(first.has_created_at());
  ASSERT_TRUE(
      CreateRegistration(admin_, "branch-dc1", "sites", &replay, "reg-1").ok());
  EXPECT_EQ(replay.id(), first.id());
  EXPECT_EQ(replay.token(), "");
  EXPECT_EQ(testing::QueryInt(dir_->File("store.db"),
                              absl::StrCat("SELECT count(*) FROM "
                                           "idempotency_keys WHERE "
                                           "instr(response, '",
                                           first.token().substr(11), "') > 0"))
                .value_or(-1),
            0);
  auto row = store_->FindToken(TokenHash(first.token()));
  ASSERT_TRUE(row.ok()) << row.status();
  EXPECT_EQ(row->kind, "registration");
  EXPECT_EQ(row->role, "agent");
  EXPECT_EQ(row->agent_group, "sites");

  const std::string auditor = NewToken("reader", "auditor");
  ExpectCode(CreateRegistration(auditor, "dc2", "", &refused),
             grpc::StatusCode::PERMISSION_DENIED, 403);
  ExpectCode(CreateRegistration(admin_, "bad name!", "", &refused),
             grpc::StatusCode::INVALID_ARGUMENT, 400);
  EXPECT_EQ(refused.token(), "");
}

TEST_F(GrpcAgentTest, AgentsAreListedReadAndRegisterOnce) {
  v1::CreateRegistrationTokenResponse registration;
  ASSERT_TRUE(
      CreateRegistration(admin_, "branch-dc1", "sites", &registration).ok());
  auto agent = RegisterWith(registration.token());
  ASSERT_TRUE(agent.ok()) << agent.status();
  auto again = RegisterWith(registration.token());
  EXPECT_TRUE(absl::IsPermissionDenied(again.status())) << again.status();
  // Through the spine as well.
  grpc::ClientContext context;
  v1::RegisterAgentRequest request;
  request.set_registration_token(registration.token());
  v1::RegisterAgentResponse response;
  ExpectCode(spine_->Register(&context, request, &response),
             grpc::StatusCode::PERMISSION_DENIED, 403);

  v1::ListAgentsResponse list;
  ASSERT_TRUE(ListAgents(admin_, &list).ok());
  ASSERT_EQ(list.total(), 1);
  ASSERT_EQ(list.items_size(), 1);
  const v1::Agent& a = list.items(0);
  EXPECT_EQ(a.id(), agent->id);
  EXPECT_EQ(a.name(), "branch-dc1");
  EXPECT_EQ(a.group(), "sites");
  EXPECT_EQ(a.token_id(), agent->token_id);
  EXPECT_FALSE(a.online());
  EXPECT_FALSE(a.has_revoked_at());
  EXPECT_TRUE(a.has_created_at());
  v1::Agent got;
  ASSERT_TRUE(GetAgent(admin_, agent->id, &got).ok());
  EXPECT_TRUE(MessageDifferencer::Equals(got, a));
  const std::string auditor = NewToken("reader", "auditor");
  EXPECT_TRUE(GetAgent(auditor, agent->id, &got).ok());

  // With a hub, online is the hub's word: a stored flag without a stream
  // (say, left by a crashed process) is not online.
  ASSERT_TRUE(store_->SetAgentOnline(agent->id, true, "2.0.0", {"csv"}).ok());
  ASSERT_TRUE(GetAgent(admin_, agent->id, &got).ok());
  EXPECT_FALSE(got.online());
  EXPECT_EQ(got.version(), "2.0.0");

  ExpectCode(GetAgent(other_admin_, agent->id, &got),
             grpc::StatusCode::NOT_FOUND, 404);
  ExpectCode(DeleteAgent(other_admin_, agent->id, &got),
             grpc::StatusCode::NOT_FOUND, 404);
  ExpectCode(DeleteAgent(auditor, agent->id, &got),
             grpc::StatusCode::PERMISSION_DENIED, 403);
  ASSERT_TRUE(ListAgents(other_admin_, &list).ok());
  EXPECT_EQ(list.total(), 0);
}

// A registered agent connects; DELETE revokes its token and closes its
// stream at once, and the token cannot connect again.
TEST_F(GrpcAgentTest, DeleteAgentClosesItsStreamAtOnce) {
  v1::CreateRegistrationTokenResponse registration;
  ASSERT_TRUE(
      CreateRegistration(admin_, "branch-dc1", "sites", &registration).ok());
  // Registered through the spine, as idsync-agent does.
  grpc::ClientContext register_context;
  v1::RegisterAgentRequest request;
  request.set_registration_token(registration.token());
  v1::RegisterAgentResponse registered;
  grpc::Status s = spine_->Register(&register_context, request, &registered);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(absl::StartsWith(registered.agent_token(), "idsync_agt_"));
  const int64_t id = registered.agent_id();

  v1::DispatcherMessage welcome;
  AgentStream stream = Connect(registered.agent_token(), &welcome);
  ASSERT_TRUE(welcome.has_welcome()) << welcome.DebugString();
  EXPECT_EQ(welcome.welcome().agent_id(), id);
  v1::Agent agent;
  ASSERT_TRUE(GetAgent(admin_, id, &agent).ok());
  EXPECT_TRUE(agent.online());
  EXPECT_EQ(agent.version(), "2.1.0");
  EXPECT_THAT(agent.connector_types(), ::testing::ElementsAre("csv", "ldap"));
  EXPECT_TRUE(agent.has_last_seen_at());
  // Its token is still only for the spine.
  v1::ListAgentsResponse list;
  ExpectCode(ListAgents(registered.agent_token(), &list),
             grpc::StatusCode::PERMISSION_DENIED, 403);

  v1::Agent deleted;
  ASSERT_TRUE(DeleteAgent(admin_, id, &deleted).ok());
  EXPECT_FALSE(deleted.online());
  EXPECT_TRUE(deleted.has_revoked_at());
  grpc::Status closed;
  EXPECT_LT(WaitForClose(stream, &closed), absl::Seconds(5));
  EXPECT_FALSE(closed.ok());
  auto token = store_->FindToken(TokenHash(registered.agent_token()));
  ASSERT_TRUE(token.ok()) << token.status();
  EXPECT_TRUE(token->revoked_at.has_value());

  // Refused from now on: on the spine, and here (401).
  v1::DispatcherMessage none;
  AgentStream retry = Connect(registered.agent_token(), &none);
  EXPECT_FALSE(none.has_welcome());
  grpc::Status refused;
  WaitForClose(retry, &refused);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAUTHENTICATED)
      << refused.error_message();
  ExpectCode(ListAgents(registered.agent_token(), &list),
             grpc::StatusCode::UNAUTHENTICATED, 401);
  ASSERT_TRUE(GetAgent(admin_, id, &agent).ok());
  EXPECT_FALSE(agent.online());
  EXPECT_TRUE(
      MessageDifferencer::Equals(agent.revoked_at(), deleted.revoked_at()));
}

// Revoking the agent's token through RevokeToken does the same.
TEST_F(GrpcAgentTest, RevokingAnAgentsTokenClosesItsStream) {
  std::string agent_token;
  const int64_t id = NewAgent(admin_, "branch-dc1", "", &agent_token);
  ASSERT_GT(id, 0);
  v1::DispatcherMessage welcome;
  AgentStream stream = Connect(agent_token, &welcome);
  ASSERT_TRUE(welcome.has_welcome()) << welcome.DebugString();
  v1::Agent agent;
  ASSERT_TRUE(GetAgent(admin_, id, &agent).ok());
  ASSERT_TRUE(agent.online());

  grpc::ClientContext context;
  Authorize(&context, admin_);
  v1::GetByIdRequest request;
  request.set_id(agent.token_id());
  v1::Token revoked;
  grpc::Status s = stub_->RevokeToken(&context, request, &revoked);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(revoked.has_revoked_at());
  grpc::Status closed;
  EXPECT_LT(WaitForClose(stream, &closed), absl::Seconds(5));
  ASSERT_TRUE(GetAgent(admin_, id, &agent).ok());
  EXPECT_FALSE(agent.online());
  EXPECT_TRUE(agent.has_revoked_at());
}

// A stopping dispatcher closes agent streams itself (they never end on
// their own) and refuses new ones; the agent shows offline.
TEST_F(GrpcAgentTest, ShutdownClosesAgentStreams) {
  std::string agent_token;
  const int64_t id = NewAgent(admin_, "branch-dc1", "", &agent_token);
  ASSERT_GT(id, 0);
  v1::DispatcherMessage welcome;
  AgentStream stream = Connect(agent_token, &welcome);
  ASSERT_TRUE(welcome.has_welcome()) << welcome.DebugString();
  hub_->Shutdown();
  grpc::Status closed;
  EXPECT_LT(WaitForClose(stream, &closed), absl::Seconds(5));
  EXPECT_FALSE(closed.ok());
  v1::DispatcherMessage none;
  AgentStream again = Connect(agent_token, &none);
  EXPECT_FALSE(none.has_welcome());
  grpc::Status refused;
  WaitForClose(again, &refused);
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::UNAVAILABLE)
      << refused.error_message();
  // The client sees the close before the handler has cleaned up: poll.
  v1::Agent agent;
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  do {
    ASSERT_TRUE(GetAgent(admin_, id, &agent).ok());
    if (!agent.online()) break;
    absl::SleepFor(absl::Milliseconds(10));
  } while (absl::Now() < deadline);
  EXPECT_FALSE(agent.online());
}

// A dispatcher killed with its agents online left them "online" in the
// store; the next start says offline until they reconnect.
TEST_F(GrpcAgentTest, AgentsAreOfflineAfterARestart) {
  std::string agent_token;
  const int64_t id = NewAgent(admin_, "branch-dc1", "", &agent_token);
  ASSERT_GT(id, 0);
  v1::DispatcherMessage welcome;
  AgentStream stream = Connect(agent_token, &welcome);
  ASSERT_TRUE(welcome.has_welcome()) << welcome.DebugString();
  // The stored flag (what the API shows when it has no live hub).
  auto stored = [&] {
    auto row = store_->GetAgent(TenantId("acme"), id);
    EXPECT_TRUE(row.ok()) << row.status();
    return row.ok() && row->online;
  };
  ASSERT_TRUE(stored());
  AgentHub restarted(*store_, Clock::Real());  // What the next start builds.
  EXPECT_FALSE(stored());
}

TEST_F(GrpcAgentTest, AgentAndRegistrationTokensAreRefused) {
  std::string agent_token;
  ASSERT_GT(NewAgent(admin_, "branch-dc1", "", &agent_token), 0);
  v1::CreateRegistrationTokenResponse registration;
  ASSERT_TRUE(CreateRegistration(admin_, "dc2", "", &registration).ok());
  for (const std::string& token : {agent_token, registration.token()}) {
    SCOPED_TRACE(token.substr(0, 11));
    v1::ListAgentsResponse list;
    grpc::Status s = ListAgents(token, &list);
    ExpectCode(s, grpc::StatusCode::PERMISSION_DENIED, 403);
    EXPECT_THAT(s.error_message(), HasSubstr("only works on the agent spine"));
    v1::CreateRegistrationTokenResponse more;
    ExpectCode(CreateRegistration(token, "sneaky", "", &more),
               grpc::StatusCode::PERMISSION_DENIED, 403);
    Create(token, "E1", &s);
    ExpectCode(s, grpc::StatusCode::PERMISSION_DENIED, 403);
  }
  // The registration token still works once.
  EXPECT_TRUE(RegisterWith(registration.token()).ok());
}

TEST_F(GrpcAgentTest, ConnectorsInAgentModeAreBoundToAgents) {
  auto create = [&](const std::string& business_id, const std::string& agent,
                    v1::ConfiguredConnector* out) {
    grpc::ClientContext context;
    Authorize(&context, admin_);
    v1::CreateConnectorRequest request;
    request.set_business_id(business_id);
    request.set_type("csv");
    request.set_mode("agent");
    request.set_agent(agent);
    (*request.mutable_config()->mutable_fields())["path"].set_string_value(
        "/srv/agent-only/hr.csv");
    return stub_->CreateConnector(&context, request, out);
  };
  v1::ConfiguredConnector connector;
  ASSERT_TRUE(create("onprem-hr", "sites", &connector).ok());
  EXPECT_EQ(connector.mode(), "agent");
  EXPECT_EQ(connector.agent(), "sites");
  v1::ConfiguredConnector unbound;
  grpc::Status s = create("unbound-hr", "", &unbound);
  ExpectCode(s, grpc::StatusCode::INVALID_ARGUMENT, 400);
  EXPECT_THAT(s.error_message(), HasSubstr("'agent' is required"));

  grpc::ClientContext test_context;
  Authorize(&test_context, admin_);
  v1::GetByIdRequest by_id;
  by_id.set_id(connector.id());
  v1::TestConnectorResponse tested;
  s = stub_->TestConnector(&test_context, by_id, &tested);
  ExpectCode(s, grpc::StatusCode::FAILED_PRECONDITION, 409);
  EXPECT_THAT(s.error_message(), HasSubstr("not supported"));

  grpc::ClientContext update_context;
  Authorize(&update_context, admin_);
  v1::UpdateConnectorRequest update;
  update.set_id(connector.id());
  update.set_agent("branch-dc1");
  v1::ConfiguredConnector updated;
  s = stub_->UpdateConnector(&update_context, update, &updated);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(updated.agent(), "branch-dc1");
}

}  // namespace
}  // namespace idsync
