#include "connector/config.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "google/protobuf/struct.pb.h"
#include "gtest/gtest.h"

namespace idsync {
namespace {

using google::protobuf::NULL_VALUE;
using google::protobuf::Struct;
using google::protobuf::Value;
using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

// A value that must never show up in an error message.
constexpr char kSecret[] = "s3cr3t-Pa55w0rd";

class ConfigReaderTest : public ::testing::Test {
 protected:
  Value& Set(const std::string& key) {
    return (*config_.mutable_fields())[key];
  }
  void SetString(const std::string& key, const std::string& v) {
    Set(key).set_string_value(v);
  }
  void SetNumber(const std::string& key, double v) {
    Set(key).set_number_value(v);
  }
  void SetBool(const std::string& key, bool v) { Set(key).set_bool_value(v); }
  void SetNull(const std::string& key) { Set(key).set_null_value(NULL_VALUE); }

  ConfigReader Reader() const { return ConfigReader(config_, "test config"); }

  Struct config_;
};

// --- Has --------------------------------------------------------------------

TEST_F(ConfigReaderTest, HasIsTrueOnlyForPresentNonNullKeys) {
  SetString("path", "/tmp/x");
  SetNull("gone");
  SetBool("flag", false);
  EXPECT_TRUE(Reader().Has("path"));
  EXPECT_TRUE(Reader().Has("flag"));
  EXPECT_FALSE(Reader().Has("gone"));
  EXPECT_FALSE(Reader().Has("missing"));
}

// --- RequiredString
// -----------------------------------------------------------

TEST_F(ConfigReaderTest, RequiredStringReturnsValue) {
  SetString("path", "/data/hr.csv");
  auto v = Reader().RequiredString("path");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "/data/hr.csv");
}

TEST_F(ConfigReaderTest, RequiredStringAcceptsEmptyString) {
  SetString("path", "");
  auto v = Reader().RequiredString("path");
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_EQ(*v, "");
}

TEST_F(ConfigReaderTest, RequiredStringMissingNamesKey) {
  auto v = Reader().RequiredString("path");
  ASSERT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v.status().message(), "test config: 'path' is required");
}

TEST_F(ConfigReaderTest, RequiredStringNullIsMissing) {
  SetNull("path");
  auto v = Reader().RequiredString("path");
  ASSERT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(v.status().message(), HasSubstr("'path' is required"));
}

TEST_F(ConfigReaderTest, RequiredStringWrongTypeNamesKeyNotValue) {
  SetNumber("password", 123456789);
  auto v = Reader().RequiredString("password");
  ASSERT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v.status().message(), "test config: 'password' must be a string");
}

// --- String -----------------------------------------------------------------

TEST_F(ConfigReaderTest, StringReturnsValueOrFallback) {
  SetString("delimiter", ";");
  SetNull("quote");
  EXPECT_EQ(*Reader().String("delimiter", ","), ";");
  EXPECT_EQ(*Reader().String("missing", ","), ",");
  EXPECT_EQ(*Reader().String("quote", "\""), "\"");
}

TEST_F(ConfigReaderTest, StringWrongTypesAreRejected) {
  SetNumber("n", 1);
  SetBool("b", true);
  Set("o").mutable_struct_value();
  Set("l").mutable_list_value()->add_values()->set_string_value(kSecret);
  for (const char* key : {"n", "b", "o", "l"}) {
    SCOPED_TRACE(key);
    auto v = Reader().String(key, "fallback");
    ASSERT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(v.status().message(),
                AllOf(HasSubstr("test config: '"), HasSubstr(key),
                      HasSubstr("must be a string"), Not(HasSubstr(kSecret))));
  }
}

// --- Int --------------------------------------------------------------------

TEST_F(ConfigReaderTest, IntReturnsValueOrFallback) {
  SetNumber("port", 389);
  SetNull("timeout");
  EXPECT_EQ(*Reader().Int("port", 0, 1, 65535), 389);
  EXPECT_EQ(*Reader().Int("missing", 636, 1, 65535), 636);
  EXPECT_EQ(*Reader().Int("timeout", 30, 1, 600), 30);
}

TEST_F(ConfigReaderTest, IntBoundsAreInclusive) {
  SetNumber("lo", 1);
  SetNumber("hi", 10);
  SetNumber("neg", -5);
  EXPECT_EQ(*Reader().Int("lo", 0, 1, 10), 1);
  EXPECT_EQ(*Reader().Int("hi", 0, 1, 10), 10);
  EXPECT_EQ(*Reader().Int("neg", 0, -5, 5), -5);
}

TEST_F(ConfigReaderTest, IntOutOfRangeNamesKeyAndRange) {
  SetNumber("below", 0);
  SetNumber("above", 11);
  for (const char* key : {"below", "above"}) {
    SCOPED_TRACE(key);
    auto v = Reader().Int(key, 5, 1, 10);
    ASSERT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(
        v.status().message(),
        absl::StrCat("test config: '", key, "' must be an integer in [1, 10]"));
  }
}

TEST_F(ConfigReaderTest, IntRejectsNonIntegralNumbers) {
  SetNumber("half", 2.5);
  SetNumber("tiny", 1e-9);
  SetNumber("nan", std::nan(""));
  SetNumber("inf", std::numeric_limits<double>::infinity());
  SetNumber("ninf", -std::numeric_limits<double>::infinity());
  for (const char* key : {"half", "tiny", "nan", "inf", "ninf"}) {
    SCOPED_TRACE(key);
    auto v = Reader().Int(key, 0, std::numeric_limits<int64_t>::min(),
                          std::numeric_limits<int64_t>::max());
    ASSERT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(v.status().message(), HasSubstr("must be an integer in"));
  }
}

TEST_F(ConfigReaderTest, IntAcceptsIntegralDoubleWrittenWithFraction) {
  SetNumber("n", 4.0);  // JSON "4.0" and "4e0" arrive as the same double.
  EXPECT_EQ(*Reader().Int("n", 0, 0, 10), 4);
}

TEST_F(ConfigReaderTest, IntFullRangeRejectsTwoToThe63) {
  // static_cast<double>(INT64_MAX) rounds up to 2^63, which does not fit in
  // int64_t: it must be rejected, not converted (undefined behaviour).
  SetNumber("big", 9223372036854775808.0);
  SetNumber("small", -9223372036854775808.0);
  constexpr int64_t kMin = std::numeric_limits<int64_t>::min();
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  auto big = Reader().Int("big", 0, kMin, kMax);
  EXPECT_EQ(big.status().code(), absl::StatusCode::kInvalidArgument)
      << (big.ok() ? absl::StrCat("got ", *big) : "");
  auto small = Reader().Int("small", 0, kMin, kMax);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(*small, kMin);
}

TEST_F(ConfigReaderTest, IntRejectsValueAboveMaxThatRoundsToMax) {
  // 2^60 + 129 is not a double; it rounds to 2^60 + 256, which lies above the
  // limit even though it compares equal to static_cast<double>(max).
  constexpr int64_t kMax = (int64_t{1} << 60) + 129;
  SetNumber("n", static_cast<double>((int64_t{1} << 60) + 256));
  auto v = Reader().Int("n", 0, 0, kMax);
  EXPECT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument)
      << (v.ok() ? absl::StrCat("got ", *v) : "");
}

TEST_F(ConfigReaderTest, IntWrongTypeNeverEchoesValue) {
  SetString("port", kSecret);
  auto v = Reader().Int("port", 0, 1, 65535);
  ASSERT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(v.status().message(),
            "test config: 'port' must be an integer in [1, 65535]");
}

TEST_F(ConfigReaderTest, IntOutOfRangeNeverEchoesValue) {
  SetNumber("pin", 987654321);
  auto v = Reader().Int("pin", 0, 0, 9999);
  ASSERT_FALSE(v.ok());
  EXPECT_THAT(v.status().message(), Not(HasSubstr("987654321")));
}

// --- Bool -------------------------------------------------------------------

TEST_F(ConfigReaderTest, BoolReturnsValueOrFallback) {
  SetBool("yes", true);
  SetBool("no", false);
  SetNull("unset");
  EXPECT_TRUE(*Reader().Bool("yes", false));
  EXPECT_FALSE(*Reader().Bool("no", true));
  EXPECT_TRUE(*Reader().Bool("missing", true));
  EXPECT_FALSE(*Reader().Bool("unset", false));
}

TEST_F(ConfigReaderTest, BoolRejectsStringsAndNumbers) {
  SetString("s", "true");
  SetNumber("n", 1);
  SetString("secret", kSecret);
  for (const char* key : {"s", "n", "secret"}) {
    SCOPED_TRACE(key);
    auto v = Reader().Bool(key, false);
    ASSERT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(v.status().message(),
              absl::StrCat("test config: '", key, "' must be true or false"));
  }
}

// --- Object -----------------------------------------------------------------

TEST_F(ConfigReaderTest, ObjectAbsentOrNullIsNullptr) {
  SetNull("mapping");
  auto absent = Reader().Object("missing");
  ASSERT_TRUE(absent.ok()) << absent.status();
  EXPECT_EQ(*absent, nullptr);
  auto null = Reader().Object("mapping");
  ASSERT_TRUE(null.ok()) << null.status();
  EXPECT_EQ(*null, nullptr);
}

TEST_F(ConfigReaderTest, ObjectReturnsTheNestedStruct) {
  (*Set("mapping").mutable_struct_value()->mutable_fields())["Emp ID"]
      .set_string_value("external_id");
  auto v = Reader().Object("mapping");
  ASSERT_TRUE(v.ok()) << v.status();
  ASSERT_NE(*v, nullptr);
  EXPECT_EQ(*v, &config_.fields().at("mapping").struct_value());
  EXPECT_EQ((*v)->fields().at("Emp ID").string_value(), "external_id");
}

TEST_F(ConfigReaderTest, ObjectWrongTypeNeverEchoesValue) {
  SetString("mapping", kSecret);
  Set("list").mutable_list_value();
  for (const char* key : {"mapping", "list"}) {
    SCOPED_TRACE(key);
    auto v = Reader().Object(key);
    ASSERT_EQ(v.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(v.status().message(),
              absl::StrCat("test config: '", key, "' must be an object"));
  }
}

// --- CheckKnownKeys ---------------------------------------------------------

TEST_F(ConfigReaderTest, CheckKnownKeysAcceptsKnownAndEmpty) {
  EXPECT_TRUE(Reader().CheckKnownKeys({"path"}).ok());
  EXPECT_TRUE(Reader().CheckKnownKeys({}).ok());
  SetString("path", "x");
  SetNull("delimiter");
  EXPECT_TRUE(Reader().CheckKnownKeys({"path", "delimiter", "mapping"}).ok());
}

TEST_F(ConfigReaderTest, CheckKnownKeysNamesUnknownKeyAndListsKnown) {
  SetString("path", "x");
  SetString("pathh", kSecret);
  absl::Status s = Reader().CheckKnownKeys({"path", "delimiter", "mapping"});
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(),
            "test config: unknown key 'pathh' (known: path, delimiter, "
            "mapping)");
}

TEST_F(ConfigReaderTest, CheckKnownKeysRejectsUnknownNullKey) {
  // A typo is a typo even when its value is null.
  SetNull("delimitr");
  absl::Status s = Reader().CheckKnownKeys({"delimiter"});
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("'delimitr'"));
}

TEST_F(ConfigReaderTest, CheckKnownKeysTruncatesLongUnknownKey) {
  const std::string key(200, 'k');
  SetString(key, "v");
  absl::Status s = Reader().CheckKnownKeys({"path"});
  ASSERT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("'", std::string(64, 'k'),
                                                  "' (known: path)")));
  EXPECT_THAT(s.message(), Not(HasSubstr(std::string(65, 'k'))));
}

}  // namespace
}  // namespace idsync
