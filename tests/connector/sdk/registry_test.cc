#include "connector/registry.h"

#include <memory>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A connector that only reports which factory made it.
class NamedConnector : public Connector {
 public:
  explicit NamedConnector(std::string type, std::string business_id)
      : type_(std::move(type)), business_id_(std::move(business_id)) {}
  absl::StatusOr<v1::ConnectorInfo> Describe() override {
    v1::ConnectorInfo info;
    info.set_type(type_);
    info.set_version(business_id_);
    return info;
  }
  absl::Status TestConnection() override { return absl::OkStatus(); }
  absl::Status Sync(const v1::SyncRequest&, RecordSink&) override {
    return absl::OkStatus();
  }

 private:
  const std::string type_;
  const std::string business_id_;
};

ConnectorFactory FactoryFor(std::string type) {
  return [type](const ConnectorSpec& spec)
             -> absl::StatusOr<std::unique_ptr<Connector>> {
    return std::make_unique<NamedConnector>(type, spec.business_id);
  };
}

TEST(ConnectorRegistryTest, CreateUsesTheFactoryOfThatType) {
  ConnectorRegistry registry;
  ASSERT_TRUE(registry.Register("alpha", FactoryFor("alpha")).ok());
  ASSERT_TRUE(registry.Register("beta", FactoryFor("beta")).ok());

  ConnectorSpec spec;
  spec.business_id = "hr-main";
  auto connector = registry.Create("beta", spec);
  ASSERT_TRUE(connector.ok()) << connector.status();
  auto info = (*connector)->Describe();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->type(), "beta");
  EXPECT_EQ(info->version(), "hr-main");  // The spec reached the factory.
}

TEST(ConnectorRegistryTest, DuplicateTypeIsAlreadyExistsAndKeepsFirst) {
  ConnectorRegistry registry;
  ASSERT_TRUE(registry.Register("alpha", FactoryFor("first")).ok());
  absl::Status s = registry.Register("alpha", FactoryFor("second"));
  EXPECT_EQ(s.code(), absl::StatusCode::kAlreadyExists);
  EXPECT_THAT(s.message(), HasSubstr("'alpha'"));

  auto connector = registry.Create("alpha", ConnectorSpec{});
  ASSERT_TRUE(connector.ok()) << connector.status();
  EXPECT_EQ((*connector)->Describe()->type(), "first");
  EXPECT_THAT(registry.Types(), ElementsAre("alpha"));
}

TEST(ConnectorRegistryTest, UnknownTypeIsNotFoundListingKnownTypes) {
  ConnectorRegistry registry;
  ASSERT_TRUE(registry.Register("ldap", FactoryFor("ldap")).ok());
  ASSERT_TRUE(registry.Register("csv", FactoryFor("csv")).ok());
  auto connector = registry.Create("scim", ConnectorSpec{});
  ASSERT_EQ(connector.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(connector.status().message(),
            "unknown connector type 'scim' (known: csv, ldap)");
}

TEST(ConnectorRegistryTest, UnknownTypeOnEmptyRegistryIsNotFound) {
  ConnectorRegistry registry;
  auto connector = registry.Create("csv", ConnectorSpec{});
  EXPECT_EQ(connector.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(registry.Types().empty());
}

TEST(ConnectorRegistryTest, UnknownTypeNameIsTruncatedInMessage) {
  ConnectorRegistry registry;
  const std::string type(300, 't');
  auto connector = registry.Create(type, ConnectorSpec{});
  ASSERT_EQ(connector.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(connector.status().message(),
              HasSubstr("'" + std::string(64, 't') + "'"));
}

TEST(ConnectorRegistryTest, TypesAreSorted) {
  ConnectorRegistry registry;
  for (const char* t : {"scim", "csv", "ldap"}) {
    ASSERT_TRUE(registry.Register(t, FactoryFor(t)).ok());
  }
  EXPECT_THAT(registry.Types(), ElementsAre("csv", "ldap", "scim"));
}

TEST(ConnectorRegistryTest, FactoryErrorPropagates) {
  ConnectorRegistry registry;
  ASSERT_TRUE(registry
                  .Register("broken",
                            [](const ConnectorSpec&)
                                -> absl::StatusOr<std::unique_ptr<Connector>> {
                              return absl::InvalidArgumentError(
                                  "broken config: 'x' is required");
                            })
                  .ok());
  auto connector = registry.Create("broken", ConnectorSpec{});
  EXPECT_EQ(connector.status(),
            absl::InvalidArgumentError("broken config: 'x' is required"));
}

TEST(ConnectorRegistryTest, BuiltinRegistersCsv) {
  ConnectorRegistry registry;
  RegisterBuiltinConnectors(registry);
  EXPECT_THAT(registry.Types(), Contains("csv"));
  // A second registration of the same type is refused.
  EXPECT_EQ(registry.Register("csv", FactoryFor("csv")).code(),
            absl::StatusCode::kAlreadyExists);
}

TEST(ConnectorRegistryTest, BuiltinCsvFactoryErrorPropagates) {
  ConnectorRegistry registry;
  RegisterBuiltinConnectors(registry);
  ConnectorSpec spec;
  spec.business_id = "hr";  // Config without the required 'path'.
  auto connector = registry.Create("csv", spec);
  ASSERT_EQ(connector.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(connector.status().message(), HasSubstr("'path'"));
}

TEST(ConnectorRegistryTest, BuiltinCsvCreatesWithValidConfig) {
  ConnectorRegistry registry;
  RegisterBuiltinConnectors(registry);
  ConnectorSpec spec;
  spec.business_id = "hr";
  (*spec.config.mutable_fields())["path"].set_string_value("/nonexistent.csv");
  auto connector = registry.Create("csv", spec);
  ASSERT_TRUE(connector.ok()) << connector.status();
  auto info = (*connector)->Describe();
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->type(), "csv");
}

}  // namespace
}  // namespace idsync
