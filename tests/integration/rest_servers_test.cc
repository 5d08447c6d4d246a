// Smoke test of the Node API servers the rest connector is tested against
// (tests/integration/rest/api_shapes.mjs): every shape starts, reports its
// port, and answers the control endpoints; the oidc shape's real
// oidc-provider publishes its discovery document.
#include <memory>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/node_server.h"

namespace idsync {
namespace {

using ::idsync::testing::NodeServer;
using ::testing::HasSubstr;

constexpr char kScript[] = "tests/integration/rest/api_shapes.mjs";

class RestServersTest : public ::testing::TestWithParam<std::string> {};

TEST_P(RestServersTest, StartsAndAnswersControl) {
  auto server =
      NodeServer::Start(kScript, {"--shape", GetParam(), "--count", "120"});
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->url(),
            "http://127.0.0.1:" + std::to_string((*server)->port()));

  auto stats = (*server)->Control("GET", "/__control/stats");
  ASSERT_TRUE(stats.ok()) << stats.status();
  const nlohmann::json s = nlohmann::json::parse(*stats);
  for (const char* key : {"requests", "requests_by_path", "status_counts",
                          "tokens_issued", "rate_limited"}) {
    EXPECT_TRUE(s.contains(key)) << key << " in " << *stats;
  }

  auto deleted =
      (*server)->Control("POST", "/__control/delete", R"({"count":20})");
  ASSERT_TRUE(deleted.ok()) << deleted.status();
  EXPECT_EQ(nlohmann::json::parse(*deleted)["users"], 100);
  auto modified =
      (*server)->Control("POST", "/__control/modify", R"({"count":10})");
  ASSERT_TRUE(modified.ok()) << modified.status();
  EXPECT_EQ(nlohmann::json::parse(*modified)["modified"], 10);
  auto faults = (*server)->Control("POST", "/__control/faults",
                                   R"({"spec":"rate429:2,slow:1"})");
  ASSERT_TRUE(faults.ok()) << faults.status();
  EXPECT_EQ(nlohmann::json::parse(*faults)["faults"]["rate429"], 2);
  auto bad =
      (*server)->Control("POST", "/__control/faults", R"({"spec":"nope"})");
  EXPECT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), HasSubstr("HTTP 400"));
}

INSTANTIATE_TEST_SUITE_P(Shapes, RestServersTest,
                         ::testing::Values("paged", "offset", "oidc",
                                           "password", "apikey"),
                         [](const auto& info) { return info.param; });

TEST(RestServersOidcTest, PublishesDiscoveryWithTokenEndpoint) {
  auto server =
      NodeServer::Start(kScript, {"--shape", "oidc", "--count", "120"});
  ASSERT_TRUE(server.ok()) << server.status();
  auto doc =
      (*server)->Control("GET", "/oidc/.well-known/openid-configuration");
  ASSERT_TRUE(doc.ok()) << doc.status();
  const nlohmann::json d = nlohmann::json::parse(*doc);
  EXPECT_EQ(d["issuer"], (*server)->url() + "/oidc");
  EXPECT_EQ(d["token_endpoint"], (*server)->url() + "/oidc/token");
  EXPECT_THAT(d["grant_types_supported"].dump(),
              HasSubstr("client_credentials"));
}

TEST(RestServersStartTest, BadArgumentsFailWithStderr) {
  auto server = NodeServer::Start(kScript, {"--shape", "no-such-shape"});
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("--shape must be one of"));
}

TEST(RestServersStartTest, MissingScriptFails) {
  auto server = NodeServer::Start("tests/integration/rest/missing.mjs", {});
  EXPECT_FALSE(server.ok());
}

}  // namespace
}  // namespace idsync
