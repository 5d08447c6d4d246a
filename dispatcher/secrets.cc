#include "dispatcher/secrets.h"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"

namespace idsync {
namespace {

// Idempotent; fails only without a random source.
bool SodiumReady() {
  static const bool ready = sodium_init() >= 0;
  return ready;
}

std::string RandomBytes(size_t n) {
  SodiumReady();
  std::string out(n, '\0');
  randombytes_buf(out.data(), n);
  return out;
}

// The AEAD key for one context: BLAKE2b(key, context), so each row gets its
// own key and a sealed value only opens where it was sealed.
std::string ContextKey(const std::string& key, absl::string_view context) {
  unsigned char derived[crypto_secretbox_KEYBYTES];
  crypto_generichash(
      derived, sizeof(derived),
      reinterpret_cast<const unsigned char*>(context.data()), context.size(),
      reinterpret_cast<const unsigned char*>(key.data()), key.size());
  return std::string(reinterpret_cast<char*>(derived), sizeof(derived));
}

}  // namespace

std::string NewToken(absl::string_view prefix) {
  std::string encoded;
  absl::WebSafeBase64Escape(RandomBytes(32), &encoded);
  return absl::StrCat(prefix, encoded);
}

std::string NewSigningSecret() {
  return absl::StrCat("whsec_", absl::Base64Escape(RandomBytes(32)));
}

absl::StatusOr<std::string> SigningKey(absl::string_view secret) {
  std::string key;
  if (!absl::ConsumePrefix(&secret, "whsec_") ||
      !absl::Base64Unescape(secret, &key) || key.size() < 16) {
    return absl::InvalidArgumentError("not a whsec_ signing secret");
  }
  return key;
}

std::string TokenHash(absl::string_view token) {
  unsigned char digest[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(digest,
                     reinterpret_cast<const unsigned char*>(token.data()),
                     token.size());
  return std::string(reinterpret_cast<char*>(digest), sizeof(digest));
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  if (a.size() != b.size()) return false;
  return sodium_memcmp(a.data(), b.data(), a.size()) == 0;
}

absl::StatusOr<SecretBox> SecretBox::FromKey(absl::string_view key) {
  if (key.size() != crypto_secretbox_KEYBYTES) {
    return absl::InvalidArgumentError("secret key must be 32 bytes");
  }
  return SecretBox(std::string(key));
}

absl::StatusOr<SecretBox> SecretBox::FromKeyFile(const std::string& path,
                                                 bool create) {
  if (create && access(path.c_str(), F_OK) != 0) {
    const std::string key = RandomBytes(crypto_secretbox_KEYBYTES);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot create key file '", path, "': ", std::strerror(errno)));
    }
    const std::string text = absl::StrCat(absl::BytesToHexString(key), "\n");
    const bool written = write(fd, text.data(), text.size()) ==
                             static_cast<ssize_t>(text.size()) &&
                         fsync(fd) == 0;
    close(fd);
    if (!written) {
      unlink(path.c_str());
      return absl::FailedPreconditionError(
          absl::StrCat("cannot write key file '", path, "'"));
    }
    return SecretBox(key);
  }
  struct stat st;
  if (stat(path.c_str(), &st) != 0) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot read key file '", path, "': ", std::strerror(errno)));
  }
  if (st.st_mode & (S_IRWXG | S_IRWXO)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key file '", path, "' is readable by others; chmod 600 it"));
  }
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  text = std::string(absl::StripAsciiWhitespace(text));
  bool hex = text.size() == 2 * crypto_secretbox_KEYBYTES;
  for (char c : text) hex = hex && absl::ascii_isxdigit(c);
  if (!hex) {
    return absl::FailedPreconditionError(absl::StrCat(
        "key file '", path, "' must hold 64 hex characters (a 32-byte key)"));
  }
  return SecretBox(absl::HexStringToBytes(text));
}

std::string SecretBox::Seal(absl::string_view plaintext,
                            absl::string_view context) const {
  const std::string key = ContextKey(key_, context);
  std::string out = RandomBytes(crypto_secretbox_NONCEBYTES);
  out.resize(out.size() + crypto_secretbox_MACBYTES + plaintext.size());
  auto* nonce = reinterpret_cast<unsigned char*>(out.data());
  crypto_secretbox_easy(
      nonce + crypto_secretbox_NONCEBYTES,
      reinterpret_cast<const unsigned char*>(plaintext.data()),
      plaintext.size(), nonce,
      reinterpret_cast<const unsigned char*>(key.data()));
  return out;
}

std::string SecretBox::Mac(absl::string_view data,
                           absl::string_view context) const {
  const std::string key = ContextKey(key_, context);
  unsigned char mac[32];
  crypto_generichash(
      mac, sizeof(mac), reinterpret_cast<const unsigned char*>(data.data()),
      data.size(), reinterpret_cast<const unsigned char*>(key.data()),
      key.size());
  return absl::BytesToHexString(
      absl::string_view(reinterpret_cast<char*>(mac), sizeof(mac)));
}

absl::StatusOr<std::string> SecretBox::Open(absl::string_view sealed,
                                            absl::string_view context) const {
  constexpr size_t kOverhead =
      crypto_secretbox_NONCEBYTES + crypto_secretbox_MACBYTES;
  if (sealed.size() < kOverhead) {
    return absl::DataLossError("sealed secret is truncated");
  }
  const std::string key = ContextKey(key_, context);
  std::string out(sealed.size() - kOverhead, '\0');
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  if (crypto_secretbox_open_easy(
          reinterpret_cast<unsigned char*>(out.data()),
          nonce + crypto_secretbox_NONCEBYTES,
          sealed.size() - crypto_secretbox_NONCEBYTES, nonce,
          reinterpret_cast<const unsigned char*>(key.data())) != 0) {
    return absl::DataLossError(
        "sealed secret does not open with this key (wrong --key-file?)");
  }
  return out;
}

}  // namespace idsync
