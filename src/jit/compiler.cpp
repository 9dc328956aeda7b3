#include "jit/compiler.h"

#include <sys/stat.h>

#include <chrono>
#include <map>
#include <mutex>

#include "common/files.h"
#include "common/log.h"
#include "common/text.h"
#include "customar/env.h"
#include "customar/error.h"
#include "jit/nvrtc.h"

namespace customar::detail {

namespace {

std::mutex g_memo_mutex;
std::map<std::pair<uint64_t, uint64_t>, std::vector<char>>& memo() {
  static std::map<std::pair<uint64_t, uint64_t>, std::vector<char>> m;
  return m;
}

// CUSTOMAR_JIT_DUMP is a diagnostic: a dump that cannot be written is a warning, never a failed compile. A
// directory that does not exist is said once per process (every compile would say it again); each other failure
// is said when it happens.
void dump(const std::string& dir, const std::string& name, const std::string& source, const NvrtcOutput& out) {
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    static std::once_flag warned;
    std::call_once(warned, [&] {
      CUSTOMAR_WARN("JIT", "CUSTOMAR_JIT_DUMP=%s is not an existing directory: no kernel is dumped",
                    text::printable(dir).c_str());
    });
    return;
  }
  for (const auto& [ext, contents] :
       {std::pair<const char*, const std::string&>{".cu", source}, {".ptx", out.ptx}, {".log", out.log}}) {
    try {
      files::write_file_atomic(dir + "/" + name + ext, contents, 0644);
    } catch (const Error& e) {
      CUSTOMAR_WARN("JIT", "CUSTOMAR_JIT_DUMP: %s", e.what());
    }
  }
}

}  // namespace

std::vector<std::string> jit_options(int sm) {
  std::string arch = "sm_" + std::to_string(sm);
  // 'a' targets unlock arch-specific instructions; code built for them runs only on that exact architecture, which
  // is what a per-device run-time compile is for.
  if (sm == 90 || sm == 100) arch += "a";
  return {"--gpu-architecture=" + arch, "-std=c++17", "-lineinfo", "-default-device"};
}

void jit_clear_memo() {
  std::lock_guard<std::mutex> lock(g_memo_mutex);
  memo().clear();
}

JitResult jit_compile(const std::string& name, const std::string& source, int sm, const std::string& cache_dir) {
  auto t0 = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  if (!nvrtc_loaded()) throw Error("NVRTC is not available: V2 kernels cannot be compiled");
  std::vector<std::string> options = jit_options(sm);
  std::vector<std::string> parts = {name, source, nvrtc_version(), std::to_string(sm)};
  parts.insert(parts.end(), options.begin(), options.end());
  CacheKey key = make_cache_key(parts);
  JitResult r;
  std::lock_guard<std::mutex> lock(g_memo_mutex);  // also keeps two threads from compiling the same module at once
  auto it = memo().find({key.hi, key.lo});
  if (it != memo().end()) {
    r.cubin = it->second;
    r.source = JitResult::Source::kMemo;
    r.ms = elapsed();
    return r;
  }
  DiskCache disk(cache_dir);
  std::string why;
  CacheState state = disk.enabled() ? disk.load(key, &r.cubin, &why) : CacheState::kMiss;
  if (state == CacheState::kHit) {
    r.source = JitResult::Source::kDisk;
  } else {
    if (state == CacheState::kRejected) {
      r.note = "rejected cache entry (" + why + "), recompiled";
      CUSTOMAR_WARN("JIT", "%s", r.note.c_str());
    }
    const std::string& dump_dir = env().jit_dump;
    NvrtcOutput out = nvrtc_compile(name, source, options, !dump_dir.empty());
    if (!dump_dir.empty()) dump(dump_dir, name, source, out);
    r.cubin = std::move(out.cubin);
    r.source = JitResult::Source::kCompiled;
    if (disk.enabled() && !disk.store(key, r.cubin, &why)) {
      r.note += (r.note.empty() ? "" : "; ") + std::string("not cached on disk: ") + why;
      CUSTOMAR_WARN("JIT", "kernel cache disabled for this compile: %s", why.c_str());
    }
  }
  memo()[{key.hi, key.lo}] = r.cubin;
  r.ms = elapsed();
  CUSTOMAR_INFO("JIT", "%s for sm_%d: %s in %.1f ms", name.c_str(), sm,
                r.source == JitResult::Source::kDisk ? "disk cache hit" : "compiled", r.ms);
  return r;
}

}  // namespace customar::detail
