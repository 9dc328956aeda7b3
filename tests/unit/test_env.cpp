#include <gtest/gtest.h>

#include <map>
#include <utility>
#include <vector>

#include "customar/env.h"
#include "customar/error.h"

using namespace customar;

namespace {
Env parse(const std::map<std::string, std::string>& vars) {
  return parse_env([&](const char* name) -> const char* {
    auto it = vars.find(name);
    return it == vars.end() ? nullptr : it->second.c_str();
  });
}
}  // namespace

TEST(Env, DefaultsWhenUnset) {
  Env e = parse({});
  EXPECT_EQ(e.debug, LogLevel::kWarn);
  EXPECT_FALSE(e.disable);
  EXPECT_EQ(e.timeout_ms, 10000);
  EXPECT_TRUE(e.non_default.empty());
}

TEST(Env, ParsesEveryKind) {
  Env e = parse({{"CUSTOMAR_DEBUG", "TRACE"},
                 {"CUSTOMAR_DISABLE_V2", "1"},
                 {"CUSTOMAR_ALGO", "twoshot"},
                 {"CUSTOMAR_TIMEOUT_MS", "2500"},
                 {"CUSTOMAR_TOPO_FILE", "/x.json"}});
  EXPECT_EQ(e.debug, LogLevel::kTrace);
  EXPECT_TRUE(e.disable_v2);
  EXPECT_EQ(e.algo, "twoshot");
  EXPECT_EQ(e.timeout_ms, 2500);
  EXPECT_EQ(e.topo_file, "/x.json");
  EXPECT_EQ(e.non_default.size(), 5u);
}

TEST(Env, RejectsBadValuesNamingTheVariable) {
  // A vector, not a map: one variable appears with several bad values.
  for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{{"CUSTOMAR_DEBUG", "LOUD"},
                                                                      {"CUSTOMAR_DISABLE", "maybe"},
                                                                      {"CUSTOMAR_ALGO", "threeshot"},
                                                                      {"CUSTOMAR_TIMEOUT_MS", "-5"},
                                                                      {"CUSTOMAR_TIMEOUT_MS", "10s"}}) {
    try {
      parse({{k, v}});
      ADD_FAILURE() << k << "=" << v << " accepted";
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find(k), std::string::npos) << e.what();
    }
  }
}

TEST(Env, EveryVariableIsDocumented) {
  for (const EnvVar& v : env_vars()) {
    EXPECT_EQ(std::string(v.name).rfind("CUSTOMAR_", 0), 0u);
    EXPECT_GT(std::string(v.meaning).size(), 10u) << v.name;
  }
}
