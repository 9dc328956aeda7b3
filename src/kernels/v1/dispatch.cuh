// One small switch from run-time (world size, dtype) to template parameters, so kernels are written once.
#pragma once

#include <string>
#include <type_traits>

#include "common/check.h"
#include "customar/error.h"
#include "customar/types.h"
#include "kernels/device/common.cuh"
#include "kernels/v1/launch.h"

namespace customar::detail {

template <typename F>
void with_world(int world, F&& f) {
  switch (world) {
    case 2:
      f(std::integral_constant<int, 2>{});
      break;
    case 3:
      f(std::integral_constant<int, 3>{});
      break;
    case 4:
      f(std::integral_constant<int, 4>{});
      break;
    case 5:
      f(std::integral_constant<int, 5>{});
      break;
    case 6:
      f(std::integral_constant<int, 6>{});
      break;
    case 7:
      f(std::integral_constant<int, 7>{});
      break;
    case 8:
      f(std::integral_constant<int, 8>{});
      break;
    default:
      throw InvalidArgument("custom kernels serve world sizes 2..8, not " + std::to_string(world));
  }
}

template <typename F>
void with_dtype(DataType dtype, F&& f) {
  switch (dtype) {
    case DataType::kFloat16:
      f(f16{});
      break;
    case DataType::kBFloat16:
      f(bf16{});
      break;
    case DataType::kFloat32:
      f(float{});
      break;
    default:
      throw InvalidArgument("V1 has no kernel for dtype " + std::string(dtype_name(dtype)) +
                            " (fp16, bf16, fp32 only)");
  }
}

// Launches the V1 kernel `Pick::template get<T, W>()` for this call's dtype and world size on the plan's grid, with
// the alignment flags of the caller's pointers.
template <typename Pick>
void launch_v1_kernel(const Plan& plan, const DeviceHandle& h, const void* in, void* out, DataType dtype,
                      cudaStream_t stream) {
  const bool in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  const bool out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;
  with_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    with_world(h.world, [&](auto w) {
      auto* kernel = Pick::template get<T, decltype(w)::value>();
      kernel<<<plan.grid, plan.block, 0, stream>>>(h, static_cast<const T*>(in), static_cast<T*>(out), plan.nvec,
                                                   in_aligned, out_aligned);
    });
  });
  CUSTOMAR_CUDA_CHECK(cudaGetLastError());
}

// The kernel `Pick` gives for this dtype and world size.
template <typename Pick>
const void* v1_kernel(int world, DataType dtype) {
  const void* k = nullptr;
  with_dtype(dtype, [&](auto t) {
    with_world(world, [&](auto w) {
      k = reinterpret_cast<const void*>(Pick::template get<decltype(t), decltype(w)::value>());
    });
  });
  return k;
}

}  // namespace customar::detail
