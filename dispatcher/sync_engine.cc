#include "dispatcher/sync_engine.h"

#include <sodium.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <exception>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "connector/status_macros.h"
#include "dispatcher/chunk_queue.h"
#include "dispatcher/crash_point.h"
#include "dispatcher/process_identity.h"
#include "dispatcher/record_hash.h"
#include "dispatcher/seen_set.h"
#include "dispatcher/store/record_schema.h"

namespace idsync {
namespace {

using idsync::v1::RecordKind;

RecordKey KeyOf(const idsync::v1::RemoteIdentity& r) {
  return {r.external_id(), {}};
}
RecordKey KeyOf(const idsync::v1::RemoteAccount& r) {
  return {r.external_id(), {}};
}
RecordKey KeyOf(const idsync::v1::RemoteEntitlement& r) {
  return {r.external_id(), {}};
}
RecordKey KeyOf(const idsync::v1::RemoteGrant& r) {
  return {r.account_external_id(), r.entitlement_external_id()};
}

int KindIndex(RecordKind kind) { return static_cast<int>(kind) - 1; }

// How long the engine waits on the source before looking up: whether an API
// write waits for the store, the commit interval, a cancel request.
constexpr absl::Duration kSourceWaitSlice = absl::Milliseconds(10);
// Unseen ids PlanDeletions keeps per kind for DeleteUnseen (8 bytes each).
constexpr size_t kMaxUnseenKept = 1 << 18;
// Key conflicts after which a kind stops trying inserts before lookups.
constexpr int64_t kMaxInsertConflicts = 1000;

absl::Status ValidateOptions(const SyncOptions& o) {
  if (o.chunk_size < 1 || o.chunk_size > kMaxChunkSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("chunk_size must be between 1 and ", kMaxChunkSize,
                     ", got ", o.chunk_size));
  }
  if (o.max_records.has_value() && *o.max_records < 1) {
    return absl::InvalidArgumentError("max_records must be at least 1");
  }
  if (o.deletion_threshold.has_value() &&
      !(*o.deletion_threshold >= 0 && *o.deletion_threshold <= 1)) {
    return absl::InvalidArgumentError(
        "deletion_threshold must be a fraction between 0 and 1");
  }
  return absl::OkStatus();
}

absl::Status ValidateEngineOptions(const SyncEngineOptions& o) {
  if (o.commit_interval <= absl::ZeroDuration() || o.max_group_records < 1 ||
      o.queue_chunks < 1 || o.max_stored_rejects < 0 ||
      !(o.max_reject_ratio >= 0 && o.max_reject_ratio <= 1) ||
      o.min_records_for_reject_ratio < 0 || o.max_key_bytes < 1 ||
      o.max_record_bytes < 1) {
    return absl::InvalidArgumentError(
        "sync engine options out of range (commit interval and group size, "
        "queue, reject limits and size bounds must be positive)");
  }
  return absl::OkStatus();
}

// The owners of the runs executing in this process. Each execution gets an
// owner string of its own ("pid:start:seq") and registers it before any run
// row names it, so a row whose owner is this process but not registered here
// was abandoned (e.g. its FinishRun failed) and may be resumed. Which thread
// takes over such a run is decided by the store's compare-and-swap on the
// owner, so no lock is held across store calls.
class ExecutingRuns {
 public:
  static ExecutingRuns& Get() {
    static auto* runs = new ExecutingRuns();
    return *runs;
  }
  std::string Register() {
    absl::MutexLock lock(&mu_);
    std::string owner = absl::StrCat(process_, ":", ++sequence_);
    owners_.insert(owner);
    return owner;
  }
  void Unregister(const std::string& owner) {
    absl::MutexLock lock(&mu_);
    owners_.erase(owner);
  }
  // Whether the execution that `owner` names may still be running.
  bool Alive(const std::string& owner) {
    if (absl::StartsWith(owner, absl::StrCat(process_, ":"))) {
      absl::MutexLock lock(&mu_);
      return owners_.contains(owner);
    }
    return IsProcessAlive(owner);
  }

 private:
  const std::string process_ = CurrentProcessIdentity();
  absl::Mutex mu_;
  int64_t sequence_ ABSL_GUARDED_BY(mu_) = 0;
  absl::flat_hash_set<std::string> owners_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

// The state of one run while it executes. Lives on the caller's thread.
class SyncEngine::Execution {
 public:
  Execution(SyncEngine& engine, Connector& connector, const ConnectorRow& row,
            RunRow run, const SyncOptions& runtime, const ProgressFn& progress,
            bool resumed)
      : engine_(engine),
        options_(engine.options_),
        connector_(connector),
        row_(row),
        runtime_(runtime),
        progress_(progress),
        resumed_(resumed),
        run_(std::move(run)),
        committed_(run_) {}

  // Runs to the end and records the outcome. Errors only when the store
  // cannot record it.
  absl::StatusOr<RunRow> Execute() {
    absl::Status s = ExecuteSteps();
    if (!s.ok() && Cancelled()) {
      if (in_group_) RollbackGroup();
      run_.status = RunStatus::kCancelled;
      run_.error = "cancelled";
    } else if (!s.ok()) {
      if (in_group_) RollbackGroup();
      run_.status = RunStatus::kFailed;
      run_.error = resume_rejected_
                       ? absl::StrCat("could not resume: ", s.message(),
                                      "; a new run was started")
                       : std::string(s.message());
    } else {
      run_.status = RunStatus::kSucceeded;
    }
    run_.phase = RunPhase::kDone;
    run_.finished_at = run_.updated_at = engine_.clock_.Now();
    IDSYNC_RETURN_IF_ERROR(engine_.store_.FinishRun(run_));
    CrashPoint("after_run_finish");
    return run_;
  }

  // The connector refused the interrupted run's resume token.
  bool resume_rejected() const { return resume_rejected_; }

 private:
  absl::Status ExecuteSteps() {
    IDSYNC_RETURN_IF_ERROR(CheckCancelled());  // Cancelled while queued.
    IDSYNC_ASSIGN_OR_RETURN(writer_, engine_.store_.OpenRunWriter(run_));
    if (resumed_) {
      IDSYNC_ASSIGN_OR_RETURN(std::vector<SeenDelta> deltas,
                              engine_.store_.LoadSeen(run_.id));
      for (const SeenDelta& d : deltas) {
        IDSYNC_ASSIGN_OR_RETURN(int64_t max_id, writer_->MaxId(d.kind));
        IDSYNC_RETURN_IF_ERROR(
            seen_[KindIndex(d.kind)].AddEncoded(d.encoded, max_id));
      }
      // An empty resume token after committed chunks means the connector
      // cannot resume inside its walk (LDAP paged results): it starts again
      // from the top, so records applied before the crash come again.
      restarted_ = run_.phase == RunPhase::kRecords && run_.chunks > 0 &&
                   run_.resume_token.empty();
    }
    if (run_.phase == RunPhase::kRecords) {
      IDSYNC_RETURN_IF_ERROR(ApplyRecords());
      IDSYNC_RETURN_IF_ERROR(CheckRejectRatio());
      IDSYNC_RETURN_IF_ERROR(CheckCancelled());
      if (!run_.incremental) {
        IDSYNC_RETURN_IF_ERROR(PlanDeletions());
      }
    }
    if (run_.phase == RunPhase::kDeletions) {
      IDSYNC_RETURN_IF_ERROR(CheckCancelled());
      IDSYNC_RETURN_IF_ERROR(DeleteUnseen());
    }
    return absl::OkStatus();
  }

  bool Cancelled() const {
    return runtime_.cancel != nullptr && runtime_.cancel->load();
  }
  absl::Status CheckCancelled() const {
    return Cancelled() ? absl::CancelledError("the run was cancelled")
                       : absl::OkStatus();
  }

  absl::Status ApplyRecords() {
    if (AtLimit()) return absl::OkStatus();  // Resumed after its cut.
    // A connector's first sync, or a kind it never had, inserts without
    // looking each key up first (a conflict falls back to the lookup).
    for (const KindSchema& k : AllKinds()) {
      IDSYNC_ASSIGN_OR_RETURN(bool has, writer_->HasRecords(k.kind));
      insert_first_[KindIndex(k.kind)] = !has;
    }
    idsync::v1::SyncRequest request;
    request.set_connector_business_id(row_.business_id);
    request.set_incremental(run_.incremental);
    if (row_.last_sync_at.has_value()) {
      request.mutable_last_sync_at()->set_seconds(
          absl::ToUnixSeconds(*row_.last_sync_at));
    }
    if (run_.incremental) request.set_sync_token(row_.sync_token);
    request.set_resume_token(run_.resume_token);
    request.set_chunk_size(run_.chunk_size);
    if (run_.max_records.has_value()) {
      request.set_max_records(*run_.max_records - run_.processed);
    }
    request.set_callback_url(run_.callback_url);
    *request.mutable_auth_config() = runtime_.auth_config;

    ChunkQueue queue(options_.queue_chunks);
    std::thread producer([&]() {
      // A connector that throws (e.g. a JSON library on a value of the
      // wrong type) fails its run; it must not take the process down.
      absl::Status status;
      try {
        status = connector_.Sync(request, queue);
      } catch (const std::exception& e) {
        status = absl::InternalError(
            absl::StrCat("the connector failed unexpectedly: ", e.what()));
      } catch (...) {
        status = absl::InternalError("the connector failed unexpectedly");
      }
      queue.Finish(std::move(status));
    });
    absl::Status applied;
    while (true) {
      bool timed_out = false;
      std::optional<QueuedChunk> chunk =
          queue.PopFor(kSourceWaitSlice, &timed_out);
      if (!chunk.has_value() && !timed_out) break;  // The source is done.
      if (!chunk.has_value()) {
        // Waiting on the source: a group open all that time would hold the
        // store's write lock, so commit it when an API write waits or the
        // commit interval is up.
        if (in_group_ &&
            (writer_->ShouldYield() ||
             engine_.clock_.Now() - group_start_ >= options_.commit_interval)) {
          applied = CommitGroup();
        }
        if (applied.ok()) applied = CheckCancelled();
        if (!applied.ok()) break;
        continue;
      }
      applied = ApplyChunk(chunk->chunk, chunk->digests);
      queue.Recycle(std::move(chunk->chunk));
      if (applied.ok()) applied = CheckCancelled();
      if (!applied.ok() || run_.cut) break;
    }
    queue.Close(applied.ok() ? absl::CancelledError("max_records reached")
                             : applied);
    producer.join();
    IDSYNC_RETURN_IF_ERROR(applied);
    if (!run_.cut) {
      absl::Status source = queue.producer_status();
      if (!source.ok()) {
        // Refusing the token before the first chunk means the source changed
        // since the interrupted run: it cannot continue, a new run can.
        resume_rejected_ = resumed_ && chunks_this_session_ == 0 &&
                           absl::IsFailedPrecondition(source);
        return absl::Status(source.code(),
                            absl::StrCat("connector: ", source.message()));
      }
      run_.next_sync_token = queue.next_sync_token();
    }
    if (in_group_) IDSYNC_RETURN_IF_ERROR(CommitGroup());
    return absl::OkStatus();
  }

  absl::Status ApplyChunk(const idsync::v1::SyncChunk& chunk,
                          const std::vector<RecordDigest>& digests) {
    if (!in_group_) {
      IDSYNC_RETURN_IF_ERROR(writer_->Begin(engine_.clock_.Now()));
      in_group_ = true;
      group_start_ = engine_.clock_.Now();
      group_records_ = 0;
    }
    auto digest = digests.begin();  // In DigestRecords' order.
    for (const auto& r : chunk.identities()) {
      IDSYNC_RETURN_IF_ERROR(
          ApplyRecord(idsync::v1::RECORD_KIND_IDENTITY, r, *digest++));
    }
    for (const auto& r : chunk.accounts()) {
      IDSYNC_RETURN_IF_ERROR(
          ApplyRecord(idsync::v1::RECORD_KIND_ACCOUNT, r, *digest++));
    }
    for (const auto& r : chunk.entitlements()) {
      IDSYNC_RETURN_IF_ERROR(
          ApplyRecord(idsync::v1::RECORD_KIND_ENTITLEMENT, r, *digest++));
    }
    for (const auto& r : chunk.grants()) {
      IDSYNC_RETURN_IF_ERROR(
          ApplyRecord(idsync::v1::RECORD_KIND_GRANT, r, *digest++));
    }
    for (const auto& d : chunk.deletions()) {
      IDSYNC_RETURN_IF_ERROR(ApplyDeletion(d));
    }
    for (const auto& r : chunk.rejects()) {
      IDSYNC_RETURN_IF_ERROR(ApplyReject(r));
    }
    ++run_.chunks;
    ++chunks_this_session_;
    run_.resume_token = chunk.resume_token();
    run_.source_done = chunk.progress().done();
    run_.source_total = chunk.progress().total();
    group_records_ += chunk.identities_size() + chunk.accounts_size() +
                      chunk.entitlements_size() + chunk.grants_size() +
                      chunk.deletions_size() + chunk.rejects_size();
    const absl::Time now = engine_.clock_.Now();
    run_.updated_at = now;
    if (group_records_ >= options_.max_group_records ||
        now - group_start_ >= options_.commit_interval ||
        writer_->ShouldYield()) {
      IDSYNC_RETURN_IF_ERROR(CommitGroup());
    }
    if (progress_) progress_(run_);
    return absl::OkStatus();
  }

  // True (and marks the run cut) once max_records have been processed.
  bool AtLimit() {
    if (!run_.cut && run_.max_records.has_value() &&
        run_.processed >= *run_.max_records) {
      run_.cut = true;
      run_.deletion_note =
          absl::StrCat("deletions skipped: the run stopped at max_records (",
                       *run_.max_records, ")");
    }
    return run_.cut;
  }

  template <typename Record>
  absl::Status ApplyRecord(RecordKind kind, const Record& record,
                           const RecordDigest& digest) {
    if (AtLimit()) return absl::OkStatus();
    const RecordKey key = KeyOf(record);
    const uint64_t hash = digest.hash;
    std::string problem;
    if (key.first.empty() ||
        (kind == idsync::v1::RECORD_KIND_GRANT && key.second.empty())) {
      problem = kind == idsync::v1::RECORD_KIND_GRANT
                    ? "missing account_external_id or entitlement_external_id"
                    : "missing external_id";
    } else if (static_cast<int64_t>(key.first.size() + key.second.size()) >
               options_.max_key_bytes) {
      problem =
          absl::StrCat("key longer than ", options_.max_key_bytes, " bytes");
    } else if (static_cast<int64_t>(digest.bytes) > options_.max_record_bytes) {
      problem = absl::StrCat("record larger than ", options_.max_record_bytes,
                             " bytes");
    }
    if (!problem.empty()) {
      idsync::v1::Reject reject;
      reject.set_kind(kind);
      reject.set_reason(problem);
      return ApplyReject(reject);
    }
    SeenSet& seen = seen_[KindIndex(kind)];
    // Duplicates are keys seen twice in one walk of the source; `seen` also
    // holds what an earlier session of a restarted walk applied.
    SeenSet& walk = restarted_ ? walk_seen_[KindIndex(kind)] : seen;
    if (insert_first_[KindIndex(kind)]) {
      IDSYNC_ASSIGN_OR_RETURN(std::optional<int64_t> id,
                              writer_->InsertIfNew(kind, record, hash));
      if (id.has_value()) {
        ++run_.processed;
        ++run_.created;
        seen.Insert(*id);
        if (restarted_) walk.Insert(*id);
        return absl::OkStatus();
      }
      // A source full of repeated keys would pay an insert and its undo
      // for each: look up first from then on.
      if (++insert_conflicts_[KindIndex(kind)] >= kMaxInsertConflicts) {
        insert_first_[KindIndex(kind)] = false;
      }
    }
    IDSYNC_ASSIGN_OR_RETURN(std::optional<ExistingRecord> existing,
                            writer_->Lookup(kind, key));
    if (existing.has_value() && walk.Contains(existing->id)) {
      idsync::v1::Reject reject;
      reject.set_kind(kind);
      reject.set_external_id(std::string(key.first.substr(0, 256)));
      reject.set_reason("duplicate: the same key appeared earlier in this run");
      return ApplyReject(reject);
    }
    // A restarted walk reading again, unchanged, what this run applied
    // before the crash: counted once, as in an uninterrupted run.
    const bool reread =
        restarted_ && existing.has_value() && seen.Contains(existing->id);
    int64_t id = 0;
    if (!existing.has_value()) {
      IDSYNC_ASSIGN_OR_RETURN(std::optional<int64_t> inserted,
                              writer_->InsertIfNew(kind, record, hash));
      if (!inserted.has_value()) {
        return absl::InternalError(
            "a key not found by its lookup exists on insert");
      }
      id = *inserted;
      ++run_.processed;
      ++run_.created;
    } else if (existing->content_hash != hash || existing->deleted) {
      id = existing->id;
      IDSYNC_RETURN_IF_ERROR(writer_->Update(kind, id, record, hash));
      ++run_.processed;
      ++run_.updated;
    } else {
      id = existing->id;
      if (!reread) {
        ++run_.processed;
        ++run_.unchanged;
      }
    }
    seen.Insert(id);
    if (restarted_) walk.Insert(id);
    return absl::OkStatus();
  }

  absl::Status ApplyDeletion(const idsync::v1::Deletion& deletion) {
    const RecordKind kind = deletion.kind();
    if (kind < idsync::v1::RECORD_KIND_IDENTITY ||
        kind > idsync::v1::RECORD_KIND_GRANT) {
      idsync::v1::Reject reject;
      reject.set_external_id(deletion.external_id().substr(0, 256));
      reject.set_reason("deletion without a known record kind");
      return ApplyReject(reject);
    }
    RecordKey key{deletion.external_id(), {}};
    if (kind == idsync::v1::RECORD_KIND_GRANT) {
      key = {deletion.account_external_id(),
             deletion.entitlement_external_id()};
    }
    IDSYNC_ASSIGN_OR_RETURN(std::optional<ExistingRecord> existing,
                            writer_->Lookup(kind, key));
    if (!existing.has_value() || existing->deleted) return absl::OkStatus();
    IDSYNC_RETURN_IF_ERROR(writer_->MarkDeleted(kind, existing->id));
    ++run_.deleted;
    return absl::OkStatus();
  }

  // Counts and stores a reject. A rejected row that names a stored record
  // still counts as seen: a bad row must not delete its record.
  absl::Status ApplyReject(const idsync::v1::Reject& reject) {
    if (AtLimit()) return absl::OkStatus();
    ++run_.processed;
    ++run_.rejected;
    if (run_.rejected <= options_.max_stored_rejects) {
      IDSYNC_RETURN_IF_ERROR(writer_->AddReject(reject));
    }
    const RecordKind kind = reject.kind();
    const bool grant = kind == idsync::v1::RECORD_KIND_GRANT;
    const RecordKey key = grant ? RecordKey{reject.account_external_id(),
                                            reject.entitlement_external_id()}
                                : RecordKey{reject.external_id(), {}};
    if (kind >= idsync::v1::RECORD_KIND_IDENTITY &&
        kind <= idsync::v1::RECORD_KIND_GRANT && !key.first.empty() &&
        (!grant || !key.second.empty())) {
      IDSYNC_ASSIGN_OR_RETURN(std::optional<ExistingRecord> existing,
                              writer_->Lookup(kind, key));
      if (existing.has_value() && !existing->deleted) {
        seen_[KindIndex(kind)].Insert(existing->id);
        if (restarted_) walk_seen_[KindIndex(kind)].Insert(existing->id);
      }
    }
    return absl::OkStatus();
  }

  // Commits the group with the checkpoint. On failure the group is rolled
  // back in memory too: counters and seen ids are those of the last commit.
  absl::Status CommitGroup() {
    std::vector<SeenDelta> deltas;
    for (const KindSchema& k : AllKinds()) {
      deltas.push_back({k.kind, seen_[KindIndex(k.kind)].PendingDelta()});
    }
    run_.updated_at = engine_.clock_.Now();
    CrashPoint("before_commit");
    absl::Status committed = writer_->Commit(run_, deltas);
    if (!committed.ok()) {
      RollbackGroup();
      return committed;
    }
    CrashPoint("after_commit");
    for (SeenSet& s : seen_) s.MarkPersisted();
    for (SeenSet& s : walk_seen_) s.MarkPersisted();  // Never stored.
    committed_ = run_;
    in_group_ = false;
    return absl::OkStatus();
  }

  void RollbackGroup() {
    writer_->Rollback();
    for (SeenSet& s : seen_) s.DropDelta();
    for (SeenSet& s : walk_seen_) s.DropDelta();
    run_ = committed_;
    in_group_ = false;
  }

  absl::Status CheckRejectRatio() {
    if (run_.processed < options_.min_records_for_reject_ratio ||
        run_.rejected <= run_.processed * options_.max_reject_ratio) {
      return absl::OkStatus();
    }
    return absl::InvalidArgumentError(absl::StrFormat(
        "%d of %d records were rejected (%.1f%%), more than the %.0f%% a run "
        "may reject; fix the source and sync again (the rejects are listed "
        "with the run)",
        run_.rejected, run_.processed, 100.0 * run_.rejected / run_.processed,
        100 * options_.max_reject_ratio));
  }

  // Decides whether a full run may remove what it did not see.
  absl::Status PlanDeletions() {
    if (run_.cut) return absl::OkStatus();
    int64_t active = 0, unseen = 0;
    for (const KindSchema& k : AllKinds()) {
      const SeenSet& seen = seen_[KindIndex(k.kind)];
      std::vector<int64_t>& ids = unseen_[KindIndex(k.kind)].emplace();
      IDSYNC_RETURN_IF_ERROR(writer_->ForEachActive(k.kind, [&](int64_t id) {
        ++active;
        if (seen.Contains(id)) return;
        ++unseen;
        if (ids.size() < kMaxUnseenKept) ids.push_back(id);
      }));
      if (ids.size() >= kMaxUnseenKept) unseen_[KindIndex(k.kind)].reset();
    }
    // The threshold is a share of the records that were active before this
    // run: records it created cannot dilute a mass removal.
    const int64_t before = active - run_.created;
    const auto allowed = static_cast<int64_t>(std::floor(
        static_cast<double>(before) * run_.deletion_threshold + 1e-9));
    if (unseen > allowed) {
      run_.deletion_note = absl::StrFormat(
          "deletions refused: the run would remove %d of %d records (%.1f%%), "
          "more than the deletion threshold of %g%%; if the removal is real, "
          "sync again with a higher deletion threshold",
          unseen, before, 100.0 * unseen / before,
          100 * run_.deletion_threshold);
      return absl::FailedPreconditionError(run_.deletion_note);
    }
    run_.phase = RunPhase::kDeletions;
    IDSYNC_RETURN_IF_ERROR(writer_->Begin(engine_.clock_.Now()));
    in_group_ = true;
    return CommitGroup();
  }

  // Marks every active record the run did not see as deleted, in batches
  // that each commit with the counter; safe to repeat after a crash.
  absl::Status DeleteUnseen() {
    for (const KindSchema& k : AllKinds()) {
      std::vector<int64_t> unseen;
      if (unseen_[KindIndex(k.kind)].has_value()) {
        unseen.swap(*unseen_[KindIndex(k.kind)]);  // Planned this session.
      } else {
        const SeenSet& seen = seen_[KindIndex(k.kind)];
        IDSYNC_RETURN_IF_ERROR(writer_->ForEachActive(k.kind, [&](int64_t id) {
          if (!seen.Contains(id)) unseen.push_back(id);
        }));
      }
      // In key order the rows are all over the table; in id order
      // neighbours share pages.
      std::sort(unseen.begin(), unseen.end());
      for (size_t i = 0; i < unseen.size(); ++i) {
        if (!in_group_) {
          IDSYNC_RETURN_IF_ERROR(writer_->Begin(engine_.clock_.Now()));
          in_group_ = true;
        }
        IDSYNC_RETURN_IF_ERROR(writer_->MarkDeleted(k.kind, unseen[i]));
        ++run_.deleted;
        CrashPoint("deletion_pass");
        if ((i + 1) % options_.max_group_records == 0) {
          IDSYNC_RETURN_IF_ERROR(CommitGroup());
          CrashPoint("deletion_commit");
        }
      }
      if (in_group_) {
        IDSYNC_RETURN_IF_ERROR(CommitGroup());
        CrashPoint("deletion_commit");
      }
    }
    return absl::OkStatus();
  }

  SyncEngine& engine_;
  const SyncEngineOptions& options_;
  Connector& connector_;
  const ConnectorRow& row_;
  const SyncOptions& runtime_;  // auth_config and cancel.
  const ProgressFn& progress_;
  const bool resumed_;

  RunRow run_;        // Working copy, ahead of the store inside a group.
  RunRow committed_;  // As of the last commit.
  std::unique_ptr<RunWriter> writer_;
  std::array<SeenSet, 4> seen_;  // Everything the run saw, for deletions.
  // A resumed run whose connector restarted its walk (see ExecuteSteps):
  // what this walk saw, for duplicates.
  bool restarted_ = false;
  std::array<SeenSet, 4> walk_seen_;
  // What PlanDeletions found unseen, so DeleteUnseen need not walk the
  // keys again (unset after a restart or past kMaxUnseenKept).
  std::array<std::optional<std::vector<int64_t>>, 4> unseen_;
  std::array<bool, 4> insert_first_ = {};
  std::array<int64_t, 4> insert_conflicts_ = {};
  bool in_group_ = false;
  absl::Time group_start_;
  int64_t group_records_ = 0;
  int64_t chunks_this_session_ = 0;
  bool resume_rejected_ = false;
};

SyncEngine::SyncEngine(Store& store, Clock& clock, SyncEngineOptions options)
    : store_(store), clock_(clock), options_(options) {
  // Idempotent. Selects libsodium's fastest hash code; hashing works (more
  // slowly) even if it fails, which only happens without /dev/urandom.
  if (sodium_init() < 0) return;
}

absl::StatusOr<RunRow> SyncEngine::Run(Connector& connector,
                                       const ConnectorRow& row,
                                       const SyncOptions& options,
                                       const ProgressFn& progress) {
  IDSYNC_RETURN_IF_ERROR(ValidateOptions(options));
  IDSYNC_RETURN_IF_ERROR(ValidateEngineOptions(options_));
  Reservation reservation = Reserve();
  IDSYNC_ASSIGN_OR_RETURN(std::optional<RunRow> active,
                          store_.ActiveRun(row.tenant_id, row.id));
  if (active.has_value()) {
    if (ExecutingRuns::Get().Alive(active->owner)) {
      return absl::FailedPreconditionError(
          absl::StrCat("connector '", row.business_id,
                       "' already has an active run (", active->id, ")"));
    }
    // Only one claimant wins the compare-and-swap on the owner.
    IDSYNC_RETURN_IF_ERROR(store_.ClaimRun(row.tenant_id, active->id,
                                           active->owner, reservation.owner()));
    active->owner = reservation.owner();
    ++active->resumes;
    Execution resumed(*this, connector, row, *std::move(active), options,
                      progress, /*resumed=*/true);
    IDSYNC_ASSIGN_OR_RETURN(RunRow result, resumed.Execute());
    if (!resumed.resume_rejected()) return result;
  }
  RunRow run;
  run.tenant_id = row.tenant_id;
  run.connector_id = row.id;
  run.incremental = options.incremental;
  run.chunk_size = options.chunk_size;
  run.max_records = options.max_records;
  run.deletion_threshold =
      options.deletion_threshold.value_or(row.deletion_threshold);
  run.callback_url = options.callback_url;
  run.owner = reservation.owner();
  run.started_at = run.updated_at = clock_.Now();
  IDSYNC_ASSIGN_OR_RETURN(RunRow created, store_.CreateRun(run));
  return Execution(*this, connector, row, std::move(created), options, progress,
                   /*resumed=*/false)
      .Execute();
}

SyncEngine::Reservation::Reservation(Reservation&& other) noexcept
    : owner_(std::move(other.owner_)) {
  other.owner_.clear();
}

SyncEngine::Reservation& SyncEngine::Reservation::operator=(
    Reservation&& other) noexcept {
  if (this != &other) {
    if (!owner_.empty()) ExecutingRuns::Get().Unregister(owner_);
    owner_ = std::move(other.owner_);
    other.owner_.clear();
  }
  return *this;
}

SyncEngine::Reservation::~Reservation() {
  if (!owner_.empty()) ExecutingRuns::Get().Unregister(owner_);
}

SyncEngine::Reservation SyncEngine::Reserve() {
  return Reservation(ExecutingRuns::Get().Register());
}

absl::StatusOr<RunRow> SyncEngine::Execute(Connector& connector,
                                           const ConnectorRow& row, RunRow run,
                                           const SyncOptions& options,
                                           const ProgressFn& progress) {
  IDSYNC_RETURN_IF_ERROR(ValidateEngineOptions(options_));
  return Execution(*this, connector, row, std::move(run), options, progress,
                   /*resumed=*/false)
      .Execute();
}

}  // namespace idsync
