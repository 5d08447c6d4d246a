// ParseRestOptions: a full configuration becomes the expected struct; each
// kind of mistake is kInvalidArgument naming where it is ("streams[1]",
// "streams[0].pagination", the unknown key or field).
#include "connector/rest/rest_options.h"

#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

using ::testing::AllOf;
using ::testing::DoubleNear;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::Pair;
using ::testing::UnorderedElementsAre;
using Style = RestPagination::Style;

google::protobuf::Struct Json(const std::string& text) {
  google::protobuf::Struct s;
  EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(text, &s).ok())
      << text;
  return s;
}

absl::StatusOr<RestOptions> Parse(const std::string& text) {
  return ParseRestOptions(Json(text));
}

// A config with `streams` (the inside of the list) and more top-level keys.
std::string Config(const std::string& streams, const std::string& more = "") {
  return absl::StrCat(R"({"base_url": "https://api.example.com")",
                      more.empty() ? "" : ", ", more, R"(, "streams": [)",
                      streams, "]}");
}

// A valid identities stream, and one with extra keys.
constexpr char kUsers[] =
    R"({"kind": "identities", "path": "/users", "fields": {"external_id": "/id"}})";
std::string Users(const std::string& more) {
  return absl::StrCat(
      R"({"kind": "identities", "path": "/users", "fields": {"external_id": "/id"}, )",
      more, "}");
}

// The message of the kInvalidArgument `text` must give.
std::string ErrorOf(const std::string& text) {
  absl::StatusOr<RestOptions> o = Parse(text);
  EXPECT_FALSE(o.ok()) << text;
  EXPECT_TRUE(o.ok() || absl::IsInvalidArgument(o.status())) << o.status();
  return o.ok() ? "" : std::string(o.status().message());
}

TEST(RestOptionsTest, FullConfigParses) {
  absl::StatusOr<RestOptions> o = Parse(R"({
    "base_url": "https://api.example.com/v2//",
    "headers": {"Accept": "application/json", "X-Tenant": "t1"},
    "timeout_seconds": 5,
    "ca_file": "/etc/ssl/private-ca.pem",
    "max_attempts": 7,
    "max_response_bytes": 2048,
    "rate_limit": {"requests": 500, "per_seconds": 60, "burst": 50},
    "max_pages": 42,
    "streams": [
      {"name": "users", "kind": "identities", "accounts": true,
       "path": "/users", "method": "POST",
       "query": {"active": "true", "fields": "all"},
       "records": "/data/records",
       "fields": {
         "external_id": "/uid",
         "email": "/emails/0/value",
         "username": "/login",
         "status": {"pointer": "/isActive",
                    "values": {"true": "active", "false": "inactive"}}},
       "attributes": "none",
       "pagination": {"style": "page", "page_param": "p", "first_page": 0,
                      "limit_param": "size", "limit": 200,
                      "max_page": "/pagination/max_page", "total": "/total"},
       "incremental": {"param": "updated_since", "watermark": "/updated_at"}},
      {"kind": "entitlements", "url": "https://other.example.com/groups",
       "entitlement_type": "role",
       "fields": {"external_id": "/gid", "name": "/title",
                  "description": "/about", "type": "/kind"},
       "pagination": {"style": "cursor", "cursor_param": "next",
                      "next_cursor": "/meta/next"}},
      {"kind": "grants", "path": "/memberships",
       "fields": {"account_external_id": "/uid",
                  "entitlement_external_id": "/gid"},
       "pagination": {"style": "offset", "offset_param": "skip",
                      "limit_param": "", "limit": 10000}},
      {"kind": "accounts", "path": "/accounts",
       "fields": {"external_id": "/id", "identity_external_id": "/owner"},
       "pagination": {"style": "link"}}
    ]})");
  ASSERT_TRUE(o.ok()) << o.status();
  // (In the order of the config's JSON object: unspecified.)
  EXPECT_THAT(o->headers,
              UnorderedElementsAre(Pair("Accept", "application/json"),
                                   Pair("X-Tenant", "t1")));
  EXPECT_EQ(o->http.timeout, absl::Seconds(5));
  EXPECT_EQ(o->http.connect_timeout, absl::Seconds(5));  // Never longer.
  EXPECT_EQ(o->http.ca_file, "/etc/ssl/private-ca.pem");
  EXPECT_EQ(o->http.max_attempts, 7);
  EXPECT_EQ(o->http.max_response_bytes, 2048u);
  EXPECT_THAT(o->http.requests_per_second, DoubleNear(500.0 / 60.0, 1e-9));
  EXPECT_EQ(o->http.burst, 50);
  EXPECT_EQ(o->max_pages, 42);
  ASSERT_EQ(o->streams.size(), 4u);

  const RestStream& users = o->streams[0];
  EXPECT_EQ(users.name, "users");
  EXPECT_EQ(users.kind, idsync::v1::RECORD_KIND_IDENTITY);
  EXPECT_TRUE(users.with_accounts);
  EXPECT_EQ(users.url, "https://api.example.com/v2/users");  // '/' once.
  EXPECT_EQ(users.method, "POST");
  EXPECT_THAT(users.query, UnorderedElementsAre(Pair("active", "true"),
                                                Pair("fields", "all")));
  EXPECT_EQ(users.records, "/data/records");
  ASSERT_EQ(users.fields.size(), 4u);
  EXPECT_EQ(users.fields.at("external_id").pointer, "/uid");
  EXPECT_THAT(users.fields.at("external_id").values, IsEmpty());
  EXPECT_EQ(users.fields.at("email").pointer, "/emails/0/value");
  EXPECT_EQ(users.fields.at("username").pointer, "/login");
  EXPECT_EQ(users.fields.at("status").pointer, "/isActive");
  EXPECT_THAT(users.fields.at("status").values,
              ElementsAre(Pair("false", "inactive"), Pair("true", "active")));
  EXPECT_FALSE(users.rest_to_attributes);
  EXPECT_EQ(users.pagination.style, Style::kPage);
  EXPECT_EQ(users.pagination.page_param, "p");
  EXPECT_EQ(users.pagination.first_page, 0);
  EXPECT_EQ(users.pagination.limit_param, "size");
  EXPECT_EQ(users.pagination.limit, 200);
  EXPECT_EQ(users.pagination.max_page, "/pagination/max_page");
  EXPECT_EQ(users.pagination.total, "/total");
  EXPECT_EQ(users.incremental_param, "updated_since");
  EXPECT_EQ(users.watermark, "/updated_at");

  const RestStream& groups = o->streams[1];
  EXPECT_EQ(groups.kind, idsync::v1::RECORD_KIND_ENTITLEMENT);
  EXPECT_EQ(groups.url, "https://other.example.com/groups");
  EXPECT_EQ(groups.entitlement_type, "role");
  EXPECT_EQ(groups.method, "GET");
  EXPECT_EQ(groups.records, "");
  EXPECT_TRUE(groups.rest_to_attributes);
  EXPECT_EQ(groups.pagination.style, Style::kCursor);
  EXPECT_EQ(groups.pagination.cursor_param, "next");
  EXPECT_EQ(groups.pagination.next_cursor, "/meta/next");
  EXPECT_EQ(groups.pagination.limit, 100);

  const RestStream& grants = o->streams[2];
  EXPECT_EQ(grants.kind, idsync::v1::RECORD_KIND_GRANT);
  EXPECT_EQ(grants.url, "https://api.example.com/v2/memberships");
  EXPECT_EQ(grants.pagination.style, Style::kOffset);
  EXPECT_EQ(grants.pagination.offset_param, "skip");
  EXPECT_EQ(grants.pagination.limit_param, "");  // Not sent.
  EXPECT_EQ(grants.pagination.limit, 10000);

  const RestStream& accounts = o->streams[3];
  EXPECT_EQ(accounts.kind, idsync::v1::RECORD_KIND_ACCOUNT);
  EXPECT_EQ(accounts.pagination.style, Style::kLink);
}

TEST(RestOptionsTest, MinimalConfigGetsDefaults) {
  absl::StatusOr<RestOptions> o = Parse(Config(kUsers));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->headers, IsEmpty());
  EXPECT_EQ(o->http.timeout, absl::Seconds(30));
  EXPECT_EQ(o->http.connect_timeout, absl::Seconds(10));
  EXPECT_EQ(o->http.ca_file, "");
  EXPECT_EQ(o->http.max_attempts, 5);
  EXPECT_EQ(o->http.max_response_bytes, size_t{64} << 20);
  EXPECT_EQ(o->http.requests_per_second, 0);  // No client-side limit.
  EXPECT_EQ(o->max_pages, 1000000);
  ASSERT_EQ(o->streams.size(), 1u);
  const RestStream& s = o->streams[0];
  EXPECT_EQ(s.kind, idsync::v1::RECORD_KIND_IDENTITY);
  EXPECT_FALSE(s.with_accounts);
  EXPECT_EQ(s.url, "https://api.example.com/users");
  EXPECT_EQ(s.method, "GET");
  EXPECT_THAT(s.query, IsEmpty());
  EXPECT_EQ(s.records, "");
  EXPECT_TRUE(s.rest_to_attributes);
  EXPECT_EQ(s.entitlement_type, "group");
  EXPECT_EQ(s.pagination.style, Style::kNone);
  EXPECT_EQ(s.incremental_param, "");
  EXPECT_EQ(s.watermark, "");
}

TEST(RestOptionsTest, UnnamedStreamsAreNamedByTheirIndex) {
  absl::StatusOr<RestOptions> o =
      Parse(Config(absl::StrCat(kUsers, ", ", kUsers)));
  ASSERT_TRUE(o.ok()) << o.status();
  // As rest_options.h documents: "streams[0]", used in runtime messages.
  EXPECT_EQ(o->streams[0].name, "streams[0]");
  EXPECT_EQ(o->streams[1].name, "streams[1]");
}

TEST(RestOptionsTest, PaginationDefaults) {
  absl::StatusOr<RestOptions> o =
      Parse(Config(Users(R"("pagination": {"style": "page"})")));
  ASSERT_TRUE(o.ok()) << o.status();
  const RestPagination& p = o->streams[0].pagination;
  EXPECT_EQ(p.style, Style::kPage);
  EXPECT_EQ(p.page_param, "page");
  EXPECT_EQ(p.first_page, 1);
  EXPECT_EQ(p.offset_param, "offset");
  EXPECT_EQ(p.limit_param, "limit");
  EXPECT_EQ(p.limit, 100);
  EXPECT_EQ(p.cursor_param, "cursor");
  EXPECT_EQ(p.next_cursor, "");
  EXPECT_EQ(p.max_page, "");
  EXPECT_EQ(p.total, "");
}

TEST(RestOptionsTest, RateLimitBecomesRequestsPerSecond) {
  absl::StatusOr<RestOptions> o = Parse(
      Config(kUsers, R"("rate_limit": {"requests": 500, "per_seconds": 60})"));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->http.requests_per_second, DoubleNear(8.333333333, 1e-6));
  EXPECT_EQ(o->http.burst, 1);  // Default.
  o = Parse(Config(kUsers, R"("rate_limit": {"requests": 20, "burst": 5})"));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->http.requests_per_second, 20);  // per_seconds defaults to 1.
  EXPECT_EQ(o->http.burst, 5);
}

TEST(RestOptionsTest, ConnectTimeoutIsAtMostTenSeconds) {
  absl::StatusOr<RestOptions> o =
      Parse(Config(kUsers, R"("timeout_seconds": 120)"));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->http.timeout, absl::Seconds(120));
  EXPECT_EQ(o->http.connect_timeout, absl::Seconds(10));
}

TEST(RestOptionsTest, AbsoluteUrlNeedsNoBaseUrl) {
  absl::StatusOr<RestOptions> o = Parse(
      R"({"streams": [{"kind": "grants", "url": "http://10.0.0.5:8080/m",
          "fields": {"account_external_id": "/a",
                     "entitlement_external_id": "/e"}}]})");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->streams[0].url, "http://10.0.0.5:8080/m");
}

TEST(RestOptionsTest, JsonPointerEscapesAreAccepted) {
  absl::StatusOr<RestOptions> o = Parse(Config(
      R"({"kind": "identities", "path": "/u", "records": "/data/a~1b",
          "fields": {"external_id": "/~0id/x~1y"}})"));
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->streams[0].records, "/data/a~1b");
  EXPECT_EQ(o->streams[0].fields.at("external_id").pointer, "/~0id/x~1y");
}

TEST(RestOptionsTest, FieldsAllowedPerKind) {
  struct Case {
    const char* kind;
    const char* fields;
  };
  for (
      const Case& c : {
          Case{"identities",
               R"("external_id": "/a", "email": "/b", "first_name": "/c",
                   "last_name": "/d", "department": "/e",
                   "manager_external_id": "/f", "status": "/g",
                   "display_name": "/h", "job_title": "/i", "username": "/j")"},
          Case{"accounts",
               R"("external_id": "/a", "identity_external_id": "/b",
                   "username": "/c", "email": "/d", "display_name": "/e",
                   "status": "/f")"},
          Case{"entitlements",
               R"("external_id": "/a", "name": "/b", "description": "/c",
                   "type": "/d")"},
          Case{
              "grants",
              R"("account_external_id": "/a", "entitlement_external_id": "/b")"},
      }) {
    absl::StatusOr<RestOptions> o = Parse(Config(
        absl::StrCat(R"({"kind": ")", c.kind, R"(", "path": "/x", "fields": {)",
                     c.fields, "}}")));
    EXPECT_TRUE(o.ok()) << c.kind << ": " << o.status();
  }
}

TEST(RestOptionsTest, DocumentedExamplesParse) {
  const std::filesystem::path dir =
      std::filesystem::path(IDSYNC_SOURCE_DIR) / "docs/connectors/rest";
  int checked = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (!absl::EndsWith(name, ".json") || absl::EndsWith(name, ".auth.json")) {
      continue;
    }
    std::ifstream in(entry.path());
    std::stringstream text;
    text << in.rdbuf();
    absl::StatusOr<RestOptions> o = Parse(text.str());
    EXPECT_TRUE(o.ok()) << name << ": " << o.status();
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

// --- Mistakes -----------------------------------------------------------

struct Mistake {
  const char* name;
  std::string json;
  std::string where;  // The start of the message: the key path.
  std::string says;   // Another part of it.
  friend void PrintTo(const Mistake& m, std::ostream* os) { *os << m.name; }
};

class RestOptionsErrorTest : public ::testing::TestWithParam<Mistake> {};

TEST_P(RestOptionsErrorTest, IsInvalidArgumentNamingTheKey) {
  const std::string message = ErrorOf(GetParam().json);
  EXPECT_TRUE(absl::StartsWith(message, GetParam().where + ":"))
      << "want it to start with \"" << GetParam().where << ":\": " << message;
  EXPECT_THAT(message, HasSubstr(GetParam().says));
  EXPECT_THAT(message, Not(HasSubstr("SECRET")));
}

// A mistake in the second stream (after a valid one).
Mistake InStream1(const char* name, const std::string& more,
                  const std::string& says, const std::string& sub = "") {
  return Mistake{name, Config(absl::StrCat(kUsers, ", ", Users(more))),
                 absl::StrCat("rest config: streams[1]", sub), says};
}
// A stream written out whole, as streams[0].
// A mistake in the fields (the inside of the object) of the second stream.
Mistake FieldsOf1(const char* name, const std::string& fields,
                  const std::string& says, const std::string& sub) {
  return Mistake{
      name,
      Config(absl::StrCat(
          kUsers, R"(, {"kind": "identities", "path": "/u", "fields": {)",
          fields, "}}")),
      absl::StrCat("rest config: streams[1]", sub), says};
}
Mistake Stream0(const char* name, const std::string& stream,
                const std::string& says, const std::string& sub = "") {
  return Mistake{name, Config(stream),
                 absl::StrCat("rest config: streams[0]", sub), says};
}
Mistake TopLevel(const char* name, const std::string& more,
                 const std::string& says,
                 const std::string& where = "rest config") {
  return Mistake{name, Config(kUsers, more), where, says};
}

INSTANTIATE_TEST_SUITE_P(
    TopLevel, RestOptionsErrorTest,
    ::testing::Values(
        TopLevel("UnknownKey", R"("bas_url": "SECRET")",
                 "unknown key 'bas_url'"),
        Mistake{"NoStreams", R"({"base_url": "https://a.example"})",
                "rest config", "'streams' must list at least one stream"},
        Mistake{"EmptyStreams", Config(""), "rest config",
                "'streams' must list at least one stream"},
        Mistake{"StreamsNotAList", R"({"streams": {"kind": "identities"}})",
                "rest config", "'streams' must be a list"},
        Mistake{"BaseUrlNotAString",
                R"({"base_url": 1, "streams": [)" + std::string(kUsers) + "]}",
                "rest config", "'base_url' must be a string"},
        TopLevel("TimeoutZero", R"("timeout_seconds": 0)",
                 "'timeout_seconds' must be an integer in [1, 3600]"),
        TopLevel("TimeoutAsString", R"("timeout_seconds": "30")",
                 "'timeout_seconds' must be an integer"),
        TopLevel("TimeoutFraction", R"("timeout_seconds": 1.5)",
                 "'timeout_seconds' must be an integer"),
        TopLevel("TooManyAttempts", R"("max_attempts": 21)",
                 "'max_attempts' must be an integer in [1, 20]"),
        TopLevel("TinyResponseBound", R"("max_response_bytes": 100)",
                 "'max_response_bytes' must be an integer in [1024, "),
        TopLevel("MaxPagesZero", R"("max_pages": 0)", "'max_pages'"),
        TopLevel("HeadersNotAnObject", R"("headers": ["SECRET"])",
                 "'headers' must be an object"),
        TopLevel("HeaderValueNotAString",
                 R"("headers": {"Authorization": 12345})",
                 "'Authorization' must be a string", "rest config.headers"),
        TopLevel("CaFileNotAString", R"("ca_file": true)",
                 "'ca_file' must be a string"),
        TopLevel("RateLimitWithoutRequests", R"("rate_limit": {"burst": 5})",
                 "'requests' is required", "rest config.rate_limit"),
        TopLevel("RateLimitUnknownKey",
                 R"("rate_limit": {"requests": 5, "per_minute": 1})",
                 "unknown key 'per_minute'", "rest config.rate_limit"),
        TopLevel("RateLimitZeroPeriod",
                 R"("rate_limit": {"requests": 5, "per_seconds": 0})",
                 "'per_seconds' must be an integer in [1, 86400]",
                 "rest config.rate_limit"),
        TopLevel("RateLimitZeroRequests", R"("rate_limit": {"requests": 0})",
                 "'requests' must be an integer", "rest config.rate_limit"),
        TopLevel("RateLimitNotAnObject", R"("rate_limit": 10)",
                 "'rate_limit' must be an object")),
    [](const ::testing::TestParamInfo<Mistake>& info) {
      return std::string(info.param.name);
    });

INSTANTIATE_TEST_SUITE_P(
    Streams, RestOptionsErrorTest,
    ::testing::Values(
        Stream0("NotAnObject", R"("users")", "must be an object"),
        InStream1("UnknownKey", R"("paths": "/x")", "unknown key 'paths'"),
        Stream0("NoKind", R"({"path": "/u", "fields": {"external_id": "/id"}})",
                "'kind' is required"),
        Stream0(
            "BadKind",
            R"({"kind": "users", "path": "/u", "fields": {"external_id": "/id"}})",
            "'kind' must be identities, accounts, entitlements or grants"),
        Stream0("AccountsOnEntitlements",
                R"({"kind": "entitlements", "accounts": true, "path": "/g",
                    "fields": {"external_id": "/id"}})",
                "'accounts' applies to identities streams only"),
        InStream1("AccountsNotABool", R"("accounts": "yes")",
                  "'accounts' must be true or false"),
        Stream0("NeitherPathNorUrl",
                R"({"kind": "identities", "fields": {"external_id": "/id"}})",
                "give exactly one of 'path' and 'url'"),
        InStream1("BothPathAndUrl", R"("url": "https://b.example/u")",
                  "give exactly one of 'path' and 'url'"),
        Mistake{"PathWithoutBaseUrl",
                R"({"streams": [)" + std::string(kUsers) + "]}",
                "rest config: streams[0]", "'path' needs a 'base_url'"},
        Stream0("RelativePath",
                R"({"kind": "identities", "path": "users",
                    "fields": {"external_id": "/id"}})",
                "'path' must start with '/'"),
        Stream0("UrlNotHttp",
                R"({"kind": "identities", "url": "ftp://a/u",
                    "fields": {"external_id": "/id"}})",
                "must be http:// or https://"),
        Stream0("QueryInUrl",
                R"({"kind": "identities", "url": "https://a/u?key=SECRET",
                    "fields": {"external_id": "/id"}})",
                "put query parameters in 'query'"),
        Stream0("QueryInPath",
                R"({"kind": "identities", "path": "/u?limit=5",
                    "fields": {"external_id": "/id"}})",
                "put query parameters in 'query'"),
        InStream1("MethodPut", R"("method": "PUT")",
                  "'method' must be GET or POST"),
        InStream1("QueryValueNotAString", R"("query": {"limit": 5})",
                  "'limit' must be a string", ".query"),
        InStream1("RecordsNotAPointer", R"("records": "items")",
                  "'records' must be a JSON pointer"),
        InStream1("RecordsBadEscape", R"("records": "/items~2")",
                  "'records' must be a JSON pointer"),
        Stream0("NoFields", R"({"kind": "identities", "path": "/u"})",
                "'fields' is required"),
        Stream0("FieldsNotAnObject",
                R"({"kind": "identities", "path": "/u", "fields": ["/id"]})",
                "'fields' must be an object"),
        Stream0(
            "IdentityWithoutExternalId",
            R"({"kind": "identities", "path": "/u", "fields": {"email": "/m"}})",
            "fields: 'external_id' is required"),
        Stream0("GrantWithoutEntitlement",
                R"({"kind": "grants", "path": "/m",
                    "fields": {"account_external_id": "/a"}})",
                "fields: 'entitlement_external_id' is required"),
        FieldsOf1("FieldPointerNotAPointer", R"("external_id": "id")",
                  "'pointer' must be a JSON pointer", ".fields.external_id"),
        FieldsOf1("FieldPointerEmpty", R"("external_id": "")",
                  "must not be empty", ".fields.external_id"),
        FieldsOf1("FieldNotAStringOrObject", R"("external_id": 3)",
                  "must be a JSON pointer or {pointer, values}",
                  ".fields.external_id"),
        FieldsOf1("FieldObjectWithoutPointer",
                  R"("external_id": "/id", "status": {"values": {}})",
                  "'pointer' is required", ".fields.status"),
        FieldsOf1(
            "FieldObjectUnknownKey",
            R"("external_id": "/id", "status": {"pointer": "/s", "map": {}})",
            "unknown key 'map'", ".fields.status"),
        FieldsOf1("FieldValueNotAString",
                  R"("external_id": "/id",
                     "status": {"pointer": "/s", "values": {"true": 1}})",
                  "'true' must be a string", ".fields.status.values"),
        InStream1("AttributesAll", R"("attributes": "all")",
                  "'attributes' must be \"rest\" or \"none\""),
        InStream1("PaginationNotAnObject", R"("pagination": "page")",
                  "'pagination' must be an object"),
        InStream1("PaginationWithoutStyle", R"("pagination": {"limit": 5})",
                  "'style' is required", ".pagination"),
        InStream1("PaginationBadStyle", R"("pagination": {"style": "pages"})",
                  "'style' must be one of none, page, offset, cursor, link",
                  ".pagination"),
        InStream1("PaginationUnknownKey",
                  R"("pagination": {"style": "page", "page_size": 5})",
                  "unknown key 'page_size'", ".pagination"),
        InStream1("CursorWithoutNextCursor",
                  R"("pagination": {"style": "cursor"})",
                  "'next_cursor' is required", ".pagination"),
        InStream1("CursorBadNextCursor",
                  R"("pagination": {"style": "cursor", "next_cursor": "next"})",
                  "'next_cursor' must be a JSON pointer", ".pagination"),
        InStream1("LimitZero", R"("pagination": {"style": "page", "limit": 0})",
                  "'limit' must be an integer in [1, 10000]", ".pagination"),
        InStream1("FirstPageTwo",
                  R"("pagination": {"style": "page", "first_page": 2})",
                  "'first_page' must be an integer in [0, 1]", ".pagination"),
        InStream1("MaxPageNotAPointer",
                  R"("pagination": {"style": "page", "max_page": "max"})",
                  "'max_page' must be a JSON pointer", ".pagination"),
        InStream1("TotalNotAPointer",
                  R"("pagination": {"style": "offset", "total": "total"})",
                  "'total' must be a JSON pointer", ".pagination"),
        InStream1("IncrementalWithoutParam",
                  R"("incremental": {"watermark": "/updated"})",
                  "'param' is required", ".incremental"),
        InStream1("IncrementalWithoutWatermark",
                  R"("incremental": {"param": "since"})",
                  "'watermark' is required", ".incremental"),
        InStream1(
            "IncrementalBadWatermark",
            R"("incremental": {"param": "since", "watermark": "updated"})",
            "'watermark' must be a JSON pointer", ".incremental"),
        InStream1(
            "IncrementalUnknownKey",
            R"("incremental": {"param": "s", "watermark": "/u", "format": "x"})",
            "unknown key 'format'", ".incremental")),
    [](const ::testing::TestParamInfo<Mistake>& info) {
      return std::string(info.param.name);
    });

// Pointers that must name something: an empty pointer ("the whole record")
// is refused in the short form of a field, and must be in every other form.
// BUG (rest_options.cc, Pointer()): `required` only means "present", so
// these pass today. Enable when fixed (until then, see them fail with
// --gtest_also_run_disabled_tests).
INSTANTIATE_TEST_SUITE_P(
    EmptyPointers, RestOptionsErrorTest,
    ::testing::Values(
        FieldsOf1("FieldObjectPointerEmpty",
                  R"("external_id": {"pointer": ""})", "must not be empty",
                  ".fields.external_id"),
        InStream1("WatermarkEmpty",
                  R"("incremental": {"param": "since", "watermark": ""})",
                  "must not be empty", ".incremental"),
        InStream1("NextCursorEmpty",
                  R"("pagination": {"style": "cursor", "next_cursor": ""})",
                  "must not be empty", ".pagination")),
    [](const ::testing::TestParamInfo<Mistake>& info) {
      return std::string(info.param.name);
    });

struct WrongField {
  const char* kind;
  const char* field;
  friend void PrintTo(const WrongField& w, std::ostream* os) {
    *os << w.kind << "." << w.field;
  }
};

class RestOptionsFieldTest : public ::testing::TestWithParam<WrongField> {};

TEST_P(RestOptionsFieldTest, FieldOfAnotherKindIsNamed) {
  const WrongField& w = GetParam();
  const std::string required =
      absl::string_view(w.kind) == "grants"
          ? R"("account_external_id": "/a", "entitlement_external_id": "/e")"
          : R"("external_id": "/id")";
  const std::string message = ErrorOf(Config(absl::StrCat(
      kUsers, R"(, {"kind": ")", w.kind, R"(", "path": "/x", "fields": {)",
      required, R"(, ")", w.field, R"(": "/v"}})")));
  EXPECT_THAT(message, AllOf(HasSubstr("rest config: streams[1]"),
                             HasSubstr(absl::StrCat(
                                 "'", w.field, "' is not a field of ", w.kind)),
                             HasSubstr("(known: ")));
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, RestOptionsFieldTest,
    ::testing::Values(WrongField{"identities", "identity_external_id"},
                      WrongField{"identities", "name"},
                      WrongField{"accounts", "first_name"},
                      WrongField{"accounts", "manager_external_id"},
                      WrongField{"entitlements", "email"},
                      WrongField{"entitlements", "username"},
                      WrongField{"grants", "external_id"},
                      WrongField{"grants", "emails"}),
    [](const ::testing::TestParamInfo<WrongField>& info) {
      return absl::StrCat(info.param.kind, "_", info.param.field);
    });

}  // namespace
}  // namespace idsync
