// Run-time compilation with caching: in-process memo, then the disk cache, then NVRTC.
#pragma once

#include <string>
#include <vector>

#include "jit/cache.h"

namespace customar::detail {

struct JitResult {
  std::vector<char> cubin;
  enum class Source { kMemo, kDisk, kCompiled } source = Source::kCompiled;
  double ms = 0;     ///< wall time of this call (compile, disk read or memo lookup)
  std::string note;  ///< why a disk entry was rejected or could not be stored, if it happened
};

/// NVRTC options for a compute capability: the exact architecture, with the arch-specific 'a' variant on sm_90 and
/// sm_100 (Hopper / Blackwell features), C++17.
std::vector<std::string> jit_options(int sm);

/// Returns the CUBIN of `source` for `sm`. `cache_dir` empty: the default directory (CUSTOMAR_CACHE_DIR...).
/// Honours CUSTOMAR_JIT_DUMP (source, PTX and log written there on a compile). Thread-safe. Throws Error with the
/// compile log on failure.
JitResult jit_compile(const std::string& name, const std::string& source, int sm, const std::string& cache_dir = "");

/// Forgets the in-process memo (tests measure the disk cache with it).
void jit_clear_memo();

}  // namespace customar::detail
