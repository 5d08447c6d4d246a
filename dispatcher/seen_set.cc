#include "dispatcher/seen_set.h"

#include <algorithm>

namespace idsync {

bool SeenSet::Insert(int64_t id) {
  const size_t word = static_cast<size_t>(id) >> 6;
  if (word >= bits_.size()) bits_.resize(std::max(word + 1, bits_.size() * 2));
  const uint64_t mask = uint64_t{1} << (id & 63);
  if (bits_[word] & mask) return false;
  bits_[word] |= mask;
  ++size_;
  pending_.push_back(id);
  return true;
}

bool SeenSet::Contains(int64_t id) const {
  const size_t word = static_cast<size_t>(id) >> 6;
  return word < bits_.size() && (bits_[word] >> (id & 63)) & 1;
}

std::string SeenSet::PendingDelta() const {
  std::vector<int64_t> sorted = pending_;
  std::sort(sorted.begin(), sorted.end());
  std::string out;
  out.reserve(sorted.size() * 2);
  uint64_t previous = 0;
  for (int64_t id : sorted) {
    uint64_t delta = static_cast<uint64_t>(id) - previous;
    previous = static_cast<uint64_t>(id);
    while (delta >= 0x80) {
      out.push_back(static_cast<char>(delta | 0x80));
      delta >>= 7;
    }
    out.push_back(static_cast<char>(delta));
  }
  return out;
}

void SeenSet::DropDelta() {
  for (int64_t id : pending_) {
    bits_[static_cast<size_t>(id) >> 6] &= ~(uint64_t{1} << (id & 63));
    --size_;
  }
  pending_.clear();
}

absl::Status SeenSet::AddEncoded(absl::string_view encoded, int64_t max_id) {
  const uint64_t limit = static_cast<uint64_t>(std::max<int64_t>(max_id, 0));
  uint64_t previous = 0;
  size_t i = 0;
  while (i < encoded.size()) {
    uint64_t delta = 0;
    int shift = 0;
    while (true) {
      if (i >= encoded.size() || shift > 63) {
        return absl::DataLossError("malformed seen-ids record in the store");
      }
      const auto byte = static_cast<uint8_t>(encoded[i++]);
      delta |= static_cast<uint64_t>(byte & 0x7f) << shift;
      shift += 7;
      if (!(byte & 0x80)) break;
    }
    // Checking the delta first keeps `previous + delta` from wrapping.
    if (delta > limit || previous + delta > limit) {
      return absl::DataLossError("seen-ids record holds an impossible row id");
    }
    previous += delta;
    Insert(static_cast<int64_t>(previous));
  }
  pending_.clear();  // Already persisted.
  return absl::OkStatus();
}

}  // namespace idsync
