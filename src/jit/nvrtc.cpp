#include "jit/nvrtc.h"

#include <nvrtc.h>

#include <mutex>

#include "common/dynlib.h"
#include "customar/error.h"

namespace customar::detail {

namespace {

// Types come from the toolkit's nvrtc.h; the functions are looked up at run time, never linked.
struct Nvrtc {
  DynLib lib;
  decltype(&nvrtcVersion) version = nullptr;
  decltype(&nvrtcGetErrorString) error_string = nullptr;
  decltype(&nvrtcCreateProgram) create = nullptr;
  decltype(&nvrtcDestroyProgram) destroy = nullptr;
  decltype(&nvrtcCompileProgram) compile = nullptr;
  decltype(&nvrtcGetProgramLogSize) log_size = nullptr;
  decltype(&nvrtcGetProgramLog) log = nullptr;
  decltype(&nvrtcGetCUBINSize) cubin_size = nullptr;
  decltype(&nvrtcGetCUBIN) cubin = nullptr;
  decltype(&nvrtcGetPTXSize) ptx_size = nullptr;
  decltype(&nvrtcGetPTX) ptx = nullptr;
  bool ok = false;
  std::string ver;
};

Nvrtc& nvrtc() {
  static Nvrtc n;
  static std::once_flag once;
  std::call_once(once, [] {
    // Versioned names first (the unversioned one exists only with the toolkit's development files), then the
    // toolkit's default location for processes whose library path does not include it.
    if (!n.lib.open({"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so", "/usr/local/cuda/lib64/libnvrtc.so.13"}))
      return;
    n.ok = n.lib.bind("nvrtcVersion", &n.version) && n.lib.bind("nvrtcGetErrorString", &n.error_string) &&
           n.lib.bind("nvrtcCreateProgram", &n.create) && n.lib.bind("nvrtcDestroyProgram", &n.destroy) &&
           n.lib.bind("nvrtcCompileProgram", &n.compile) && n.lib.bind("nvrtcGetProgramLogSize", &n.log_size) &&
           n.lib.bind("nvrtcGetProgramLog", &n.log) && n.lib.bind("nvrtcGetCUBINSize", &n.cubin_size) &&
           n.lib.bind("nvrtcGetCUBIN", &n.cubin) && n.lib.bind("nvrtcGetPTXSize", &n.ptx_size) &&
           n.lib.bind("nvrtcGetPTX", &n.ptx);
    int major = 0, minor = 0;
    if (n.ok && n.version(&major, &minor) == NVRTC_SUCCESS)
      n.ver = std::to_string(major) + "." + std::to_string(minor);
    else
      n.ok = false;
  });
  return n;
}

}  // namespace

bool nvrtc_loaded() { return nvrtc().ok; }
std::string nvrtc_version() { return nvrtc().ver; }

NvrtcOutput nvrtc_compile(const std::string& name, const std::string& source, const std::vector<std::string>& options,
                          bool want_ptx) {
  Nvrtc& n = nvrtc();
  if (!n.ok) throw Error("NVRTC is not available (libnvrtc.so.13 could not be loaded)");
  auto check = [&](nvrtcResult r, const char* call) {
    if (r != NVRTC_SUCCESS) throw Error(std::string(call) + " failed for " + name + ": " + n.error_string(r));
  };
  nvrtcProgram prog = nullptr;
  check(n.create(&prog, source.c_str(), (name + ".cu").c_str(), 0, nullptr, nullptr), "nvrtcCreateProgram");
  NvrtcOutput out;
  try {
    std::vector<const char*> opts;
    for (const auto& o : options) opts.push_back(o.c_str());
    nvrtcResult compiled = n.compile(prog, static_cast<int>(opts.size()), opts.data());
    size_t log_size = 0;
    check(n.log_size(prog, &log_size), "nvrtcGetProgramLogSize");
    out.log.resize(log_size);
    if (log_size > 0) check(n.log(prog, out.log.data()), "nvrtcGetProgramLog");
    while (!out.log.empty() && (out.log.back() == '\0' || out.log.back() == '\n')) out.log.pop_back();
    if (compiled != NVRTC_SUCCESS)
      throw Error("nvrtcCompileProgram failed for " + name + ": " + n.error_string(compiled) + "\n" + out.log);
    size_t size = 0;
    check(n.cubin_size(prog, &size), "nvrtcGetCUBINSize");
    out.cubin.resize(size);
    check(n.cubin(prog, out.cubin.data()), "nvrtcGetCUBIN");
    // PTX is only for CUSTOMAR_JIT_DUMP: a failure to get it must not fail the compilation.
    if (want_ptx && n.ptx_size(prog, &size) == NVRTC_SUCCESS) {
      out.ptx.resize(size);
      if (n.ptx(prog, out.ptx.data()) != NVRTC_SUCCESS) out.ptx.clear();
    }
  } catch (...) {
    n.destroy(&prog);
    throw;
  }
  n.destroy(&prog);
  return out;
}

}  // namespace customar::detail
