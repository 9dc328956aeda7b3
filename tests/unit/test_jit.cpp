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

// Every (world size 2..8) module for one architecture; each holds every kernel kind x dtype. One test per
// architecture: the whole matrix compiles five kernel kinds x three dtypes fourteen times, 80-100 s on one core, too
// close to the test timeout as one test; as two, ctest -j 2 (the CI) runs them side by side.
namespace {
void compiles_every_v2_module(int sm) {
  std::string dir = fresh_dir(sm == 80 ? "matrix80" : "matrix90");
  for (int world = 2; world <= 8; ++world) {
    JitResult r = jit_compile(v2_module_name(world), v2_source(world), sm, dir);
    EXPECT_EQ(r.source, JitResult::Source::kCompiled);
    EXPECT_TRUE(looks_like_elf(r.cubin)) << "world " << world << " sm " << sm;
    for (const char* k : {"customar_v2_oneshot_push_bf16", "customar_v2_oneshot_pull_f16", "customar_v2_twoshot_f32",
                          "customar_v2_oneshot_push1_f16", "customar_v2_oneshot_pushw_f32"})
      EXPECT_NE(std::string(r.cubin.begin(), r.cubin.end()).find(k), std::string::npos) << k;
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

// CUSTOMAR_V2_SOURCE: the file's text replaces the built-in device part (entry points still appended, so a copy of
// the built-in text compiles to the same kernels; a dumped module's own entry points are dropped), and a missing or
// empty file is a ConfigError naming the variable.
TEST(Jit, V2DeviceSourceFromAFile) {
  const std::string builtin = v2_device_source("");
  ASSERT_NE(builtin.find("oneshot_push_body"), std::string::npos);
  const std::string dir = fresh_dir("v2src");
  fs::create_directories(dir);
  const std::string file = dir + "/variant.cu";
  std::ofstream(file) << builtin << "\n// variant\n";
  const std::string text = v2_device_source(file);
  EXPECT_EQ(text, builtin + "\n// variant\n");
  const std::string src = v2_source(2, text);
  EXPECT_EQ(src.rfind(text, 0), 0u) << "the device part comes first";
  EXPECT_NE(src.find("customar_v2_oneshot_push_bf16"), std::string::npos);
  EXPECT_TRUE(looks_like_elf(jit_compile(v2_module_name(2), src, 90, dir).cubin));
  // A whole generated module (what CUSTOMAR_JIT_DUMP writes) gives back its device part, not doubled entry points.
  std::ofstream(dir + "/dumped.cu") << src;
  EXPECT_EQ(v2_device_source(dir + "/dumped.cu"), text);
  for (const std::string& bad : {dir + "/missing.cu", dir + "/empty.cu"}) {
    if (bad.find("empty") != std::string::npos) std::ofstream{bad};
    try {
      v2_device_source(bad);
      FAIL() << "no throw for " << bad;
    } catch (const ConfigError& e) {
      EXPECT_NE(std::string(e.what()).find("CUSTOMAR_V2_SOURCE=" + bad), std::string::npos) << e.what();
    }
  }
  fs::remove_all(dir);
}

TEST(Jit, CacheKeySeparatesParts) {
  EXPECT_NE(make_cache_key({"ab", "c"}), make_cache_key({"a", "bc"}));
  EXPECT_EQ(make_cache_key({"x", "y"}), make_cache_key({"x", "y"}));
  EXPECT_EQ(make_cache_key({"x"}).hex().size(), 32u);
}

TEST(V2Launch, PushShapeCoversEveryVectorOncePerThreadUpToTheCap) {
  // A message that fits one block gets one block of whole warps.
  EXPECT_EQ(push_shape(1, 128, 0).blocks, 1u);
  EXPECT_EQ(push_shape(1, 128, 0).threads, 32u);
  EXPECT_EQ(push_shape(64, 128, 0).threads, 64u);
  EXPECT_EQ(push_shape(100, 128, 0).threads, 128u);
  EXPECT_EQ(push_shape(256, 128, 0).blocks, 1u);
  // Then blocks of 128 threads.
  EXPECT_EQ(push_shape(257, 128, 0).blocks, 3u);
  EXPECT_EQ(push_shape(257, 128, 0).threads, 128u);
  EXPECT_EQ(push_shape(4096, 128, 128).blocks, 32u);
  EXPECT_EQ(push_shape(size_t(1) << 20, 128, 128).blocks, unsigned(kMaxPushBlocks));
  // Built-in shape: 128-thread blocks below 1 MiB, 256-thread blocks from it, at most 1024 threads per agreed SM where
  // they fit, so one vector per thread up to 2 MiB on 128 SMs.
  const int wide = kPushThreadsPerSm;
  EXPECT_EQ(push_shape(kWidePushVecs - 1, 128, 0, wide).threads, 128u);
  EXPECT_EQ(push_shape(kWidePushVecs - 1, 128, 0, wide).blocks, 512u);
  EXPECT_EQ(push_shape(kWidePushVecs, 128, 0, wide).threads, 256u);
  EXPECT_EQ(push_shape(kWidePushVecs, 128, 0, wide).blocks, 256u);
  EXPECT_EQ(push_shape(2 * kWidePushVecs, 128, 0, wide).blocks, 512u);
  EXPECT_EQ(push_shape(4 * kWidePushVecs, 128, 0, wide).blocks, 512u);
  EXPECT_EQ(push_shape(2 * kWidePushVecs, 64, 0, wide).blocks, 256u);
  // Where four 256-thread blocks do not fit (the push's registers at 8 ranks), the cap is what __launch_bounds__(512)
  // guarantees: two such blocks per SM.
  EXPECT_EQ(push_shape(2 * kWidePushVecs, 128, 0, kSafePushThreadsPerSm).blocks, 256u);
  EXPECT_EQ(push_shape(2 * kWidePushVecs, 128, 0).blocks, 256u);  // the default is the safe cap
  EXPECT_EQ(push_shape(kWidePushVecs - 1, 128, 0).blocks, 512u);  // 128-thread blocks: four per SM either way
  // A block-size override keeps the safe cap too: one 512-thread block per SM.
  EXPECT_EQ(push_shape(kWidePushVecs, 128, 512, wide).blocks, 128u);
  EXPECT_EQ(push_shape(kWidePushVecs, 128, 256, wide).blocks, 256u);
  EXPECT_EQ(push_shape(513, 128, 512).blocks, 2u);
  EXPECT_EQ(push_shape(513, 128, 512).threads, 512u);
  for (int threads : {0, 32, 128, 256, 512}) {
    for (size_t nvec : {size_t(1), size_t(31), size_t(1000), size_t(65536), size_t(1) << 22}) {
      PushShape s = push_shape(nvec, 128, threads, kPushThreadsPerSm);
      EXPECT_GE(s.threads, 32u);
      EXPECT_LE(s.threads, 512u);
      EXPECT_EQ(s.threads % 32, 0u);
      EXPECT_GE(s.blocks, 1u);
      // Every vector has a thread unless the grid is at its cap (the kernel loops). The cap is also what the push's
      // state slots cover (block b reads slot b of kMaxPushBlocks), so a bigger grid would read past them.
      EXPECT_LE(s.blocks, unsigned(kMaxPushBlocks));
      const size_t cap_threads = size_t(128) * (threads > 0 ? kSafePushThreadsPerSm : kPushThreadsPerSm);
      EXPECT_LE(size_t(s.blocks) * s.threads, cap_threads);
      if (s.blocks < unsigned(kMaxPushBlocks) && size_t(s.blocks) * s.threads < cap_threads) {
        EXPECT_GE(size_t(s.blocks) * s.threads, nvec) << threads << " " << nvec;
      }
    }
  }
}

TEST(V2Launch, PushShapeGivesEveryDecodeSizeOneThreadPerVector) {
  // The push runs straight-line code (no loop back edges, 0.12 us at 1 KiB: bench/NOTES.md 14) only when every vector
  // has its own thread, which also keeps the rank's own share in a register. With the built-in shape and 128 agreed
  // blocks (any GPU with 128+ SMs) that must hold up to 2 MiB of 16-byte vectors where the wide grid fits, 1 MiB
  // where it does not.
  for (size_t nvec : {size_t(1), size_t(64), size_t(256), size_t(257), size_t(1000), size_t(4096), size_t(32768),
                      size_t(65535), size_t(65536), size_t(131072)}) {
    PushShape s = push_shape(nvec, 128, 0, kPushThreadsPerSm);
    EXPECT_GE(size_t(s.blocks) * s.threads, nvec) << nvec;
    if (nvec <= 65536) {
      PushShape safe = push_shape(nvec, 128, 0, kSafePushThreadsPerSm);
      EXPECT_GE(size_t(safe.blocks) * safe.threads, nvec) << nvec;
    }
  }
  // Past it the grid is capped and the kernel loops.
  PushShape big = push_shape(131073, 128, 0, kPushThreadsPerSm);
  EXPECT_LT(size_t(big.blocks) * big.threads, size_t(131073));
}

TEST(V2Launch, PushBuffersHoldOneSlotPerPeer) {
  // A rank's own share never goes through its push buffers, so each of the three holds world - 1 slots.
  EXPECT_EQ(push_buffers_bytes(size_t(1) << 20, 2), size_t(3) << 20);
  EXPECT_EQ(push_buffers_bytes(size_t(1) << 20, 8), size_t(21) << 20);
  EXPECT_EQ(region_bytes(size_t(4) << 20, size_t(1) << 20, 4), kStagingOffset + (size_t(8) << 20) + (size_t(9) << 20));
}
