#include "connector/http/address_policy.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netdb.h>
#include <netinet/in.h>

#include <cstdint>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace idsync {
namespace {

struct V4Block {
  uint32_t base;
  int prefix;
};

// Not globally routable (IANA special-purpose registry, RFC 6890 and later).
constexpr V4Block kNonPublicV4[] = {
    {0x00000000, 8},   // 0.0.0.0/8 "this network"
    {0x0A000000, 8},   // 10.0.0.0/8 private
    {0x64400000, 10},  // 100.64.0.0/10 CGNAT
    {0x7F000000, 8},   // 127.0.0.0/8 loopback
    {0xA9FE0000, 16},  // 169.254.0.0/16 link-local (cloud metadata)
    {0xAC100000, 12},  // 172.16.0.0/12 private
    {0xC0000000, 24},  // 192.0.0.0/24 IETF protocol assignments
    {0xC0000200, 24},  // 192.0.2.0/24 TEST-NET-1
    {0xC0A80000, 16},  // 192.168.0.0/16 private
    {0xC6120000, 15},  // 198.18.0.0/15 benchmarking
    {0xC6336400, 24},  // 198.51.100.0/24 TEST-NET-2
    {0xCB007100, 24},  // 203.0.113.0/24 TEST-NET-3
    {0xE0000000, 4},   // 224.0.0.0/4 multicast
    {0xF0000000, 4},   // 240.0.0.0/4 reserved, 255.255.255.255 broadcast
};

// `addr` in host byte order.
bool IsPublicV4(uint32_t addr) {
  for (const V4Block& b : kNonPublicV4) {
    const uint32_t mask = ~uint32_t{0} << (32 - b.prefix);
    if ((addr & mask) == b.base) return false;
  }
  return true;
}

uint32_t V4At(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
         (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

bool AllZero(const uint8_t* p, int n) {
  for (int i = 0; i < n; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// `a` (16 bytes) begins with the first `bits` bits of `prefix`.
bool HasPrefix(const uint8_t* a, const uint8_t* prefix, int bits) {
  const int bytes = bits / 8;
  if (std::memcmp(a, prefix, bytes) != 0) return false;
  const int rest = bits % 8;
  if (rest == 0) return true;
  const uint8_t mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (a[bytes] & mask) == (prefix[bytes] & mask);
}

struct V6Block {
  uint8_t prefix[16];
  int bits;
};

// Not globally routable, beyond the IPv4-embedding forms below.
constexpr V6Block kNonPublicV6[] = {
    {{0x00, 0x64, 0xFF, 0x9B, 0x00, 0x01}, 48},  // 64:ff9b:1::/48 local NAT64
    {{0x01, 0x00}, 64},                          // 100::/64 discard-only
    {{0x20, 0x01, 0x00, 0x00}, 32},  // 2001::/32 Teredo (tunnels elsewhere)
    {{0x20, 0x01, 0x0D, 0xB8}, 32},  // 2001:db8::/32 documentation
    {{0x3F, 0xFF, 0x00}, 20},        // 3fff::/20 documentation
    {{0xFC}, 7},                     // fc00::/7 unique-local
    {{0xFE, 0x80}, 10},              // fe80::/10 link-local
    {{0xFE, 0xC0}, 10},              // fec0::/10 site-local (deprecated)
    {{0xFF}, 8},                     // ff00::/8 multicast
};

bool IsPublicV6(const uint8_t* a) {
  // Forms that carry an IPv4 address: a packet to them reaches (or is
  // translated to) that IPv4 address, so they are exactly as public as it.
  if (AllZero(a, 12)) return IsPublicV4(V4At(a + 12));     // ::/96 (::, ::1)
  if (AllZero(a, 10) && a[10] == 0xFF && a[11] == 0xFF) {  // ::ffff:0:0/96
    return IsPublicV4(V4At(a + 12));
  }
  if (AllZero(a, 8) && a[8] == 0xFF && a[9] == 0xFF && a[10] == 0 &&
      a[11] == 0) {  // ::ffff:0:0:0/96, IPv4-translated (RFC 2765)
    return IsPublicV4(V4At(a + 12));
  }
  static constexpr uint8_t kNat64[] = {0x00, 0x64, 0xFF, 0x9B};
  if (HasPrefix(a, kNat64, 32) && AllZero(a + 4, 8)) {  // 64:ff9b::/96
    return IsPublicV4(V4At(a + 12));
  }
  if (a[0] == 0x20 && a[1] == 0x02) return IsPublicV4(V4At(a + 2));  // 6to4

  for (const V6Block& b : kNonPublicV6) {
    if (HasPrefix(a, b.prefix, b.bits)) return false;
  }
  // Only 2000::/3 is allocated for global unicast; the rest is reserved.
  return (a[0] & 0xE0) == 0x20;
}

constexpr size_t kMaxUrlBytes = 8192;
constexpr size_t kMaxHostInMessage = 128;

absl::Status Invalid(absl::string_view message) {
  return absl::InvalidArgumentError(message);
}

// A host for messages: escaped (it may hold any byte) and bounded.
std::string Printable(absl::string_view host) {
  std::string out = absl::CHexEscape(host.substr(0, kMaxHostInMessage));
  if (host.size() > kMaxHostInMessage) out += "...";
  return out;
}

struct CurlUrlDeleter {
  void operator()(CURLU* u) const { curl_url_cleanup(u); }
};
struct CurlFree {
  void operator()(char* p) const { curl_free(p); }
};
using CurlString = std::unique_ptr<char, CurlFree>;

// One part of a parsed URL; nullopt-like empty pointer when absent.
CurlString GetPart(CURLU* u, CURLUPart part, CURLUcode* rc = nullptr) {
  char* value = nullptr;
  const CURLUcode code = curl_url_get(u, part, &value, 0);
  if (rc != nullptr) *rc = code;
  if (code != CURLUE_OK) {
    curl_free(value);
    return nullptr;
  }
  return CurlString(value);
}

}  // namespace

bool IsPublicAddress(const sockaddr* addr) {
  if (addr == nullptr) return false;
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    return IsPublicV4(ntohl(in->sin_addr.s_addr));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    return IsPublicV6(in6->sin6_addr.s6_addr);
  }
  return false;
}

std::string AddressToString(const sockaddr* addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr != nullptr && addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    if (inet_ntop(AF_INET, &in->sin_addr, buf, sizeof(buf)) != nullptr) {
      return buf;
    }
  } else if (addr != nullptr && addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    if (inet_ntop(AF_INET6, &in6->sin6_addr, buf, sizeof(buf)) != nullptr) {
      return buf;
    }
  }
  return "?";
}

namespace {

// The unmapped form of an IPv4-embedding IPv6 address judged as IPv4 by
// IsPublicV6 (only mapped ::ffff:a.b.c.d here: allow lists name IPv4 nets).
bool MappedV4(const uint8_t* a, uint32_t* v4) {
  if (AllZero(a, 10) && a[10] == 0xFF && a[11] == 0xFF) {
    *v4 = V4At(a + 12);
    return true;
  }
  return false;
}

}  // namespace

bool IpNetwork::Contains(const sockaddr* addr) const {
  if (addr == nullptr) return false;
  uint8_t a[16] = {};
  int fam = addr->sa_family;
  if (fam == AF_INET) {
    std::memcpy(a, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, 4);
  } else if (fam == AF_INET6) {
    const uint8_t* six =
        reinterpret_cast<const sockaddr_in6*>(addr)->sin6_addr.s6_addr;
    uint32_t v4 = 0;
    if (family == AF_INET && MappedV4(six, &v4)) {
      fam = AF_INET;
      const uint32_t n = htonl(v4);
      std::memcpy(a, &n, 4);
    } else {
      std::memcpy(a, six, 16);
    }
  } else {
    return false;
  }
  return fam == family && HasPrefix(a, bytes.data(), prefix);
}

absl::StatusOr<IpNetwork> ParseIpNetwork(absl::string_view text) {
  const std::string s(text);
  const size_t slash = s.find('/');
  const std::string address = s.substr(0, slash);
  IpNetwork n;
  if (inet_pton(AF_INET, address.c_str(), n.bytes.data()) == 1) {
    n.family = AF_INET;
    n.prefix = 32;
  } else if (inet_pton(AF_INET6, address.c_str(), n.bytes.data()) == 1) {
    n.family = AF_INET6;
    n.prefix = 128;
  } else {
    return Invalid(absl::StrCat("'", Printable(text),
                                "' is not an IP network (ADDRESS[/PREFIX], "
                                "e.g. 10.20.0.0/16 or fd00::/8)"));
  }
  if (slash != std::string::npos) {
    int prefix = -1;
    const std::string bits = s.substr(slash + 1);
    if (bits.empty() || bits.size() > 3 ||
        bits.find_first_not_of("0123456789") != std::string::npos ||
        (prefix = std::stoi(bits)) > n.prefix) {
      return Invalid(absl::StrCat("'", Printable(text),
                                  "' has a prefix length out of range"));
    }
    n.prefix = prefix;
  }
  return n;
}

std::shared_ptr<const AddressPolicy> AddressPolicy::Any() {
  static const auto* any =
      new std::shared_ptr<const AddressPolicy>(new AddressPolicy(true, {}));
  return *any;
}

std::shared_ptr<const AddressPolicy> AddressPolicy::PublicOnly(
    std::vector<IpNetwork> allowed) {
  return std::shared_ptr<const AddressPolicy>(
      new AddressPolicy(false, std::move(allowed)));
}

bool AddressPolicy::Allows(const sockaddr* addr) const {
  if (any_) return true;
  if (IsPublicAddress(addr)) return true;
  for (const IpNetwork& n : allowed_) {
    if (n.Contains(addr)) return true;
  }
  return false;
}

absl::Status AddressPolicy::CheckHost(absl::string_view host_text,
                                      absl::string_view what,
                                      bool name_address) const {
  if (any_) return absl::OkStatus();
  const std::string host(host_text);
  auto refused = [&](absl::string_view address) {
    if (!name_address || address.empty() || address == host) {
      return Invalid(absl::StrCat(what, " ", Printable(host),
                                  " is a loopback/private address"));
    }
    return Invalid(absl::StrCat(what, " ", Printable(host), " (", address,
                                ") is a loopback/private address"));
  };
  if (host.empty()) return Invalid(absl::StrCat(what, " is empty"));
  if (host.front() == '[') {
    if (host.size() < 3 || host.back() != ']') {
      return Invalid(absl::StrCat(what, " is a malformed IPv6 address"));
    }
    const std::string literal = host.substr(1, host.size() - 2);
    if (literal.find('%') != std::string::npos) {
      return Invalid(
          absl::StrCat(what, " must not have an IPv6 zone id (link-local)"));
    }
    sockaddr_in6 a6{};
    a6.sin6_family = AF_INET6;
    if (inet_pton(AF_INET6, literal.c_str(), &a6.sin6_addr) != 1) {
      return Invalid(absl::StrCat(what, " is a malformed IPv6 address"));
    }
    if (!Allows(reinterpret_cast<const sockaddr*>(&a6))) return refused("");
    return absl::OkStatus();
  }

  // A trailing dot names the same host (and some resolvers answer
  // "127.0.0.1." with 127.0.0.1).
  std::string name = absl::AsciiStrToLower(host);
  if (absl::EndsWith(name, ".")) name.pop_back();
  // libcurl and libldap answer these themselves, with loopback.
  if (name == "localhost" || absl::EndsWith(name, ".localhost")) {
    sockaddr_in lo{};
    lo.sin_family = AF_INET;
    lo.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (!Allows(reinterpret_cast<const sockaddr*>(&lo))) return refused("");
  }
  // Legacy numeric spellings ("127.1", "0x7f000001", "2130706433",
  // "0177.0.0.1") are judged the way the C library's resolver reads them.
  in_addr a4{};
  if (inet_aton(name.c_str(), &a4) != 0) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr = a4;
    if (!Allows(reinterpret_cast<const sockaddr*>(&sa))) {
      return refused(AddressToString(reinterpret_cast<const sockaddr*>(&sa)));
    }
  }

  // Every address: a client may connect to any of them. (The connecting
  // client checks again: DNS may answer differently then.)
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* result = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &result) != 0 ||
      result == nullptr) {
    if (result != nullptr) freeaddrinfo(result);
    return Invalid(absl::StrCat(what, " does not resolve"));
  }
  absl::Status status = absl::OkStatus();
  for (const addrinfo* ai = result; ai != nullptr; ai = ai->ai_next) {
    if (!Allows(ai->ai_addr)) {
      const std::string address = AddressToString(ai->ai_addr);
      status = name_address
                   ? Invalid(absl::StrCat(what, " ", Printable(host),
                                          " resolves to ", address,
                                          ", which is a loopback/private "
                                          "address"))
                   : refused("");
      break;
    }
  }
  freeaddrinfo(result);
  return status;
}

absl::StatusOr<std::string> HttpUrlHost(absl::string_view url,
                                        absl::string_view what,
                                        bool allow_zone) {
  if (url.size() > kMaxUrlBytes) {
    return Invalid(
        absl::StrCat(what, " is longer than ", kMaxUrlBytes, " bytes"));
  }
  // libcurl reads a C string: a NUL would hide the rest of the URL.
  if (url.find('\0') != absl::string_view::npos) {
    return Invalid(absl::StrCat(what, " contains a NUL byte"));
  }
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });

  // Parsed by libcurl itself, with the flags the transfer uses (minus scheme
  // guessing: a URL without a scheme is refused), so the host checked here is
  // the host libcurl connects to. libcurl lower-cases the scheme and
  // normalizes numeric IPv4 hosts ("127.1", "0x7f000001", "2130706433",
  // "0177.0.0.1" all become "127.0.0.1").
  std::unique_ptr<CURLU, CurlUrlDeleter> u(curl_url());
  if (u == nullptr) return absl::ResourceExhaustedError("curl_url failed");
  const std::string text(url);
  const CURLUcode set = curl_url_set(u.get(), CURLUPART_URL, text.c_str(),
                                     CURLU_NON_SUPPORT_SCHEME);
  if (set != CURLUE_OK) {
    const size_t colon = url.find(':');
    const absl::string_view given =
        colon == absl::string_view::npos ? "" : url.substr(0, colon);
    if (!absl::EqualsIgnoreCase(given, "http") &&
        !absl::EqualsIgnoreCase(given, "https")) {
      return Invalid(absl::StrCat(what, " must use http or https"));
    }
    return Invalid(
        absl::StrCat(what, " is malformed: ", curl_url_strerror(set)));
  }
  const CurlString scheme = GetPart(u.get(), CURLUPART_SCHEME);
  if (scheme == nullptr || !(absl::EqualsIgnoreCase(scheme.get(), "http") ||
                             absl::EqualsIgnoreCase(scheme.get(), "https"))) {
    return Invalid(absl::StrCat(what, " must use http or https"));
  }
  // Any user info, even empty ("http://@host/"): it only serves to confuse
  // readers ("http://trusted.example@10.0.0.1/") and may hold secrets.
  if (GetPart(u.get(), CURLUPART_USER) != nullptr ||
      GetPart(u.get(), CURLUPART_PASSWORD) != nullptr ||
      GetPart(u.get(), CURLUPART_OPTIONS) != nullptr) {
    return Invalid(absl::StrCat(what, " must not contain user info"));
  }
  const CurlString host_part = GetPart(u.get(), CURLUPART_HOST);
  if (host_part == nullptr || host_part.get()[0] == '\0') {
    return Invalid(absl::StrCat(what, " has no host"));
  }
  const std::string host = host_part.get();
  for (unsigned char ch : host) {
    if (ch >= 0x80 || ch <= 0x20 || ch == 0x7F) {
      // libcurl would IDN-map it first ("①②⑦.0.0.1" is 127.0.0.1).
      return Invalid(absl::StrCat(
          what, " host must be ASCII (use the punycode xn-- form)"));
    }
  }
  const bool bracketed = host.front() == '[';
  if (bracketed && (host.size() < 3 || host.back() != ']')) {
    return Invalid(absl::StrCat(what, " host is a malformed IPv6 address"));
  }
  // libcurl 7.88 returns the zone id separately; accept either form.
  const bool zone = GetPart(u.get(), CURLUPART_ZONEID) != nullptr ||
                    (bracketed && host.find('%') != std::string::npos);
  if (zone && !allow_zone) {
    return Invalid(
        absl::StrCat(what, " host must not have an IPv6 zone id (link-local)"));
  }
  return host;
}

absl::Status CheckTargetUrl(absl::string_view url, bool allow_private) {
  return CheckTargetUrl(url, allow_private ? *AddressPolicy::Any()
                                           : *AddressPolicy::PublicOnly());
}

absl::Status CheckTargetUrl(absl::string_view url, const AddressPolicy& policy,
                            absl::string_view what, bool name_address) {
  absl::StatusOr<std::string> host =
      HttpUrlHost(url, what, /*allow_zone=*/policy.any());
  if (!host.ok()) return host.status();
  return policy.CheckHost(*host, absl::StrCat(what, " host"), name_address);
}

}  // namespace idsync
