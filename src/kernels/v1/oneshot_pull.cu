// V1 one-shot pull: the shared kernel body (kernels/device/oneshot_pull.cuh), precompiled, without PDL.
#include "common/check.h"
#include "kernels/device/oneshot_pull.cuh"
#include "kernels/v1/dispatch.cuh"
#include "kernels/v1/launch.h"

namespace customar::detail {

namespace {
template <typename T, int W>
__global__ void __launch_bounds__(kThreads)
    oneshot_pull_kernel(DeviceHandle h, const T* in, T* out, size_t nvec, bool in_aligned, bool out_aligned) {
  oneshot_pull_body<T, W, false>(h, in, out, nvec, in_aligned, out_aligned);
}
}  // namespace

int v1_grid(Algo algo, size_t bytes, int world, int max_blocks) {
  size_t nvec = bytes / 16;
  size_t work = algo == Algo::kTwoshot ? (nvec + world - 1) / world : nvec;
  // Enough blocks that each thread has one unrolled batch of vectors (push: one vector), up to the agreed maximum.
  size_t per_block = algo == Algo::kOneshotPush ? size_t(kThreads) : size_t(kThreads) * (world <= 4 ? 4 : 2);
  size_t blocks = (work + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > static_cast<size_t>(max_blocks)) blocks = max_blocks;
  return static_cast<int>(blocks);
}

void launch_oneshot_pull(const DeviceHandle& h, const void* in, void* out, size_t count, DataType dtype,
                         cudaStream_t stream) {
  size_t bytes = count * dtype_size(dtype);
  int grid = v1_grid(Algo::kOneshotPull, bytes, h.world, h.max_blocks);
  bool in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  bool out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;
  with_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    with_world(h.world, [&](auto w) {
      oneshot_pull_kernel<T, decltype(w)::value><<<grid, kThreads, 0, stream>>>(
          h, static_cast<const T*>(in), static_cast<T*>(out), bytes / 16, in_aligned, out_aligned);
    });
  });
  CUSTOMAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace customar::detail
