#include "connector/rest/rest_connector.h"

#include <algorithm>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "connector/chunk_writer.h"
#include "connector/http/auth.h"
#include "connector/http/source_http.h"
#include "connector/rest/rest_options.h"
#include "connector/status_macros.h"
#include "connector/text.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

using json = nlohmann::json;
using Style = RestPagination::Style;

// Where a stream's walk is: the page to request next and how many records
// of it were already sent.
struct PageState {
  int64_t number = 0;  // kPage: page number; kOffset: offset.
  std::string next;    // kCursor: cursor; kLink: URL ("" = the first page).
  // Records on the pages before this one: a `total` stop rule counts what
  // arrived, never pages x limit (servers may send fewer than asked).
  int64_t received = 0;
};

struct ResumePoint {
  size_t stream = 0;
  int64_t skip = 0;
  PageState page;
  bool started = false;  // False: start the stream from its first page.
};

// "rest1:<stream>:<skip>:<number>:<received>:<base64url(next)>"
std::string EncodeResume(size_t stream, int64_t skip, const PageState& p) {
  return absl::StrCat("rest1:", stream, ":", skip, ":", p.number, ":",
                      p.received, ":", absl::WebSafeBase64Escape(p.next));
}

absl::StatusOr<ResumePoint> DecodeResume(absl::string_view token,
                                         size_t streams) {
  ResumePoint r;
  if (token.empty()) return r;
  std::vector<absl::string_view> parts = absl::StrSplit(token, ':');
  uint64_t stream = 0;
  if (parts.size() != 6 || parts[0] != "rest1" ||
      !absl::SimpleAtoi(parts[1], &stream) ||
      !absl::SimpleAtoi(parts[2], &r.skip) || r.skip < 0 ||
      !absl::SimpleAtoi(parts[3], &r.page.number) ||
      !absl::SimpleAtoi(parts[4], &r.page.received) || r.page.received < 0 ||
      !absl::WebSafeBase64Unescape(parts[5], &r.page.next) ||
      stream > streams) {
    return absl::InvalidArgumentError(
        "rest: the resume token is not one this connector wrote (or the "
        "streams changed); start a new run");
  }
  r.stream = static_cast<size_t>(stream);
  r.started = true;
  return r;
}

// A scalar as text; objects and arrays as compact JSON. nullopt for null.
std::optional<std::string> Text(const json& v) {
  if (v.is_null()) return std::nullopt;
  if (v.is_string()) return v.get<std::string>();
  if (v.is_boolean()) return v.get<bool>() ? "true" : "false";
  return v.dump();
}

const json* At(const json& doc, const std::string& pointer) {
  if (pointer.empty()) return &doc;
  const json::json_pointer p(pointer);  // Checked when the config was parsed.
  // contains() throws for an array index beyond size_t ("/items/1" followed
  // by 20 digits), which only the response shape reveals: treat as absent.
  try {
    if (!doc.contains(p)) return nullptr;
    return &doc.at(p);
  } catch (const json::exception&) {
    return nullptr;
  }
}

// The URL in a Link header's rel="next" entry, if any (RFC 8288).
std::optional<std::string> NextLink(absl::string_view header) {
  for (absl::string_view entry : absl::StrSplit(header, ',')) {
    const size_t lt = entry.find('<');
    const size_t gt = entry.find('>');
    if (lt == absl::string_view::npos || gt == absl::string_view::npos ||
        gt < lt) {
      continue;
    }
    for (absl::string_view param :
         absl::StrSplit(entry.substr(gt + 1), ';', absl::SkipWhitespace())) {
      std::string p = absl::AsciiStrToLower(absl::StripAsciiWhitespace(param));
      p.erase(std::remove(p.begin(), p.end(), '"'), p.end());
      if (p == "rel=next")
        return std::string(entry.substr(lt + 1, gt - lt - 1));
    }
  }
  return std::nullopt;
}

// scheme://host[:port] of an absolute URL.
absl::string_view Origin(absl::string_view url) {
  const size_t scheme = url.find("://");
  if (scheme == absl::string_view::npos) return "";
  return url.substr(0, url.find('/', scheme + 3));
}

// The unescaped first reference token of a non-empty JSON pointer.
std::string FirstMember(const std::string& pointer) {
  std::string token = pointer.substr(1, pointer.find('/', 1) - 1);
  return absl::StrReplaceAll(token, {{"~1", "/"}, {"~0", "~"}});
}

class RestConnector : public Connector {
 public:
  RestConnector(RestOptions options, google::protobuf::Struct auth_config,
                Clock* clock)
      : o_(std::move(options)), auth_config_(std::move(auth_config)) {
    o_.http.clock = clock;
  }

  absl::StatusOr<idsync::v1::ConnectorInfo> Describe() override {
    return BuiltinInfo("rest", {"full", "incremental", "resume", "identities",
                                "accounts", "entitlements", "grants"});
  }

  absl::Status TestConnection() override {
    IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<AuthorizedClient> client,
                            CreateAuthorizedClient(o_.http, auth_config_));
    const RestStream& s = o_.streams.front();
    IDSYNC_ASSIGN_OR_RETURN(json page,
                            Fetch(*client, s, PageUrl(s, {}, ""), nullptr));
    return Records(s, page).status();
  }

  absl::Status Sync(const idsync::v1::SyncRequest& request,
                    RecordSink& sink) override {
    const google::protobuf::Struct& auth = RunAuthConfig(request, auth_config_);
    IDSYNC_ASSIGN_OR_RETURN(std::unique_ptr<AuthorizedClient> client,
                            CreateAuthorizedClient(o_.http, auth));
    IDSYNC_ASSIGN_OR_RETURN(
        ResumePoint resume,
        DecodeResume(request.resume_token(), o_.streams.size()));
    const std::string since = request.incremental() ? request.sync_token() : "";
    ChunkWriter writer(sink, request.chunk_size());
    Walk walk{*client, writer, since, {}, 0};
    for (size_t i = resume.stream; i < o_.streams.size(); ++i) {
      IDSYNC_RETURN_IF_ERROR(WalkStream(walk, i, resume));
      resume = ResumePoint{};
    }
    IDSYNC_RETURN_IF_ERROR(writer.Flush(
        EncodeResume(o_.streams.size(), 0, PageState{}), Progress(walk)));
    bool incremental_streams = false;
    for (const RestStream& s : o_.streams) {
      incremental_streams |= !s.incremental_param.empty();
    }
    if (incremental_streams) {
      // Nothing newer seen: the next incremental run starts where this one
      // did.
      sink.SetNextSyncToken(walk.watermark.empty() ? request.sync_token()
                                                   : walk.watermark);
    }
    return absl::OkStatus();
  }

 private:
  struct Walk {
    AuthorizedClient& client;
    ChunkWriter& writer;
    std::string since;
    std::string watermark;  // Largest seen (ISO-8601 sorts as text).
    int64_t records = 0;
  };

  static idsync::v1::Progress Progress(const Walk& walk) {
    idsync::v1::Progress p;
    p.set_done(walk.records);
    p.set_unit("records");
    return p;
  }

  std::string PageUrl(const RestStream& s, const PageState& state,
                      const std::string& since) const {
    if (s.pagination.style == Style::kLink && !state.next.empty()) {
      return state.next;
    }
    std::vector<std::string> q;
    auto add = [&q](absl::string_view name, absl::string_view value) {
      q.push_back(absl::StrCat(UrlEncode(name), "=", UrlEncode(value)));
    };
    for (const auto& [name, value] : s.query) add(name, value);
    const RestPagination& p = s.pagination;
    if (p.style != Style::kNone && !p.limit_param.empty()) {
      add(p.limit_param, absl::StrCat(p.limit));
    }
    if (p.style == Style::kPage) add(p.page_param, absl::StrCat(state.number));
    if (p.style == Style::kOffset) {
      add(p.offset_param, absl::StrCat(state.number));
    }
    if (p.style == Style::kCursor && !state.next.empty()) {
      add(p.cursor_param, state.next);
    }
    if (!since.empty() && !s.incremental_param.empty()) {
      add(s.incremental_param, since);
    }
    if (q.empty()) return s.url;
    return absl::StrCat(s.url, "?", absl::StrJoin(q, "&"));
  }

  absl::StatusOr<json> Fetch(AuthorizedClient& client, const RestStream& s,
                             const std::string& url, HttpResponse* raw) const {
    HttpRequest req;
    req.method = s.method;
    req.url = url;
    req.headers = o_.headers;
    req.headers.emplace_back("Accept", "application/json");
    IDSYNC_ASSIGN_OR_RETURN(HttpResponse r, client.Send(std::move(req)));
    if (r.status < 200 || r.status > 299) {
      return HttpResponseError(s.name, url, r);
    }
    json doc = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded()) {
      return absl::UnavailableError(
          absl::StrCat(s.name, ": the response from ", RedactUrl(url),
                       " is not valid JSON (", r.body.size(), " bytes)"));
    }
    if (raw != nullptr) *raw = std::move(r);
    return doc;
  }

  static absl::StatusOr<const json*> Records(const RestStream& s,
                                             const json& page) {
    const json* records = At(page, s.records);
    if (records == nullptr || !records->is_array()) {
      return absl::FailedPreconditionError(
          absl::StrCat(s.name, ": the response has no array at '",
                       s.records.empty() ? "(the body)" : s.records,
                       "'; check the stream's 'records' pointer"));
    }
    return records;
  }

  absl::Status WalkStream(Walk& walk, size_t index, const ResumePoint& resume) {
    const RestStream& s = o_.streams[index];
    PageState state;
    if (s.pagination.style == Style::kPage)
      state.number = s.pagination.first_page;
    int64_t skip = 0;
    if (resume.started) {
      state = resume.page;
      skip = resume.skip;
    }
    absl::flat_hash_set<std::string> seen_states;
    absl::flat_hash_set<size_t> seen_pages;
    for (int64_t pages = 0;; ++pages) {
      if (pages >= o_.max_pages) {
        return absl::FailedPreconditionError(absl::StrCat(
            s.name, ": more than max_pages (", o_.max_pages, ") pages"));
      }
      const std::string url = PageUrl(s, state, walk.since);
      HttpResponse raw;
      IDSYNC_ASSIGN_OR_RETURN(json page, Fetch(walk.client, s, url, &raw));
      IDSYNC_ASSIGN_OR_RETURN(const json* records, Records(s, page));
      // A server that serves the same page again would loop forever.
      // (Hashing the records, not the body: the body may number the page.)
      if (!records->empty() &&
          !seen_pages.insert(absl::HashOf(records->dump())).second) {
        return absl::FailedPreconditionError(absl::StrCat(
            s.name, ": the source returned the same page twice (at ",
            RedactUrl(url), "); stopping a pagination loop"));
      }
      for (int64_t j = skip; j < static_cast<int64_t>(records->size()); ++j) {
        IDSYNC_RETURN_IF_ERROR(AddRecord(walk, s, (*records)[j], url, j));
        if (walk.writer.full()) {
          IDSYNC_RETURN_IF_ERROR(walk.writer.Flush(
              EncodeResume(index, j + 1, state), Progress(walk)));
        }
      }
      skip = 0;
      IDSYNC_ASSIGN_OR_RETURN(bool more,
                              Advance(s, page, raw, records->size(), state));
      if (!more) return absl::OkStatus();
      if (!state.next.empty() && !seen_states.insert(state.next).second) {
        return absl::FailedPreconditionError(absl::StrCat(
            s.name, ": the source returned a cursor it gave before (after ",
            RedactUrl(url), "); stopping a pagination loop"));
      }
    }
  }

  // Moves `state` to the next page; false when the stream is done.
  absl::StatusOr<bool> Advance(const RestStream& s, const json& page,
                               const HttpResponse& raw, size_t count,
                               PageState& state) const {
    const RestPagination& p = s.pagination;
    auto number = [&](const std::string& ptr) -> std::optional<int64_t> {
      if (ptr.empty()) return std::nullopt;
      const json* v = At(page, ptr);
      if (v == nullptr || !v->is_number_integer()) return std::nullopt;
      return v->get<int64_t>();
    };
    state.received += static_cast<int64_t>(count);
    switch (p.style) {
      case Style::kNone:
        return false;
      case Style::kPage: {
        if (count == 0) return false;
        if (std::optional<int64_t> max = number(p.max_page);
            max.has_value() && state.number >= *max) {
          return false;
        }
        if (std::optional<int64_t> total = number(p.total);
            total.has_value() && state.received >= *total) {
          return false;
        }
        ++state.number;
        return true;
      }
      case Style::kOffset: {
        if (count == 0) return false;
        state.number += static_cast<int64_t>(count);
        std::optional<int64_t> total = number(p.total);
        return !(total.has_value() && state.number >= *total);
      }
      case Style::kCursor: {
        const json* v = At(page, p.next_cursor);
        if (v == nullptr || v->is_null()) return false;
        std::optional<std::string> next = Text(*v);
        if (!next.has_value() || next->empty()) return false;
        state.next = *next;
        return true;
      }
      case Style::kLink: {
        std::optional<std::string> link = raw.Header("link");
        std::optional<std::string> next =
            link.has_value() ? NextLink(*link) : std::nullopt;
        if (!next.has_value() || next->empty()) return false;
        // Our credentials go with the request: never to another origin.
        if (Origin(*next) != Origin(s.url)) {
          return absl::FailedPreconditionError(absl::StrCat(
              s.name, ": the next-page link points to another origin (",
              RedactUrl(*next), "); refusing to send credentials there"));
        }
        state.next = *next;
        return true;
      }
    }
    return false;
  }

  // The scratch record of `kind`, cleared.
  google::protobuf::Message& Scratch(idsync::v1::RecordKind kind) {
    google::protobuf::Message* m = &grant_;
    if (kind == idsync::v1::RECORD_KIND_IDENTITY) m = &identity_;
    if (kind == idsync::v1::RECORD_KIND_ACCOUNT) m = &account_;
    if (kind == idsync::v1::RECORD_KIND_ENTITLEMENT) m = &entitlement_;
    m->Clear();
    return *m;
  }

  absl::Status AddRecord(Walk& walk, const RestStream& s, const json& record,
                         const std::string& url, int64_t index) {
    ++walk.records;
    auto reject = [&](absl::string_view reason) {
      idsync::v1::Reject* r = walk.writer.AddReject();
      r->set_kind(s.kind);
      r->set_location(
          absl::StrCat(s.name, " record ", index, " of ", RedactUrl(url)));
      r->set_reason(std::string(reason));
      return absl::OkStatus();
    };
    if (!record.is_object()) return reject("the record is not a JSON object");

    google::protobuf::Message& msg = Scratch(s.kind);
    const auto* desc = msg.GetDescriptor();
    const auto* refl = msg.GetReflection();
    std::string username;
    absl::flat_hash_set<std::string> mapped_members;
    for (const auto& [name, field] : s.fields) {
      // The top-level member a pointer starts at is "mapped" as a whole.
      mapped_members.insert(FirstMember(field.pointer));
      const json* v = At(record, field.pointer);
      std::optional<std::string> text = v == nullptr ? std::nullopt : Text(*v);
      if (text.has_value() && !field.values.empty()) {
        auto it = field.values.find(*text);
        if (it != field.values.end()) text = it->second;
      }
      if (!text.has_value()) continue;
      if (name == "username" && s.kind == idsync::v1::RECORD_KIND_IDENTITY) {
        username = *std::move(text);
        continue;
      }
      refl->SetString(&msg, desc->FindFieldByName(name), *std::move(text));
    }
    if (s.rest_to_attributes) {
      const auto* attrs = desc->FindFieldByName("attributes");
      for (const auto& [key, value] : record.items()) {
        if (mapped_members.contains(key)) continue;
        std::optional<std::string> text = Text(value);
        if (!text.has_value()) continue;
        google::protobuf::Message* entry = refl->AddMessage(&msg, attrs);
        const auto* ed = entry->GetDescriptor();
        entry->GetReflection()->SetString(entry, ed->FindFieldByName("key"),
                                          key);
        entry->GetReflection()->SetString(entry, ed->FindFieldByName("value"),
                                          *std::move(text));
      }
    }
    if (!s.watermark.empty()) {
      const json* w = At(record, s.watermark);
      if (w != nullptr && w->is_string() &&
          w->get_ref<const std::string&>() > walk.watermark) {
        walk.watermark = w->get<std::string>();
      }
    }
    switch (s.kind) {
      case idsync::v1::RECORD_KIND_IDENTITY: {
        if (identity_.external_id().empty()) {
          return reject("no external_id (mapped from " +
                        s.fields.at("external_id").pointer + ")");
        }
        if (s.with_accounts) {
          idsync::v1::RemoteAccount* a = walk.writer.AddAccount();
          a->set_external_id(identity_.external_id());
          a->set_identity_external_id(identity_.external_id());
          a->set_username(username.empty() ? identity_.email() : username);
          a->set_email(identity_.email());
          a->set_display_name(identity_.display_name());
          a->set_status(identity_.status());
        }
        walk.writer.AddIdentity()->Swap(&identity_);
        break;
      }
      case idsync::v1::RECORD_KIND_ACCOUNT:
        if (account_.external_id().empty()) {
          return reject("no external_id");
        }
        walk.writer.AddAccount()->Swap(&account_);
        break;
      case idsync::v1::RECORD_KIND_ENTITLEMENT:
        if (entitlement_.external_id().empty()) {
          return reject("no external_id");
        }
        if (entitlement_.type().empty()) {
          entitlement_.set_type(s.entitlement_type);
        }
        walk.writer.AddEntitlement()->Swap(&entitlement_);
        break;
      default:
        if (grant_.account_external_id().empty() ||
            grant_.entitlement_external_id().empty()) {
          return reject("no account_external_id or entitlement_external_id");
        }
        walk.writer.AddGrant()->Swap(&grant_);
        break;
    }
    return absl::OkStatus();
  }

  // Scratch records, reused so a page costs no allocations per record.
  idsync::v1::RemoteIdentity identity_;
  idsync::v1::RemoteAccount account_;
  idsync::v1::RemoteEntitlement entitlement_;
  idsync::v1::RemoteGrant grant_;
  RestOptions o_;
  google::protobuf::Struct auth_config_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Connector>> CreateRestConnector(
    const ConnectorSpec& spec) {
  IDSYNC_ASSIGN_OR_RETURN(RestOptions options, ParseRestOptions(spec.config));
  std::vector<std::string> urls;
  for (const RestStream& stream : options.streams) urls.push_back(stream.url);
  for (std::string& url : AuthUrls(spec.auth_config)) urls.push_back(url);
  IDSYNC_RETURN_IF_ERROR(
      ConfineHttpSource(spec.access, "rest config:", urls, options.http));
  return std::make_unique<RestConnector>(std::move(options), spec.auth_config,
                                         spec.clock);
}

}  // namespace idsync
