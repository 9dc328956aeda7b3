// The test data of every GPU check, as device functions: a rank's value at an index is a pure function of (seed,
// rank, index), so any rank can regenerate any other rank's input. Shared by the all-reduce check (check_kernels.cu)
// and the all-reduce + RMSNorm check (norm_check.cu).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <type_traits>

#include "check_kernels.h"
#include "kernels/device_types.h"

namespace customar::test {

__device__ inline double value_of(uint64_t seed, int rank, size_t i, Values kind) {
  uint64_t h = mix(seed * 0x9e3779b97f4a7c15ULL + uint64_t(rank) * 0x632be59bd9b4e019ULL + i);
  if (kind == Values::kSmallInt) return double(int64_t(h % 16) - 8);
  if (kind == Values::kSentinels) {
    // Every fourth element -0.0, the next one -2^-134: in fp32 the push's sentinel word 0x80008000, in fp16/bf16 a
    // -0.0 again; small integers between.
    if (i % 4 == 1) return -0.0;
    if (i % 4 == 2) return -ldexp(1.0, -134);
    return double(int64_t(h % 16) - 8);
  }
  return double(h >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

template <typename T>
__device__ inline T to_t(double v) {
  if constexpr (std::is_same_v<T, float> || std::is_same_v<T, double>)
    return T(v);
  else if constexpr (std::is_same_v<T, __half>)
    return __double2half(v);
  else if constexpr (std::is_same_v<T, __nv_bfloat16>)
    return __double2bfloat16(v);
  else if constexpr (std::is_integral_v<T>)
    return static_cast<T>(static_cast<long long>(v));  // small integers only; unsigned types wrap like NCCL's sums
  else
    return T(float(v));  // fp8
}
__device__ inline double to_d(float v) { return v; }
__device__ inline double to_d(double v) { return v; }
__device__ inline double to_d(__half v) { return __half2float(v); }
__device__ inline double to_d(__nv_bfloat16 v) { return __bfloat162float(v); }
__device__ inline double to_d(__nv_fp8_e4m3 v) { return float(v); }
__device__ inline double to_d(__nv_fp8_e5m2 v) { return float(v); }
template <typename T>
__device__ inline std::enable_if_t<std::is_integral_v<T>, double> to_d(T v) {
  return double(v);
}

using detail::with_device_type;

}  // namespace customar::test
