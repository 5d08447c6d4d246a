#include "connector/scim/scim_connector.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "connector/chunk_writer.h"
#include "connector/config.h"
#include "connector/http/auth.h"
#include "connector/http/source_http.h"
#include "connector/status_macros.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

using json = nlohmann::json;

constexpr char kEnterprise[] =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
constexpr int64_t kMaxPages = 1000000;

struct ScimOptions {
  std::string base_url;  // Up to and without "/Users".
  int64_t page_size = 100;
  bool groups = true;
  bool incremental = true;  // Filter by meta.lastModified when supported.
  std::string user_filter;  // ANDed into every /Users request.
  HttpClientOptions http;
  HttpHeaders headers;
};

absl::StatusOr<ScimOptions> ParseScimOptions(
    const google::protobuf::Struct& config) {
  const std::string where = "scim config";
  ConfigReader r(config, where);
  IDSYNC_RETURN_IF_ERROR(
      r.CheckKnownKeys({"base_url", "page_size", "groups", "incremental",
                        "user_filter", IDSYNC_HTTP_SOURCE_KEYS}));
  ScimOptions o;
  IDSYNC_ASSIGN_OR_RETURN(o.base_url, r.RequiredString("base_url"));
  while (absl::EndsWith(o.base_url, "/")) o.base_url.pop_back();
  if (!absl::StartsWith(o.base_url, "https://") &&
      !absl::StartsWith(o.base_url, "http://")) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": 'base_url' must be an http(s) URL"));
  }
  if (o.base_url.find_first_of("?#") != std::string::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": 'base_url' must not have a query"));
  }
  IDSYNC_ASSIGN_OR_RETURN(o.page_size, r.Int("page_size", 100, 1, 1000));
  IDSYNC_ASSIGN_OR_RETURN(o.groups, r.Bool("groups", true));
  IDSYNC_ASSIGN_OR_RETURN(std::string incremental,
                          r.String("incremental", "auto"));
  if (incremental != "auto" && incremental != "never") {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": 'incremental' must be \"auto\" or \"never\""));
  }
  o.incremental = incremental == "auto";
  IDSYNC_ASSIGN_OR_RETURN(o.user_filter, r.String("user_filter", ""));
  IDSYNC_RETURN_IF_ERROR(ParseHttpSourceOptions(r, where, o.http, o.headers));
  return o;
}

// "scim1:<phase>:<startIndex>:<skip>:<member>": phase 0 users, 1 groups, 2
// done; `skip` resources of the page at startIndex were sent, and `member`
// members of the next one.
struct Position {
  int phase = 0;
  int64_t start = 1;
  int64_t skip = 0;
  // Groups: of resource `skip`, the entitlement and members [0, member)
  // were sent (a chunk boundary inside a large group).
  int64_t member = 0;
};

std::string EncodePosition(const Position& p) {
  return absl::StrCat("scim1:", p.phase, ":", p.start, ":", p.skip, ":",
                      p.member);
}

absl::StatusOr<Position> DecodePosition(absl::string_view token) {
  Position p;
  if (token.empty()) return p;
  std::vector<absl::string_view> parts = absl::StrSplit(token, ':');
  if (parts.size() != 5 || parts[0] != "scim1" ||
      !absl::SimpleAtoi(parts[1], &p.phase) || p.phase < 0 || p.phase > 2 ||
      !absl::SimpleAtoi(parts[2], &p.start) || p.start < 1 ||
      !absl::SimpleAtoi(parts[3], &p.skip) || p.skip < 0 ||
      !absl::SimpleAtoi(parts[4], &p.member) || p.member < 0) {
    return absl::InvalidArgumentError(
        "scim: the resume token is not one this connector wrote; start a new "
        "run");
  }
  return p;
}

// Text of a string member; "" when absent or not a string.
std::string Str(const json& object, const char* key) {
  if (!object.is_object()) return "";
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : "";
}

// A boolean member; `fallback` when absent or not a boolean ("true" and
// "false" strings are taken, as some servers send them).
bool Bool(const json& object, const char* key, bool fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  if (it == object.end()) return fallback;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_string()) {
    const std::string v = absl::AsciiStrToLower(it->get<std::string>());
    if (v == "true") return true;
    if (v == "false") return false;
  }
  return fallback;
}

// The primary email, else the first one.
std::string Email(const json& user) {
  auto it = user.find("emails");
  if (it == user.end() || !it->is_array() || it->empty()) return "";
  for (const json& e : *it) {
    if (Bool(e, "primary", false)) return Str(e, "value");
  }
  return Str(it->front(), "value");
}

class ScimConnector : public Connector {
 public:
  ScimConnector(ScimOptions options, google::protobuf::Struct auth_config,
                Clock* clock)
      : o_(std::move(options)), auth_config_(std::move(auth_config)) {
    o_.http.clock = clock;
  }

  absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override {
    return BuiltinInfo("scim", {"full", "incremental", "resume", "identities",
                                "accounts", "entitlements", "grants"});
  }

  absl::Status TestConnection() override {
    IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<AuthorizedClient> client,
                            CreateAuthorizedClient(o_.http, auth_config_));
    return Get(*client,
               absl::StrCat(o_.base_url, "/Users?startIndex=1&count=1"))
        .status();
  }

  absl::Status Sync(const idsync::v1::SyncRequest& request,
                    RecordSink& sink) override {
    const google::protobuf::Struct& auth = RunAuthConfig(request, auth_config_);
    IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<AuthorizedClient> client,
                            CreateAuthorizedClient(o_.http, auth));
    IDSYNC_ASSIGN_OR_RETURN(Position pos,
                            DecodePosition(request.resume_token()));
    std::string since;
    if (o_.incremental && request.incremental() &&
        !request.sync_token().empty()) {
      IDSYNC_ASSIGN_OR_RETURN(bool filtering, FilterSupported(*client));
      if (filtering) since = request.sync_token();
      if (since.find('"') != std::string::npos) {
        return absl::InvalidArgumentError(
            "scim: the stored sync token is not a timestamp; run a full sync");
      }
    }
    ChunkWriter writer(sink, request.chunk_size());
    Walk walk{*client, writer, since, request.sync_token()};
    for (; pos.phase < 2; pos = Position{pos.phase + 1, 1, 0, 0}) {
      if (pos.phase == 1 && !o_.groups) continue;
      IDSYNC_RETURN_IF_ERROR(WalkResources(walk, pos));
    }
    IDSYNC_RETURN_IF_ERROR(writer.Flush(EncodePosition(Position{2, 1, 0, 0})));
    if (o_.incremental) sink.SetNextSyncToken(walk.watermark);
    return absl::OkStatus();
  }

 private:
  struct Walk {
    AuthorizedClient& client;
    ChunkWriter& writer;
    std::string since;
    std::string watermark;  // Largest meta.lastModified seen.
  };

  absl::StatusOr<json> Get(AuthorizedClient& client, const std::string& url) {
    HttpRequest req;
    req.url = url;
    req.headers = o_.headers;
    req.headers.emplace_back("Accept", "application/scim+json");
    IDSYNC_ASSIGN_OR_RETURN(HttpResponse r, client.Send(std::move(req)));
    if (r.status < 200 || r.status > 299) {
      return HttpResponseError("scim", url, r);
    }
    json doc = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    if (!doc.is_object()) {
      return absl::UnavailableError(
          absl::StrCat("scim: the response from ", RedactUrl(url),
                       " is not a JSON object (", r.body.size(), " bytes)"));
    }
    return doc;
  }

  absl::StatusOr<bool> FilterSupported(AuthorizedClient& client) {
    IDSYNC_ASSIGN_OR_RETURN(
        json config,
        Get(client, absl::StrCat(o_.base_url, "/ServiceProviderConfig")));
    const json::json_pointer p("/filter/supported");
    return config.contains(p) && config.at(p).is_boolean() &&
           config.at(p).get<bool>();
  }

  std::string PageUrl(const Walk& walk, int phase, int64_t start) const {
    std::string url =
        absl::StrCat(o_.base_url, phase == 0 ? "/Users" : "/Groups",
                     "?startIndex=", start, "&count=", o_.page_size);
    std::vector<std::string> filters;
    if (phase == 0 && !o_.user_filter.empty()) {
      filters.push_back(absl::StrCat("(", o_.user_filter, ")"));
    }
    if (!walk.since.empty()) {
      filters.push_back(
          absl::StrCat("meta.lastModified gt \"", walk.since, "\""));
    }
    if (!filters.empty()) {
      absl::StrAppend(&url,
                      "&filter=", UrlEncode(absl::StrJoin(filters, " and ")));
    }
    return url;
  }

  absl::Status WalkResources(Walk& walk, Position pos) {
    absl::flat_hash_set<size_t> seen_pages;
    for (int64_t pages = 0; pages < kMaxPages; ++pages) {
      const std::string url = PageUrl(walk, pos.phase, pos.start);
      IDSYNC_ASSIGN_OR_RETURN(json page, Get(walk.client, url));
      auto it = page.find("Resources");
      if (it == page.end() || it->is_null() ||
          (it->is_array() && it->empty())) {
        return absl::OkStatus();  // The walk ends on an empty page.
      }
      if (!it->is_array()) {
        return absl::UnavailableError(absl::StrCat(
            "scim: 'Resources' from ", RedactUrl(url), " is not a list"));
      }
      const json& resources = *it;
      if (!seen_pages.insert(absl::HashOf(resources.dump())).second) {
        return absl::FailedPreconditionError(
            absl::StrCat("scim: the server returned the same page twice (at ",
                         RedactUrl(url), "); stopping a pagination loop"));
      }
      for (int64_t k = pos.skip; k < static_cast<int64_t>(resources.size());
           ++k) {
        Position here{pos.phase, pos.start, k, 0};
        if (pos.phase == 0) {
          AddUser(walk, resources[k], url, k);
        } else {
          // Resuming inside this group: skip what was sent.
          const int64_t sent = k == pos.skip ? pos.member : 0;
          IDSYNC_RETURN_IF_ERROR(AddGroup(walk, resources[k], url, here, sent));
        }
        if (walk.writer.full()) {
          IDSYNC_RETURN_IF_ERROR(walk.writer.Flush(
              EncodePosition(Position{pos.phase, pos.start, k + 1, 0})));
        }
      }
      pos.start += static_cast<int64_t>(resources.size());
      pos.skip = 0;
      pos.member = 0;
    }
    return absl::FailedPreconditionError(
        absl::StrCat("scim: more than ", kMaxPages, " pages"));
  }

  void Watermark(Walk& walk, const json& resource) {
    auto meta = resource.find("meta");
    if (meta == resource.end()) return;
    std::string modified = Str(*meta, "lastModified");
    if (modified > walk.watermark) walk.watermark = std::move(modified);
  }

  void Reject(Walk& walk, idsync::v1::RecordKind kind, const std::string& url,
              int64_t index, absl::string_view reason) {
    idsync::v1::Reject* r = walk.writer.AddReject();
    r->set_kind(kind);
    r->set_location(absl::StrCat("resource ", index, " of ", RedactUrl(url)));
    r->set_reason(std::string(reason));
  }

  void AddUser(Walk& walk, const json& user, const std::string& url,
               int64_t index) {
    const std::string id = Str(user, "id");
    if (id.empty()) {
      return Reject(walk, idsync::v1::RECORD_KIND_IDENTITY, url, index,
                    "a User without an id");
    }
    Watermark(walk, user);
    const json empty = json::object();
    const json& name = user.contains("name") ? user["name"] : empty;
    const json& ent = user.contains(kEnterprise) ? user[kEnterprise] : empty;
    const std::string status =
        Bool(user, "active", true) ? "active" : "inactive";
    idsync::v1::RemoteIdentity* i = walk.writer.AddIdentity();
    i->set_external_id(id);
    i->set_email(Email(user));
    i->set_first_name(Str(name, "givenName"));
    i->set_last_name(Str(name, "familyName"));
    i->set_display_name(Str(user, "displayName"));
    i->set_job_title(Str(user, "title"));
    i->set_department(Str(ent, "department"));
    if (ent.contains("manager")) {
      i->set_manager_external_id(Str(ent["manager"], "value"));
    }
    i->set_status(status);
    auto& attrs = *i->mutable_attributes();
    for (const char* key : {"userName", "externalId"}) {
      if (std::string v = Str(user, key); !v.empty()) attrs[key] = v;
    }
    if (std::string v = Str(ent, "employeeNumber"); !v.empty()) {
      attrs["employeeNumber"] = v;
    }
    idsync::v1::RemoteAccount* a = walk.writer.AddAccount();
    a->set_external_id(id);
    a->set_identity_external_id(id);
    a->set_username(Str(user, "userName"));
    a->set_email(i->email());
    a->set_display_name(i->display_name());
    a->set_status(status);
  }

  // Adds the group's entitlement and grants, less the entitlement and the
  // first `sent` members when a resume lands inside it.
  absl::Status AddGroup(Walk& walk, const json& group, const std::string& url,
                        const Position& here, int64_t sent) {
    const std::string id = Str(group, "id");
    if (id.empty()) {
      Reject(walk, idsync::v1::RECORD_KIND_ENTITLEMENT, url, here.skip,
             "a Group without an id");
      return absl::OkStatus();
    }
    Watermark(walk, group);
    if (sent == 0) {
      idsync::v1::RemoteEntitlement* e = walk.writer.AddEntitlement();
      e->set_external_id(id);
      e->set_name(Str(group, "displayName"));
      e->set_type("group");
    }
    json fetched;
    const json* members = nullptr;
    if (auto it = group.find("members"); it != group.end()) {
      members = &*it;
    } else {
      // Some servers leave members out of list responses: ask for them.
      IDSYNC_ASSIGN_OR_RETURN(
          fetched,
          Get(walk.client, absl::StrCat(o_.base_url, "/Groups/", UrlEncode(id),
                                        "?attributes=members")));
      auto found = fetched.find("members");
      if (found != fetched.end()) members = &*found;
    }
    if (members == nullptr || !members->is_array()) return absl::OkStatus();
    for (int64_t i = sent; i < static_cast<int64_t>(members->size()); ++i) {
      const json& m = (*members)[i];
      const std::string type = Str(m, "type");
      if (!type.empty() && type != "User") continue;  // Nested groups.
      const std::string value = Str(m, "value");
      if (value.empty()) continue;
      idsync::v1::RemoteGrant* g = walk.writer.AddGrant();
      g->set_account_external_id(value);
      g->set_entitlement_external_id(id);
      if (walk.writer.full()) {
        Position next = here;
        next.member = i + 1;
        IDSYNC_RETURN_IF_ERROR(walk.writer.Flush(EncodePosition(next)));
      }
    }
    return absl::OkStatus();
  }

  ScimOptions o_;
  google::protobuf::Struct auth_config_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Connector>> CreateScimConnector(
    const ConnectorSpec& spec) {
  IDSYNC_ASSIGN_OR_RETURN(ScimOptions options, ParseScimOptions(spec.config));
  std::vector<std::string> urls = AuthUrls(spec.auth_config);
  urls.push_back(options.base_url);
  IDSYNC_RETURN_IF_ERROR(
      ConfineHttpSource(spec.access, "scim config:", urls, options.http));
  return std::make_unique<ScimConnector>(std::move(options), spec.auth_config,
                                         spec.clock);
}

}  // namespace idsync
