#include "agents/run_executor.h"

#include <deque>
#include <fstream>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "connector/text.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/agents/probe_connector.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using idsync::v1::AgentMessage;
using ::testing::HasSubstr;

// Collects what runs send; Close() makes it a lost stream.
class FakeOutlet final : public SpineOutlet {
 public:
  bool Send(const AgentMessage& message) override {
    absl::MutexLock lock(&mu_);
    if (closed_) return false;
    inbox_.push_back(message);
    return true;
  }
  std::optional<AgentMessage> Next(absl::Duration timeout = absl::Seconds(10)) {
    absl::MutexLock lock(&mu_);
    auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return !inbox_.empty();
    };
    if (!mu_.AwaitWithTimeout(absl::Condition(&ready), timeout)) {
      return std::nullopt;
    }
    AgentMessage m = std::move(inbox_.front());
    inbox_.pop_front();
    return m;
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    closed_ = true;
  }

 private:
  absl::Mutex mu_;
  std::deque<AgentMessage> inbox_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
};

constexpr absl::Duration kQuiet = absl::Milliseconds(150);

idsync::v1::AssignRun Assign(int64_t run_id, int64_t assignment, int window,
                             int chunks, std::string type = "probe") {
  idsync::v1::AssignRun a;
  a.set_run_id(run_id);
  a.set_assignment(assignment);
  a.set_connector_business_id("hr");
  a.set_connector_type(std::move(type));
  a.set_window(window);
  (*a.mutable_config()->mutable_fields())["chunks"].set_number_value(chunks);
  return a;
}

idsync::v1::AckChunk Ack(int64_t run_id, int64_t assignment, int64_t seq) {
  idsync::v1::AckChunk ack;
  ack.set_run_id(run_id);
  ack.set_assignment(assignment);
  ack.set_sequence(seq);
  return ack;
}

class RunExecutorTest : public ::testing::Test {
 protected:
  RunExecutorTest() { testing::RegisterTestConnectors(registry_); }

  // Runs the probe connectors the tests assign from the "dispatcher".
  static RunExecutorOptions Accepting() {
    RunExecutorOptions options;
    options.dispatcher_configs.accept = true;
    return options;
  }
  std::unique_ptr<RunExecutor> Make(RunExecutorOptions options = Accepting()) {
    return std::make_unique<RunExecutor>(registry_, std::move(options));
  }

  // The next message, which must be chunk `seq` of the run's assignment.
  void ExpectChunk(int64_t run_id, int64_t assignment, int64_t seq) {
    auto m = outlet_->Next();
    ASSERT_TRUE(m.has_value()) << "no chunk " << seq;
    ASSERT_TRUE(m->has_chunk()) << m->DebugString();
    EXPECT_EQ(m->chunk().run_id(), run_id);
    EXPECT_EQ(m->chunk().assignment(), assignment);
    EXPECT_EQ(m->chunk().chunk().sequence(), seq);
  }

  idsync::v1::RunDone ExpectDone() {
    auto m = outlet_->Next();
    if (!m.has_value() || !m->has_done()) {
      ADD_FAILURE() << "expected RunDone, got "
                    << (m.has_value() ? m->DebugString() : "nothing");
      return {};
    }
    return m->done();
  }

  ConnectorRegistry registry_;
  std::shared_ptr<FakeOutlet> outlet_ = std::make_shared<FakeOutlet>();
};

TEST_F(RunExecutorTest, WriteBlocksWhileWindowIsFull) {
  auto executor = Make();
  executor->Assign(Assign(1, 1, 2, 6), outlet_);
  ExpectChunk(1, 1, 1);
  ExpectChunk(1, 1, 2);
  EXPECT_FALSE(outlet_->Next(kQuiet).has_value()) << "sent past the window";
  auto runs = executor->Runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].chunks_sent, 2);
  EXPECT_EQ(runs[0].chunks_acked, 0);

  executor->Ack(Ack(1, 1, 1));
  ExpectChunk(1, 1, 3);
  EXPECT_FALSE(outlet_->Next(kQuiet).has_value());
  executor->Ack(Ack(1, 1, 3));  // Acks are cumulative.
  ExpectChunk(1, 1, 4);
  ExpectChunk(1, 1, 5);
  executor->Ack(Ack(1, 1, 5));
  ExpectChunk(1, 1, 6);
  idsync::v1::RunDone done = ExpectDone();
  EXPECT_EQ(done.run_id(), 1);
  EXPECT_EQ(done.code(), 0);
  EXPECT_EQ(done.next_sync_token(), "probe-next");
  EXPECT_TRUE(executor->WaitIdle(absl::Seconds(10)));
  EXPECT_TRUE(executor->Runs().empty());
}

TEST_F(RunExecutorTest, ReusedChunksCarryOnlyTheirOwnRecords) {
  // The sink hands each sent chunk back to the connector to refill: every
  // chunk must still hold exactly its own records.
  auto executor = Make();
  idsync::v1::AssignRun assign = Assign(1, 1, 10, 4);
  (*assign.mutable_config()->mutable_fields())["per_chunk"].set_number_value(3);
  executor->Assign(assign, outlet_);
  for (int c = 1; c <= 4; ++c) {
    auto m = outlet_->Next();
    ASSERT_TRUE(m.has_value() && m->has_chunk()) << c;
    const idsync::v1::SyncChunk& chunk = m->chunk().chunk();
    EXPECT_EQ(chunk.sequence(), c);
    EXPECT_EQ(chunk.resume_token(), absl::StrCat("probe:", c));
    ASSERT_EQ(chunk.identities_size(), 3) << chunk.DebugString();
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(chunk.identities(i).external_id(),
                absl::StrCat("p", c, "-", i));
    }
  }
  EXPECT_EQ(ExpectDone().code(), 0);
  EXPECT_TRUE(executor->WaitIdle(absl::Seconds(10)));
}

TEST_F(RunExecutorTest, AcksOfAnotherAssignmentDoNotOpenTheWindow) {
  auto executor = Make();
  executor->Assign(Assign(1, 2, 1, 3), outlet_);
  ExpectChunk(1, 2, 1);
  executor->Ack(Ack(1, 1, 1));
  executor->Ack(Ack(2, 2, 1));
  EXPECT_FALSE(outlet_->Next(kQuiet).has_value());
  executor->Ack(Ack(1, 2, 1));
  ExpectChunk(1, 2, 2);
}

TEST_F(RunExecutorTest, ZeroWindowMeansTheDefault) {
  RunExecutorOptions options = Accepting();
  options.default_window = 3;
  auto executor = Make(options);
  executor->Assign(Assign(1, 1, 0, 10), outlet_);
  for (int seq = 1; seq <= 3; ++seq) ExpectChunk(1, 1, seq);
  EXPECT_FALSE(outlet_->Next(kQuiet).has_value());
}

TEST_F(RunExecutorTest, CancelStopsABlockedRunWithCancelled) {
  auto executor = Make();
  executor->Assign(Assign(7, 1, 1, 100), outlet_);
  ExpectChunk(7, 1, 1);
  idsync::v1::CancelRun cancel;
  cancel.set_run_id(7);
  cancel.set_reason("operator asked");
  executor->Cancel(cancel);
  idsync::v1::RunDone done = ExpectDone();
  EXPECT_EQ(done.run_id(), 7);
  EXPECT_EQ(done.assignment(), 1);
  EXPECT_EQ(done.code(), static_cast<int>(absl::StatusCode::kCancelled));
  EXPECT_THAT(done.error(), HasSubstr("operator asked"));
  EXPECT_TRUE(done.next_sync_token().empty());
  EXPECT_TRUE(executor->WaitIdle(absl::Seconds(10)));
}

TEST_F(RunExecutorTest, NewerAssignmentReplacesTheOlderAndResumes) {
  auto executor = Make();
  executor->Assign(Assign(3, 1, 1, 5), outlet_);
  ExpectChunk(3, 1, 1);
  executor->Ack(Ack(3, 1, 1));
  auto m = outlet_->Next();
  ASSERT_TRUE(m.has_value() && m->has_chunk());
  EXPECT_EQ(m->chunk().chunk().resume_token(), "probe:2");

  idsync::v1::AssignRun again = Assign(3, 2, 10, 5);
  again.mutable_request()->set_resume_token("probe:2");
  executor->Assign(again, outlet_);
  // The older assignment stops without a RunDone; the newer restarts
  // after chunk 2, numbering from 1.
  for (int seq = 1; seq <= 3; ++seq) {
    auto c = outlet_->Next();
    ASSERT_TRUE(c.has_value() && c->has_chunk()) << seq;
    EXPECT_EQ(c->chunk().assignment(), 2);
    EXPECT_EQ(c->chunk().chunk().sequence(), seq);
    EXPECT_EQ(c->chunk().chunk().identities(0).external_id(),
              absl::StrCat("p", seq + 2, "-0"));
  }
  idsync::v1::RunDone done = ExpectDone();
  EXPECT_EQ(done.assignment(), 2);
  EXPECT_EQ(done.code(), 0);
  EXPECT_TRUE(executor->WaitIdle(absl::Seconds(10)));
  EXPECT_FALSE(outlet_->Next(kQuiet).has_value());
}

TEST_F(RunExecutorTest, OlderOrRepeatedAssignmentIsIgnored) {
  auto executor = Make();
  executor->Assign(Assign(3, 5, 1, 5), outlet_);
  ExpectChunk(3, 5, 1);
  executor->Assign(Assign(3, 5, 1, 5), outlet_);
  executor->Assign(Assign(3, 4, 1, 5), outlet_);
  EXPECT_FALSE(outlet_->Next(kQuiet).has_value());
  auto runs = executor->Runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].assignment, 5);
  EXPECT_FALSE(runs[0].stopping);
}

TEST_F(RunExecutorTest, PastCapacityAnswersResourceExhausted) {
  RunExecutorOptions options = Accepting();
  options.capacity = 2;
  auto executor = Make(options);
  executor->Assign(Assign(1, 1, 1, 10), outlet_);
  ExpectChunk(1, 1, 1);
  executor->Assign(Assign(2, 1, 1, 10), outlet_);
  ExpectChunk(2, 1, 1);
  executor->Assign(Assign(3, 1, 1, 10), outlet_);
  idsync::v1::RunDone done = ExpectDone();
  EXPECT_EQ(done.run_id(), 3);
  EXPECT_EQ(done.code(),
            static_cast<int>(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(done.error(), HasSubstr("capacity"));
  // A newer assignment of a run already here takes its slot.
  executor->Assign(Assign(2, 2, 1, 10), outlet_);
  ExpectChunk(2, 2, 1);
  int active = 0;  // The replaced assignment may still be stopping.
  for (const RunStatus& run : executor->Runs()) active += run.stopping ? 0 : 1;
  EXPECT_EQ(active, 2);
}

TEST_F(RunExecutorTest, LostStreamStopsItsRunsWithoutRunDone) {
  auto executor = Make();
  auto other = std::make_shared<FakeOutlet>();
  executor->Assign(Assign(1, 1, 1, 10), outlet_);
  executor->Assign(Assign(2, 1, 1, 10), other);
  ExpectChunk(1, 1, 1);
  ASSERT_TRUE(other->Next().has_value());
  outlet_->Close();
  executor->StreamLost(outlet_.get());
  // Run 1 stops; run 2, on another stream, goes on.
  auto deadline = absl::Now() + absl::Seconds(10);
  while (executor->Runs().size() != 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  auto runs = executor->Runs();
  ASSERT_EQ(runs.size(), 1u);
  EXPECT_EQ(runs[0].run_id, 2);
  executor->Ack(Ack(2, 1, 1));
  auto m = other->Next();
  ASSERT_TRUE(m.has_value() && m->has_chunk());
}

TEST_F(RunExecutorTest, LocalConfigOverridesKeysAndReplacesAuthConfig) {
  RunExecutorOptions options = Accepting();
  LocalConnector local;
  local.type = "probe";
  (*local.config.mutable_fields())["path"].set_string_value("local.csv");
  (*local.config.mutable_fields())["extra"].set_string_value("L");
  local.has_auth_config = true;
  (*local.auth_config.mutable_fields())["password"].set_string_value("s3cret");
  options.local_connectors["hr"] = local;
  auto executor = Make(options);

  idsync::v1::AssignRun a = Assign(1, 1, 4, 1);
  (*a.mutable_config()->mutable_fields())["path"].set_string_value("remote");
  (*a.mutable_config()->mutable_fields())["other"].set_string_value("R");
  auto& auth = *a.mutable_request()->mutable_auth_config()->mutable_fields();
  auth["password"].set_string_value("from-dispatcher");
  auth["user"].set_string_value("u");
  executor->Assign(a, outlet_);
  auto m = outlet_->Next();
  ASSERT_TRUE(m.has_value() && m->has_chunk());
  const auto& attrs = m->chunk().chunk().identities(0).attributes();
  EXPECT_EQ(attrs.at("path"), "local.csv");
  EXPECT_EQ(attrs.at("extra"), "L");
  EXPECT_EQ(attrs.at("other"), "R");
  EXPECT_EQ(attrs.at("auth.password"), "s3cret");
  EXPECT_EQ(attrs.count("auth.user"), 0u) << "auth_config is replaced whole";
}

TEST_F(RunExecutorTest, LocalTypeMismatchFailsTheRunClearly) {
  RunExecutorOptions options = Accepting();
  options.local_connectors["hr"].type = "ldap";
  auto executor = Make(options);
  executor->Assign(Assign(1, 1, 4, 1, "probe"), outlet_);
  idsync::v1::RunDone done = ExpectDone();
  EXPECT_EQ(done.code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(done.error(), HasSubstr("'ldap'"));
  EXPECT_THAT(done.error(), HasSubstr("'probe'"));
}

TEST_F(RunExecutorTest, LocalOnlyAgentRefusesOtherConnectors) {
  RunExecutorOptions options = Accepting();
  options.dispatcher_configs.accept = false;  // The default.
  auto executor = Make(options);
  executor->Assign(Assign(1, 1, 4, 1), outlet_);
  idsync::v1::RunDone done = ExpectDone();
  EXPECT_EQ(done.code(), static_cast<int>(absl::StatusCode::kPermissionDenied));
  EXPECT_THAT(done.error(), HasSubstr("accept_dispatcher_configs"));
}

TEST_F(RunExecutorTest, UnknownTypeFailsTheRun) {
  auto executor = Make();
  executor->Assign(Assign(1, 1, 4, 1, "nosuch"), outlet_);
  idsync::v1::RunDone done = ExpectDone();
  EXPECT_EQ(done.code(), static_cast<int>(absl::StatusCode::kNotFound));
  EXPECT_THAT(done.error(), HasSubstr("nosuch"));
}

TEST_F(RunExecutorTest, ConnectorErrorEndsTheRunWithoutSyncToken) {
  auto executor = Make();
  idsync::v1::AssignRun a = Assign(1, 1, 4, 1);
  (*a.mutable_config()->mutable_fields())["fail"].set_string_value(
      "source down \xff\xfe");
  executor->Assign(a, outlet_);
  ExpectChunk(1, 1, 1);
  idsync::v1::RunDone done = ExpectDone();
  EXPECT_EQ(done.code(), static_cast<int>(absl::StatusCode::kUnavailable));
  EXPECT_THAT(done.error(), HasSubstr("source down"));
  EXPECT_TRUE(IsValidUtf8(done.error()));
  EXPECT_TRUE(done.next_sync_token().empty());
}

TEST_F(RunExecutorTest, OversizedChunkFailsTheRunInsteadOfTheStream) {
  RunExecutorOptions options = Accepting();
  options.max_message_bytes = 1000;
  auto executor = Make(options);
  idsync::v1::AssignRun a = Assign(1, 1, 4, 2);
  (*a.mutable_config()->mutable_fields())["pad_bytes"].set_number_value(2000);
  executor->Assign(a, outlet_);
  idsync::v1::RunDone done = ExpectDone();
  EXPECT_EQ(done.code(),
            static_cast<int>(absl::StatusCode::kFailedPrecondition));
  EXPECT_THAT(done.error(), HasSubstr("chunk_size"));
}

TEST_F(RunExecutorTest, CsvRunStreamsTheWholeFile) {
  testing::ScopedTestDir dir("run_executor");
  const std::string path = dir.File("hr.csv");
  {
    std::ofstream out(path);
    out << "employee_id,email,first_name,last_name\n";
    for (int i = 1; i <= 7; ++i) {
      out << "E" << i << ",e" << i << "@example.com,F" << i << ",L" << i
          << "\n";
    }
  }
  RunExecutorOptions options = Accepting();
  // A dispatcher-defined connector reads only the agent's import_dir.
  options.dispatcher_configs.import_dir = dir.path().string();
  auto executor = Make(options);
  idsync::v1::AssignRun a;
  a.set_run_id(9);
  a.set_assignment(1);
  a.set_connector_business_id("hr");
  a.set_connector_type("csv");
  a.set_window(10);
  (*a.mutable_config()->mutable_fields())["path"].set_string_value(path);
  a.mutable_request()->set_chunk_size(3);
  executor->Assign(a, outlet_);
  int identities = 0;
  for (int seq = 1; seq <= 3; ++seq) {
    auto m = outlet_->Next();
    ASSERT_TRUE(m.has_value() && m->has_chunk());
    EXPECT_EQ(m->chunk().chunk().sequence(), seq);
    identities += m->chunk().chunk().identities_size();
  }
  EXPECT_EQ(identities, 7);
  EXPECT_EQ(ExpectDone().code(), 0);
}

TEST_F(RunExecutorTest, DestructorStopsBlockedRuns) {
  auto executor = Make();
  executor->Assign(Assign(1, 1, 1, 100), outlet_);
  ExpectChunk(1, 1, 1);
  executor.reset();  // Must not hang.
  SUCCEED();
}

}  // namespace
}  // namespace idsync
