#include "connector/grpc_util.h"

#include <arpa/inet.h>
#include <grpcpp/support/status.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "connector/status_macros.h"

namespace idsync {

absl::StatusOr<HostPort> ParseHostPort(absl::string_view address,
                                       absl::string_view what) {
  auto bad = [&]() {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " '", address.substr(0, 200),
                     "' is not HOST:PORT (or [IPv6]:PORT)"));
  };
  HostPort out;
  absl::string_view rest = address;
  absl::string_view port;
  if (absl::ConsumePrefix(&rest, "[")) {
    size_t close = rest.find("]:");
    if (close == absl::string_view::npos) return bad();
    out.host = std::string(rest.substr(0, close));
    port = rest.substr(close + 2);
  } else {
    size_t colon = rest.rfind(':');
    if (colon == absl::string_view::npos) return bad();
    out.host = std::string(rest.substr(0, colon));
    port = rest.substr(colon + 1);
    // An IPv6 address needs brackets.
    if (out.host.find(':') != std::string::npos) return bad();
  }
  if (out.host.empty() || !absl::SimpleAtoi(port, &out.port) || out.port <= 0 ||
      out.port > 65535) {
    return bad();
  }
  return out;
}

bool IsLoopbackHost(absl::string_view host) {
  std::string h = absl::AsciiStrToLower(host);
  if (h == "localhost" || h == "localhost.") return true;
  in_addr v4;
  if (inet_pton(AF_INET, h.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6;
  if (inet_pton(AF_INET6, h.c_str(), &v6) == 1) {
    if (std::memcmp(&v6, &in6addr_loopback, sizeof(v6)) == 0) return true;
    // ::ffff:127.x.y.z
    static const unsigned char kMapped[12] = {0, 0, 0, 0, 0,    0,
                                              0, 0, 0, 0, 0xff, 0xff};
    return std::memcmp(v6.s6_addr, kMapped, sizeof(kMapped)) == 0 &&
           v6.s6_addr[12] == 127;
  }
  return false;
}

absl::StatusOr<std::string> ReadPemFile(const std::string& path,
                                        absl::string_view option) {
  return ReadPemFile(*HostFiles(), path, option);
}

absl::StatusOr<std::string> ReadPemFile(const FileAccess& files,
                                        const std::string& path,
                                        absl::string_view option) {
  IDSYNC_ASSIGN_OR_RETURN(std::string pem,
                          ReadWholeFile(files, path, option, 1 << 20));
  if (pem.find("-----BEGIN ") == std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(option, ": ", path, " is not a PEM file"));
  }
  return pem;
}

absl::Status FromGrpcStatus(const grpc::Status& status) {
  return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                      status.error_message());
}

}  // namespace idsync
