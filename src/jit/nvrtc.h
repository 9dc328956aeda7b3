// NVRTC, loaded with dlopen so that customar loads on machines without it (V2 is then reported unavailable).
#pragma once

#include <string>
#include <vector>

namespace customar::detail {

/// Result of one compilation.
struct NvrtcOutput {
  std::vector<char> cubin;
  std::string ptx;  ///< filled only when asked for (CUSTOMAR_JIT_DUMP)
  std::string log;
};

/// True when libnvrtc loaded and has every entry point customar uses.
bool nvrtc_loaded();
/// "major.minor" of the loaded NVRTC, or "" when not loaded.
std::string nvrtc_version();
/// Compiles `source` (named `name` in messages) with `options` to a CUBIN. Throws Error with the compile log on
/// failure, or when NVRTC is not loaded.
NvrtcOutput nvrtc_compile(const std::string& name, const std::string& source, const std::vector<std::string>& options,
                          bool want_ptx);

}  // namespace customar::detail
