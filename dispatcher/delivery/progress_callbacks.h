// ProgressCallbacks: POSTs a running sync's progress to its callback_url
// after each committed chunk, off the sync's thread. A slow or dead
// receiver never slows the sync: updates waiting for the sender are
// coalesced to the latest per run, and intermediate updates are sent once,
// without retries. The final update (succeeded, failed, cancelled) is not
// sent here: it is an outbox event, retried by DeliveryWorker and recorded.
// Signed like webhooks, with the tenant's callback secret. Thread-safe.
#ifndef IDSYNC_DISPATCHER_DELIVERY_PROGRESS_CALLBACKS_H_
#define IDSYNC_DISPATCHER_DELIVERY_PROGRESS_CALLBACKS_H_

#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "connector/clock.h"
#include "dispatcher/delivery/delivery_worker.h"
#include "dispatcher/secrets.h"
#include "dispatcher/store/store.h"

namespace idsync {

class ProgressCallbacks {
 public:
  // Everything passed must outlive this. Starts its sender thread.
  ProgressCallbacks(Store& store, const SecretBox& secrets, Clock& clock,
                    const DeliveryOptions& options);
  ~ProgressCallbacks();  // Drops what was not sent.

  // The run's latest state; ignored without a callback_url.
  void Update(const RunRow& run, bool done);

  // Updates sent so far (tests, metrics).
  int64_t sent() const;

 private:
  void Loop();
  void Send(const RunRow& run);

  Store& store_;
  const SecretBox& secrets_;
  Clock& clock_;
  const DeliveryOptions options_;

  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_map<int64_t, RunRow> pending_ ABSL_GUARDED_BY(mu_);
  int64_t sent_ ABSL_GUARDED_BY(mu_) = 0;
  std::thread sender_;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_DELIVERY_PROGRESS_CALLBACKS_H_
