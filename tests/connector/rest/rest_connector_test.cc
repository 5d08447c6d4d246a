// The rest connector's paging rules against an in-process HTTP server with
// behaviours the Node API shapes do not have: a server that sends fewer
// records per page than asked must not end a walk early (a full sync would
// then delete what it never read).
#include "connector/rest/rest_connector.h"

#include <memory>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/connector/http/test_server.h"

namespace idsync {
namespace {

class CountingSink final : public RecordSink {
 public:
  absl::Status Write(idsync::v1::SyncChunk chunk) override {
    identities += chunk.identities_size();
    return absl::OkStatus();
  }
  void SetNextSyncToken(std::string) override {}
  int64_t identities = 0;
};

// The rest connector a JSON config describes.
absl::StatusOr<std::unique_ptr<Connector>> RestConnector(
    const nlohmann::json& config) {
  ConnectorSpec spec;
  if (!google::protobuf::util::JsonStringToMessage(config.dump(), &spec.config)
           .ok()) {
    return absl::InvalidArgumentError("bad test config");
  }
  return CreateRestConnector(spec);
}

constexpr int kTotal = 1000, kServed = 90;  // The client asks for 100.

TEST(RestConnectorTest, ShortPagesDoNotEndAPageWalkBeforeTheTotal) {
  testing::TestServer server;
  server.Get("/users", [](const httplib::Request& req, httplib::Response& res) {
    int page = 1;
    (void)absl::SimpleAtoi(req.get_param_value("page"), &page);
    nlohmann::json items = nlohmann::json::array();
    for (int i = (page - 1) * kServed; i < std::min(kTotal, page * kServed);
         ++i) {
      items.push_back({{"id", absl::StrCat("u", i)}});
    }
    res.set_content(nlohmann::json{{"items", items}, {"total", kTotal}}.dump(),
                    "application/json");
  });
  const std::string base = server.Start();
  const nlohmann::json config = {
      {"base_url", base},
      {"streams",
       {{{"kind", "identities"},
         {"path", "/users"},
         {"records", "/items"},
         {"fields", {{"external_id", "/id"}}},
         {"pagination",
          {{"style", "page"}, {"limit", 100}, {"total", "/total"}}}}}}};
  auto connector = RestConnector(config);
  ASSERT_TRUE(connector.ok()) << connector.status();
  CountingSink sink;
  ASSERT_TRUE((*connector)->Sync(idsync::v1::SyncRequest(), sink).ok());
  EXPECT_EQ(sink.identities, kTotal);
}

// JSON pointers may name array indexes of any length; one past size_t made
// nlohmann::json throw out of the connector (std::terminate) when the
// response had an array there.
TEST(RestConnectorTest, HugeArrayIndexInAPointerIsAbsentNotACrash) {
  testing::TestServer server;
  server.Get("/users", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"items": [{"id": "u1", "tags": []}]})",
                    "application/json");
  });
  const std::string base = server.Start();
  for (const auto& [records, external_id] :
       {std::pair<std::string, std::string>{"/items/99999999999999999999",
                                            "/id"},
        {"/items", "/tags/18446744073709551615"}}) {
    const nlohmann::json config = {
        {"base_url", base},
        {"streams",
         {{{"kind", "identities"},
           {"path", "/users"},
           {"records", records},
           {"fields", {{"external_id", external_id}}}}}}};
    auto connector = RestConnector(config);
    ASSERT_TRUE(connector.ok()) << connector.status();
    CountingSink sink;
    const absl::Status status =
        (*connector)->Sync(idsync::v1::SyncRequest(), sink);
    if (records == "/items") {
      EXPECT_TRUE(status.ok()) << status;  // The record is rejected.
    } else {
      EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
    }
    EXPECT_EQ(sink.identities, 0);
  }
}

}  // namespace
}  // namespace idsync
