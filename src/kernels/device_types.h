// The device type of every DataType, for host code that instantiates one kernel per dtype (the virtual-rank
// reference all-reduce, the GPU test harness).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstdint>
#include <string>

#include "customar/error.h"
#include "customar/types.h"

namespace customar::detail {

/// Calls f(T{}) with T the device type of `dtype`; InvalidArgument for a value outside the enum.
template <typename F>
void with_device_type(DataType dtype, F&& f) {
  switch (dtype) {
    case DataType::kFloat16:
      return f(__half{});
    case DataType::kBFloat16:
      return f(__nv_bfloat16{});
    case DataType::kFloat32:
      return f(float{});
    case DataType::kFloat64:
      return f(double{});
    case DataType::kInt8:
      return f(int8_t{});
    case DataType::kUInt8:
      return f(uint8_t{});
    case DataType::kInt32:
      return f(int32_t{});
    case DataType::kUInt32:
      return f(uint32_t{});
    case DataType::kInt64:
      return f(int64_t{});
    case DataType::kUInt64:
      return f(uint64_t{});
    case DataType::kFloat8E4M3:
      return f(__nv_fp8_e4m3{});
    case DataType::kFloat8E5M2:
      return f(__nv_fp8_e5m2{});
  }
  throw InvalidArgument("unknown DataType " + std::to_string(static_cast<int>(dtype)));
}

}  // namespace customar::detail
