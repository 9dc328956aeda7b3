// CUSTOMAR_JIT_DUMP (set by ctest for this binary) receives the source, PTX and log of each compile.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>

#include "jit/compiler.h"
#include "kernels/v2/v2_kernels.h"

namespace fs = std::filesystem;
using namespace customar::detail;

TEST(JitDump, WritesSourcePtxAndLog) {
  const char* dir = std::getenv("CUSTOMAR_JIT_DUMP");
  ASSERT_NE(dir, nullptr);
  fs::create_directories(dir);
  std::string cache = std::string(dir) + "/cache";
  fs::remove_all(cache);
  JitResult r = jit_compile(v2_module_name(2), v2_source(2), 90, cache);
  ASSERT_EQ(r.source, JitResult::Source::kCompiled);
  std::string base = std::string(dir) + "/" + v2_module_name(2);
  EXPECT_GT(fs::file_size(base + ".cu"), 1000u);
  EXPECT_GT(fs::file_size(base + ".ptx"), 1000u);
  EXPECT_TRUE(fs::exists(base + ".log"));
  fs::remove_all(dir);
}
