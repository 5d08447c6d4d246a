#include "connector/ldap/ldap_session.h"

#include <sys/time.h>
#include <unistd.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "connector/status_macros.h"
#include "connector/text.h"

namespace idsync {
namespace {

absl::string_view View(const berval& bv) {
  return absl::string_view(bv.bv_val, bv.bv_len);
}

struct MessageFree {
  void operator()(LDAPMessage* m) const { ldap_msgfree(m); }
};
using MessagePtr = std::unique_ptr<LDAPMessage, MessageFree>;

// The attribute list libldap wants: NULL-terminated; "1.1" asks for none.
std::vector<char*> AttributeArray(const AttributeSlots* attributes) {
  static char kNone[] = "1.1";
  std::vector<char*> out;
  if (attributes == nullptr || attributes->size() == 0) {
    out.push_back(kNone);
  } else {
    for (const std::string& n : attributes->names()) {
      out.push_back(const_cast<char*>(n.c_str()));
    }
  }
  out.push_back(nullptr);
  return out;
}

}  // namespace

void LdapSession::EntryMemory::Clear() {
  for (BerVarray a : value_arrays) ber_memfree(a);
  value_arrays.clear();
  if (ber != nullptr) ber_free(ber, 0);
  ber = nullptr;
  copies.clear();
}

LdapSession::LdapSession(LDAP* ld, LdapSessionOptions options)
    : ld_(ld), options_(std::move(options)) {}

LdapSession::~LdapSession() { ldap_unbind_ext_s(ld_, nullptr, nullptr); }

std::string LdapSession::Redact(absl::string_view text) const {
  if (options_.password.empty()) return std::string(text);
  return absl::StrReplaceAll(text, {{options_.password, "***"}});
}

absl::Status LdapSession::Error(int rc, absl::string_view what,
                                absl::string_view server_text) const {
  if (!refused_address_.empty() &&
      (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR)) {
    // libldap calls back only once the TCP connect has succeeded, so this
    // refusal says the port is open: not kPermissionDenied, whose words a
    // connection test passes on, but a code it words like any unreachable
    // source. Run errors keep the words.
    return absl::FailedPreconditionError(absl::StrCat(
        what, " on ", options_.url,
        ": refused to connect to a loopback/private address (private "
        "targets are not allowed)"));
  }
  if (rc == LDAP_SERVER_DOWN && entries_read_ > 0) {
    return absl::UnavailableError(
        absl::StrCat(what, ": lost the connection to ", options_.url, " after ",
                     entries_read_, " entries; the read is incomplete"));
  }
  std::string detail = ldap_err2string(rc);
  if (server_text.empty() &&
      (rc == LDAP_SERVER_DOWN || rc == LDAP_CONNECT_ERROR)) {
    char* diagnostic = nullptr;
    if (ldap_get_option(ld_, LDAP_OPT_DIAGNOSTIC_MESSAGE, &diagnostic) ==
            LDAP_OPT_SUCCESS &&
        diagnostic != nullptr) {
      if (diagnostic[0] != '\0') absl::StrAppend(&detail, ": ", diagnostic);
      ldap_memfree(diagnostic);
    }
  } else if (!server_text.empty()) {
    absl::StrAppend(&detail, ": ", Excerpt(server_text, 200));
  }
  const std::string message =
      Redact(absl::StrCat(what, " on ", options_.url, " failed: ", detail));
  switch (rc) {
    case LDAP_INVALID_CREDENTIALS:
      return absl::UnauthenticatedError(message);
    case LDAP_SERVER_DOWN:
    case LDAP_CONNECT_ERROR:
    case LDAP_UNAVAILABLE:
    case LDAP_BUSY:
      return absl::UnavailableError(message);
    case LDAP_TIMEOUT:
    case LDAP_TIMELIMIT_EXCEEDED:
      return absl::DeadlineExceededError(message);
    case LDAP_SIZELIMIT_EXCEEDED:
    case LDAP_ADMINLIMIT_EXCEEDED:
      return absl::ResourceExhaustedError(absl::StrCat(
          message,
          " (the server's size limit stopped the search; paging was refused "
          "or is limited for this bind DN: raise the limit, e.g. slapd "
          "'limits ... size.prtotal=unlimited', or AD MaxPageSize)"));
    case LDAP_INSUFFICIENT_ACCESS:
    case LDAP_STRONG_AUTH_REQUIRED:
    case LDAP_CONFIDENTIALITY_REQUIRED:
    case LDAP_INAPPROPRIATE_AUTH:
      return absl::PermissionDeniedError(message);
    case LDAP_NO_SUCH_OBJECT:
    case LDAP_INVALID_DN_SYNTAX:
    case LDAP_FILTER_ERROR:
    case LDAP_PARAM_ERROR:
    case LDAP_REFERRAL:
    case LDAP_UNDEFINED_TYPE:
    case LDAP_INAPPROPRIATE_MATCHING:
      return absl::InvalidArgumentError(message);
    default:
      return absl::UnknownError(message);
  }
}

int LdapSession::OnConnect(LDAP* ld, Sockbuf* sb, LDAPURLDesc* srv,
                           sockaddr* addr, ldap_conncb* ctx) {
  auto* session = static_cast<LdapSession*>(ctx->lc_arg);
  if (session->options_.addresses->Allows(addr)) return 0;
  session->refused_address_ = AddressToString(addr);
  return -1;  // libldap closes the socket; nothing was sent on it.
}

absl::Status CheckLdapHost(const std::string& url,
                           const AddressPolicy& policy) {
  if (policy.any()) return absl::OkStatus();
  LDAPURLDesc* desc = nullptr;
  if (ldap_url_parse(url.c_str(), &desc) != LDAP_URL_SUCCESS) {
    return absl::InvalidArgumentError(
        absl::StrCat("ldap: cannot use url '", Excerpt(url), "'"));
  }
  // No host in the URL is libldap's default: localhost.
  std::string host = desc->lud_host == nullptr || desc->lud_host[0] == '\0'
                         ? "localhost"
                         : desc->lud_host;
  ldap_free_urldesc(desc);
  if (host.find(':') != std::string::npos) host = absl::StrCat("[", host, "]");
  return policy.CheckHost(host, "ldap config: 'url' host",
                          /*name_address=*/false);
}

absl::StatusOr<std::unique_ptr<LdapSession>> LdapSession::Open(
    const LdapSessionOptions& options) {
  // At connect time, before libldap resolves the name itself (its connect
  // callback then checks the address it connects to).
  if (absl::Status allowed = CheckLdapHost(options.url, *options.addresses);
      !allowed.ok()) {
    return absl::PermissionDeniedError(allowed.message());
  }
  LDAP* ld = nullptr;
  if (ldap_initialize(&ld, options.url.c_str()) != LDAP_SUCCESS ||
      ld == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("ldap: cannot use url '", Excerpt(options.url), "'"));
  }
  // From here the session owns `ld` and unbinds it on every path.
  std::unique_ptr<LdapSession> session(new LdapSession(ld, options));
  const int version = LDAP_VERSION3;
  ldap_set_option(ld, LDAP_OPT_PROTOCOL_VERSION, &version);
  ldap_set_option(ld, LDAP_OPT_REFERRALS, LDAP_OPT_OFF);
  ldap_set_option(ld, LDAP_OPT_RESTART, LDAP_OPT_ON);
  timeval timeout{options.timeout_seconds, 0};
  ldap_set_option(ld, LDAP_OPT_NETWORK_TIMEOUT, &timeout);
  ldap_set_option(ld, LDAP_OPT_TIMEOUT, &timeout);
  if (!options.addresses->any()) {
    session->connect_callback_.lc_add = &LdapSession::OnConnect;
    session->connect_callback_.lc_del = &LdapSession::OnDisconnect;
    session->connect_callback_.lc_arg = session.get();
    ldap_set_option(ld, LDAP_OPT_CONNECT_CB, &session->connect_callback_);
  }
  if (!options.ca_file.empty()) {
    // Opened through the connector's FileAccess; libldap reads it by path
    // while NEWCTX runs, so it gets the open file's /proc path.
    IDSYNC_ASSIGN_OR_RETURN(
        UniqueFd ca, options.files->OpenRead(options.ca_file, "ldap ca_file"));
    const std::string ca_path = ca.ProcPath();
    const int demand = LDAP_OPT_X_TLS_DEMAND;
    const int is_server = 0;
    if (ldap_set_option(ld, LDAP_OPT_X_TLS_CACERTFILE, ca_path.c_str()) !=
            LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_X_TLS_REQUIRE_CERT, &demand) !=
            LDAP_OPT_SUCCESS ||
        ldap_set_option(ld, LDAP_OPT_X_TLS_NEWCTX, &is_server) !=
            LDAP_OPT_SUCCESS) {
      return absl::InvalidArgumentError(absl::StrCat(
          "ldap config: ca_file '", options.ca_file,
          "' could not be loaded (is it a PEM certificate bundle?)"));
    }
  }
  if (options.start_tls) {
    const int rc = ldap_start_tls_s(ld, nullptr, nullptr);
    if (rc != LDAP_SUCCESS) return session->Error(rc, "StartTLS");
  }
  berval credentials;
  credentials.bv_val = const_cast<char*>(options.password.data());
  credentials.bv_len = options.password.size();
  const int rc = ldap_sasl_bind_s(
      ld, options.bind_dn.empty() ? nullptr : options.bind_dn.c_str(),
      LDAP_SASL_SIMPLE, &credentials, nullptr, nullptr, nullptr);
  if (rc != LDAP_SUCCESS) {
    const std::string what =
        options.bind_dn.empty()
            ? std::string("anonymous bind")
            : absl::StrCat("bind as '", Excerpt(options.bind_dn, 200), "'");
    return session->Error(rc, what);
  }
  return session;
}

absl::Status LdapSession::Next(int msgid, absl::string_view what,
                               LDAPMessage** message) {
  timeval timeout{options_.timeout_seconds, 0};
  const int type = ldap_result(ld_, msgid, LDAP_MSG_ONE, &timeout, message);
  if (type == 0) {
    ldap_abandon_ext(ld_, msgid, nullptr, nullptr);
    return absl::DeadlineExceededError(
        absl::StrCat(what, " on ", options_.url, ": no answer within ",
                     options_.timeout_seconds, " s (timeout_seconds) after ",
                     entries_read_, " entries"));
  }
  if (type < 0) {
    int rc = LDAP_OTHER;
    ldap_get_option(ld_, LDAP_OPT_RESULT_CODE, &rc);
    return Error(rc, what);
  }
  return absl::OkStatus();
}

absl::Status LdapSession::ReadEntry(LDAPMessage* message,
                                    const AttributeSlots* attributes,
                                    LdapEntry& entry, EntryMemory& memory) {
  entry.Reset(attributes == nullptr ? 0 : attributes->size());
  berval dn{0, nullptr};
  if (ldap_get_dn_ber(ld_, message, &memory.ber, &dn) != LDAP_SUCCESS) {
    return absl::DataLossError(
        absl::StrCat("ldap: a malformed entry from ", options_.url));
  }
  entry.dn = View(dn);
  if (attributes == nullptr) return absl::OkStatus();
  berval name{0, nullptr};
  BerVarray values = nullptr;
  while (ldap_get_attribute_ber(ld_, message, memory.ber, &name, &values) ==
             LDAP_SUCCESS &&
         name.bv_val != nullptr) {
    if (values == nullptr) continue;
    memory.value_arrays.push_back(values);
    int slot = attributes->Find(View(name));
    absl::string_view base;
    int64_t low = 0, high = 0;
    if (slot < 0 && ParseRange(View(name), &base, &low, &high)) {
      slot = attributes->Find(base);
      if (slot >= 0 && high >= 0) entry.ranged.emplace_back(slot, high + 1);
    }
    if (slot < 0) continue;
    for (BerVarray v = values; v->bv_val != nullptr; ++v) {
      entry.values[slot].push_back(View(*v));
    }
  }
  return absl::OkStatus();
}

absl::Status LdapSession::ReadRanges(const AttributeSlots& attributes,
                                     LdapEntry& entry, EntryMemory& memory) {
  const std::string dn(entry.dn);
  for (auto [slot, next] : entry.ranged) {
    const std::string& name = attributes.names()[slot];
    while (next >= 0) {
      std::string wanted = absl::StrCat(name, ";range=", next, "-*");
      char* attrs[] = {wanted.data(), nullptr};
      timeval timeout{options_.timeout_seconds, 0};
      LDAPMessage* raw = nullptr;
      const int rc = ldap_search_ext_s(ld_, dn.c_str(), LDAP_SCOPE_BASE,
                                       "(objectClass=*)", attrs, 0, nullptr,
                                       nullptr, &timeout, LDAP_NO_LIMIT, &raw);
      MessagePtr result(raw);
      if (rc != LDAP_SUCCESS) {
        return Error(rc, absl::StrCat("reading ", name, " of '",
                                      Excerpt(dn, 200), "' in ranges"));
      }
      LDAPMessage* e = ldap_first_entry(ld_, raw);
      const int64_t from = next;
      next = -1;
      if (e == nullptr) break;
      BerElement* ber = nullptr;
      for (char* a = ldap_first_attribute(ld_, e, &ber); a != nullptr;
           a = ldap_next_attribute(ld_, e, ber)) {
        absl::string_view base;
        int64_t low = 0, high = 0;
        if (ParseRange(a, &base, &low, &high) && low == from) {
          berval** values = ldap_get_values_len(ld_, e, a);
          for (int i = 0; values != nullptr && values[i] != nullptr; ++i) {
            memory.copies.emplace_back(values[i]->bv_val, values[i]->bv_len);
            entry.values[slot].push_back(memory.copies.back());
          }
          ldap_value_free_len(values);
          if (high >= 0) next = high + 1;
        }
        ldap_memfree(a);
      }
      if (ber != nullptr) ber_free(ber, 0);
    }
  }
  entry.ranged.clear();
  return absl::OkStatus();
}

absl::Status LdapSession::Search(
    const LdapSearch& search,
    const std::function<absl::Status(LdapEntry&)>& visit) {
  std::vector<char*> attrs = AttributeArray(search.attributes);
  const std::string what = absl::StrCat("search of ", search.what, " '",
                                        Excerpt(search.base, 200), "'");
  berval* cookie = nullptr;
  struct CookieFree {
    berval** cookie;
    ~CookieFree() {
      if (*cookie != nullptr) ber_bvfree(*cookie);
    }
  } cookie_free{&cookie};
  LdapEntry entry;
  EntryMemory memory;
  while (true) {
    LDAPControl* page = nullptr;
    LDAPControl* controls[2] = {nullptr, nullptr};
    if (search.page_size > 0) {
      // Not critical: a server without paging answers in one go, and a
      // size limit it then hits is an error below.
      const int rc = ldap_create_page_control(ld_, search.page_size, cookie,
                                              /*iscritical=*/0, &page);
      if (rc != LDAP_SUCCESS) return Error(rc, what);
      controls[0] = page;
    }
    int msgid = 0;
    const int rc = ldap_search_ext(
        ld_, search.base.c_str(), search.scope, search.filter.c_str(),
        attrs.data(), 0, controls, nullptr, nullptr, LDAP_NO_LIMIT, &msgid);
    if (page != nullptr) ldap_control_free(page);
    if (rc == LDAP_FILTER_ERROR) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": the filter is not a valid LDAP filter"));
    }
    if (rc != LDAP_SUCCESS) return Error(rc, what);
    bool page_done = false;
    while (!page_done) {
      LDAPMessage* raw = nullptr;
      IDSYNC_RETURN_IF_ERROR(Next(msgid, what, &raw));
      MessagePtr message(raw);
      switch (ldap_msgtype(raw)) {
        case LDAP_RES_SEARCH_ENTRY: {
          absl::Status s = ReadEntry(raw, search.attributes, entry, memory);
          if (s.ok() && !entry.ranged.empty()) {
            s = ReadRanges(*search.attributes, entry, memory);
          }
          if (s.ok()) s = visit(entry);
          memory.Clear();
          if (!s.ok()) {
            ldap_abandon_ext(ld_, msgid, nullptr, nullptr);
            return s;
          }
          ++entries_read_;
          break;
        }
        case LDAP_RES_SEARCH_REFERENCE: {
          char** refs = nullptr;
          ldap_parse_reference(ld_, raw, &refs, nullptr, 0);
          const std::string target = refs != nullptr && refs[0] != nullptr
                                         ? Excerpt(refs[0], 200)
                                         : std::string("?");
          ldap_memvfree(reinterpret_cast<void**>(refs));
          ldap_abandon_ext(ld_, msgid, nullptr, nullptr);
          return absl::InvalidArgumentError(absl::StrCat(
              what, " on ", options_.url, ": part of it is on another server (",
              "referral to ", target,
              "), and this connector does not follow referrals; point url at "
              "that server or choose a base that one server holds"));
        }
        case LDAP_RES_SEARCH_RESULT: {
          page_done = true;
          int result = LDAP_OTHER;
          char* text = nullptr;
          char** refs = nullptr;
          LDAPControl** returned = nullptr;
          const int parsed = ldap_parse_result(ld_, raw, &result, nullptr,
                                               &text, &refs, &returned, 0);
          std::string server_text = text != nullptr ? text : "";
          std::string referral =
              refs != nullptr && refs[0] != nullptr ? refs[0] : "";
          if (cookie != nullptr) ber_bvfree(cookie);
          cookie = nullptr;
          LDAPControl* response =
              returned == nullptr ? nullptr
                                  : ldap_control_find(LDAP_CONTROL_PAGEDRESULTS,
                                                      returned, nullptr);
          if (parsed == LDAP_SUCCESS && result == LDAP_SUCCESS &&
              response != nullptr) {
            ber_int_t estimate = 0;
            berval next{0, nullptr};
            if (ldap_parse_pageresponse_control(ld_, response, &estimate,
                                                &next) == LDAP_SUCCESS) {
              if (next.bv_len > 0) cookie = ber_bvdup(&next);
              ber_memfree(next.bv_val);
            }
          }
          ldap_memfree(text);
          ldap_memvfree(reinterpret_cast<void**>(refs));
          ldap_controls_free(returned);
          if (parsed != LDAP_SUCCESS) return Error(parsed, what);
          if (result == LDAP_REFERRAL) {
            return absl::InvalidArgumentError(absl::StrCat(
                what, " on ", options_.url,
                ": the server holds no such base and referred the search to ",
                Excerpt(referral, 200),
                "; this connector does not follow referrals: point url at "
                "that server"));
          }
          if (result == LDAP_NO_SUCH_OBJECT) {
            return absl::InvalidArgumentError(absl::StrCat(
                what, " on ", options_.url, ": ", search.what, " '",
                Excerpt(search.base, 200), "' does not exist"));
          }
          if (result != LDAP_SUCCESS) return Error(result, what, server_text);
          break;
        }
        default:
          break;  // Intermediate responses: none are asked for.
      }
    }
    if (cookie == nullptr) return absl::OkStatus();
  }
}

absl::Status LdapSession::Read(absl::string_view dn,
                               const AttributeSlots& attributes,
                               const std::function<void(LdapEntry&)>& visit,
                               bool* found) {
  *found = false;
  std::vector<char*> attrs = AttributeArray(&attributes);
  const std::string base(dn);
  timeval timeout{options_.timeout_seconds, 0};
  LDAPMessage* raw = nullptr;
  const int rc = ldap_search_ext_s(ld_, base.c_str(), LDAP_SCOPE_BASE,
                                   "(objectClass=*)", attrs.data(), 0, nullptr,
                                   nullptr, &timeout, LDAP_NO_LIMIT, &raw);
  MessagePtr result(raw);
  if (rc == LDAP_NO_SUCH_OBJECT || rc == LDAP_INVALID_DN_SYNTAX ||
      rc == LDAP_REFERRAL) {
    return absl::OkStatus();
  }
  if (rc != LDAP_SUCCESS) {
    return Error(rc, absl::StrCat("reading '", Excerpt(dn, 200), "'"));
  }
  LDAPMessage* e = ldap_first_entry(ld_, raw);
  if (e == nullptr) return absl::OkStatus();
  LdapEntry entry;
  EntryMemory memory;
  IDSYNC_RETURN_IF_ERROR(ReadEntry(e, &attributes, entry, memory));
  *found = true;
  visit(entry);
  return absl::OkStatus();
}

}  // namespace idsync
