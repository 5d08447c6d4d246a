// The remote connector against an in-process idsync.v1.Connector server
// that can be told to break the protocol: every misbehaviour must end the
// run with an error that says what the remote did, never a hang or a crash.
#include "connector/remote/remote_connector.h"

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "connector/registry.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "idsync/v1/agent.grpc.pb.h"
#include "idsync/v1/connector.grpc.pb.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;
using v1::SyncChunk;
using v1::SyncEvent;

enum class Script {
  kGood,              // 3 chunks of 2 identities, then a result.
  kChunkAfterResult,  // A result, then a chunk.
  kSequenceBackwards,
  kNoResult,
  kFailedResult,
  kOversized,       // One chunk with a 2 MiB attribute.
  kTooManyRecords,  // A chunk of kMaxChunkSize + 1 identities.
  kGoesQuiet,       // One chunk, then silence until cancelled.
  kEmptyEvent,
  kEndless,  // Chunks until cancelled.
};

class ScriptedService final : public v1::Connector::Service {
 public:
  explicit ScriptedService(Script script) : script_(script) {}

  grpc::Status Describe(grpc::ServerContext*, const v1::DescribeRequest*,
                        v1::ConnectorInfo* info) override {
    info->set_type("scripted");
    info->set_version("7");
    info->add_capabilities("full");
    return grpc::Status::OK;
  }
  grpc::Status TestConnection(grpc::ServerContext*,
                              const v1::TestConnectionRequest* request,
                              v1::TestConnectionResponse* response) override {
    auto it = request->auth_config().fields().find("password");
    const bool ok = it != request->auth_config().fields().end() &&
                    it->second.string_value() == "right";
    response->set_ok(ok);
    if (!ok) response->set_error("login refused");
    return grpc::Status::OK;
  }
  grpc::Status Sync(grpc::ServerContext* context,
                    const v1::SyncRequest* request,
                    grpc::ServerWriter<SyncEvent>* writer) override {
    {
      absl::MutexLock lock(&mu_);
      last_request_ = *request;
    }
    auto chunk = [](int64_t sequence, int records) {
      SyncEvent e;
      SyncChunk* c = e.mutable_chunk();
      c->set_sequence(sequence);
      c->set_resume_token(absl::StrCat("at-", sequence));
      for (int i = 0; i < records; ++i) {
        c->add_identities()->set_external_id(absl::StrCat(sequence, "-", i));
      }
      return e;
    };
    SyncEvent result;
    result.mutable_result()->set_success(true);
    result.mutable_result()->set_next_sync_token("wm-42");
    switch (script_) {
      case Script::kGood:
        for (int s = 1; s <= 3; ++s) writer->Write(chunk(s, 2));
        writer->Write(result);
        break;
      case Script::kChunkAfterResult:
        writer->Write(result);
        writer->Write(chunk(1, 1));
        break;
      case Script::kSequenceBackwards:
        writer->Write(chunk(2, 1));
        writer->Write(chunk(1, 1));
        writer->Write(result);
        break;
      case Script::kNoResult:
        writer->Write(chunk(1, 1));
        break;
      case Script::kFailedResult: {
        SyncEvent failed;
        failed.mutable_result()->set_error("HR API answered 503");
        writer->Write(chunk(1, 1));
        writer->Write(failed);
        break;
      }
      case Script::kOversized: {
        SyncEvent e = chunk(1, 1);
        (*e.mutable_chunk()->mutable_identities(0)->mutable_attributes())["x"] =
            std::string(2 << 20, 'x');
        writer->Write(e);
        writer->Write(result);
        break;
      }
      case Script::kTooManyRecords:
        writer->Write(chunk(1, kMaxChunkSize + 1));
        writer->Write(result);
        break;
      case Script::kGoesQuiet:
        writer->Write(chunk(1, 1));
        while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(10));
        MarkCancelled();
        break;
      case Script::kEmptyEvent:
        writer->Write(SyncEvent());
        break;
      case Script::kEndless:
        for (int s = 1; !context->IsCancelled() && s < 100000; ++s) {
          if (!writer->Write(chunk(s, 1))) break;
        }
        while (!context->IsCancelled()) absl::SleepFor(absl::Milliseconds(10));
        MarkCancelled();
        break;
    }
    return grpc::Status::OK;
  }

  v1::SyncRequest last_request() {
    absl::MutexLock lock(&mu_);
    return last_request_;
  }
  bool WaitCancelled() {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(&cancelled_),
                                absl::Seconds(10));
  }

 private:
  void MarkCancelled() {
    absl::MutexLock lock(&mu_);
    cancelled_ = true;
  }

  const Script script_;
  absl::Mutex mu_;
  v1::SyncRequest last_request_ ABSL_GUARDED_BY(mu_);
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
};

class CollectingSink final : public RecordSink {
 public:
  absl::Status Write(SyncChunk chunk) override {
    if (static_cast<int>(chunks.size()) == fail_after) {
      return absl::CancelledError("run cancelled");
    }
    chunks.push_back(std::move(chunk));
    return absl::OkStatus();
  }
  void SetNextSyncToken(std::string token) override { next = std::move(token); }

  int fail_after = -1;
  std::vector<SyncChunk> chunks;
  std::string next;
};

google::protobuf::Struct Json(const std::string& text) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &s).ok())
      << text;
  return s;
}

class RemoteConnectorTest : public ::testing::Test {
 protected:
  void Serve(Script script) {
    service_ = std::make_unique<ScriptedService>(script);
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port_);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
  }
  void TearDown() override {
    if (server_) server_->Shutdown(absl::ToChronoTime(absl::Now()));
  }

  std::unique_ptr<Connector> Create(const std::string& extra = "",
                                    const std::string& auth = "{}") {
    ConnectorSpec spec;
    spec.business_id = "remote-test";
    spec.config = Json(
        absl::StrCat(R"({"address": "127.0.0.1:)", port_, R"(")", extra, "}"));
    spec.auth_config = Json(auth);
    auto c = CreateRemoteConnector(spec);
    EXPECT_TRUE(c.ok()) << c.status();
    return c.ok() ? *std::move(c) : nullptr;
  }

  absl::Status Sync(Script script, CollectingSink& sink,
                    const std::string& extra = "") {
    Serve(script);
    auto c = Create(extra);
    if (c == nullptr) return absl::InternalError("no connector");
    v1::SyncRequest request;
    request.set_chunk_size(2);
    return c->Sync(request, sink);
  }

  std::unique_ptr<ScriptedService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
};

TEST_F(RemoteConnectorTest, StreamsChunksAndTheWatermark) {
  Serve(Script::kGood);
  auto c = Create("", R"({"password": "right"})");
  ASSERT_NE(c, nullptr);
  v1::SyncRequest request;
  request.set_chunk_size(2);
  request.set_resume_token("at-0");
  CollectingSink sink;
  ASSERT_TRUE(c->Sync(request, sink).ok());
  ASSERT_EQ(sink.chunks.size(), 3u);
  EXPECT_EQ(sink.chunks[2].identities(1).external_id(), "3-1");
  EXPECT_EQ(sink.chunks[1].resume_token(), "at-2");
  EXPECT_EQ(sink.next, "wm-42");
  // The request reaches the remote whole, with the connector's secrets.
  v1::SyncRequest seen = service_->last_request();
  EXPECT_EQ(seen.resume_token(), "at-0");
  EXPECT_EQ(seen.chunk_size(), 2);
  EXPECT_EQ(seen.auth_config().fields().at("password").string_value(), "right");
}

TEST_F(RemoteConnectorTest, DescribeAndTestConnection) {
  Serve(Script::kGood);
  auto good = Create("", R"({"password": "right"})");
  auto info = good->Describe();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->type(), "scripted");
  EXPECT_EQ(info->version(), "7");
  EXPECT_TRUE(good->TestConnection().ok());

  absl::Status bad = Create("", R"({"password": "wrong"})")->TestConnection();
  EXPECT_EQ(bad.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(bad.message(), HasSubstr("login refused"));
  EXPECT_THAT(bad.message(), ::testing::Not(HasSubstr("wrong")));
}

TEST_F(RemoteConnectorTest, ProtocolViolationsNameWhatTheRemoteDid) {
  struct Case {
    Script script;
    absl::StatusCode code;
    std::string says;
  };
  const std::vector<Case> cases = {
      {Script::kChunkAfterResult, absl::StatusCode::kDataLoss,
       "sent a message after its result"},
      {Script::kSequenceBackwards, absl::StatusCode::kDataLoss,
       "sent chunk 1 after 2"},
      {Script::kNoResult, absl::StatusCode::kDataLoss,
       "ended its stream without a result"},
      {Script::kFailedResult, absl::StatusCode::kAborted,
       "reported a failed sync: HR API answered 503"},
      {Script::kTooManyRecords, absl::StatusCode::kDataLoss,
       "sent a chunk of 10001 records"},
      {Script::kEmptyEvent, absl::StatusCode::kDataLoss,
       "neither a chunk nor a result"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.says);
    CollectingSink sink;
    absl::Status s = Sync(c.script, sink);
    EXPECT_EQ(s.code(), c.code) << s;
    EXPECT_THAT(s.message(), HasSubstr(c.says));
    EXPECT_THAT(s.message(), HasSubstr("remote connector at 127.0.0.1:"));
    EXPECT_TRUE(sink.next.empty()) << "no watermark from a broken run";
    TearDown();
    server_.reset();
  }
}

TEST_F(RemoteConnectorTest, OversizedMessageIsRefused) {
  CollectingSink sink;
  absl::Status s = Sync(Script::kOversized, sink, R"(, "max_message_mb": 1)");
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_THAT(s.message(), HasSubstr("max_message_mb"));
  EXPECT_TRUE(sink.chunks.empty());
}

TEST_F(RemoteConnectorTest, AStreamThatGoesQuietIsCancelled) {
  CollectingSink sink;
  absl::Status s =
      Sync(Script::kGoesQuiet, sink, R"(, "idle_timeout_seconds": 1)");
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(s.message(), HasSubstr("sent nothing for 1s"));
  EXPECT_EQ(sink.chunks.size(), 1u);
  EXPECT_TRUE(service_->WaitCancelled()) << "the remote learns the run ended";
}

TEST_F(RemoteConnectorTest, ASinkThatStopsCancelsTheRemote) {
  CollectingSink sink;
  sink.fail_after = 5;
  absl::Status s = Sync(Script::kEndless, sink);
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_EQ(sink.chunks.size(), 5u);
  EXPECT_TRUE(service_->WaitCancelled());
}

TEST_F(RemoteConnectorTest, UnreachableAndWrongService) {
  // A port nobody listens on: bind one, then close it.
  Serve(Script::kGood);
  const int closed = port_;
  TearDown();
  server_.reset();
  port_ = closed;
  auto c = Create(R"(, "call_timeout_seconds": 2)");
  absl::Status s = c->TestConnection();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("cannot reach it"));
  CollectingSink sink;
  EXPECT_EQ(c->Sync({}, sink).code(), absl::StatusCode::kUnavailable);

  // Something else listens there: the agent spine, say.
  v1::AgentSpine::Service other;
  grpc::ServerBuilder builder;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                           &port_);
  builder.RegisterService(&other);
  server_ = builder.BuildAndStart();
  ASSERT_NE(server_, nullptr);
  auto wrong = Create();
  auto info = wrong->Describe();
  EXPECT_EQ(info.status().code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(info.status().message(), HasSubstr("idsync.v1.Connector"));
}

TEST(RemoteOptionsTest, ConfigErrorsNameTheKey) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {R"({})", "address"},
      {R"({"address": "nohost"})", "is not HOST:PORT"},
      {R"({"address": "127.0.0.1:99999"})", "is not HOST:PORT"},
      {R"({"address": "unix:"})", "socket path"},
      {R"({"address": "127.0.0.1:1", "colour": 1})", "colour"},
      {R"({"address": "127.0.0.1:1", "idle_timeout_seconds": 0})",
       "idle_timeout_seconds"},
      {R"({"address": "127.0.0.1:1", "max_message_mb": 1000})",
       "max_message_mb"},
      {R"({"address": "127.0.0.1:1", "tls": {"cert_file": "a.pem"}})",
       "go together"},
      {R"({"address": "127.0.0.1:1", "tls": {"pin": "x"}})", "pin"},
  };
  for (const auto& [config, says] : bad) {
    auto o = ParseRemoteOptions(Json(config));
    EXPECT_FALSE(o.ok()) << config;
    EXPECT_THAT(o.status().message(), HasSubstr(says)) << config;
  }
  auto o = ParseRemoteOptions(
      Json(R"({"address": "unix:/run/c.sock", "idle_timeout_seconds": 60})"));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->idle_timeout, absl::Seconds(60));
  EXPECT_FALSE(o->tls);
}

TEST(RemoteOptionsTest, PlaintextOnlyToLoopbackUnlessAllowed) {
  ConnectorRegistry registry;
  RegisterBuiltinConnectors(registry);
  ConnectorSpec spec;
  spec.config = Json(R"({"address": "10.1.2.3:50070"})");
  auto refused = registry.Create("remote", spec);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("add a \"tls\" object"));
  spec.config =
      Json(R"({"address": "10.1.2.3:50070", "insecure_allow_remote": true})");
  EXPECT_TRUE(registry.Create("remote", spec).ok());
  spec.config = Json(R"({"address": "10.1.2.3:50070", "tls": {}})");
  EXPECT_TRUE(registry.Create("remote", spec).ok());
  spec.config = Json(
      R"({"address": "10.1.2.3:50070", "tls": {"ca_file": "/nonexistent"}})");
  auto no_ca = registry.Create("remote", spec);
  EXPECT_THAT(no_ca.status().message(), HasSubstr("tls.ca_file"));
}

}  // namespace
}  // namespace idsync
