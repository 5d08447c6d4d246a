// LdapSession: one bound connection to a directory server through
// OpenLDAP's libldap, with paged subtree searches (RFC 2696) that hand over
// entries one at a time as they arrive, and the error mapping every caller
// shares. Not thread-safe: one session per sync, on one thread.
#ifndef IDSYNC_CONNECTOR_LDAP_LDAP_SESSION_H_
#define IDSYNC_CONNECTOR_LDAP_LDAP_SESSION_H_

#include <ldap.h>

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "connector/file_access.h"
#include "connector/http/address_policy.h"
#include "connector/ldap/ldap_mapping.h"

namespace idsync {

struct LdapSessionOptions {
  std::string url;
  bool start_tls = false;
  std::string ca_file;  // Opened through `files`.
  std::shared_ptr<const FileAccess> files = HostFiles();
  // Checked on the URL's host before connecting and on the address libldap
  // connects to (its connect callback).
  std::shared_ptr<const AddressPolicy> addresses = AddressPolicy::Any();
  std::string bind_dn;   // Empty: anonymous.
  std::string password;  // Never appears in an error.
  int timeout_seconds = 60;
};

// Whether `policy` lets connections go to the host of LDAP URL `url` (every
// address it resolves to). kInvalidArgument naming the host otherwise.
absl::Status CheckLdapHost(const std::string& url, const AddressPolicy& policy);

struct LdapSearch {
  std::string base;
  int scope = LDAP_SCOPE_SUBTREE;
  std::string filter;
  const AttributeSlots* attributes = nullptr;  // nullptr: no attributes.
  int page_size = 1000;                        // 0: no paging.
  // Names the search in errors, e.g. "user_base".
  std::string what;
};

class LdapSession {
 public:
  // Connects, starts TLS if asked, and binds. Errors: kUnauthenticated for
  // rejected credentials, kUnavailable when the server cannot be reached,
  // kDeadlineExceeded on timeouts, kInvalidArgument for TLS setup problems,
  // kPermissionDenied when the address policy refuses the URL's host,
  // kFailedPrecondition when it refuses the address libldap connected to
  // (a name that resolved differently then).
  static absl::StatusOr<std::unique_ptr<LdapSession>> Open(
      const LdapSessionOptions& options);
  ~LdapSession();
  LdapSession(const LdapSession&) = delete;
  LdapSession& operator=(const LdapSession&) = delete;

  // Runs `search`, calling `visit` for each entry as it arrives (the entry
  // is valid during the call only), and stops at visit's first error. Never
  // OK unless every entry was read. Errors: kInvalidArgument for a base that
  // does not exist (naming it), a bad filter or a referral; kResourceExhausted
  // for server size limits; kUnavailable for a lost connection;
  // kDeadlineExceeded when the server is silent for timeout_seconds.
  absl::Status Search(const LdapSearch& search,
                      const std::function<absl::Status(LdapEntry&)>& visit);

  // Reads one entry by DN (base scope) and calls `visit` with it; *found is
  // false (and the status OK) when there is no such entry.
  absl::Status Read(absl::string_view dn, const AttributeSlots& attributes,
                    const std::function<void(LdapEntry&)>& visit, bool* found);

  // Entries read so far, for messages.
  int64_t entries_read() const { return entries_read_; }

  // Builds the error for libldap result `rc` while doing `what`.
  absl::Status Error(int rc, absl::string_view what,
                     absl::string_view server_text = {}) const;

 private:
  // What the views of one entry point into; freed by Clear().
  struct EntryMemory {
    BerElement* ber = nullptr;
    std::vector<BerVarray> value_arrays;
    std::deque<std::string> copies;  // Values of later ranges.
    ~EntryMemory() { Clear(); }
    void Clear();
  };

  LdapSession(LDAP* ld, LdapSessionOptions options);
  // Reads `message` (an entry) into `entry`, slots by `attributes`.
  absl::Status ReadEntry(LDAPMessage* message, const AttributeSlots* attributes,
                         LdapEntry& entry, EntryMemory& memory);
  // Fetches the rest of ranged attributes (Active Directory).
  absl::Status ReadRanges(const AttributeSlots& attributes, LdapEntry& entry,
                          EntryMemory& memory);
  // Waits for the next message of `msgid`.
  absl::Status Next(int msgid, absl::string_view what, LDAPMessage** message);
  // The password, if any, replaced in server-supplied text.
  std::string Redact(absl::string_view text) const;

  // libldap's connect callback: refuses addresses the policy does not allow.
  static int OnConnect(LDAP* ld, Sockbuf* sb, LDAPURLDesc* srv, sockaddr* addr,
                       ldap_conncb* ctx);
  static void OnDisconnect(LDAP* ld, Sockbuf* sb, ldap_conncb* ctx) {}

  LDAP* ld_;
  const LdapSessionOptions options_;
  int64_t entries_read_ = 0;
  ldap_conncb connect_callback_{};
  std::string refused_address_;  // Set by OnConnect.
};

}  // namespace idsync

#endif  // IDSYNC_CONNECTOR_LDAP_LDAP_SESSION_H_
