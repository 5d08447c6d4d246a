// The agent's session logic in-process against FakeSpine, a scripted
// dispatcher on a real gRPC server on 127.0.0.1.
#include "agents/spine_client.h"

#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "spdlog/sinks/ostream_sink.h"
#include "spdlog/spdlog.h"
#include "tests/agents/fake_spine.h"
#include "tests/agents/probe_connector.h"
#include "tests/testing/fake_clock.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using idsync::testing::AckMessage;
using idsync::testing::CancelMessage;
using idsync::testing::FakeSpine;
using idsync::testing::WelcomeMessage;
using idsync::v1::AgentMessage;
using idsync::v1::DispatcherMessage;
using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kToken[] = "idsync_agt_T0pSecretAgentToken";
constexpr char kSecret[] = "Ld4p-B1nd-S3cret";
constexpr int kRows = 40;
constexpr absl::Duration kQuiet = absl::Milliseconds(100);

// What a run sent on one stream.
struct RunOutput {
  std::vector<std::string> external_ids;
  std::vector<std::string> resume_tokens;
  int max_unacked = 0;
  std::optional<idsync::v1::RunDone> done;
};

class SpineClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    spine_ = FakeSpine::Start();
    ASSERT_NE(spine_, nullptr);
    spine_->set_expected_authorization(absl::StrCat("Bearer ", kToken));
    testing::RegisterTestConnectors(registry_);
    csv_ = dir_.File("hr.csv");
    std::ofstream out(csv_);
    out << "employee_id,email,first_name,last_name\n";
    for (int i = 1; i <= kRows; ++i) {
      out << absl::StrFormat("E%03d,e%d@example.com,First%d,Last%d\n", i, i, i,
                             i);
    }
    out.close();
    // Capture the agent's logs to check no secret reaches them.
    old_logger_ = spdlog::default_logger();
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(logs_);
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("t", sink));
  }

  void TearDown() override {
    client_.reset();
    spdlog::set_default_logger(old_logger_);
    const std::string logs = logs_.str();
    EXPECT_THAT(logs, Not(HasSubstr(kToken)));
    EXPECT_THAT(logs, Not(HasSubstr(kSecret)));
  }

  SpineClientOptions Options() {
    SpineClientOptions o;
    o.dispatcher = spine_->address();
    o.tls.insecure = true;
    o.token = kToken;
    o.capacity = 2;
    o.state_dir = dir_.File("state");
    o.registry = &registry_;
    o.random_seed = 42;
    o.dispatcher_configs.accept = true;  // The fake spine assigns probes.
    o.dispatcher_configs.import_dir = dir_.path().string();
    o.backoff.initial = absl::Milliseconds(50);
    o.backoff.max = absl::Seconds(2);
    o.welcome_timeout = absl::Seconds(10);
    o.status_interval = absl::Milliseconds(100);
    o.on_backoff = [this](absl::Duration d) {
      absl::MutexLock lock(&mu_);
      delays_.push_back(d);
    };
    o.on_disconnect = [this](const absl::Status& s) {
      absl::MutexLock lock(&mu_);
      disconnects_.push_back(s);
    };
    return o;
  }

  void StartClient(SpineClientOptions options) {
    auto client = SpineClient::Create(std::move(options));
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = *std::move(client);
    client_->Start();
  }

  // Takes the next connection, checks its hello and welcomes it.
  std::shared_ptr<FakeSpine::Conn> Accept(int heartbeat_seconds = 30) {
    auto conn = spine_->NextConn();
    if (conn == nullptr) {
      ADD_FAILURE() << "the agent did not connect";
      return nullptr;
    }
    EXPECT_EQ(conn->authorization(), absl::StrCat("Bearer ", kToken));
    auto hello = conn->Next();
    EXPECT_TRUE(hello.has_value() && hello->has_hello());
    if (hello.has_value()) hello_ = hello->hello();
    EXPECT_TRUE(conn->Send(WelcomeMessage(7, "edge-1", heartbeat_seconds)));
    WaitConnected(true);
    return conn;
  }

  void WaitConnected(bool connected) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while (client_->Status().connected != connected && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(2));
    }
    ASSERT_EQ(client_->Status().connected, connected);
  }

  DispatcherMessage AssignCsv(int64_t run_id, int64_t assignment, int window,
                              int chunk_size, std::string resume_token = "",
                              std::string business_id = "hr") {
    DispatcherMessage m;
    idsync::v1::AssignRun* a = m.mutable_assign();
    a->set_run_id(run_id);
    a->set_assignment(assignment);
    a->set_connector_business_id(business_id);
    a->set_connector_type("csv");
    a->set_window(window);
    (*a->mutable_config()->mutable_fields())["path"].set_string_value(csv_);
    a->mutable_request()->set_chunk_size(chunk_size);
    a->mutable_request()->set_resume_token(std::move(resume_token));
    return m;
  }

  // Reads the run's chunks until its RunDone, checking their order and
  // that at most `window` are ever unacknowledged. Acks lazily: only when
  // the window is full, after checking for `quiet` that nothing more comes.
  RunOutput Drain(FakeSpine::Conn& conn, int64_t run_id, int64_t assignment,
                  int window, absl::Duration quiet = absl::ZeroDuration()) {
    RunOutput out;
    int64_t expected = 1, acked = 0;
    while (true) {
      auto m = conn.Next();
      if (!m.has_value()) {
        ADD_FAILURE() << "run " << run_id << " went silent";
        return out;
      }
      if (m->has_done()) {
        EXPECT_EQ(m->done().run_id(), run_id);
        EXPECT_EQ(m->done().assignment(), assignment);
        out.done = m->done();
        return out;
      }
      if (!m->has_chunk()) {
        ADD_FAILURE() << "unexpected " << m->DebugString();
        continue;
      }
      const idsync::v1::RunChunk& c = m->chunk();
      EXPECT_EQ(c.run_id(), run_id);
      EXPECT_EQ(c.assignment(), assignment);
      EXPECT_EQ(c.chunk().sequence(), expected);
      ++expected;
      for (const auto& id : c.chunk().identities()) {
        out.external_ids.push_back(id.external_id());
      }
      out.resume_tokens.push_back(c.chunk().resume_token());
      const int unacked = static_cast<int>(c.chunk().sequence() - acked);
      out.max_unacked = std::max(out.max_unacked, unacked);
      if (unacked >= window) {
        if (quiet > absl::ZeroDuration()) {
          auto more = conn.Next(quiet);
          EXPECT_FALSE(more.has_value() && more->has_chunk())
              << "chunk sent past the window of " << window;
        }
        acked = c.chunk().sequence();
        conn.Send(AckMessage(run_id, assignment, acked));
      }
    }
  }

  static std::vector<std::string> Ids(int from, int to) {
    std::vector<std::string> ids;
    for (int i = from; i <= to; ++i) ids.push_back(absl::StrFormat("E%03d", i));
    return ids;
  }

  std::vector<absl::Duration> delays() {
    absl::MutexLock lock(&mu_);
    return delays_;
  }

  testing::ScopedTestDir dir_{"spine_client"};
  testing::FakeClock clock_;  // For tests that set it; outlives client_.
  std::unique_ptr<FakeSpine> spine_;
  ConnectorRegistry registry_;
  std::string csv_;
  std::unique_ptr<SpineClient> client_;
  idsync::v1::AgentHello hello_;
  std::ostringstream logs_;
  std::shared_ptr<spdlog::logger> old_logger_;

  absl::Mutex mu_;
  std::vector<absl::Duration> delays_ ABSL_GUARDED_BY(mu_);
  std::vector<absl::Status> disconnects_ ABSL_GUARDED_BY(mu_);
};

TEST_F(SpineClientTest, SaysHelloThenHeartbeatsAndReportsConnected) {
  SpineClientOptions o = Options();
  o.connectors["hr-local"].type = "csv";
  StartClient(o);
  auto conn = Accept(/*heartbeat_seconds=*/1);
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(hello_.version(), std::string(AgentVersion()));
  EXPECT_THAT(hello_.connector_types(), Contains("csv"));
  EXPECT_THAT(hello_.connector_types(), Contains("ldap"));
  EXPECT_EQ(hello_.capacity(), 2);
  EXPECT_THAT(hello_.local_connectors(), Contains("hr-local"));

  AgentStatus status = client_->Status();
  EXPECT_TRUE(status.connected);
  EXPECT_EQ(status.agent_id, 7);
  EXPECT_EQ(status.name, "edge-1");
  EXPECT_EQ(status.dispatcher, spine_->address());

  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (conn->heartbeats() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_GE(conn->heartbeats(), 1);
  auto file = ReadStatusFile(dir_.File("state"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_TRUE(file->connected);
  EXPECT_TRUE(file->running);
  EXPECT_EQ(file->pid, getpid());
  EXPECT_EQ(file->agent_id, 7);
}

TEST_F(SpineClientTest, StreamsACsvRunNeverPastTheWindow) {
  StartClient(Options());
  auto conn = Accept();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->Send(AssignCsv(1, 1, /*window=*/3, /*chunk_size=*/5)));
  RunOutput out = Drain(*conn, 1, 1, 3, kQuiet);
  EXPECT_EQ(out.external_ids, Ids(1, kRows));
  EXPECT_EQ(out.max_unacked, 3);
  ASSERT_TRUE(out.done.has_value());
  EXPECT_EQ(out.done->code(), 0);
  EXPECT_TRUE(out.done->error().empty());
}

TEST_F(SpineClientTest, CancelStopsTheRun) {
  StartClient(Options());
  auto conn = Accept();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->Send(AssignCsv(2, 1, /*window=*/1, /*chunk_size=*/5)));
  auto first = conn->Next();
  ASSERT_TRUE(first.has_value() && first->has_chunk());
  ASSERT_TRUE(conn->Send(CancelMessage(2, "operator cancelled")));
  auto done = conn->Next();
  ASSERT_TRUE(done.has_value() && done->has_done()) << done->DebugString();
  EXPECT_EQ(done->done().run_id(), 2);
  EXPECT_EQ(done->done().code(), static_cast<int>(grpc::StatusCode::CANCELLED));
  EXPECT_THAT(done->done().error(), HasSubstr("operator cancelled"));
  EXPECT_FALSE(conn->Next(kQuiet).has_value());
  EXPECT_TRUE(client_->WaitIdle(absl::Seconds(10)));
}

TEST_F(SpineClientTest, NewerAssignmentRestartsAfterItsResumeToken) {
  StartClient(Options());
  auto conn = Accept();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->Send(AssignCsv(3, 1, /*window=*/1, /*chunk_size=*/5)));
  auto c1 = conn->Next();
  ASSERT_TRUE(c1.has_value() && c1->has_chunk());
  conn->Send(AckMessage(3, 1, 1));
  auto c2 = conn->Next();
  ASSERT_TRUE(c2.has_value() && c2->has_chunk());
  EXPECT_EQ(c2->chunk().chunk().sequence(), 2);
  // Rows 1-10 are taken; re-assign from chunk 2's resume token.
  ASSERT_TRUE(
      conn->Send(AssignCsv(3, 2, 2, 5, c2->chunk().chunk().resume_token())));
  RunOutput out = Drain(*conn, 3, 2, 2);
  EXPECT_EQ(out.external_ids, Ids(11, kRows));
  ASSERT_TRUE(out.done.has_value());
  EXPECT_EQ(out.done->code(), 0);
  // Assignment 1 ended without a RunDone.
  EXPECT_FALSE(conn->Next(kQuiet).has_value());
}

TEST_F(SpineClientTest, AssignmentsPastCapacityAreRefused) {
  SpineClientOptions o = Options();
  o.capacity = 1;
  StartClient(o);
  auto conn = Accept();
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(hello_.capacity(), 1);
  ASSERT_TRUE(conn->Send(AssignCsv(4, 1, 1, 5)));
  auto c = conn->Next();
  ASSERT_TRUE(c.has_value() && c->has_chunk());
  ASSERT_TRUE(conn->Send(AssignCsv(5, 1, 1, 5)));
  auto refused = conn->Next();
  ASSERT_TRUE(refused.has_value() && refused->has_done());
  EXPECT_EQ(refused->done().run_id(), 5);
  EXPECT_EQ(refused->done().code(),
            static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
}

TEST_F(SpineClientTest, LocalConnectorConfigWinsAndItsSecretsStayLocal) {
  // The dispatcher knows the connector but not where the file is.
  SpineClientOptions o = Options();
  LocalConnector& local = o.connectors["hr-onprem"];
  local.type = "csv";
  (*local.config.mutable_fields())["path"].set_string_value(csv_);
  local.has_auth_config = true;
  (*local.auth_config.mutable_fields())["password"].set_string_value(kSecret);
  StartClient(o);
  auto conn = Accept();
  ASSERT_NE(conn, nullptr);
  DispatcherMessage m = AssignCsv(6, 1, 4, 10, "", "hr-onprem");
  (*m.mutable_assign()->mutable_config()->mutable_fields())["path"]
      .set_string_value("/nonexistent/hr.csv");
  ASSERT_TRUE(conn->Send(m));
  RunOutput out = Drain(*conn, 6, 1, 4);
  EXPECT_EQ(out.external_ids, Ids(1, kRows));
  ASSERT_TRUE(out.done.has_value());
  EXPECT_EQ(out.done->code(), 0);
  EXPECT_THAT(hello_.DebugString(), Not(HasSubstr(kSecret)));

  // A type that disagrees with the local config fails the run clearly.
  DispatcherMessage wrong = AssignCsv(7, 1, 4, 10, "", "hr-onprem");
  wrong.mutable_assign()->set_connector_type("ldap");
  ASSERT_TRUE(conn->Send(wrong));
  auto done = conn->Next();
  ASSERT_TRUE(done.has_value() && done->has_done());
  EXPECT_EQ(done->done().code(),
            static_cast<int>(grpc::StatusCode::FAILED_PRECONDITION));
  EXPECT_THAT(done->done().error(), HasSubstr("'csv'"));
  EXPECT_THAT(done->done().error(), Not(HasSubstr(kSecret)));
}

TEST_F(SpineClientTest, DroppedStreamStopsRunsAndTheReassignedRunResumes) {
  StartClient(Options());
  auto conn = Accept();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->Send(AssignCsv(8, 1, /*window=*/1, /*chunk_size=*/5)));
  auto c1 = conn->Next();
  ASSERT_TRUE(c1.has_value() && c1->has_chunk());
  conn->Send(AckMessage(8, 1, 1));
  auto c2 = conn->Next();
  ASSERT_TRUE(c2.has_value() && c2->has_chunk());
  const std::string committed = c1->chunk().chunk().resume_token();
  conn->Drop();  // Chunk 2 was never acknowledged.
  ASSERT_TRUE(conn->WaitEnded());
  WaitConnected(false);

  auto again = Accept();
  ASSERT_NE(again, nullptr);
  // The old run stopped with its stream.
  EXPECT_TRUE(client_->WaitIdle(absl::Seconds(10)));
  ASSERT_TRUE(again->Send(AssignCsv(8, 2, 3, 5, committed)));
  RunOutput out = Drain(*again, 8, 2, 3);
  EXPECT_EQ(out.external_ids, Ids(6, kRows));
  ASSERT_TRUE(out.done.has_value());
  EXPECT_EQ(out.done->code(), 0);
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(disconnects_.size(), 1u);
}

TEST_F(SpineClientTest, ReconnectsWithGrowingBackoff) {
  spine_->RefuseNext(4, grpc::Status(grpc::StatusCode::UNAVAILABLE, "busy"));
  StartClient(Options());
  auto conn = Accept();  // The fifth attempt.
  ASSERT_NE(conn, nullptr);
  std::vector<absl::Duration> d = delays();
  std::vector<absl::Time> t = spine_->connect_times();
  ASSERT_EQ(d.size(), 4u);
  ASSERT_EQ(t.size(), 5u);
  absl::Duration base = absl::Milliseconds(50);
  for (size_t i = 0; i < d.size(); ++i) {
    EXPECT_GE(d[i], base * 0.8) << i;
    EXPECT_LE(d[i], base * 1.2) << i;
    if (i > 0) {
      EXPECT_GT(d[i], d[i - 1]) << i;
    }
    // The agent waited at least that long before trying again.
    EXPECT_GE(t[i + 1] - t[i], d[i] - absl::Milliseconds(1)) << i;
    base *= 1.6;
  }
}

TEST_F(SpineClientTest, ConnectionThatStayedUpResetsTheBackoff) {
  SpineClientOptions o = Options();
  o.clock = &clock_;
  o.healthy_after = absl::Seconds(10);
  spine_->RefuseNext(2, grpc::Status(grpc::StatusCode::UNAVAILABLE, "busy"));
  StartClient(o);
  auto conn = Accept();
  ASSERT_NE(conn, nullptr);
  clock_.Advance(absl::Seconds(11));
  conn->Drop();
  auto again = Accept();
  ASSERT_NE(again, nullptr);
  std::vector<absl::Duration> d = delays();
  ASSERT_EQ(d.size(), 3u);
  EXPECT_GT(d[1], absl::Milliseconds(60));  // 80 ms +-20%
  EXPECT_LE(d[2], absl::Milliseconds(60));  // 50 ms +-20% again

  // A short-lived connection does not reset it.
  again->Drop();
  auto third = Accept();
  ASSERT_NE(third, nullptr);
  d = delays();
  ASSERT_EQ(d.size(), 4u);
  EXPECT_GT(d[3], d[2]);
}

TEST_F(SpineClientTest, RefusedTokenIsRetriedAndReported) {
  spine_->set_expected_authorization("Bearer someone-else");
  StartClient(Options());
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (spine_->connect_times().size() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_GE(spine_->connect_times().size(), 2u);
  {
    absl::MutexLock lock(&mu_);
    ASSERT_FALSE(disconnects_.empty());
    EXPECT_EQ(disconnects_[0].code(), absl::StatusCode::kUnauthenticated);
  }
  EXPECT_FALSE(client_->Status().connected);
  EXPECT_THAT(client_->Status().last_error, HasSubstr("register it again"));
}

TEST_F(SpineClientTest, NoWelcomeEndsTheStreamAndRetries) {
  SpineClientOptions o = Options();
  o.welcome_timeout = absl::Milliseconds(200);
  StartClient(o);
  auto silent = spine_->NextConn();
  ASSERT_NE(silent, nullptr);
  ASSERT_TRUE(silent->WaitEnded());
  auto conn = Accept();
  ASSERT_NE(conn, nullptr);
  absl::MutexLock lock(&mu_);
  ASSERT_EQ(disconnects_.size(), 1u);
  EXPECT_EQ(disconnects_[0].code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_THAT(disconnects_[0].message(), HasSubstr("welcome"));
}

TEST_F(SpineClientTest, StopEndsRunsAndRecordsIt) {
  StartClient(Options());
  auto conn = Accept();
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->Send(AssignCsv(9, 1, 1, 5)));
  auto c = conn->Next();
  ASSERT_TRUE(c.has_value() && c->has_chunk());
  client_->Stop();
  EXPECT_TRUE(client_->WaitIdle(absl::Seconds(10)));
  client_.reset();
  ASSERT_TRUE(conn->WaitEnded());
  auto file = ReadStatusFile(dir_.File("state"));
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_FALSE(file->running);
  EXPECT_FALSE(file->connected);
}

TEST_F(SpineClientTest, CreateChecksTheOptions) {
  SpineClientOptions o = Options();
  o.dispatcher = "idsync.example.com:443";  // Plaintext to a remote host.
  EXPECT_EQ(SpineClient::Create(o).status().code(),
            absl::StatusCode::kFailedPrecondition);
  o = Options();
  o.token = "";
  EXPECT_FALSE(SpineClient::Create(o).ok());
  o = Options();
  o.connectors["x"].type = "oracle";
  EXPECT_THAT(SpineClient::Create(o).status().message(), HasSubstr("oracle"));
  o = Options();
  o.capacity = 0;
  EXPECT_FALSE(SpineClient::Create(o).ok());
}

}  // namespace
}  // namespace idsync
