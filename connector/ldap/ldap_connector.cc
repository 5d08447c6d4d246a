#include "connector/ldap/ldap_connector.h"

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <fstream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "connector/chunk_writer.h"
#include "connector/config.h"
#include "connector/ldap/ldap_mapping.h"
#include "connector/ldap/ldap_options.h"
#include "connector/ldap/ldap_session.h"
#include "connector/status_macros.h"
#include "connector/text.h"

namespace idsync {
namespace {

constexpr size_t kMaxCachedManagers = 50000;
// User name -> DN key, filled by the user walk for posixGroup memberUid
// (about 100 bytes an entry); names past the cap are looked up.
constexpr size_t kMaxCachedUserNames = 200000;
constexpr size_t kMemberUidBatch = 200;
constexpr size_t kMaxListedNestedGroups = 1000;

// A server that goes away makes libldap write to a closed socket. Blocks
// SIGPIPE on this thread while the connector talks to the server (the write
// then fails with EPIPE) and discards a pending one before unblocking.
class ScopedSigpipeBlock {
 public:
  ScopedSigpipeBlock() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_, &old_);
    blocked_here_ = sigismember(&old_, SIGPIPE) == 0;
  }
  ~ScopedSigpipeBlock() {
    if (!blocked_here_) return;
    const timespec zero{0, 0};
    while (sigtimedwait(&pipe_, nullptr, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  ScopedSigpipeBlock(const ScopedSigpipeBlock&) = delete;
  ScopedSigpipeBlock& operator=(const ScopedSigpipeBlock&) = delete;

 private:
  sigset_t pipe_, old_;
  bool blocked_here_ = false;
};

// Escapes a value for use inside a filter (RFC 4515).
std::string FilterValue(absl::string_view value) {
  std::string out;
  for (char c : value) {
    if (c == '*' || c == '(' || c == ')' || c == '\\' || c == '\0') {
      absl::StrAppend(
          &out, "\\",
          absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string SinceFilter(const std::string& filter,
                        std::optional<absl::Time> since) {
  if (!since.has_value()) return filter;
  return absl::StrCat(
      "(&", filter, "(modifyTimestamp>=", FormatGeneralizedTime(*since), "))");
}

// uniqueMember may carry an optional UID: "cn=x,dc=y#'0101'B".
absl::string_view StripOptionalUid(absl::string_view value) {
  if (absl::EndsWith(value, "'B")) {
    const size_t hash = value.rfind("#'");
    if (hash != absl::string_view::npos) return value.substr(0, hash);
  }
  return value;
}

// The date and time digits of a generalized time.
bool LeadingDigits(absl::string_view stamp) {
  if (stamp.size() < 15) return false;
  for (size_t i = 0; i < 14; ++i) {
    if (stamp[i] < '0' || stamp[i] > '9') return false;
  }
  return true;
}

// One Sync: the session, the chunk writer and what the walk has learnt.
class Walk {
 public:
  Walk(const LdapOptions& options, LdapSession& session, ChunkWriter* writer)
      : options_(options),
        session_(session),
        writer_(writer),
        users_(options.user, user_slots_),
        groups_(options.group, group_slots_) {
    user_timestamp_ = user_slots_.Add("modifyTimestamp");
    group_timestamp_ = group_slots_.Add("modifyTimestamp");
    id_slots_.AddAll(options.user.external_id);
    progress_.set_unit("entries");
  }

  absl::Status Users(std::optional<absl::Time> since) {
    LdapSearch search{options_.user_base,
                      LDAP_SCOPE_SUBTREE,
                      SinceFilter(options_.user_filter, since),
                      &user_slots_,
                      options_.page_size,
                      "user_base"};
    return session_.Search(search,
                           [this](LdapEntry& e) { return EmitUser(e); });
  }

  absl::Status Groups(std::optional<absl::Time> since) {
    if (options_.group_base.empty()) return absl::OkStatus();
    // Every group's DN first (DNs only), to tell nested groups from members.
    LdapSearch names{options_.group_base,   LDAP_SCOPE_SUBTREE,
                     options_.group_filter, nullptr,
                     options_.page_size,    "group_base"};
    std::string key;
    IDSYNC_RETURN_IF_ERROR(session_.Search(names, [&](LdapEntry& e) {
      if (NormalizeDn(e.dn, &key)) group_dns_.insert(Hash(key));
      return absl::OkStatus();
    }));
    LdapSearch search{options_.group_base,
                      LDAP_SCOPE_SUBTREE,
                      SinceFilter(options_.group_filter, since),
                      &group_slots_,
                      options_.page_size,
                      "group_base"};
    return session_.Search(search,
                           [this](LdapEntry& e) { return EmitGroup(e); });
  }

  absl::Status Flush() {
    progress_.set_done(session_.entries_read());
    return writer_->Flush("", progress_);
  }

  std::optional<absl::Time> newest_seen() const {
    if (newest_text_.empty()) return std::nullopt;
    auto t = ParseGeneralizedTime(newest_text_);
    return t.ok() ? std::optional<absl::Time>(*t) : std::nullopt;
  }

 private:
  static uint64_t Hash(absl::string_view key) {
    return absl::Hash<absl::string_view>{}(key);
  }

  absl::Status MaybeFlush() {
    return writer_->full() ? Flush() : absl::OkStatus();
  }

  // Keeps the newest modifyTimestamp. Stamps of one shape (slapd's
  // "YYYYMMDDHHMMSSZ", AD's "YYYYMMDDHHMMSS.0Z") order as strings, so only
  // a stamp of another shape is parsed.
  void NoteTimestamp(const LdapEntry& e, int slot) {
    if (e.values[slot].empty()) return;
    const absl::string_view stamp = e.values[slot][0];
    if (stamp.size() == newest_text_.size()) {
      if (stamp > newest_text_ && LeadingDigits(stamp)) {
        newest_text_.assign(stamp.data(), stamp.size());
      }
      return;
    }
    auto t = ParseGeneralizedTime(stamp);
    if (!t.ok()) return;
    if (newest_text_.empty() || *t > *ParseGeneralizedTime(newest_text_)) {
      newest_text_.assign(stamp.data(), stamp.size());
    }
  }

  void AddReject(idsync::v1::RecordKind kind, absl::string_view dn,
                 std::string external_id, std::string reason) {
    idsync::v1::Reject* r = writer_->AddReject();
    r->set_kind(kind);
    r->set_location(Excerpt(dn, 200));
    if (IsValidUtf8(external_id) && external_id.size() <= 1024) {
      r->set_external_id(std::move(external_id));
    }
    r->set_reason(std::move(reason));
  }

  absl::Status EmitUser(const LdapEntry& e) {
    NoteTimestamp(e, user_timestamp_);
    if (!NormalizeDn(e.dn, &dn_key_)) {
      AddReject(idsync::v1::RECORD_KIND_ACCOUNT, e.dn, "",
                "the entry's DN could not be parsed");
      return MaybeFlush();
    }
    // Mapped straight into the chunk, whose records may be recycled.
    idsync::v1::RemoteIdentity& identity = *writer_->AddIdentity();
    idsync::v1::RemoteAccount& account = *writer_->AddAccount();
    std::string problem = users_.Map(e, dn_key_, &identity, &account);
    if (const absl::string_view manager = users_.ManagerDn(e);
        problem.empty() && !manager.empty()) {
      IDSYNC_ASSIGN_OR_RETURN(std::string id, ResolveManager(manager));
      if (id.empty() && IsValidUtf8(manager)) {
        (*identity.mutable_attributes())["manager_dn"] = std::string(manager);
      }
      identity.set_manager_external_id(std::move(id));
    }
    if (users_.single_id_attribute().empty() && problem.empty()) {
      Remember(dn_key_, identity.external_id());
    }
    if (!groups_.member_uid_slots().empty() && !account.username().empty() &&
        user_names_.size() < kMaxCachedUserNames) {
      auto [it, inserted] = user_names_.emplace(account.username(), dn_key_);
      if (!inserted) it->second.clear();  // Ambiguous: ask the server.
    }
    if (!problem.empty()) {
      std::string external_id = identity.external_id();
      writer_->DropLastIdentity();  // `identity` is gone from here on.
      AddReject(idsync::v1::RECORD_KIND_IDENTITY, e.dn, std::move(external_id),
                std::move(problem));
    }
    return MaybeFlush();
  }

  void Remember(const std::string& dn_key, const std::string& id) {
    if (managers_.size() >= kMaxCachedManagers) managers_.clear();
    managers_.emplace(dn_key, id);
  }

  // The identity id of the entry `dn` names, or "" if there is none.
  absl::StatusOr<std::string> ResolveManager(absl::string_view dn) {
    if (!users_.single_id_attribute().empty()) {
      std::optional<std::string> id =
          RdnValue(dn, users_.single_id_attribute());
      if (id.has_value()) return *std::move(id);
    }
    std::string key;
    if (!NormalizeDn(dn, &key)) return std::string();
    if (auto it = managers_.find(key); it != managers_.end()) {
      return it->second;
    }
    std::string id;
    bool found = false;
    IDSYNC_RETURN_IF_ERROR(session_.Read(
        dn, id_slots_,
        [&](LdapEntry& m) {
          for (const auto& values : m.values) {
            if (!values.empty() && IsValidUtf8(values[0])) {
              id = std::string(values[0]);
              break;
            }
          }
        },
        &found));
    Remember(key, id);
    return id;
  }

  absl::Status EmitGroup(const LdapEntry& e) {
    NoteTimestamp(e, group_timestamp_);
    std::string group_key;
    if (!NormalizeDn(e.dn, &group_key)) {
      AddReject(idsync::v1::RECORD_KIND_ENTITLEMENT, e.dn, "",
                "the entry's DN could not be parsed");
      return MaybeFlush();
    }
    members_.clear();
    std::vector<std::string> nested;
    int64_t nested_count = 0;
    std::string member_key;
    for (int slot : groups_.member_slots()) {
      for (absl::string_view value : e.values[slot]) {
        if (!NormalizeDn(StripOptionalUid(value), &member_key)) {
          idsync::v1::Reject* r = writer_->AddReject();
          r->set_kind(idsync::v1::RECORD_KIND_GRANT);
          r->set_location(Excerpt(e.dn, 200));
          r->set_entitlement_external_id(group_key);
          r->set_reason(
              absl::StrCat("member value '", Excerpt(value), "' is not a DN"));
          IDSYNC_RETURN_IF_ERROR(MaybeFlush());
          continue;
        }
        const uint64_t hash = Hash(member_key);
        if (group_dns_.contains(hash)) {
          if (++nested_count <= static_cast<int64_t>(kMaxListedNestedGroups)) {
            nested.push_back(member_key);
          }
          continue;
        }
        if (!members_.insert(hash).second) continue;
        IDSYNC_RETURN_IF_ERROR(AddGrant(std::move(member_key), group_key));
      }
    }
    IDSYNC_RETURN_IF_ERROR(MemberUids(e, group_key));
    idsync::v1::RemoteEntitlement entitlement;
    std::string problem = groups_.Map(e, group_key, &entitlement);
    if (!nested.empty()) {
      auto& attributes = *entitlement.mutable_attributes();
      attributes["member_groups"] = absl::StrJoin(nested, "\n");
      attributes["member_group_count"] = absl::StrCat(nested_count);
    }
    if (problem.empty()) {
      writer_->AddEntitlement()->Swap(&entitlement);
    } else {
      AddReject(idsync::v1::RECORD_KIND_ENTITLEMENT, e.dn, group_key,
                std::move(problem));
    }
    return MaybeFlush();
  }

  absl::Status AddGrant(std::string account_key, const std::string& group) {
    idsync::v1::RemoteGrant* grant = writer_->AddGrant();
    grant->set_account_external_id(std::move(account_key));
    grant->set_entitlement_external_id(group);
    return MaybeFlush();
  }

  // posixGroup memberUid values name users by their username attribute:
  // looked up in batches with one OR filter each.
  absl::Status MemberUids(const LdapEntry& e, const std::string& group_key) {
    if (groups_.member_uid_slots().empty() || options_.user.username.empty()) {
      return absl::OkStatus();
    }
    std::vector<absl::string_view> uids;
    absl::flat_hash_set<absl::string_view> distinct;
    for (int slot : groups_.member_uid_slots()) {
      for (absl::string_view v : e.values[slot]) {
        if (distinct.insert(v).second) uids.push_back(v);
      }
    }
    // Names the user walk saw resolve here; the rest are looked up.
    std::vector<absl::string_view> unknown;
    for (absl::string_view uid : uids) {
      auto it = user_names_.find(uid);
      if (it == user_names_.end() || it->second.empty()) {
        unknown.push_back(uid);
      } else if (members_.insert(Hash(it->second)).second) {
        IDSYNC_RETURN_IF_ERROR(AddGrant(it->second, group_key));
      }
    }
    uids.swap(unknown);
    const std::string& attribute = options_.user.username[0];
    std::string key;
    for (size_t i = 0; i < uids.size(); i += kMemberUidBatch) {
      std::string filter = absl::StrCat("(&", options_.user_filter, "(|");
      for (size_t j = i; j < std::min(uids.size(), i + kMemberUidBatch); ++j) {
        absl::StrAppend(&filter, "(", attribute, "=", FilterValue(uids[j]),
                        ")");
      }
      absl::StrAppend(&filter, "))");
      LdapSearch search{options_.user_base,
                        LDAP_SCOPE_SUBTREE,
                        filter,
                        nullptr,
                        0,
                        "user_base (memberUid lookup)"};
      IDSYNC_RETURN_IF_ERROR(session_.Search(search, [&](LdapEntry& user) {
        if (!NormalizeDn(user.dn, &key)) return absl::OkStatus();
        if (!members_.insert(Hash(key)).second) return absl::OkStatus();
        return AddGrant(key, group_key);
      }));
    }
    return absl::OkStatus();
  }

  const LdapOptions& options_;
  LdapSession& session_;
  ChunkWriter* const writer_;
  AttributeSlots user_slots_, group_slots_, id_slots_;
  LdapUserMapper users_;
  LdapGroupMapper groups_;
  int user_timestamp_ = -1, group_timestamp_ = -1;
  idsync::v1::Progress progress_;
  std::string newest_text_;  // A valid generalized time, or empty.
  std::string dn_key_;
  absl::flat_hash_map<std::string, std::string> managers_;  // DN key -> id.
  // User name -> DN key ("" when two users share the name).
  absl::flat_hash_map<std::string, std::string> user_names_;
  absl::flat_hash_set<uint64_t> group_dns_;  // Hashes of group DN keys.
  absl::flat_hash_set<uint64_t> members_;    // Of the current group.
};

class LdapConnector final : public Connector {
 public:
  LdapConnector(LdapOptions options, google::protobuf::Struct auth_config,
                Clock& clock, SourceAccess access)
      : options_(std::move(options)),
        auth_config_(std::move(auth_config)),
        clock_(clock),
        access_(std::move(access)) {}

  absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override {
    return BuiltinInfo("ldap", {"full", "incremental", "identities", "accounts",
                                "entitlements", "grants"});
  }

  absl::Status TestConnection() override {
    ScopedSigpipeBlock no_sigpipe;
    IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<LdapSession> session,
                            Connect(auth_config_));
    for (const auto& [what, base] : {std::pair<const char*, const std::string*>{
                                         "user_base", &options_.user_base},
                                     {"group_base", &options_.group_base}}) {
      if (base->empty()) continue;
      LdapSearch search{*base, LDAP_SCOPE_BASE, "(objectClass=*)", nullptr, 0,
                        what};
      IDSYNC_RETURN_IF_ERROR(
          session->Search(search, [](LdapEntry&) { return absl::OkStatus(); }));
    }
    return absl::OkStatus();
  }

  absl::Status Sync(const idsync::v1::SyncRequest& request,
                    RecordSink& sink) override {
    ScopedSigpipeBlock no_sigpipe;
    std::optional<absl::Time> since;
    if (request.incremental()) {
      IDSYNC_ASSIGN_OR_RETURN(since, DecodeSyncToken(request.sync_token()));
    }
    const absl::Time walk_start = clock_.Now();
    IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<LdapSession> session,
                            Connect(RunAuthConfig(request, auth_config_)));
    ChunkWriter writer(sink, request.chunk_size());
    Walk walk(options_, *session, &writer);
    IDSYNC_RETURN_IF_ERROR(walk.Users(since));
    IDSYNC_RETURN_IF_ERROR(walk.Groups(since));
    IDSYNC_RETURN_IF_ERROR(walk.Flush());
    std::optional<absl::Time> next = NextWatermark(
        walk.newest_seen(), walk_start,
        absl::Seconds(options_.incremental_overlap_seconds), since);
    if (next.has_value()) sink.SetNextSyncToken(EncodeSyncToken(*next));
    return absl::OkStatus();
  }

 private:
  absl::StatusOr<std::string> Password(
      const google::protobuf::Struct& auth_config) const {
    ConfigReader auth(auth_config, "ldap auth_config");
    IDSYNC_RETURN_IF_ERROR(auth.CheckKnownKeys({"password"}));
    IDSYNC_ASSIGN_OR_RETURN(std::string password, auth.String("password", ""));
    if (!password.empty() || options_.bind_dn.empty()) return password;
    if (options_.bind_password_file.empty()) {
      return absl::InvalidArgumentError(
          "ldap: bind_dn is set but there is no password: put it in "
          "auth_config {\"password\": ...} or name a bind_password_file");
    }
    IDSYNC_ASSIGN_OR_RETURN(
        std::string text,
        ReadWholeFile(*access_.files, options_.bind_password_file,
                      "ldap bind_password_file", 4096));
    // One trailing line end, as `echo` and editors leave it.
    if (absl::EndsWith(text, "\n")) text.pop_back();
    if (absl::EndsWith(text, "\r")) text.pop_back();
    if (text.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("ldap config: bind_password_file '",
                       options_.bind_password_file, "' is empty"));
    }
    return text;
  }

  absl::StatusOr<std::unique_ptr<LdapSession>> Connect(
      const google::protobuf::Struct& auth_config) const {
    LdapSessionOptions o;
    o.url = options_.url;
    o.start_tls = options_.start_tls;
    o.ca_file = options_.ca_file;
    o.files = access_.files;
    o.addresses = access_.addresses;
    o.bind_dn = options_.bind_dn;
    IDSYNC_ASSIGN_OR_RETURN(o.password, Password(auth_config));
    o.timeout_seconds = options_.timeout_seconds;
    return LdapSession::Open(o);
  }

  const LdapOptions options_;
  const google::protobuf::Struct auth_config_;
  Clock& clock_;
  const SourceAccess access_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Connector>> CreateLdapConnector(
    const ConnectorSpec& spec) {
  IDSYNC_ASSIGN_OR_RETURN(LdapOptions options, ParseLdapOptions(spec.config));
  const FileAccess& files = *spec.access.files;
  if (!options.bind_password_file.empty() && !files.secret_files()) {
    return absl::InvalidArgumentError(
        "ldap config: 'bind_password_file' is not accepted here: give the "
        "password in auth_config {\"password\": ...}, which is sealed at "
        "rest");
  }
  if (!options.ca_file.empty()) {
    IDSYNC_RETURN_IF_ERROR(
        files.CheckPath(options.ca_file, "ldap config: 'ca_file'"));
  }
  IDSYNC_RETURN_IF_ERROR(CheckLdapHost(options.url, *spec.access.addresses));
  return std::make_unique<LdapConnector>(std::move(options), spec.auth_config,
                                         *spec.clock, spec.access);
}

}  // namespace idsync
