// V1 one-shot pull: the shared kernel body (kernels/device/oneshot_pull.cuh), precompiled, without PDL.
#include "common/check.h"
#include "kernels/device/oneshot_pull.cuh"
#include "kernels/v1/dispatch.cuh"
#include "kernels/v1/launch.h"

namespace customar::detail {

namespace {
template <typename T, int W>
__global__ void __launch_bounds__(kThreads)
    oneshot_pull_kernel(const __grid_constant__ DeviceHandle h, const T* in, T* out, size_t nvec, bool in_aligned,
                        bool out_aligned) {
  oneshot_pull_body<T, W, false>(h, in, out, nvec, in_aligned, out_aligned);
}
struct Pick {
  template <typename T, int W>
  static auto get() {
    return &oneshot_pull_kernel<T, W>;
  }
};
}  // namespace

int v1_grid(Algo algo, size_t bytes, int world, int max_blocks) {
  size_t nvec = bytes / 16;
  size_t work = algo == Algo::kTwoshot ? (nvec + world - 1) / world : nvec;
  // Enough blocks that each thread has one unrolled batch of vectors, up to the agreed maximum.
  size_t per_block = size_t(kThreads) * (world <= 4 ? 4 : 2);
  size_t blocks = (work + per_block - 1) / per_block;
  if (blocks < 1) blocks = 1;
  if (blocks > static_cast<size_t>(max_blocks)) blocks = max_blocks;
  return static_cast<int>(blocks);
}

void launch_oneshot_pull(const DeviceHandle& h, const void* in, void* out, size_t count, DataType dtype,
                         cudaStream_t stream) {
  launch_v1_kernel<Pick>(Algo::kOneshotPull, h, in, out, count, dtype, stream);
}

}  // namespace customar::detail
