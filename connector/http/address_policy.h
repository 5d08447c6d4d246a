// SSRF protection for every outgoing connection a tenant can aim: deliveries
// (webhooks, progress callbacks) and hosted sources (REST, SCIM, LDAP,
// remote connectors, OAuth2 token and discovery URLs). Which addresses count
// as public, which the operator allows besides (AddressPolicy), and whether a
// URL may be registered at all.
//
// Two checks, both needed:
//  - CheckTargetUrl() when a URL is registered (and before delivering): the
//    URL is parsed by libcurl's own URL API, so it cannot be read differently
//    from the connection, and every address its host resolves to must be
//    public.
//  - AddressPolicy::Allows() on the address a client is about to connect
//    to (HttpClientOptions::address_policy, the ldap connector's connect
//    callback, the remote connector's resolved target). DNS may answer
//    differently at connect time (DNS rebinding); only this second check
//    sees the address actually used.
#ifndef IDSYNC_CONNECTOR_HTTP_ADDRESS_POLICY_H_
#define IDSYNC_CONNECTOR_HTTP_ADDRESS_POLICY_H_

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace idsync {

// True for a globally routable unicast AF_INET / AF_INET6 address; false for
// loopback, private (RFC 1918), CGNAT (100.64/10), link-local, unique-local,
// site-local, multicast, broadcast, unspecified, reserved, benchmarking and
// documentation ranges, and for any other address family. IPv6 forms that
// embed an IPv4 address (mapped ::ffff:0:0/96, compatible ::/96, translated
// ::ffff:0:0:0/96, NAT64 64:ff9b::/96, 6to4 2002::/16) are judged by that
// IPv4 address.
bool IsPublicAddress(const sockaddr* addr);

// The numeric form of `addr` ("10.0.0.1", "::1"); "?" for other families.
std::string AddressToString(const sockaddr* addr);

// An IPv4 or IPv6 network ("10.20.0.0/16", "fd00::/8", "192.0.2.7").
struct IpNetwork {
  int family = 0;  // AF_INET or AF_INET6.
  std::array<uint8_t, 16> bytes{};
  int prefix = 0;
  bool Contains(const sockaddr* addr) const;
};

// kInvalidArgument naming the problem for anything but ADDRESS[/PREFIX].
absl::StatusOr<IpNetwork> ParseIpNetwork(absl::string_view text);

// Which addresses outgoing connections may reach. Immutable; thread-safe.
class AddressPolicy {
 public:
  // Any address: the operator's own configs (the CLI, an agent's local
  // connectors) and dispatchers run with --allow-private-sources.
  static std::shared_ptr<const AddressPolicy> Any();
  // Public addresses, and those in `allowed` (the operator's per-tenant
  // list).
  static std::shared_ptr<const AddressPolicy> PublicOnly(
      std::vector<IpNetwork> allowed = {});

  bool any() const { return any_; }
  bool Allows(const sockaddr* addr) const;

  // Whether connections to `host` (a name, an IPv4 literal in any spelling
  // the C resolver takes, or a bracketed IPv6 literal) may go ahead: every
  // address it resolves to must be allowed; "localhost" and "*.localhost"
  // are loopback whatever DNS says. kInvalidArgument otherwise, in words
  // that start with `what` (e.g. "callback URL host"); the resolved address
  // is named only when `name_address`. Resolves the host (blocking).
  absl::Status CheckHost(absl::string_view host, absl::string_view what,
                         bool name_address = true) const;

 private:
  AddressPolicy(bool any, std::vector<IpNetwork> allowed)
      : any_(any), allowed_(std::move(allowed)) {}
  const bool any_;
  const std::vector<IpNetwork> allowed_;
};

// The host of an http(s) URL as libcurl reads it (the same parser the
// transfer uses), with the URL checks of CheckTargetUrl: http or https, no
// user info, ASCII host, no IPv6 zone id unless `allow_zone`. `what` starts
// the messages ("callback URL"); they never contain user info, path or
// query.
absl::StatusOr<std::string> HttpUrlHost(absl::string_view url,
                                        absl::string_view what,
                                        bool allow_zone);

// Whether `url` may be used as a callback/webhook target. Refuses anything
// but http/https, user info, IPv6 zone ids, non-ASCII hosts (libcurl would
// IDN-map them, e.g. "①②⑦.0.0.1" to 127.0.0.1), and, unless
// `allow_private`, hosts that are or resolve to (any address) a non-public
// address, including "localhost" and "*.localhost" (which libcurl resolves to
// loopback itself) and legacy IPv4 spellings ("127.1", "0x7f000001",
// "2130706433", "0177.0.0.1"). A host that does not resolve is refused too.
// Errors are kInvalidArgument; messages never contain the URL's user info,
// path or query. Resolves the host (blocking getaddrinfo).
absl::Status CheckTargetUrl(absl::string_view url, bool allow_private);
// The same under `policy`.
absl::Status CheckTargetUrl(absl::string_view url, const AddressPolicy& policy,
                            absl::string_view what = "callback URL",
                            bool name_address = true);

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_HTTP_ADDRESS_POLICY_H_
