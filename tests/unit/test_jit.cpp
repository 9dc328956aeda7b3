// NVRTC needs no GPU: every V2 module is compiled here, on CI, and the kernel cache is exercised for real.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "customar/error.h"
#include "customar/launcher.h"
#include "jit/cache.h"
#include "jit/compiler.h"
#include "jit/nvrtc.h"
#include "kernels/v2/v2_kernels.h"

using namespace customar;
using namespace customar::detail;
namespace fs = std::filesystem;

namespace {
std::string fresh_dir(const char* tag) {
  std::string d = testing::TempDir() + "/customar_jit_" + tag + "_" + std::to_string(getpid());
  fs::remove_all(d);
  return d;
}
bool looks_like_elf(const std::vector<char>& b) {
  return b.size() > 4 && b[0] == 0x7f && b[1] == 'E' && b[2] == 'L' && b[3] == 'F';
}
}  // namespace

TEST(Jit, NvrtcIsLoadable) {
  ASSERT_TRUE(nvrtc_loaded()) << "CI installs the CUDA toolkit with NVRTC";
  EXPECT_FALSE(nvrtc_version().empty());
}

// Every (world size 2..8) module for one architecture; each holds every kernel record x dtype. One test per
// architecture: the whole matrix takes 80-100 s on one core, too close to the test timeout as one test; as two,
// ctest -j 2 (the CI) runs them side by side.
namespace {
void compiles_every_v2_module(int sm) {
  std::string dir = fresh_dir(sm == 80 ? "matrix80" : "matrix90");
  for (int world = 2; world <= 8; ++world) {
    JitResult r = jit_compile(v2_module_name(world), v2_source(world), sm, dir);
    EXPECT_EQ(r.source, JitResult::Source::kCompiled);
    EXPECT_TRUE(looks_like_elf(r.cubin)) << "world " << world << " sm " << sm;
    const std::string image(r.cubin.begin(), r.cubin.end());
    for (const KernelVariant& v : kKernelVariants)
      for (DataType d : {DataType::kFloat16, DataType::kBFloat16, DataType::kFloat32})
        EXPECT_NE(image.find(v2_entry_name(v.id, d)), std::string::npos) << v2_entry_name(v.id, d);
  }
  fs::remove_all(dir);
}
}  // namespace

TEST(Jit, CompilesEveryV2ModuleForAmpere) { compiles_every_v2_module(80); }
TEST(Jit, CompilesEveryV2ModuleForHopper) { compiles_every_v2_module(90); }

TEST(Jit, CacheMissThenHitThenMemo) {
  std::string dir = fresh_dir("hit");
  jit_clear_memo();
  JitResult cold = jit_compile(v2_module_name(4), v2_source(4), 90, dir);
  EXPECT_EQ(cold.source, JitResult::Source::kCompiled);
  JitResult memo = jit_compile(v2_module_name(4), v2_source(4), 90, dir);
  EXPECT_EQ(memo.source, JitResult::Source::kMemo);
  jit_clear_memo();
  JitResult warm = jit_compile(v2_module_name(4), v2_source(4), 90, dir);
  EXPECT_EQ(warm.source, JitResult::Source::kDisk);
  EXPECT_EQ(warm.cubin, cold.cubin);
  EXPECT_LT(warm.ms, cold.ms);
  std::printf("V2 module w4 sm_90: cold compile %.1f ms, warm (disk) %.1f ms, memo %.3f ms\n", cold.ms, warm.ms,
              memo.ms);
  // The directory is private.
  struct stat st {};
  ASSERT_EQ(stat(dir.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  // A different source is a different entry.
  jit_clear_memo();
  EXPECT_EQ(jit_compile(v2_module_name(4), v2_source(4) + "\n// changed\n", 90, dir).source,
            JitResult::Source::kCompiled);
  fs::remove_all(dir);
}

TEST(Jit, CorruptOrTruncatedEntryIsRebuiltNeverLoaded) {
  std::string dir = fresh_dir("corrupt");
  jit_clear_memo();
  JitResult cold = jit_compile(v2_module_name(2), v2_source(2), 80, dir);
  std::vector<std::string> parts;
  std::string path;
  for (auto& e : fs::directory_iterator(dir)) path = e.path();
  ASSERT_FALSE(path.empty());
  // Flip a byte in the payload.
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(200);
    char c = 0;
    f.read(&c, 1);
    f.seekp(200);
    c ^= 0x5a;
    f.write(&c, 1);
  }
  jit_clear_memo();
  JitResult r1 = jit_compile(v2_module_name(2), v2_source(2), 80, dir);
  EXPECT_EQ(r1.source, JitResult::Source::kCompiled);
  EXPECT_NE(r1.note.find("checksum"), std::string::npos) << r1.note;
  EXPECT_EQ(r1.cubin, cold.cubin);
  // Truncate it.
  fs::resize_file(path, fs::file_size(path) / 2);
  jit_clear_memo();
  JitResult r2 = jit_compile(v2_module_name(2), v2_source(2), 80, dir);
  EXPECT_EQ(r2.source, JitResult::Source::kCompiled);
  EXPECT_NE(r2.note.find("truncated"), std::string::npos) << r2.note;
  // Writable by others: refused.
  chmod(path.c_str(), 0666);
  jit_clear_memo();
  JitResult r3 = jit_compile(v2_module_name(2), v2_source(2), 80, dir);
  EXPECT_EQ(r3.source, JitResult::Source::kCompiled);
  EXPECT_NE(r3.note.find("writable"), std::string::npos) << r3.note;
  // And the rebuilt entry is good again.
  jit_clear_memo();
  EXPECT_EQ(jit_compile(v2_module_name(2), v2_source(2), 80, dir).source, JitResult::Source::kDisk);
  fs::remove_all(dir);
}

TEST(Jit, ConcurrentProcessesWriteOneValidEntry) {
  std::string dir = fresh_dir("race");
  // Four processes compile the same module into an empty cache at once; each must get a valid CUBIN, and the entry
  // left behind must load (no torn file), with no temporary files left.
  auto exits = launch(
      4,
      [&](Group& g) {
        g.barrier();
        JitResult r = jit_compile(v2_module_name(3), v2_source(3), 90, dir);
        if (!looks_like_elf(r.cubin)) return 3;
        return 0;
      },
      LaunchOptions{300});
  for (const auto& e : exits) EXPECT_EQ(e.exit_code, 0) << "rank " << e.rank;
  int entries = 0;
  for (auto& e : fs::directory_iterator(dir)) {
    EXPECT_EQ(e.path().filename().string().rfind(".tmp", 0), std::string::npos) << "temporary file left";
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  jit_clear_memo();
  EXPECT_EQ(jit_compile(v2_module_name(3), v2_source(3), 90, dir).source, JitResult::Source::kDisk);
  fs::remove_all(dir);
}

TEST(Jit, CompileErrorIsAClearError) {
  try {
    jit_compile("broken", "extern \"C\" __global__ void k() { this is not code; }", 90, fresh_dir("broken"));
    FAIL() << "no throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("nvrtcCompileProgram failed for broken"), std::string::npos) << e.what();
  }
}

TEST(Jit, CacheKeySeparatesParts) {
  EXPECT_NE(make_cache_key({"ab", "c"}), make_cache_key({"a", "bc"}));
  EXPECT_EQ(make_cache_key({"x", "y"}), make_cache_key({"x", "y"}));
  EXPECT_EQ(make_cache_key({"x"}).hex().size(), 32u);
}

TEST(V2Launch, PushBuffersHoldOneSlotPerPeer) {
  // A rank's own share never goes through its push buffers, so each of the three holds world - 1 slots.
  EXPECT_EQ(push_buffers_bytes(size_t(1) << 20, 2), size_t(3) << 20);
  EXPECT_EQ(push_buffers_bytes(size_t(1) << 20, 8), size_t(21) << 20);
  EXPECT_EQ(region_bytes(size_t(4) << 20, size_t(1) << 20, 4), kStagingOffset + (size_t(8) << 20) + (size_t(9) << 20));
}
