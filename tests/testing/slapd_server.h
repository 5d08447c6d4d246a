// SlapdServer: a private OpenLDAP slapd for tests (see shared PEERS.md). It
// writes its own slapd.conf into a test directory, loads LDIF offline with
// `slapadd -q`, starts `slapd -d 0` on a free loopback port, waits until it
// accepts connections, and kills it when destroyed. Optionally serves TLS
// (ldaps:// and StartTLS) with a self-signed certificate made by openssl.
// Not thread-safe.
#ifndef IDSYNC_TESTS_TESTING_SLAPD_SERVER_H_
#define IDSYNC_TESTS_TESTING_SLAPD_SERVER_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "tests/testing/subprocess.h"

namespace idsync::testing {

struct SlapdConfig {
  std::string suffix = "dc=example,dc=com";
  // Global limits, e.g. "sizelimit size.soft=500 size.hard=unlimited".
  std::string limits = "sizelimit unlimited";
  std::string ldif;  // Loaded with slapadd before the server starts.
  bool tls = false;  // Also listen on ldaps://; StartTLS works on ldap://.
};

class SlapdServer {
 public:
  static constexpr char kRootDn[] = "cn=admin,dc=example,dc=com";
  static constexpr char kRootPassword[] = "secret";

  // `dir` must exist and outlive the server.
  static absl::StatusOr<std::unique_ptr<SlapdServer>> Start(
      const std::string& dir, const SlapdConfig& config);
  ~SlapdServer();
  SlapdServer(const SlapdServer&) = delete;
  SlapdServer& operator=(const SlapdServer&) = delete;

  std::string url() const;      // ldap://127.0.0.1:PORT
  std::string tls_url() const;  // ldaps://127.0.0.1:PORT2 (tls only)
  std::string ca_file() const;  // The self-signed certificate (tls only).
  int port() const { return port_; }

  // Kills the server at once (SIGKILL) and reaps it.
  void Kill();
  // Applies an LDIF change file with ldapmodify, as the root DN.
  absl::Status Modify(const std::string& ldif);

  // An {SSHA} hash of `password` from slappasswd, for userPassword.
  static absl::StatusOr<std::string> HashPassword(const std::string& password);

 private:
  SlapdServer() = default;

  std::string dir_;
  int port_ = 0;
  int tls_port_ = 0;
  std::unique_ptr<ChildProcess> process_;
};

}  // namespace idsync::testing

#endif  // IDSYNC_TESTS_TESTING_SLAPD_SERVER_H_
