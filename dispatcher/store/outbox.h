// The outbox: events written in the same transaction as the change that
// caused them, each with one delivery row per endpoint that wants it, so a
// committed change always produces its event and a rolled-back one never
// does. dispatcher/delivery/ sends them. An event nobody subscribes to is
// not written at all: with no webhooks, a sync writes no outbox rows.
//
// Record changes are batched: one event per type per transaction, split at
// kItemsPerEvent items, so a 1M-record sync writes ~2,000 events, not 1M.
// Thread-compatible; one Outbox per connection.
#ifndef IDSYNC_DISPATCHER_STORE_OUTBOX_H_
#define IDSYNC_DISPATCHER_STORE_OUTBOX_H_

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "dispatcher/store/sqlite_util.h"
#include "dispatcher/store/store.h"
#include "google/protobuf/message.h"
#include "idsync/v1/connector.pb.h"

namespace idsync {

inline constexpr int kItemsPerEvent = 500;

// Every event type ("identity.created", ..., "agent.offline").
const std::vector<std::string>& EventTypes();
// A subscription pattern: an event type, "<group>.*" or "*".
bool IsEventPattern(absl::string_view pattern);
bool PatternMatches(absl::string_view pattern, absl::string_view type);

enum class RecordChange { kCreated, kUpdated, kDeactivated };

// What a batch of record events says about where the changes came from,
// e.g. {"source":"sync","connector_id":3,"run_id":9}. A JSON object's
// members without the braces.
using EventContext = std::string;

class Outbox {
 public:
  // What a record event item carries besides the store id: every column
  // (API changes: a joiner's webhook shows the new hire), or only the key
  // (syncs: a 1M-record run must not write 1M full copies; receivers read
  // details from the API).
  enum class Detail { kFull, kKeys };
  static absl::StatusOr<std::unique_ptr<Outbox>> Prepare(
      sqlite3* db, Detail detail = Detail::kFull);

  // Reads which event types the tenant's enabled webhooks want, in the
  // caller's transaction. Call at the start of each transaction.
  absl::Status Load(int64_t tenant_id);
  bool Wants(absl::string_view type) const;

  // Queues a record change when some webhook wants it. `record` is the
  // stored message (nullptr for a deactivation, whose key is read back).
  absl::Status QueueRecord(idsync::v1::RecordKind kind, RecordChange change,
                           int64_t id, const google::protobuf::Message* record);
  // Writes the queued changes as events. Call before COMMIT.
  absl::Status Flush(const EventContext& context, absl::Time now);
  // Drops queued changes (the transaction rolled back).
  void Clear() { queued_.clear(); }

  // One event to the tenant's webhooks that want `type`. `data_json` is a
  // JSON object.
  absl::Status Publish(absl::string_view type, absl::string_view data_json,
                       absl::Time now);
  // One event to a run's callback URL (delivered whether or not any
  // webhook exists).
  absl::Status PublishCallback(absl::string_view url,
                               absl::string_view data_json, absl::Time now);

 private:
  Outbox(sqlite3* db, Detail detail) : db_(db), detail_(detail) {}
  absl::StatusOr<int64_t> InsertEvent(absl::string_view type,
                                      absl::string_view data_json,
                                      absl::Time now);
  absl::Status InsertDelivery(int64_t outbox_id, int64_t webhook_id,
                              absl::string_view url, absl::Time now);

  sqlite3* db_;
  const Detail detail_;
  int64_t tenant_id_ = 0;
  // Enabled webhooks of the tenant: id -> patterns.
  std::map<int64_t, std::vector<std::string>> webhooks_;
  std::map<std::string, std::vector<std::string>> queued_;  // type -> items
  Statement load_, insert_event_, insert_delivery_;
};

// The JSON a run's progress callback carries.
std::string RunProgressJson(const RunRow& run);

// In the caller's transaction: the run's sync.started event (when it was
// just created) or its final event (sync.completed, sync.failed or
// sync.cancelled, and the final progress callback when it has a
// callback_url).
absl::Status PublishRunEvent(sqlite3* db, const RunRow& run, absl::Time now);

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_STORE_OUTBOX_H_
