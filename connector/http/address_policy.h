// SSRF protection for outgoing deliveries (webhooks, progress callbacks):
// which addresses count as public, and whether a callback URL may be
// registered at all.
//
// Two checks, both needed:
//  - CheckTargetUrl() when a URL is registered (and before delivering): the
//    URL is parsed by libcurl's own URL API, so it cannot be read differently
//    from the connection, and every address its host resolves to must be
//    public.
//  - HttpClientOptions::allow_private_addresses = false on the delivering
//    client, which applies IsPublicAddress() to the address libcurl is about
//    to connect to. DNS may answer differently at delivery time (DNS
//    rebinding); only this second check sees the address actually used.
#ifndef IDSYNC_CONNECTOR_HTTP_ADDRESS_POLICY_H_
#define IDSYNC_CONNECTOR_HTTP_ADDRESS_POLICY_H_

#include <sys/socket.h>

#include <string>

#include "absl/status/status.h"
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

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_HTTP_ADDRESS_POLICY_H_
