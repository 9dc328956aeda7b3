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
      throw InvalidArgument("unknown DataType " + std::to_string(static_cast<int>(dtype)));
  }
}

// Launches the V1 kernel `Pick::template get<T, W>()` for this call's dtype and world size, on the grid v1_grid()
// gives, with the alignment flags of the caller's pointers.
template <typename Pick>
void launch_v1_kernel(Algo algo, const DeviceHandle& h, const void* in, void* out, size_t count, DataType dtype,
                      cudaStream_t stream) {
  const size_t bytes = count * dtype_size(dtype);
  const int grid = v1_grid(algo, bytes, h.world, h.max_blocks);
  const bool in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  const bool out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;
  with_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    with_world(h.world, [&](auto w) {
      auto* kernel = Pick::template get<T, decltype(w)::value>();
      kernel<<<grid, kThreads, 0, stream>>>(h, static_cast<const T*>(in), static_cast<T*>(out), bytes / 16, in_aligned,
                                            out_aligned);
    });
  });
  CUSTOMAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace customar::detail
