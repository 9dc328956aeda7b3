// V1 two-shot: the shared kernel body (kernels/device/twoshot.cuh), precompiled, without PDL.
#include "common/check.h"
#include "kernels/device/twoshot.cuh"
#include "kernels/v1/dispatch.cuh"
#include "kernels/v1/launch.h"

namespace customar::detail {

namespace {
template <typename T, int W>
__global__ void __launch_bounds__(kThreads)
    twoshot_kernel(DeviceHandle h, const T* in, T* out, size_t nvec, bool in_aligned, bool out_aligned) {
  twoshot_body<T, W, false>(h, in, out, nvec, in_aligned, out_aligned);
}
}  // namespace

void launch_twoshot(const DeviceHandle& h, const void* in, void* out, size_t count, DataType dtype,
                    cudaStream_t stream) {
  size_t bytes = count * dtype_size(dtype);
  int grid = v1_grid(Algo::kTwoshot, bytes, h.world, h.max_blocks);
  bool in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  bool out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;
  with_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    with_world(h.world, [&](auto w) {
      twoshot_kernel<T, decltype(w)::value><<<grid, kThreads, 0, stream>>>(
          h, static_cast<const T*>(in), static_cast<T*>(out), bytes / 16, in_aligned, out_aligned);
    });
  });
  CUSTOMAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace customar::detail
