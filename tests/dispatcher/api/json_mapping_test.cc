#include "dispatcher/api/json_mapping.h"

#include <string>

#include "gtest/gtest.h"
#include "idsync/v1/control_plane.pb.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

TEST(ToJsonStringTest, RecordAttributesPrintSortedAndEscaped) {
  v1::Identity identity;
  identity.set_external_id("E1");
  (*identity.mutable_attributes())["site"] = "Chicago";
  (*identity.mutable_attributes())["a\"key"] = "tab\there";
  (*identity.mutable_attributes())["badge"] = "Zoë \xF0\x9F\x99\x82";
  const std::string json = ToJsonString(identity);
  EXPECT_NE(json.find(R"("attributes":{"a\"key":"tab\there","badge":"Zoë )"
                      "\xF0\x9F\x99\x82"
                      R"(","site":"Chicago"})"),
            std::string::npos)
      << json;
  const nlohmann::json parsed = nlohmann::json::parse(json);
  EXPECT_EQ(parsed["attributes"]["badge"], "Zoë \xF0\x9F\x99\x82");
}

TEST(ToJsonStringTest, EveryRecordKindPrintsItsAttributes) {
  v1::Account account;
  (*account.mutable_attributes())["k"] = "a";
  v1::Entitlement entitlement;
  (*entitlement.mutable_attributes())["k"] = "e";
  v1::Grant grant;
  (*grant.mutable_attributes())["k"] = "g";
  EXPECT_EQ(nlohmann::json::parse(ToJsonString(account))["attributes"]["k"],
            "a");
  EXPECT_EQ(nlohmann::json::parse(ToJsonString(entitlement))["attributes"]["k"],
            "e");
  EXPECT_EQ(nlohmann::json::parse(ToJsonString(grant))["attributes"]["k"], "g");
}

TEST(ToJsonStringTest, OtherMapsStillPrint) {
  // A request message's map goes through the generic (reflection) path.
  v1::CreateIdentityRequest request;
  (*request.mutable_attributes())["b"] = "2";
  (*request.mutable_attributes())["a"] = "1";
  const std::string json = ToJsonString(request);
  EXPECT_NE(json.find(R"("attributes":{"a":"1","b":"2"})"), std::string::npos)
      << json;
}

TEST(ToJsonStringTest, InvalidUtf8IsReplacedNotEmitted) {
  v1::Identity identity;
  identity.set_display_name("ok \xC3 bad \xFF");
  identity.set_email(
      "plain\x01"
      "ascii");
  const std::string json = ToJsonString(identity);
  EXPECT_NE(json.find(R"("display_name":"ok \ufffd bad \ufffd")"),
            std::string::npos)
      << json;
  EXPECT_NE(json.find(R"("email":"plain\u0001ascii")"), std::string::npos)
      << json;
  EXPECT_TRUE(nlohmann::json::accept(json));
}

}  // namespace
}  // namespace idsync
