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

}  // namespace idsync
