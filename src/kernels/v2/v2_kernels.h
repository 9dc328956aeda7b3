// V2: the device bodies of kernels/device/ compiled at run time by NVRTC for this exact GPU and world size, with
// programmatic dependent launch, one entry point per kernel record (kernels/variants.h) and dtype.
#pragma once

#include <string>

#include "kernels/kernels.h"

namespace customar::detail {

/// The built-in device source: src/kernels/handle.h, shape.h and device/*.cuh as one text (embedded at build time).
std::string v2_device_source();

/// The NVRTC source of the V2 module for a world size: `device_source` followed by one extern "C" entry point
/// customar_v2_<record name>_<f16|bf16|f32> per record of kKernelVariants and custom dtype.
std::string v2_source(int world, const std::string& device_source);

/// v2_source() of the built-in device source.
std::string v2_source(int world);

/// Module name used in the cache key and dumps, e.g. "customar_v2_w4".
std::string v2_module_name(int world);

/// The entry point of `kernel` for a custom dtype, e.g. "customar_v2_push_wide_bf16".
std::string v2_entry_name(Kernel kernel, DataType dtype);

}  // namespace customar::detail
