// The few NVML entry points customar uses, declared here (the build machine has no nvml.h) and loaded with dlopen
// from libnvidia-ml.so.1, as NCCL does.
#pragma once

#include <string>

namespace customar::detail {

/// Results of one pair query.
struct NvmlPair {
  bool known = false;   ///< NVML answered for both GPUs.
  bool nvlink = false;  ///< P2P status OK for the NVLink capability.
  bool p2p = false;     ///< P2P status OK for both read and write.
};

/// True when NVML loaded and initialised (once, cached).
bool nvml_ok();
/// Why NVML is unavailable ("" when it is available).
std::string nvml_error();
/// Queries a pair of GPUs by PCI bus id. known=false when NVML is unavailable or does not know either id.
NvmlPair nvml_pair(const std::string& bus_a, const std::string& bus_b);

}  // namespace customar::detail
