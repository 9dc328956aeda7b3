#include <gtest/gtest.h>

#include "common/json.h"
#include "customar/error.h"

using customar::ConfigError;
namespace json = customar::json;

TEST(Json, ParsesNestedValues) {
  json::Value v = json::parse(R"({"a": [1, -2, 3.5, true, false, null], "b": {"c": "x\n\u00e9"}})", "t");
  ASSERT_TRUE(v.is_object());
  const auto& a = v.object()[0].second.array();
  ASSERT_EQ(a.size(), 6u);
  EXPECT_TRUE(a[0].is_integer);
  EXPECT_EQ(a[0].integer, 1);
  EXPECT_EQ(a[1].integer, -2);
  EXPECT_FALSE(a[2].is_integer);
  EXPECT_TRUE(a[3].boolean());
  EXPECT_TRUE(a[5].is_null());
  EXPECT_EQ(v.object()[1].second.object()[0].second.string(), "x\n\xc3\xa9");
}

TEST(Json, RejectsWhatIsNotStrictJson) {
  for (const char* bad :
       {"", "{", "[1,]", "{\"a\":1,}", "{'a':1}", "// c\n{}", "{\"a\":1}{}", "[01]", "[1.]", "[NaN]",
        "{\"a\":1,\"a\":2}", "\"\x01\"", "[1e999]", "[99999999999999999999]", "tru", "[\"\\ud800\"]"}) {
    EXPECT_THROW(json::parse(bad, "t"), ConfigError) << bad;
  }
}

TEST(Json, ErrorsNameLineAndColumn) {
  try {
    json::parse("{\n  \"a\": ?\n}", "file.json");
    FAIL() << "no throw";
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("file.json: line 2 column 8"), std::string::npos) << e.what();
  }
}

TEST(Json, LimitsDepthAndSize) {
  EXPECT_THROW(json::parse(std::string(40, '[') + std::string(40, ']'), "t"), ConfigError);
  EXPECT_NO_THROW(json::parse(std::string(20, '[') + std::string(20, ']'), "t"));
  EXPECT_THROW(json::parse("\"" + std::string(json::kMaxInputBytes, 'x') + "\"", "t"), ConfigError);
}

TEST(Json, QuoteRoundTrips) {
  std::string s = "a\"b\\c\nd\te\x01";
  EXPECT_EQ(json::parse(json::quote(s), "t").string(), s);
}
