#include "agents/run_executor.h"

#include <algorithm>
#include <set>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "connector/text.h"
#include "spdlog/spdlog.h"

namespace idsync {

using idsync::v1::AgentMessage;

struct RunExecutor::Run {
  Run(idsync::v1::AssignRun a, int w, std::shared_ptr<SpineOutlet> o)
      : assign(std::move(a)), window(w), outlet(std::move(o)) {}

  // Constant after construction.
  const idsync::v1::AssignRun assign;
  const int window;
  const std::shared_ptr<SpineOutlet> outlet;

  // Set once by Assign, joined by Reap, both under the executor's mu_.
  std::thread thread;
  bool finished = false;  // Guarded by the executor's mu_.

  absl::Mutex mu;
  int64_t sent ABSL_GUARDED_BY(mu) = 0;   // Last sequence sent.
  int64_t acked ABSL_GUARDED_BY(mu) = 0;  // Last sequence acknowledged.
  StopKind stop ABSL_GUARDED_BY(mu) = StopKind::kNone;
  std::string stop_reason ABSL_GUARDED_BY(mu);

  bool CanSendOrStopped() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    return stop != StopKind::kNone || sent - acked < window;
  }
};

namespace {

constexpr size_t kMaxErrorBytes = 4096;

// An error message safe to put in a proto string: valid UTF-8, bounded.
std::string SafeError(absl::string_view message) {
  if (!IsValidUtf8(message)) return Excerpt(message, kMaxErrorBytes);
  if (message.size() <= kMaxErrorBytes) return std::string(message);
  size_t end = kMaxErrorBytes;
  // Do not cut a multi-byte character.
  while (end > 0 && (static_cast<unsigned char>(message[end]) & 0xC0) == 0x80)
    --end;
  return absl::StrCat(message.substr(0, end), "...");
}

AgentMessage Done(const idsync::v1::AssignRun& assign, absl::StatusCode code,
                  absl::string_view error, const std::string& next_sync_token) {
  AgentMessage m;
  idsync::v1::RunDone* done = m.mutable_done();
  done->set_run_id(assign.run_id());
  done->set_assignment(assign.assignment());
  done->set_code(static_cast<int>(code));
  done->set_error(SafeError(error));
  if (code == absl::StatusCode::kOk) done->set_next_sync_token(next_sync_token);
  return m;
}

}  // namespace

// The RecordSink a run's connector writes to.
class RunExecutor::Sink final : public RecordSink {
 public:
  // "run" must outlive the sink.
  Sink(Run& run, size_t max_message_bytes)
      : run_(run), max_message_bytes_(max_message_bytes) {}

  absl::Status Write(idsync::v1::SyncChunk chunk) override {
    int64_t sequence;
    {
      absl::MutexLock lock(&run_.mu);
      run_.mu.Await(absl::Condition(&run_, &Run::CanSendOrStopped));
      if (run_.stop != StopKind::kNone) return StopStatus();
      sequence = ++run_.sent;
    }
    AgentMessage m;
    idsync::v1::RunChunk* rc = m.mutable_chunk();
    rc->set_run_id(run_.assign.run_id());
    rc->set_assignment(run_.assign.assignment());
    chunk.set_sequence(sequence);
    *rc->mutable_chunk() = std::move(chunk);
    const size_t bytes = m.ByteSizeLong();
    if (bytes > max_message_bytes_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "chunk ", sequence, " is ", bytes,
          " bytes, over the spine's message limit of ", max_message_bytes_,
          " bytes; lower the connector's chunk_size"));
    }
    if (!run_.outlet->Send(m)) {
      return absl::UnavailableError("the stream to the dispatcher was lost");
    }
    // Send has serialized it: the connector may refill this chunk (TakeSpent)
    // instead of allocating every record anew.
    spent_.Swap(rc->mutable_chunk());
    has_spent_ = true;
    return absl::OkStatus();
  }

  bool TakeSpent(idsync::v1::SyncChunk* chunk) override {
    if (!has_spent_) return false;
    chunk->Swap(&spent_);
    has_spent_ = false;
    return true;
  }

  void SetNextSyncToken(std::string token) override {
    next_sync_token_ = std::move(token);
  }
  const std::string& next_sync_token() const { return next_sync_token_; }

 private:
  absl::Status StopStatus() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(run_.mu) {
    switch (run_.stop) {
      case StopKind::kCancelled:
        return absl::CancelledError(run_.stop_reason);
      case StopKind::kSuperseded:
        return absl::AbortedError(run_.stop_reason);
      case StopKind::kStreamLost:
      case StopKind::kShutdown:
      case StopKind::kNone:
        break;
    }
    return absl::UnavailableError(run_.stop_reason);
  }

  Run& run_;
  const size_t max_message_bytes_;
  std::string next_sync_token_;
  idsync::v1::SyncChunk spent_;  // The last chunk sent, for TakeSpent.
  bool has_spent_ = false;
};

RunExecutor::RunExecutor(const ConnectorRegistry& registry,
                         RunExecutorOptions options)
    : registry_(registry), options_(std::move(options)) {}

RunExecutor::~RunExecutor() {
  StopAll();
  std::vector<std::shared_ptr<Run>> runs;
  {
    absl::MutexLock lock(&mu_);
    runs.swap(runs_);
  }
  for (auto& run : runs) {
    if (run->thread.joinable()) run->thread.join();
  }
}

void RunExecutor::StopRun(Run& run, StopKind kind, std::string reason) {
  absl::MutexLock lock(&run.mu);
  if (run.stop != StopKind::kNone) return;
  run.stop = kind;
  run.stop_reason = std::move(reason);
}

void RunExecutor::Reap() {
  std::vector<std::shared_ptr<Run>> finished;
  {
    absl::MutexLock lock(&mu_);
    auto keep = std::stable_partition(
        runs_.begin(), runs_.end(),
        [](const std::shared_ptr<Run>& r) { return !r->finished; });
    finished.assign(std::make_move_iterator(keep),
                    std::make_move_iterator(runs_.end()));
    runs_.erase(keep, runs_.end());
  }
  for (auto& run : finished) run->thread.join();
}

void RunExecutor::Assign(const idsync::v1::AssignRun& assign,
                         std::shared_ptr<SpineOutlet> outlet) {
  Reap();
  int window = assign.window() > 0 ? assign.window() : options_.default_window;
  window = std::min(window, options_.max_window);
  std::string refusal;
  {
    absl::MutexLock lock(&mu_);
    std::vector<Run*> older;
    std::set<int64_t> busy;  // Other runs holding a slot.
    for (const auto& r : runs_) {
      if (r->finished) continue;
      if (r->assign.run_id() != assign.run_id()) {
        busy.insert(r->assign.run_id());
        continue;
      }
      if (r->assign.assignment() >= assign.assignment()) {
        spdlog::warn(
            "run {}: ignoring assignment {}, assignment {} is already here",
            assign.run_id(), assign.assignment(), r->assign.assignment());
        return;
      }
      older.push_back(r.get());
    }
    if (older.empty() && static_cast<int>(busy.size()) >= options_.capacity) {
      refusal = absl::StrCat("the agent is at capacity (", options_.capacity,
                             " runs at once)");
    } else {
      for (Run* r : older) {
        StopRun(*r, StopKind::kSuperseded,
                absl::StrCat("superseded by assignment ", assign.assignment()));
      }
      auto run = std::make_shared<Run>(assign, window, outlet);
      ++unfinished_;
      runs_.push_back(run);
      run->thread = std::thread(&RunExecutor::Execute, this, run);
    }
  }
  if (!refusal.empty()) {
    spdlog::warn("run {} (assignment {}): refused: {}", assign.run_id(),
                 assign.assignment(), refusal);
    outlet->Send(
        Done(assign, absl::StatusCode::kResourceExhausted, refusal, ""));
  }
}

void RunExecutor::Ack(const idsync::v1::AckChunk& ack) {
  absl::MutexLock lock(&mu_);
  for (const auto& r : runs_) {
    if (r->assign.run_id() != ack.run_id() ||
        r->assign.assignment() != ack.assignment()) {
      continue;
    }
    absl::MutexLock run_lock(&r->mu);
    if (ack.sequence() > r->sent) {
      spdlog::warn("run {} (assignment {}): ack of chunk {} not sent yet",
                   ack.run_id(), ack.assignment(), ack.sequence());
    }
    r->acked = std::max(r->acked, std::min(ack.sequence(), r->sent));
  }
}

void RunExecutor::Cancel(const idsync::v1::CancelRun& cancel) {
  absl::MutexLock lock(&mu_);
  bool found = false;
  for (const auto& r : runs_) {
    if (r->finished || r->assign.run_id() != cancel.run_id()) continue;
    found = true;
    StopRun(*r, StopKind::kCancelled,
            cancel.reason().empty()
                ? "cancelled by the dispatcher"
                : absl::StrCat("cancelled by the dispatcher: ",
                               SafeError(cancel.reason())));
  }
  spdlog::info("run {}: cancel{}", cancel.run_id(),
               found ? "" : " (not running here)");
}

void RunExecutor::StreamLost(const SpineOutlet* outlet) {
  absl::MutexLock lock(&mu_);
  for (const auto& r : runs_) {
    if (!r->finished && r->outlet.get() == outlet) {
      StopRun(*r, StopKind::kStreamLost,
              "the stream to the dispatcher was lost");
    }
  }
}

void RunExecutor::StopAll() {
  absl::MutexLock lock(&mu_);
  for (const auto& r : runs_) {
    StopRun(*r, StopKind::kShutdown, "the agent is stopping");
  }
}

bool RunExecutor::WaitIdle(absl::Duration timeout) {
  bool idle;
  {
    absl::MutexLock lock(&mu_);
    idle =
        mu_.AwaitWithTimeout(absl::Condition(
                                 +[](int* n) { return *n == 0; }, &unfinished_),
                             timeout);
  }
  if (idle) Reap();
  return idle;
}

std::vector<RunStatus> RunExecutor::Runs() {
  std::vector<RunStatus> out;
  absl::MutexLock lock(&mu_);
  for (const auto& r : runs_) {
    if (r->finished) continue;
    RunStatus s;
    s.run_id = r->assign.run_id();
    s.assignment = r->assign.assignment();
    s.connector = r->assign.connector_business_id();
    s.type = r->assign.connector_type();
    absl::MutexLock run_lock(&r->mu);
    s.chunks_sent = r->sent;
    s.chunks_acked = r->acked;
    s.stopping = r->stop != StopKind::kNone;
    out.push_back(std::move(s));
  }
  return out;
}

void RunExecutor::Execute(std::shared_ptr<Run> run) {
  const idsync::v1::AssignRun& assign = run->assign;
  spdlog::info(
      "run {} (assignment {}): starting {} connector '{}' (window {}{})",
      assign.run_id(), assign.assignment(), assign.connector_type(),
      assign.connector_business_id(), run->window,
      assign.request().resume_token().empty() ? "" : ", resuming");
  absl::Status status;
  std::string next_sync_token;
  auto prepared = PrepareRun(options_.local_connectors, assign,
                             options_.dispatcher_configs);
  if (!prepared.ok()) {
    status = prepared.status();
  } else {
    prepared->spec.clock = options_.clock;
    auto connector = registry_.Create(prepared->type, prepared->spec);
    if (!connector.ok()) {
      status = connector.status();
    } else {
      Sink sink(*run, options_.max_message_bytes);
      status = (*connector)->Sync(prepared->request, sink);
      next_sync_token = sink.next_sync_token();
    }
  }

  StopKind stop;
  std::string stop_reason;
  int64_t sent;
  {
    absl::MutexLock lock(&run->mu);
    stop = run->stop;
    stop_reason = run->stop_reason;
    sent = run->sent;
  }
  switch (stop) {
    case StopKind::kNone:
      if (status.ok()) {
        spdlog::info("run {} (assignment {}): done, {} chunks", assign.run_id(),
                     assign.assignment(), sent);
      } else {
        spdlog::warn("run {} (assignment {}): failed: {}", assign.run_id(),
                     assign.assignment(), SafeError(status.message()));
      }
      run->outlet->Send(
          Done(assign, status.code(), status.message(), next_sync_token));
      break;
    case StopKind::kCancelled:
      spdlog::info("run {} (assignment {}): {}", assign.run_id(),
                   assign.assignment(), stop_reason);
      run->outlet->Send(
          Done(assign, absl::StatusCode::kCancelled, stop_reason, ""));
      break;
    case StopKind::kSuperseded:
    case StopKind::kStreamLost:
    case StopKind::kShutdown:
      // The dispatcher ignores (or cannot receive) this assignment's end.
      spdlog::info("run {} (assignment {}): stopped: {}", assign.run_id(),
                   assign.assignment(), stop_reason);
      break;
  }
  absl::MutexLock lock(&mu_);
  run->finished = true;
  --unfinished_;
}

}  // namespace idsync
