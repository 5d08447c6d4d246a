// SeenSet: the row ids of one record kind that a run has seen, as a bitset
// (1M rows cost 125 KB), plus the encoding that persists what a commit group
// added: sorted ids as delta varints, about 1-2 bytes per id.
// Not thread-safe.
#ifndef IDSYNC_DISPATCHER_SEEN_SET_H_
#define IDSYNC_DISPATCHER_SEEN_SET_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace idsync {

class SeenSet {
 public:
  // Returns false if `id` was already in the set. `id` must be >= 0.
  bool Insert(int64_t id);
  bool Contains(int64_t id) const;
  int64_t size() const { return size_; }

  // Ids inserted since the last MarkPersisted or DropDelta, encoded.
  std::string PendingDelta() const;
  // The pending ids were committed: they are no longer pending.
  void MarkPersisted() { pending_.clear(); }
  // Forgets the pending ids (their commit failed).
  void DropDelta();
  // Inserts the ids of an encoded delta. kDataLoss if it is malformed or
  // names an id above `max_id` (the largest row id that exists), which also
  // bounds the memory a corrupt record can claim.
  absl::Status AddEncoded(absl::string_view encoded, int64_t max_id);

 private:
  std::vector<uint64_t> bits_;
  std::vector<int64_t> pending_;
  int64_t size_ = 0;
};

}  // namespace idsync

#endif  // IDSYNC_DISPATCHER_SEEN_SET_H_
