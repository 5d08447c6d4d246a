// Fuzzes the callback-URL safety check (connector/http/address_policy.h).
// CheckTargetUrl resolves the host with getaddrinfo; no_dns.cc, linked into
// this target, makes that numeric-only, so nothing leaves the machine and
// made-up names simply do not resolve (and are refused).
//
// Invariants checked:
//  - a URL accepted with allow_private = false is accepted with true;
//  - error messages are printable ASCII (the host is escaped; user info,
//    path and query never appear);
//  - an IPv4 address gets the same verdict in its dotted, decimal, hex and
//    IPv4-mapped IPv6 spellings, and that verdict is IsPublicAddress's; an
//    IPv6 literal gets IsPublicAddress's verdict.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "connector/http/address_policy.h"
#include "tests/fuzz/fuzz_util.h"

namespace idsync {
namespace {

using fuzz::Check;

void CheckMessage(const absl::Status& status) {
  for (char c : status.message()) {
    Check(c >= 0x20 && c < 0x7f, "a non-printable byte in an error message");
  }
}

void FuzzUrl(absl::string_view url) {
  const absl::Status lax = CheckTargetUrl(url, /*allow_private=*/true);
  const absl::Status strict = CheckTargetUrl(url, /*allow_private=*/false);
  CheckMessage(lax);
  CheckMessage(strict);
  Check(!strict.ok() || lax.ok(), "accepted strictly but refused laxly");
}

void FuzzV4(const uint8_t* a) {
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  std::memcpy(&sa.sin_addr, a, 4);
  const bool expect = IsPublicAddress(reinterpret_cast<const sockaddr*>(&sa));
  const uint32_t n = (uint32_t{a[0]} << 24) | (uint32_t{a[1]} << 16) |
                     (uint32_t{a[2]} << 8) | uint32_t{a[3]};
  const std::string dotted =
      absl::StrFormat("%d.%d.%d.%d", a[0], a[1], a[2], a[3]);
  for (const std::string& host :
       {dotted, absl::StrCat(n), absl::StrFormat("0x%08x", n),
        absl::StrCat("[::ffff:", dotted, "]")}) {
    const absl::Status s =
        CheckTargetUrl(absl::StrCat("https://", host, ":8443/hook"), false);
    Check(s.ok() == expect, "an IPv4 spelling disagrees with IsPublicAddress");
  }
}

void FuzzV6(const uint8_t* a) {
  sockaddr_in6 sa{};
  sa.sin6_family = AF_INET6;
  std::memcpy(&sa.sin6_addr, a, 16);
  const bool expect = IsPublicAddress(reinterpret_cast<const sockaddr*>(&sa));
  const std::string text =
      AddressToString(reinterpret_cast<const sockaddr*>(&sa));
  const absl::Status s =
      CheckTargetUrl(absl::StrCat("http://[", text, "]/cb"), false);
  Check(s.ok() == expect, "an IPv6 literal disagrees with IsPublicAddress");
}

}  // namespace
}  // namespace idsync

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  idsync::FuzzUrl(absl::string_view(reinterpret_cast<const char*>(data), size));
  if (size >= 4) idsync::FuzzV4(data + size - 4);
  if (size >= 16) idsync::FuzzV6(data);
  return 0;
}
