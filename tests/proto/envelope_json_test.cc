// The documented JSON shape of ConnectorProtocol v1: what the product's
// connectors send and receive parses into the envelope messages and prints
// back unchanged (with proto field names).
#include <string>

#include "gmock/gmock.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "idsync/v1/connector.pb.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

using google::protobuf::Message;
using google::protobuf::Value;
using google::protobuf::util::JsonParseOptions;
using google::protobuf::util::JsonPrintOptions;
using google::protobuf::util::JsonStringToMessage;
using google::protobuf::util::MessageDifferencer;
using google::protobuf::util::MessageToJsonString;
using ::testing::HasSubstr;

// The documented example request.
constexpr char kSyncRequestJson[] = R"json({
  "connector_business_id": "hr-workday",
  "incremental": true,
  "last_sync_at": "2024-05-01T08:30:00Z",
  "auth_config": {
    "type": "oauth2_client_credentials",
    "client_id": "abc",
    "scopes": ["openid", "email"]
  }
})json";

// 2024-05-01T08:30:00Z as seconds since the Unix epoch.
constexpr int64_t kLastSyncAtSeconds = 1714552200;

std::string ErrorText(const google::protobuf::util::Status& status) {
  return std::string(status.message().data(), status.message().size());
}

std::string ToJson(const Message& message) {
  JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  std::string out;
  const auto status = MessageToJsonString(message, &out, options);
  EXPECT_TRUE(status.ok()) << ErrorText(status);
  return out;
}

TEST(EnvelopeJsonTest, DocumentedSyncRequestParsesIntoEveryField) {
  v1::SyncRequest request;
  const auto status = JsonStringToMessage(kSyncRequestJson, &request);
  ASSERT_TRUE(status.ok()) << ErrorText(status);

  EXPECT_EQ(request.connector_business_id(), "hr-workday");
  EXPECT_TRUE(request.incremental());
  ASSERT_TRUE(request.has_last_sync_at());
  EXPECT_EQ(request.last_sync_at().seconds(), kLastSyncAtSeconds);
  EXPECT_EQ(request.last_sync_at().nanos(), 0);

  ASSERT_TRUE(request.has_auth_config());
  const auto& fields = request.auth_config().fields();
  ASSERT_EQ(fields.size(), 3u);
  ASSERT_EQ(fields.count("type"), 1u);
  EXPECT_EQ(fields.at("type").kind_case(), Value::kStringValue);
  EXPECT_EQ(fields.at("type").string_value(), "oauth2_client_credentials");
  ASSERT_EQ(fields.count("client_id"), 1u);
  EXPECT_EQ(fields.at("client_id").string_value(), "abc");
  ASSERT_EQ(fields.count("scopes"), 1u);
  ASSERT_EQ(fields.at("scopes").kind_case(), Value::kListValue);
  const auto& scopes = fields.at("scopes").list_value().values();
  ASSERT_EQ(scopes.size(), 2);
  EXPECT_EQ(scopes[0].string_value(), "openid");
  EXPECT_EQ(scopes[1].string_value(), "email");

  // Nothing else was set.
  EXPECT_EQ(request.sync_token(), "");
  EXPECT_EQ(request.resume_token(), "");
  EXPECT_EQ(request.chunk_size(), 0);
  EXPECT_FALSE(request.has_max_records());
  EXPECT_EQ(request.callback_url(), "");
}

TEST(EnvelopeJsonTest, DocumentedSyncRequestPrintsBackUnchanged) {
  v1::SyncRequest request;
  ASSERT_TRUE(JsonStringToMessage(kSyncRequestJson, &request).ok());

  const std::string printed = ToJson(request);
  EXPECT_EQ(nlohmann::json::parse(printed),
            nlohmann::json::parse(kSyncRequestJson))
      << printed;
}

TEST(EnvelopeJsonTest, SyncResponseRoundTripsThroughJson) {
  constexpr char kJson[] = R"json({
    "success": true,
    "identities": [
      {"external_id": "E1", "email": "ada@example.com", "first_name": "Ada",
       "last_name": "Lovelace", "department": "Engineering",
       "manager_external_id": "E0", "status": "active",
       "display_name": "Ada Lovelace", "job_title": "Engineer",
       "attributes": {"cost_center": "CC-1", "location": "London"}},
      {"external_id": "E2", "status": "leave"}
    ],
    "accounts": [
      {"external_id": "A1", "identity_external_id": "E1", "username": "ada",
       "email": "ada@example.com", "display_name": "Ada", "status": "enabled",
       "attributes": {"mfa": "on"}}
    ],
    "entitlements": [
      {"external_id": "G1", "name": "admins", "description": "Admins",
       "type": "group", "attributes": {"scope": "global"}}
    ],
    "grants": [
      {"account_external_id": "A1", "entitlement_external_id": "G1",
       "attributes": {"granted_by": "E0"}}
    ],
    "error": "partial: 1 row skipped"
  })json";

  v1::SyncResponse response;
  const auto status = JsonStringToMessage(kJson, &response);
  ASSERT_TRUE(status.ok()) << ErrorText(status);
  EXPECT_TRUE(response.success());
  ASSERT_EQ(response.identities_size(), 2);
  EXPECT_EQ(response.identities(0).attributes().at("location"), "London");
  EXPECT_EQ(response.identities(1).status(), "leave");
  ASSERT_EQ(response.accounts_size(), 1);
  EXPECT_EQ(response.accounts(0).identity_external_id(), "E1");
  ASSERT_EQ(response.entitlements_size(), 1);
  EXPECT_EQ(response.entitlements(0).type(), "group");
  ASSERT_EQ(response.grants_size(), 1);
  EXPECT_EQ(response.grants(0).entitlement_external_id(), "G1");
  EXPECT_EQ(response.error(), "partial: 1 row skipped");

  const std::string printed = ToJson(response);
  EXPECT_EQ(nlohmann::json::parse(printed), nlohmann::json::parse(kJson))
      << printed;
}

TEST(EnvelopeJsonTest, StreamingAdditionsParse) {
  constexpr char kJson[] = R"json({
    "connector_business_id": "hr-workday",
    "sync_token": "wm-2024-05-01",
    "resume_token": "offset=4096",
    "chunk_size": 500,
    "max_records": 25000,
    "callback_url": "https://hooks.example.com/idsync"
  })json";

  v1::SyncRequest request;
  const auto status = JsonStringToMessage(kJson, &request);
  ASSERT_TRUE(status.ok()) << ErrorText(status);
  EXPECT_EQ(request.sync_token(), "wm-2024-05-01");
  EXPECT_EQ(request.resume_token(), "offset=4096");
  EXPECT_EQ(request.chunk_size(), 500);
  ASSERT_TRUE(request.has_max_records());
  EXPECT_EQ(request.max_records(), 25000);
  EXPECT_EQ(request.callback_url(), "https://hooks.example.com/idsync");
  EXPECT_FALSE(request.incremental());
  EXPECT_FALSE(request.has_last_sync_at());
}

TEST(EnvelopeJsonTest, MaxRecordsZeroIsPresentAndPrinted) {
  // `optional` gives max_records presence: an explicit 0 is not "absent".
  v1::SyncRequest request;
  ASSERT_TRUE(JsonStringToMessage(R"({"max_records": 0})", &request).ok());
  EXPECT_TRUE(request.has_max_records());
  EXPECT_EQ(request.max_records(), 0);

  // int64 prints as a JSON string (proto3 JSON mapping).
  EXPECT_EQ(nlohmann::json::parse(ToJson(request)),
            nlohmann::json::parse(R"({"max_records": "0"})"));

  request.clear_max_records();
  EXPECT_FALSE(request.has_max_records());
  EXPECT_EQ(nlohmann::json::parse(ToJson(request)), nlohmann::json::object());
}

TEST(EnvelopeJsonTest, Int64AcceptsStringAndNumber) {
  v1::SyncRequest as_string;
  ASSERT_TRUE(
      JsonStringToMessage(R"({"max_records": "9007199254740993"})", &as_string)
          .ok());
  EXPECT_EQ(as_string.max_records(), 9007199254740993);

  v1::SyncRequest as_number;
  ASSERT_TRUE(JsonStringToMessage(R"({"max_records": 42})", &as_number).ok());
  EXPECT_EQ(as_number.max_records(), 42);
}

TEST(EnvelopeJsonTest, UnknownFieldIsRejectedByDefault) {
  constexpr char kJson[] =
      R"({"connector_business_id": "hr", "connector_bussiness_id": "typo"})";
  v1::SyncRequest request;
  const auto status = JsonStringToMessage(kJson, &request);
  ASSERT_FALSE(status.ok());
  EXPECT_THAT(ErrorText(status), HasSubstr("connector_bussiness_id"));

  // Only an explicit option lets it through.
  JsonParseOptions lenient;
  lenient.ignore_unknown_fields = true;
  v1::SyncRequest ignored;
  ASSERT_TRUE(JsonStringToMessage(kJson, &ignored, lenient).ok());
  EXPECT_EQ(ignored.connector_business_id(), "hr");
}

TEST(EnvelopeJsonTest, WrongTypeIsRejectedNamingTheField) {
  struct Case {
    const char* json;
    const char* field;
  };
  const Case kCases[] = {
      {R"({"incremental": "maybe"})", "incremental"},
      {R"({"incremental": 1})", "incremental"},
      {R"({"incremental": []})", "incremental"},
      {R"({"chunk_size": 1.5})", "chunk_size"},
      {R"({"chunk_size": "many"})", "chunk_size"},
      {R"({"chunk_size": 3000000000})", "chunk_size"},
      {R"({"max_records": true})", "max_records"},
      {R"({"last_sync_at": "yesterday"})", "last_sync_at"},
      {R"({"auth_config": "secret"})", "auth_config"},
      {R"({"connector_business_id": {"id": 7}})", "connector_business_id"},
  };
  for (const Case& c : kCases) {
    SCOPED_TRACE(c.json);
    v1::SyncRequest request;
    const auto status = JsonStringToMessage(c.json, &request);
    ASSERT_FALSE(status.ok());
    EXPECT_THAT(ErrorText(status), HasSubstr(c.field));
  }
}

// Known leniency of protobuf 3.21's JSON parser (ProtoStreamObjectWriter reads
// a quoted bool with safe_strtob): "yes", "no", "1", "true" in quotes are
// accepted for a bool field. The envelope is stricter on paper; this pins the
// behaviour we actually get so an upgrade (protobuf 22+ rejects them) shows.
TEST(EnvelopeJsonTest, Protobuf321AcceptsQuotedBoolWords) {
  v1::SyncRequest yes;
  ASSERT_TRUE(JsonStringToMessage(R"({"incremental": "yes"})", &yes).ok());
  EXPECT_TRUE(yes.incremental());
  v1::SyncRequest no;
  ASSERT_TRUE(JsonStringToMessage(R"({"incremental": "no"})", &no).ok());
  EXPECT_FALSE(no.incremental());
}

TEST(EnvelopeJsonTest, SyncEventChunkRoundTripsInBinary) {
  v1::SyncEvent event;
  v1::SyncChunk* chunk = event.mutable_chunk();
  chunk->set_sequence(3);
  chunk->add_identities()->set_external_id("E1");
  chunk->add_accounts()->set_identity_external_id("E1");
  chunk->add_entitlements()->set_name("admins");
  v1::RemoteGrant* grant = chunk->add_grants();
  grant->set_account_external_id("A1");
  grant->set_entitlement_external_id("G1");
  v1::Deletion* deletion = chunk->add_deletions();
  deletion->set_kind(v1::RECORD_KIND_GRANT);
  deletion->set_account_external_id("A2");
  deletion->set_entitlement_external_id("G2");
  v1::Reject* reject = chunk->add_rejects();
  reject->set_location("line 57");
  reject->set_reason("invalid UTF-8");
  chunk->set_resume_token("offset=8192");
  chunk->mutable_progress()->set_done(8192);
  chunk->mutable_progress()->set_total(65536);
  chunk->mutable_progress()->set_unit("bytes");

  std::string wire;
  ASSERT_TRUE(event.SerializeToString(&wire));
  v1::SyncEvent parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.event_case(), v1::SyncEvent::kChunk);
  EXPECT_FALSE(parsed.has_result());
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, event))
      << parsed.DebugString();
}

TEST(EnvelopeJsonTest, SyncEventResultRoundTripsInBinary) {
  v1::SyncEvent event;
  event.mutable_chunk()->set_sequence(1);
  // Setting the other member of the oneof replaces the chunk.
  v1::SyncResult* result = event.mutable_result();
  EXPECT_FALSE(event.has_chunk());
  result->set_success(true);
  result->set_next_sync_token("wm-2");
  result->mutable_counts()->set_identities(10);
  result->mutable_counts()->set_rejects(1);

  std::string wire;
  ASSERT_TRUE(event.SerializeToString(&wire));
  v1::SyncEvent parsed;
  ASSERT_TRUE(parsed.ParseFromString(wire));
  EXPECT_EQ(parsed.event_case(), v1::SyncEvent::kResult);
  EXPECT_FALSE(parsed.has_chunk());
  EXPECT_TRUE(parsed.result().success());
  EXPECT_EQ(parsed.result().next_sync_token(), "wm-2");
  EXPECT_EQ(parsed.result().counts().identities(), 10);
  EXPECT_EQ(parsed.result().counts().rejects(), 1);
  EXPECT_TRUE(MessageDifferencer::Equals(parsed, event))
      << parsed.DebugString();
}

TEST(EnvelopeJsonTest, EmptySyncEventHasNoEvent) {
  v1::SyncEvent parsed;
  ASSERT_TRUE(parsed.ParseFromString(""));
  EXPECT_EQ(parsed.event_case(), v1::SyncEvent::EVENT_NOT_SET);
}

}  // namespace
}  // namespace idsync
