// Every variable is parsed strictly: a value customar would have to guess at is an error naming the variable and
// what it accepts, quoted so that the message cannot drive a terminal.
#include <gtest/gtest.h>

#include <map>
#include <string>

#include "customar/env.h"
#include "customar/error.h"

using namespace customar;

namespace {

Env parse(const std::string& name, const std::string& value) {
  return parse_env([&](const char* n) -> const char* { return name == n ? value.c_str() : nullptr; });
}

// The ConfigError message for name=value, or "" when it was accepted.
std::string error_of(const std::string& name, const std::string& value) {
  try {
    parse(name, value);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(EnvStrict, NumbersArePlainDecimalDigits) {
  for (const char* bad :
       {" 5", "5 ", "+5", "-5", "007", "05", "0x10", "1e3", "5.0", "", "99999999999999999999", "１２"}) {
    for (const char* name : {"CUSTOMAR_TIMEOUT_MS", "CUSTOMAR_INIT_TIMEOUT_MS"}) {
      std::string err = error_of(name, bad);
      EXPECT_NE(err.find(name), std::string::npos) << name << "=\"" << bad << "\" accepted";
      EXPECT_NE(err.find("decimal digits only"), std::string::npos) << err;
    }
  }
  EXPECT_EQ(parse("CUSTOMAR_TIMEOUT_MS", "5").timeout_ms, 5);
  EXPECT_EQ(parse("CUSTOMAR_INIT_TIMEOUT_MS", "86400000").init_timeout_ms, 86400000);
  EXPECT_NE(error_of("CUSTOMAR_TIMEOUT_MS", "0"), "");
}

TEST(EnvStrict, DebugSubsystemsMustBeKnown) {
  for (const char* bad : {"INTI", "init", "INIT,", ",INIT", "INIT,,TOPO", "INIT TOPO", "*"}) {
    std::string err = error_of("CUSTOMAR_DEBUG_SUBSYS", bad);
    EXPECT_NE(err.find("INIT, TOPO, CONFIG, JIT, COLL, GRAPH, MEM or ALL"), std::string::npos)
        << "\"" << bad << "\" accepted or not explained: " << err;
  }
  EXPECT_EQ(parse("CUSTOMAR_DEBUG_SUBSYS", "INIT,TOPO,CONFIG,JIT,COLL,GRAPH,MEM").debug_subsys,
            "INIT,TOPO,CONFIG,JIT,COLL,GRAPH,MEM");
  EXPECT_EQ(parse("CUSTOMAR_DEBUG_SUBSYS", "ALL").debug_subsys, "ALL");
  EXPECT_EQ(parse("CUSTOMAR_DEBUG_SUBSYS", "").debug_subsys, "");
}

TEST(EnvStrict, ATildeIsNotAPath) {
  for (const char* name : {"CUSTOMAR_CACHE_DIR", "CUSTOMAR_JIT_DUMP", "CUSTOMAR_TOPO_FILE", "CUSTOMAR_TOPO_DUMP_FILE",
                           "CUSTOMAR_CONFIG_FILE"}) {
    for (const char* bad : {"~", "~/x", "~user/x"}) {
      std::string err = error_of(name, bad);
      EXPECT_NE(err.find("give an absolute path"), std::string::npos) << name << "=" << bad << ": " << err;
    }
  }
}

TEST(EnvStrict, TheCacheDirectoryMustBeAbsolute) {
  EXPECT_NE(error_of("CUSTOMAR_CACHE_DIR", "rel/cache").find("expected an absolute path"), std::string::npos);
  EXPECT_NE(error_of("CUSTOMAR_CACHE_DIR", "./cache"), "");
  EXPECT_EQ(parse("CUSTOMAR_CACHE_DIR", "/var/cache/customar").cache_dir, "/var/cache/customar");
  EXPECT_EQ(parse("CUSTOMAR_CACHE_DIR", "").cache_dir, "");
}

TEST(EnvStrict, FilesOfOneRunMayBeRelative) {
  EXPECT_EQ(parse("CUSTOMAR_TOPO_FILE", "topo.json").topo_file, "topo.json");
  EXPECT_EQ(parse("CUSTOMAR_CONFIG_FILE", "conf/c.json").config_file, "conf/c.json");
  EXPECT_EQ(parse("CUSTOMAR_TOPO_DUMP_FILE", "out.json").topo_dump_file, "out.json");
  EXPECT_EQ(parse("CUSTOMAR_JIT_DUMP", "dump").jit_dump, "dump");
}

TEST(EnvStrict, MessagesEscapeTheValue) {
  std::string err = error_of("CUSTOMAR_DEBUG", "\x1b]0;owned\x07\xff");
  EXPECT_NE(err.find("CUSTOMAR_DEBUG=\\x1B]0;owned\\x07\\xFF"), std::string::npos) << err;
  EXPECT_EQ(err.find('\x1b'), std::string::npos);
  EXPECT_NE(error_of("CUSTOMAR_ALGO", "\x1b[2J").find("\\x1B[2J"), std::string::npos);
  EXPECT_EQ(error_of("CUSTOMAR_DEBUG_SUBSYS", "\x1b[2J").find('\x1b'), std::string::npos);
}
