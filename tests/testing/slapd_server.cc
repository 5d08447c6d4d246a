#include "tests/testing/slapd_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "tests/testing/subprocess.h"

namespace idsync::testing {
namespace {

constexpr char kSlapd[] = "/usr/sbin/slapd";

bool Accepts(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  const bool ok =
      connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return ok;
}

absl::Status WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

absl::Status Run(const std::vector<std::string>& argv) {
  auto r = RunProcess(argv);
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) {
    return absl::InternalError(
        absl::StrCat(argv[0], " exited with ", r->exit_code, ": ", r->err));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> SlapdServer::HashPassword(
    const std::string& password) {
  auto r = RunProcess({"/usr/sbin/slappasswd", "-s", password});
  if (!r.ok()) return r.status();
  if (r->exit_code != 0) return absl::InternalError("slappasswd failed");
  return std::string(absl::StripAsciiWhitespace(r->out));
}

absl::StatusOr<std::unique_ptr<SlapdServer>> SlapdServer::Start(
    const std::string& dir, const SlapdConfig& config) {
  if (access(kSlapd, X_OK) != 0) {
    return absl::FailedPreconditionError(
        "slapd is not installed (run scripts/setup: slapd ldap-utils)");
  }
  std::unique_ptr<SlapdServer> server(new SlapdServer());
  server->dir_ = dir;
  const std::string db = dir + "/db";
  if (auto r = RunProcess({"/bin/mkdir", "-p", db}); !r.ok()) {
    return r.status();
  }
  auto hash = HashPassword(kRootPassword);
  if (!hash.ok()) return hash.status();
  std::string conf = absl::StrCat(
      "include /etc/ldap/schema/core.schema\n"
      "include /etc/ldap/schema/cosine.schema\n"
      "include /etc/ldap/schema/nis.schema\n"
      "include /etc/ldap/schema/inetorgperson.schema\n"
      "modulepath /usr/lib/ldap\n"
      "moduleload back_mdb\n"
      "pidfile ",
      dir, "/slapd.pid\n", config.limits, "\n");
  if (config.tls) {
    const std::string cert = dir + "/cert.pem", key = dir + "/key.pem";
    if (auto s =
            Run({"/usr/bin/openssl", "req", "-x509", "-newkey", "rsa:2048",
                 "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj",
                 "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"});
        !s.ok()) {
      return s;
    }
    absl::StrAppend(&conf, "TLSCertificateFile ", cert,
                    "\nTLSCertificateKeyFile ", key, "\nTLSCACertificateFile ",
                    cert, "\n");
  }
  absl::StrAppend(&conf, "database mdb\nmaxsize 1073741824\nsuffix \"",
                  config.suffix, "\"\nrootdn \"", kRootDn, "\"\nrootpw ", *hash,
                  "\ndirectory ", db,
                  "\ndbnosync\n"
                  "index objectClass eq\n"
                  "index uid,cn,mail eq,sub\n"
                  "access to attrs=userPassword by self write by anonymous "
                  "auth by * none\n"
                  "access to * by * read\n");
  const std::string conf_path = dir + "/slapd.conf";
  if (auto s = WriteFile(conf_path, conf); !s.ok()) return s;
  if (!config.ldif.empty()) {
    const std::string ldif = dir + "/load.ldif";
    if (auto s = WriteFile(ldif, config.ldif); !s.ok()) return s;
    if (auto s = Run({"/usr/sbin/slapadd", "-q", "-f", conf_path, "-l", ldif});
        !s.ok()) {
      return s;
    }
    unlink(ldif.c_str());
  }
  // A port can be taken between finding it and slapd binding it: retry.
  std::string last_error;
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto port = FreeLoopbackPort();
    if (!port.ok()) return port.status();
    server->port_ = *port;
    std::string urls = server->url();
    if (config.tls) {
      auto tls_port = FreeLoopbackPort();
      if (!tls_port.ok()) return tls_port.status();
      server->tls_port_ = *tls_port;
      absl::StrAppend(&urls, " ", server->tls_url());
    }
    auto child = ChildProcess::Start(
        {kSlapd, "-d", "0", "-f", conf_path, "-h", urls}, dir);
    if (!child.ok()) return child.status();
    server->process_ = std::make_unique<ChildProcess>(*std::move(child));
    const auto deadline =
        std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (std::chrono::steady_clock::now() < deadline) {
      if (server->process_->Exited()) break;
      if (Accepts(server->port_) &&
          (!config.tls || Accepts(server->tls_port_))) {
        return server;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    server->process_->Kill(SIGKILL);
    last_error = server->process_->Wait().err;
    server->process_.reset();
  }
  return absl::InternalError(absl::StrCat("slapd did not start: ", last_error));
}

SlapdServer::~SlapdServer() { Kill(); }

void SlapdServer::Kill() {
  if (process_ == nullptr) return;
  process_->Kill(SIGKILL);
  process_->Wait();
  process_.reset();
}

std::string SlapdServer::url() const {
  return absl::StrCat("ldap://127.0.0.1:", port_);
}

std::string SlapdServer::tls_url() const {
  return absl::StrCat("ldaps://127.0.0.1:", tls_port_);
}

std::string SlapdServer::ca_file() const { return dir_ + "/cert.pem"; }

absl::Status SlapdServer::Modify(const std::string& ldif) {
  const std::string path = dir_ + "/modify.ldif";
  if (auto s = WriteFile(path, ldif); !s.ok()) return s;
  absl::Status s = Run({"/usr/bin/ldapmodify", "-x", "-H", url(), "-D", kRootDn,
                        "-w", kRootPassword, "-f", path});
  unlink(path.c_str());
  return s;
}

}  // namespace idsync::testing
