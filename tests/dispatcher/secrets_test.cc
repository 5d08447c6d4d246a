#include "dispatcher/secrets.h"

#include <sys/stat.h>

#include <fstream>
#include <sstream>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/test_dir.h"

namespace idsync {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr absl::string_view kHexKey =
    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

void WriteFile(const std::string& path, absl::string_view text, mode_t mode) {
  std::ofstream(path) << text;
  ASSERT_EQ(chmod(path.c_str(), mode), 0);
}

SecretBox BoxFromByte(char fill) {
  absl::StatusOr<SecretBox> box = SecretBox::FromKey(std::string(32, fill));
  EXPECT_TRUE(box.ok()) << box.status();
  return *std::move(box);
}

// --- Tokens
// -------------------------------------------------------------------

TEST(TokenTest, NewTokenIsThePrefixAnd43Base64UrlCharacters) {
  const std::string token = NewToken(kServiceTokenPrefix);
  ASSERT_TRUE(absl::StartsWith(token, kServiceTokenPrefix)) << token;
  const absl::string_view body =
      absl::string_view(token).substr(kServiceTokenPrefix.size());
  EXPECT_EQ(body.size(), 43u) << token;
  for (char c : body) {
    EXPECT_TRUE(absl::ascii_isalnum(c) || c == '-' || c == '_')
        << "'" << c << "' in " << token;
  }
  std::string decoded;
  ASSERT_TRUE(absl::WebSafeBase64Unescape(body, &decoded));
  EXPECT_EQ(decoded.size(), 32u);
}

TEST(TokenTest, TwoTokensDiffer) {
  EXPECT_NE(NewToken(kAgentTokenPrefix), NewToken(kAgentTokenPrefix));
}

TEST(TokenTest, TokenHashIs32BytesAndDeterministic) {
  const std::string hash = TokenHash("idsync_svc_abc");
  EXPECT_EQ(hash.size(), 32u);
  EXPECT_EQ(TokenHash("idsync_svc_abc"), hash);
  EXPECT_NE(TokenHash("idsync_svc_abd"), hash);
  // SHA-256 of the empty string, a known answer.
  EXPECT_EQ(absl::BytesToHexString(TokenHash("")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

TEST(TokenTest, ConstantTimeEqualsComparesContentAndLength) {
  EXPECT_TRUE(ConstantTimeEquals("secret", "secret"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secreT"));
  EXPECT_FALSE(ConstantTimeEquals("secret", "secret2"));
  EXPECT_FALSE(ConstantTimeEquals("secret", ""));
  EXPECT_TRUE(
      ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0b", 3)));
  EXPECT_FALSE(
      ConstantTimeEquals(std::string("a\0b", 3), std::string("a\0c", 3)));
}

// --- SecretBox
// ----------------------------------------------------------------

TEST(SecretBoxTest, SealedValueOpensInItsContext) {
  SecretBox box = BoxFromByte('k');
  const std::string plaintext = std::string("{\"password\":\"p\0w\"}", 18);
  const std::string sealed = box.Seal(plaintext, "connector:12");
  EXPECT_THAT(sealed, Not(HasSubstr("password")));
  absl::StatusOr<std::string> opened = box.Open(sealed, "connector:12");
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_EQ(*opened, plaintext);

  absl::StatusOr<std::string> empty = box.Open(box.Seal("", "c"), "c");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(*empty, "");
}

TEST(SecretBoxTest, SealingTwiceGivesDifferentBlobs) {
  SecretBox box = BoxFromByte('k');
  const std::string a = box.Seal("same", "connector:1");
  const std::string b = box.Seal("same", "connector:1");
  EXPECT_NE(a, b) << "a fresh random nonce per seal";
  EXPECT_EQ(*box.Open(a, "connector:1"), "same");
  EXPECT_EQ(*box.Open(b, "connector:1"), "same");
}

TEST(SecretBoxTest, AnotherContextDoesNotOpen) {
  SecretBox box = BoxFromByte('k');
  const std::string sealed = box.Seal("secret", "connector:12");
  absl::StatusOr<std::string> opened = box.Open(sealed, "connector:13");
  EXPECT_TRUE(absl::IsDataLoss(opened.status())) << opened.status();
}

TEST(SecretBoxTest, AnotherKeyDoesNotOpen) {
  const std::string sealed = BoxFromByte('k').Seal("secret", "connector:12");
  absl::StatusOr<std::string> opened =
      BoxFromByte('j').Open(sealed, "connector:12");
  EXPECT_TRUE(absl::IsDataLoss(opened.status())) << opened.status();
}

TEST(SecretBoxTest, TamperedOrTruncatedBlobIsDataLoss) {
  SecretBox box = BoxFromByte('k');
  const std::string sealed = box.Seal("secret", "c");
  // Flipping any one byte (nonce, MAC or ciphertext) breaks it.
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string tampered = sealed;
    tampered[i] = static_cast<char>(tampered[i] ^ 0x01);
    EXPECT_TRUE(absl::IsDataLoss(box.Open(tampered, "c").status()))
        << "byte " << i;
  }
  EXPECT_TRUE(absl::IsDataLoss(
      box.Open(sealed.substr(0, sealed.size() - 1), "c").status()));
  EXPECT_TRUE(absl::IsDataLoss(box.Open(sealed.substr(0, 10), "c").status()));
  EXPECT_TRUE(absl::IsDataLoss(box.Open("", "c").status()));
  EXPECT_TRUE(absl::IsDataLoss(box.Open(sealed + "x", "c").status()));
}

TEST(SecretBoxTest, KeyMustBe32Bytes) {
  EXPECT_TRUE(absl::IsInvalidArgument(
      SecretBox::FromKey(std::string(31, 'k')).status()));
  EXPECT_TRUE(absl::IsInvalidArgument(
      SecretBox::FromKey(std::string(33, 'k')).status()));
}

// --- Key files
// ----------------------------------------------------------------

class KeyFileTest : public ::testing::Test {
 protected:
  testing::ScopedTestDir dir_{"secrets"};
};

TEST_F(KeyFileTest, CreateWritesAPrivateHexKeyAndReusesIt) {
  const std::string path = dir_.File("key");
  absl::StatusOr<SecretBox> first = SecretBox::FromKeyFile(path, true);
  ASSERT_TRUE(first.ok()) << first.status();

  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  const std::string text = ReadFile(path);
  const std::string hex(absl::StripAsciiWhitespace(text));
  EXPECT_EQ(hex.size(), 64u) << text;
  for (char c : hex) EXPECT_TRUE(absl::ascii_isxdigit(c)) << text;

  const std::string sealed = first->Seal("secret", "connector:1");
  // Opening again (with or without create) reads the same key.
  for (bool create : {true, false}) {
    absl::StatusOr<SecretBox> again = SecretBox::FromKeyFile(path, create);
    ASSERT_TRUE(again.ok()) << again.status();
    absl::StatusOr<std::string> opened = again->Open(sealed, "connector:1");
    ASSERT_TRUE(opened.ok()) << opened.status();
    EXPECT_EQ(*opened, "secret");
  }
  EXPECT_EQ(ReadFile(path), text) << "an existing key is never replaced";
}

TEST_F(KeyFileTest, TheFileHoldsTheKeyInHex) {
  const std::string path = dir_.File("key");
  WriteFile(path, absl::StrCat(kHexKey, "\n"), 0600);
  absl::StatusOr<SecretBox> from_file = SecretBox::FromKeyFile(path, false);
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  SecretBox from_bytes = *SecretBox::FromKey(absl::HexStringToBytes(kHexKey));
  EXPECT_EQ(*from_bytes.Open(from_file->Seal("x", "c"), "c"), "x");
}

TEST_F(KeyFileTest, WrongContentIsRefusedNamingThePathOnly) {
  const std::string path = dir_.File("key");
  const std::string almost(kHexKey.substr(0, 63));
  for (const std::string& content :
       {std::string("not a key\n"), almost, absl::StrCat(almost, "g"),
        absl::StrCat(kHexKey, "00"), std::string("")}) {
    WriteFile(path, content, 0600);
    absl::StatusOr<SecretBox> box = SecretBox::FromKeyFile(path, false);
    EXPECT_TRUE(absl::IsFailedPrecondition(box.status()))
        << content << ": " << box.status();
    EXPECT_THAT(std::string(box.status().message()), HasSubstr(path));
    if (!content.empty()) {
      EXPECT_THAT(std::string(box.status().message()), Not(HasSubstr(content)));
    }
    // create=true does not overwrite a bad file either.
    EXPECT_TRUE(absl::IsFailedPrecondition(
        SecretBox::FromKeyFile(path, true).status()));
    EXPECT_EQ(ReadFile(path), content);
  }
}

TEST_F(KeyFileTest, GroupOrWorldAccessibleFileIsRefused) {
  const std::string path = dir_.File("key");
  for (mode_t mode : {0640, 0604, 0660, 0606, 0610}) {
    WriteFile(path, kHexKey, mode);
    absl::StatusOr<SecretBox> box = SecretBox::FromKeyFile(path, false);
    EXPECT_TRUE(absl::IsFailedPrecondition(box.status()))
        << std::oct << mode << ": " << box.status();
    EXPECT_THAT(std::string(box.status().message()), HasSubstr(path));
    EXPECT_THAT(std::string(box.status().message()),
                Not(HasSubstr(std::string(kHexKey))));
  }
  WriteFile(path, kHexKey, 0400);
  EXPECT_TRUE(SecretBox::FromKeyFile(path, false).ok()) << "owner-only is fine";
}

TEST(SecretBoxMacTest, KeyedPerContextAndStable) {
  auto a = SecretBox::FromKey(std::string(32, 'a'));
  auto b = SecretBox::FromKey(std::string(32, 'b'));
  ASSERT_TRUE(a.ok() && b.ok());
  const std::string mac = a->Mac("POST /connectors {password}", "idempotency");
  EXPECT_EQ(mac.size(), 64u);
  EXPECT_EQ(mac, a->Mac("POST /connectors {password}", "idempotency"));
  EXPECT_NE(mac, a->Mac("POST /connectors {password}", "other"));
  EXPECT_NE(mac, b->Mac("POST /connectors {password}", "idempotency"));
  EXPECT_NE(mac, a->Mac("POST /connectors {passw0rd}", "idempotency"));
  EXPECT_NE(mac, TokenHash("POST /connectors {password}"))
      << "not the unkeyed hash";
}

TEST_F(KeyFileTest, MissingFileWithoutCreateIsAnError) {
  const std::string path = dir_.File("absent");
  absl::StatusOr<SecretBox> box = SecretBox::FromKeyFile(path, false);
  EXPECT_FALSE(box.ok());
  EXPECT_THAT(std::string(box.status().message()), HasSubstr(path));
  struct stat st;
  EXPECT_NE(stat(path.c_str(), &st), 0) << "nothing was created";
}

TEST_F(KeyFileTest, CreateInAMissingDirectoryIsAnError) {
  const std::string path = dir_.File("no/such/dir/key");
  absl::StatusOr<SecretBox> box = SecretBox::FromKeyFile(path, true);
  EXPECT_TRUE(absl::IsFailedPrecondition(box.status())) << box.status();
  EXPECT_THAT(std::string(box.status().message()), HasSubstr(path));
}

}  // namespace
}  // namespace idsync
