// HmacSha256 against the RFC 4231 vectors, Sha256Hex against FIPS 180-2's.
#include "connector/http/signing.h"

#include <ostream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/escaping.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

std::string Hex(absl::string_view bytes) {
  return absl::BytesToHexString(bytes);
}
// 0x01, 0x02, ... 0x19.
std::string Counting25() {
  std::string s;
  for (char c = 1; c <= 25; ++c) s.push_back(c);
  return s;
}

struct HmacVector {
  const char* name;
  std::string key;
  std::string data;
  const char* hex;
  friend void PrintTo(const HmacVector& v, std::ostream* os) { *os << v.name; }
};

class HmacSha256Test : public ::testing::TestWithParam<HmacVector> {};

TEST_P(HmacSha256Test, MatchesTheVector) {
  const HmacVector& v = GetParam();
  const std::string mac = HmacSha256(v.key, v.data);
  EXPECT_EQ(mac.size(), 32u);
  EXPECT_EQ(Hex(mac), v.hex);
}

INSTANTIATE_TEST_SUITE_P(
    Rfc4231, HmacSha256Test,
    ::testing::Values(
        HmacVector{"Case1", std::string(20, '\x0b'), "Hi There",
                   "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e"
                   "32cff7"},
        HmacVector{"Case2ShortKey", "Jefe", "what do ya want for nothing?",
                   "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964"
                   "ec3843"},
        HmacVector{"Case3", std::string(20, '\xaa'), std::string(50, '\xdd'),
                   "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d963551"
                   "4ced565fe"},
        HmacVector{"Case4", Counting25(), std::string(50, '\xcd'),
                   "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff"
                   "46729665b"},
        HmacVector{"Case6KeyLongerThanABlock", std::string(131, '\xaa'),
                   "Test Using Larger Than Block-Size Key - Hash Key First",
                   "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040"
                   "f0ee37f54"},
        HmacVector{"Case7KeyAndDataLongerThanABlock", std::string(131, '\xaa'),
                   "This is a test using a larger than block-size key and a "
                   "larger than block-size data. The key needs to be hashed "
                   "before being used by the HMAC algorithm.",
                   "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f515"
                   "35c3a35e2"},
        HmacVector{"EmptyKeyAndData", "", "",
                   "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c7121"
                   "44292c5ad"},
        HmacVector{"EmbeddedNuls", std::string("k\0ey", 4),
                   std::string("da\0ta", 5),
                   "4f9c85c159275756e3761e92db1874738237297476f3ca6efb96f30"
                   "6a6125315"}),
    [](const ::testing::TestParamInfo<HmacVector>& info) {
      return std::string(info.param.name);
    });

TEST(HmacSha256, KeyAndDataMatter) {
  const std::string mac = HmacSha256("key", "data");
  EXPECT_NE(HmacSha256("key2", "data"), mac);
  EXPECT_NE(HmacSha256("key", "data2"), mac);
  EXPECT_EQ(HmacSha256("key", "data"), mac);  // Deterministic.
}

TEST(HmacSha256, IsSafeFromManyThreads) {
  const std::string want = HmacSha256("Jefe", "what do ya want for nothing?");
  std::vector<std::thread> threads;
  std::vector<std::string> got(8);
  for (size_t i = 0; i < got.size(); ++i) {
    threads.emplace_back([&got, i] {
      for (int n = 0; n < 200; ++n) {
        got[i] = HmacSha256("Jefe", "what do ya want for nothing?");
      }
    });
  }
  for (std::thread& t : threads) t.join();
  for (const std::string& g : got) EXPECT_EQ(g, want);
}

TEST(Sha256Hex, MatchesFips180Vectors) {
  EXPECT_EQ(Sha256Hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(
      Sha256Hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(Sha256Hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(Sha256Hex, IsSixtyFourLowerCaseHexDigits) {
  const std::string h = Sha256Hex(std::string("\0\xff binary", 9));
  ASSERT_EQ(h.size(), 64u);
  for (char c : h) {
    EXPECT_TRUE((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')) << h;
  }
}

}  // namespace
}  // namespace idsync
