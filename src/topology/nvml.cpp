#include "topology/nvml.h"

#include <mutex>

#include "common/dynlib.h"
#include "common/log.h"

namespace customar::detail {

namespace {

// From NVML's public API (nvml.h); values are part of its ABI.
using nvmlReturn_t = int;
using nvmlDevice_t = struct nvmlDevice_st*;
constexpr nvmlReturn_t kNvmlSuccess = 0;
constexpr int kP2PCapsRead = 0;
constexpr int kP2PCapsWrite = 1;
constexpr int kP2PCapsNvlink = 2;
constexpr int kP2PStatusOk = 0;

struct Nvml {
  DynLib lib;
  nvmlReturn_t (*init)() = nullptr;
  const char* (*error_string)(nvmlReturn_t) = nullptr;
  nvmlReturn_t (*handle_by_bus)(const char*, nvmlDevice_t*) = nullptr;
  nvmlReturn_t (*p2p_status)(nvmlDevice_t, nvmlDevice_t, int, int*) = nullptr;
  bool ok = false;
  std::string error;
};

Nvml& nvml() {
  static Nvml n;
  static std::once_flag once;
  std::call_once(once, [] {
    if (!n.lib.open({"libnvidia-ml.so.1"})) {
      n.error = "libnvidia-ml.so.1 not loadable: " + n.lib.error();
      return;
    }
    if (!n.lib.bind("nvmlInit_v2", &n.init) || !n.lib.bind("nvmlErrorString", &n.error_string) ||
        !n.lib.bind("nvmlDeviceGetHandleByPciBusId_v2", &n.handle_by_bus) ||
        !n.lib.bind("nvmlDeviceGetP2PStatus", &n.p2p_status)) {
      n.error = "libnvidia-ml.so.1 lacks an entry point customar needs";
      return;
    }
    nvmlReturn_t r = n.init();
    if (r != kNvmlSuccess) {
      n.error = std::string("nvmlInit_v2 failed: ") + n.error_string(r);
      return;
    }
    n.ok = true;
  });
  return n;
}

}  // namespace

bool nvml_ok() { return nvml().ok; }
std::string nvml_error() { return nvml().error; }

NvmlPair nvml_pair(const std::string& bus_a, const std::string& bus_b) {
  NvmlPair out;
  Nvml& n = nvml();
  if (!n.ok) return out;
  nvmlDevice_t a = nullptr, b = nullptr;
  if (n.handle_by_bus(bus_a.c_str(), &a) != kNvmlSuccess || n.handle_by_bus(bus_b.c_str(), &b) != kNvmlSuccess) {
    CUSTOMAR_INFO("TOPO", "NVML does not know %s or %s", bus_a.c_str(), bus_b.c_str());
    return out;
  }
  out.known = true;
  int st = -1;
  out.nvlink = n.p2p_status(a, b, kP2PCapsNvlink, &st) == kNvmlSuccess && st == kP2PStatusOk;
  int rd = -1, wr = -1;
  out.p2p = n.p2p_status(a, b, kP2PCapsRead, &rd) == kNvmlSuccess && rd == kP2PStatusOk &&
            n.p2p_status(a, b, kP2PCapsWrite, &wr) == kNvmlSuccess && wr == kP2PStatusOk;
  return out;
}

}  // namespace customar::detail
