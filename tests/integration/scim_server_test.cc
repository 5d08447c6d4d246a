// Smoke test of the SCIM 2.0 server the scim connector is tested against
// (tests/integration/scim/scim_server.mjs, scimmy + scimmy-routers on
// express): it starts, answers its control endpoints, wants the bearer
// token, pages, filters on meta.lastModified and injects faults as its
// README says.
#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/node_server.h"

namespace idsync {
namespace {

using ::idsync::testing::NodeServer;
using ::testing::HasSubstr;

constexpr char kScript[] = "tests/integration/scim/scim_server.mjs";
constexpr char kEnterprise[] =
    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const std::vector<std::string> kAuth = {
    "Authorization: Bearer scim-test-token"};

std::unique_ptr<NodeServer> StartServer(std::vector<std::string> args) {
  auto server = NodeServer::Start(kScript, args);
  EXPECT_TRUE(server.ok()) << server.status();
  return server.ok() ? std::move(*server) : nullptr;
}

nlohmann::json Get(NodeServer& server, const std::string& path) {
  auto body = server.Control("GET", path, "", kAuth);
  EXPECT_TRUE(body.ok()) << body.status();
  return body.ok() ? nlohmann::json::parse(*body) : nlohmann::json();
}

TEST(ScimServerTest, AnswersControlEndpoints) {
  auto server = StartServer({"--count", "120"});
  ASSERT_NE(server, nullptr);

  auto stats = server->Control("GET", "/__control/stats");
  ASSERT_TRUE(stats.ok()) << stats.status();
  const nlohmann::json s = nlohmann::json::parse(*stats);
  for (const char* key :
       {"requests", "requests_by_path", "status_counts", "rate_limited"}) {
    EXPECT_TRUE(s.contains(key)) << key << " in " << *stats;
  }

  auto deleted =
      server->Control("POST", "/__control/delete", R"({"count":20})");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(nlohmann::json::parse(*deleted)["users"], 100);
  auto modified =
      server->Control("POST", "/__control/modify", R"({"count":10})");
  ASSERT_TRUE(modified.ok()) << modified.status();
  EXPECT_EQ(nlohmann::json::parse(*modified)["modified"], 10);
  auto faults = server->Control("POST", "/__control/faults",
                                R"({"spec":"rate429:2,slow:1,shrink_total"})");
  ASSERT_TRUE(faults.ok()) << faults.status();
  EXPECT_EQ(nlohmann::json::parse(*faults)["faults"]["rate429"], 2);
  EXPECT_EQ(nlohmann::json::parse(*faults)["faults"]["shrink_total"], true);
  auto bad = server->Control("POST", "/__control/faults", R"({"spec":"nope"})");
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("HTTP 400"));
  auto reset = server->Control("POST", "/__control/reset_stats");
  ASSERT_TRUE(reset.ok()) << reset.status();
  EXPECT_EQ(nlohmann::json::parse(*reset)["requests"], 0);
}

TEST(ScimServerTest, WantsTheBearerToken) {
  auto server = StartServer({"--count", "120", "--token", "t0ken"});
  ASSERT_NE(server, nullptr);

  auto none = server->Control("GET", "/scim/v2/Users");
  ASSERT_FALSE(none.ok());
  EXPECT_THAT(none.status().message(), HasSubstr("HTTP 401"));
  EXPECT_THAT(none.status().message(),
              HasSubstr("urn:ietf:params:scim:api:messages:2.0:Error"));
  auto wrong = server->Control("GET", "/scim/v2/ServiceProviderConfig", "",
                               {"Authorization: Bearer scim-test-token"});
  ASSERT_FALSE(wrong.ok());
  EXPECT_THAT(wrong.status().message(), HasSubstr("HTTP 401"));
  auto right = server->Control("GET", "/scim/v2/Users?count=1", "",
                               {"Authorization: Bearer t0ken"});
  ASSERT_TRUE(right.ok()) << right.status();
  EXPECT_EQ(nlohmann::json::parse(*right)["totalResults"], 120);

  auto stats =
      nlohmann::json::parse(*server->Control("GET", "/__control/stats"));
  EXPECT_EQ(stats["requests"], 3);
  EXPECT_EQ(stats["status_counts"]["401"], 2);
  EXPECT_EQ(stats["requests_by_path"]["/scim/v2/Users"], 2);
}

TEST(ScimServerTest, ServesUsersAndGroupsByPage) {
  auto server = StartServer({"--count", "120"});
  ASSERT_NE(server, nullptr);

  const nlohmann::json config = Get(*server, "/scim/v2/ServiceProviderConfig");
  EXPECT_EQ(config["filter"]["supported"], true);
  EXPECT_EQ(config["filter"]["maxResults"], 200);

  const nlohmann::json page =
      Get(*server, "/scim/v2/Users?startIndex=11&count=100");
  EXPECT_EQ(page["totalResults"], 120);
  EXPECT_EQ(page["startIndex"], 11);
  EXPECT_EQ(page["itemsPerPage"], 100);
  ASSERT_EQ(page["Resources"].size(), 100u);
  const nlohmann::json& u = page["Resources"][1];  // user 11
  EXPECT_EQ(u["id"], "u000011");
  EXPECT_EQ(u["externalId"], "ext-u000011");
  EXPECT_EQ(u["userName"], "user11");
  EXPECT_EQ(u["name"]["givenName"], "First11");
  EXPECT_EQ(u["name"]["familyName"], "Last11");
  EXPECT_EQ(u["emails"][0]["value"], "user11@example.com");
  EXPECT_EQ(u["active"], true);
  EXPECT_EQ(u[kEnterprise]["employeeNumber"], "E11");
  EXPECT_EQ(u[kEnterprise]["department"], "Sales");
  EXPECT_EQ(u[kEnterprise]["manager"]["value"], "u000001");
  EXPECT_EQ(u["meta"]["lastModified"], "2024-01-01T00:11:00.000Z");

  const nlohmann::json last =
      Get(*server, "/scim/v2/Users?startIndex=111&count=100");
  EXPECT_EQ(last["Resources"].size(), 10u);
  EXPECT_EQ(last["itemsPerPage"], 10);
  const nlohmann::json past =
      Get(*server, "/scim/v2/Users?startIndex=121&count=100");
  EXPECT_TRUE(past["Resources"].empty());
  EXPECT_EQ(past["totalResults"], 120);

  const nlohmann::json groups = Get(*server, "/scim/v2/Groups?count=10");
  ASSERT_EQ(groups["Resources"].size(), 3u);
  EXPECT_EQ(groups["Resources"][0]["id"], "g0000");
  EXPECT_EQ(groups["Resources"][0]["displayName"], "Group 0");
  EXPECT_EQ(groups["Resources"][0]["members"].size(), 52u);
  EXPECT_EQ(groups["Resources"][1]["members"].size(), 40u);
  EXPECT_EQ(groups["Resources"][1]["members"][0]["value"], "u000001");
}

TEST(ScimServerTest, CapsCountAndFiltersOnLastModified) {
  auto server = StartServer({"--count", "120", "--max-count", "50"});
  ASSERT_NE(server, nullptr);

  const nlohmann::json capped = Get(*server, "/scim/v2/Users?count=100");
  EXPECT_EQ(capped["Resources"].size(), 50u);
  EXPECT_EQ(capped["itemsPerPage"], 50);

  const std::string filter =
      "filter=meta.lastModified%20gt%20%222024-01-01T01%3A00%3A00Z%22";
  const nlohmann::json newer =
      Get(*server, "/scim/v2/Users?count=50&" + filter);
  EXPECT_EQ(newer["totalResults"], 59);  // users 61..119
  EXPECT_EQ(newer["Resources"][0]["id"], "u000061");

  ASSERT_TRUE(
      server->Control("POST", "/__control/modify", R"({"count":5})").ok());
  const nlohmann::json after =
      Get(*server,
          "/scim/v2/Users?count=50&"
          "filter=meta.lastModified%20gt%20%222025-01-01T00%3A00%3A00Z%22");
  ASSERT_EQ(after["totalResults"], 5);
  EXPECT_EQ(after["Resources"][4]["name"]["givenName"], "Changed4");
  EXPECT_EQ(after["Resources"][4][kEnterprise]["department"], "Changed");
}

TEST(ScimServerTest, WithoutFilterSupportRejectsFilters) {
  auto server = StartServer({"--count", "10", "--no-filter"});
  ASSERT_NE(server, nullptr);
  EXPECT_EQ(
      Get(*server, "/scim/v2/ServiceProviderConfig")["filter"]["supported"],
      false);
  auto filtered = server->Control(
      "GET", "/scim/v2/Users?filter=userName%20eq%20%22user1%22", "", kAuth);
  ASSERT_FALSE(filtered.ok());
  EXPECT_THAT(filtered.status().message(), HasSubstr("HTTP 400"));
  EXPECT_THAT(filtered.status().message(), HasSubstr("invalidFilter"));
}

TEST(ScimServerTest, InjectsRateLimitsAndUnavailability) {
  auto server =
      StartServer({"--count", "10", "--faults", "rate429:1,http503:1"});
  ASSERT_NE(server, nullptr);
  auto first = server->Control("GET", "/scim/v2/Users", "", kAuth);
  EXPECT_THAT(first.status().message(), HasSubstr("HTTP 429"));
  auto second = server->Control("GET", "/scim/v2/Users", "", kAuth);
  EXPECT_THAT(second.status().message(), HasSubstr("HTTP 503"));
  EXPECT_EQ(Get(*server, "/scim/v2/Users")["totalResults"], 10);
  auto stats =
      nlohmann::json::parse(*server->Control("GET", "/__control/stats"));
  EXPECT_EQ(stats["rate_limited"], 1);
  EXPECT_EQ(stats["status_counts"]["503"], 1);
}

TEST(ScimServerTest, BadArgumentsFailWithStderr) {
  auto server = NodeServer::Start(kScript, {"--count", "many"});
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(),
              HasSubstr("--count must be a non-negative integer"));
}

}  // namespace
}  // namespace idsync
