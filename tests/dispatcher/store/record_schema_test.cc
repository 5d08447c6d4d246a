#include "dispatcher/store/record_schema.h"

#include <map>
#include <random>
#include <string>

#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace idsync {
namespace {

using StringMap = google::protobuf::Map<std::string, std::string>;

std::map<std::string, std::string> Std(const StringMap& m) {
  return {m.begin(), m.end()};
}

// What the full parser reads from the same text, for comparison.
StringMap ByNlohmann(const std::string& json) {
  StringMap out;
  const nlohmann::json parsed = nlohmann::json::parse(json);
  for (auto it = parsed.begin(); it != parsed.end(); ++it) {
    out[it.key()] = it.value().get<std::string>();
  }
  return out;
}

TEST(ParseAttributesJsonTest, ReadsBackWhatAttributesJsonWrites) {
  StringMap in;
  in["site"] = "Chicago";
  in["note"] = "quote \" backslash \\ newline \n tab \t cr \r bell \x07";
  in["unicode"] = "Zoë, 東京, 🙂";
  in[""] = "";
  in["slash/key"] = "a/b";
  const std::string json = AttributesJson(in);
  StringMap out;
  ASSERT_TRUE(ParseAttributesJson(json, &out)) << json;
  EXPECT_EQ(Std(out), Std(in));
  EXPECT_EQ(Std(out), Std(ByNlohmann(json)));
}

TEST(ParseAttributesJsonTest, RandomMapsRoundTripAndAgreeWithTheFullParser) {
  std::mt19937 rng(7);
  // ASCII including every control character, and some multi-byte text.
  const std::vector<std::string> pieces = {"a", "Z", "\"", "\\", "/", "é", "€",
                                           "𝄞", " ", "{",  "}",  ":", ","};
  for (int round = 0; round < 300; ++round) {
    StringMap in;
    const int n = static_cast<int>(rng() % 5);
    for (int e = 0; e < n; ++e) {
      std::string key, value;
      for (int i = static_cast<int>(rng() % 6); i > 0; --i) {
        key += rng() % 4 == 0 ? std::string(1, static_cast<char>(rng() % 0x20))
                              : pieces[rng() % pieces.size()];
      }
      for (int i = static_cast<int>(rng() % 8); i > 0; --i) {
        value += rng() % 4 == 0
                     ? std::string(1, static_cast<char>(rng() % 0x20))
                     : pieces[rng() % pieces.size()];
      }
      in[key] = value;
    }
    const std::string json = AttributesJson(in);
    if (in.empty()) {
      EXPECT_EQ(json, "");
      continue;
    }
    StringMap out;
    ASSERT_TRUE(ParseAttributesJson(json, &out)) << json;
    EXPECT_EQ(Std(out), Std(in)) << json;
    EXPECT_EQ(Std(out), Std(ByNlohmann(json))) << json;
  }
}

TEST(ParseAttributesJsonTest, AcceptsTheOtherSimpleEscapes) {
  const std::string json = R"({"k":"\/\b\f\u00e9\u0041"})";
  StringMap out;
  ASSERT_TRUE(ParseAttributesJson(json, &out));
  EXPECT_EQ(Std(out), Std(ByNlohmann(json)));
  EXPECT_EQ(out["k"],
            "/\b\f\xc3\xa9"
            "A");
}

TEST(ParseAttributesJsonTest, LeavesAnythingElseToTheFullParser) {
  for (const char* json : {
           "",
           "{",
           "}",
           "[]",
           "null",
           R"({"a":1})",
           R"({"a":"b",})",
           R"({"a":"b"} )",
           R"( {"a":"b"})",
           R"({"a" : "b"})",
           R"({"a":"b""c":"d"})",
           R"({"a":"b)",
           R"({"a":"\x"})",
           R"({"a":"\u12"})",
           R"({"a":"\ud83d\ude00"})",
           R"({"a":"\u4e2d"})",
           "{\"a\":\"line\nbreak\"}",
           R"({"a":{"b":"c"}})",
           R"({"a":"b"}})",
       }) {
    StringMap out;
    EXPECT_FALSE(ParseAttributesJson(json, &out)) << json;
  }
  StringMap empty;
  EXPECT_TRUE(ParseAttributesJson("{}", &empty));
  EXPECT_TRUE(empty.empty());
}

}  // namespace
}  // namespace idsync
