// CUSTOMAR_JIT_DUMP (ctest points it at jit_dump_hostile/ in the build tree, which each case creates or removes) is a
// diagnostic: a directory that does not exist is one warning, not a silent drop and not a failed compile, and a link
// planted where a dump file goes is never written through.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "jit/compiler.h"

namespace fs = std::filesystem;
using namespace customar::detail;

namespace {

const char* dump_dir() { return std::getenv("CUSTOMAR_JIT_DUMP"); }

std::string tiny_kernel(int i) {
  return "extern \"C\" __global__ void k" + std::to_string(i) + "(int* p) { p[0] = " + std::to_string(i) + "; }";
}

std::string scratch_cache() {
  std::string d = testing::TempDir() + "/customar_jit_dump_hostile_" + std::to_string(getpid());
  fs::remove_all(d);
  return d;
}

size_t count(const std::string& haystack, const std::string& needle) {
  size_t n = 0;
  for (size_t pos = haystack.find(needle); pos != std::string::npos; pos = haystack.find(needle, pos + 1)) ++n;
  return n;
}

}  // namespace

TEST(JitDumpHostile, AMissingDirectoryIsOneWarningAndTheCompilesGoOn) {
  if (dump_dir() == nullptr) GTEST_SKIP() << "CUSTOMAR_JIT_DUMP is set by ctest";
  fs::remove_all(dump_dir());
  std::string cache = scratch_cache();
  testing::internal::CaptureStderr();
  for (int i = 0; i < 2; ++i)
    EXPECT_EQ(jit_compile("dump_missing_" + std::to_string(i), tiny_kernel(i), 80, cache).source,
              JitResult::Source::kCompiled);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_EQ(count(err, "is not an existing directory"), 1u) << err;
  EXPECT_FALSE(fs::exists(dump_dir()));
  fs::remove_all(cache);
}

TEST(JitDumpHostile, ALinkPlantedAtADumpFileIsNotWrittenThrough) {
  if (dump_dir() == nullptr) GTEST_SKIP() << "CUSTOMAR_JIT_DUMP is set by ctest";
  fs::remove_all(dump_dir());
  fs::create_directories(dump_dir());
  fs::path victim = fs::path(dump_dir()).parent_path() / "jit_dump_hostile_victim";
  std::ofstream(victim) << "someone else's";
  fs::create_symlink(victim, fs::path(dump_dir()) / "dump_link.cu");
  std::string cache = scratch_cache();
  testing::internal::CaptureStderr();
  EXPECT_EQ(jit_compile("dump_link", tiny_kernel(7), 80, cache).source, JitResult::Source::kCompiled);
  std::string err = testing::internal::GetCapturedStderr();
  EXPECT_NE(err.find("is a symbolic link"), std::string::npos) << err;
  std::ifstream f(victim);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(f), {}), "someone else's");
  EXPECT_TRUE(fs::exists(fs::path(dump_dir()) / "dump_link.ptx")) << "the other dump files are still written";
  fs::remove(victim);
  fs::remove_all(dump_dir());
  fs::remove_all(cache);
}
