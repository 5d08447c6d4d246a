// FaultyStore: wraps a real Store and injects commit faults. A simulated
// crash: after a set number of run commits every commit and FinishRun fails
// and writes nothing, so the store looks exactly as a killed process leaves
// it. A one-off failure: one commit fails and the store carries on.
// Thread-safe.
#ifndef IDSYNC_TESTS_TESTING_FAULTY_STORE_H_
#define IDSYNC_TESTS_TESTING_FAULTY_STORE_H_

#include <atomic>
#include <memory>

#include "dispatcher/store/store.h"
#include "tests/testing/store_wrapper.h"

namespace idsync::testing {

class FaultyStore final : public StoreWrapper {
 public:
  // "*base" must outlive this store.
  explicit FaultyStore(Store& base) : StoreWrapper(base) {}

  // Commits (run commits and FinishRun) allowed before the simulated crash;
  // negative means never crash.
  void CrashAfterCommits(int commits) { commits_left_ = commits; }
  // The commit after `commits` more fails once (like a full disk) and rolls
  // back; the store works normally afterwards.
  void FailOneCommitAfter(int commits) { fail_once_after_ = commits; }
  bool crashed() const { return crashed_; }

  // Finishing a run is a commit too.
  absl::Status FinishRun(const RunRow& run) override {
    if (!AllowCommit()) return absl::UnavailableError("simulated crash");
    return base().FinishRun(run);
  }
  absl::StatusOr<std::unique_ptr<RunWriter>> OpenRunWriter(
      const RunRow& run) override;

 private:
  friend class FaultyWriter;
  // True if this commit may go ahead; false once the crash happened.
  bool AllowCommit();
  // True for the one commit that FailOneCommitAfter chose.
  bool FailThisCommit();

  std::atomic<int> commits_left_{-1};
  std::atomic<bool> crashed_{false};
  std::atomic<int> fail_once_after_{-1};
};

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_TESTING_FAULTY_STORE_H_
