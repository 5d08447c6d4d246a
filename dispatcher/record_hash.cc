#include "dispatcher/record_hash.h"

#include <sodium.h>

#include <cstring>

#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"

namespace idsync {

uint64_t ContentHash(const google::protobuf::Message& record,
                     std::string* scratch) {
  scratch->clear();
  {
    google::protobuf::io::StringOutputStream stream(scratch);
    google::protobuf::io::CodedOutputStream out(&stream);
    out.SetSerializationDeterministic(true);
    record.SerializePartialToCodedStream(&out);
  }
  unsigned char digest[crypto_generichash_BYTES_MIN];
  crypto_generichash(digest, sizeof(digest),
                     reinterpret_cast<const unsigned char*>(scratch->data()),
                     scratch->size(), nullptr, 0);
  uint64_t hash;
  std::memcpy(&hash, digest, sizeof(hash));
  return hash;
}

void DigestRecords(const idsync::v1::SyncChunk& chunk,
                   std::vector<RecordDigest>* digests, std::string* scratch) {
  digests->clear();
  digests->reserve(chunk.identities_size() + chunk.accounts_size() +
                   chunk.entitlements_size() + chunk.grants_size());
  auto add = [&](const google::protobuf::Message& record) {
    const uint64_t hash = ContentHash(record, scratch);
    digests->push_back({hash, scratch->size()});
  };
  for (const auto& r : chunk.identities()) add(r);
  for (const auto& r : chunk.accounts()) add(r);
  for (const auto& r : chunk.entitlements()) add(r);
  for (const auto& r : chunk.grants()) add(r);
}

}  // namespace idsync
