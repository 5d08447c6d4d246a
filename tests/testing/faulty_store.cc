#include "tests/testing/faulty_store.h"

#include <utility>

namespace idsync::testing {

class FaultyWriter final : public RunWriter {
 public:
  FaultyWriter(FaultyStore& store, std::unique_ptr<RunWriter> base)
      : store_(store), base_(std::move(base)) {}

  absl::Status Begin(absl::Time now) override { return base_->Begin(now); }
  bool ShouldYield() override { return base_->ShouldYield(); }
  absl::StatusOr<std::optional<ExistingRecord>> Lookup(
      idsync::v1::RecordKind kind, RecordKey key) override {
    return base_->Lookup(kind, key);
  }
  absl::StatusOr<std::optional<int64_t>> InsertIfNew(
      idsync::v1::RecordKind kind, const google::protobuf::Message& record,
      uint64_t hash) override {
    return base_->InsertIfNew(kind, record, hash);
  }
  absl::Status Update(idsync::v1::RecordKind kind, int64_t id,
                      const google::protobuf::Message& record,
                      uint64_t hash) override {
    return base_->Update(kind, id, record, hash);
  }
  absl::Status MarkDeleted(idsync::v1::RecordKind kind, int64_t id) override {
    return base_->MarkDeleted(kind, id);
  }
  absl::Status AddReject(const idsync::v1::Reject& reject) override {
    return base_->AddReject(reject);
  }
  absl::Status Commit(const RunRow& run,
                      const std::vector<SeenDelta>& seen) override {
    if (store_.FailThisCommit()) {
      base_->Rollback();
      return absl::ResourceExhaustedError("simulated full disk");
    }
    if (!store_.AllowCommit()) {
      base_->Rollback();
      return absl::UnavailableError("simulated crash");
    }
    return base_->Commit(run, seen);
  }
  void Rollback() override { base_->Rollback(); }
  absl::StatusOr<int64_t> MaxId(idsync::v1::RecordKind kind) override {
    return base_->MaxId(kind);
  }
  absl::StatusOr<bool> HasRecords(idsync::v1::RecordKind kind) override {
    return base_->HasRecords(kind);
  }
  absl::Status ForEachActive(
      idsync::v1::RecordKind kind,
      const std::function<void(int64_t)>& visit) override {
    return base_->ForEachActive(kind, visit);
  }

 private:
  FaultyStore& store_;
  std::unique_ptr<RunWriter> base_;
};

bool FaultyStore::FailThisCommit() {
  if (fail_once_after_ < 0) return false;
  return fail_once_after_.fetch_sub(1) == 0;
}

bool FaultyStore::AllowCommit() {
  if (crashed_) return false;
  if (commits_left_ < 0) return true;
  if (commits_left_.fetch_sub(1) <= 0) {
    crashed_ = true;
    return false;
  }
  return true;
}

absl::StatusOr<std::unique_ptr<RunWriter>> FaultyStore::OpenRunWriter(
    const RunRow& run) {
  auto base = this->base().OpenRunWriter(run);
  if (!base.ok()) return base.status();
  return std::unique_ptr<RunWriter>(new FaultyWriter(*this, *std::move(base)));
}

}  // namespace idsync::testing
