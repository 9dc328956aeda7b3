// V1 one-shot pull: every rank reads every rank's staging buffer and reduces the whole message. Lowest latency for
// small messages (one barrier, one pass); its NVLink traffic grows with world size, so two-shot takes over above the
// config's threshold.
#include "common/check.h"
#include "kernels/v1/device.cuh"
#include "kernels/v1/dispatch.cuh"
#include "kernels/v1/launch.h"

namespace customar::detail {

namespace {

template <typename T, int W>
__global__ void __launch_bounds__(kThreads)
    oneshot_pull_kernel(DeviceHandle h, const T* in, T* out, size_t nvec, bool in_aligned, bool out_aligned) {
  __shared__ CallState s;
  begin_call(h, s);
  const size_t per = (nvec + gridDim.x - 1) / gridDim.x;
  const size_t beg = blockIdx.x * per;
  const size_t end = beg + per < nvec ? beg + per : nvec;
  uint4* mine = staging(h, h.rank, s.epoch);
  // Fused staging copy: the input goes into this rank's peer-visible buffer inside the kernel, so graph-captured
  // inputs need no IPC registration. Block b copies exactly the range block b of every peer will read.
  if (!h.skip_copy_in) copy_in<kUnroll<W>>(mine, in, beg, end, in_aligned);
  if (!block_barrier<W>(h, 0, s)) return;
  const uint4* src[W];
#pragma unroll
  for (int r = 0; r < W; ++r) src[r] = staging(h, r, s.epoch);
  reduce_range<T, W, kUnroll<W>>(src, beg, end, out, out_aligned, nullptr);
  end_call(h, s);
}

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
  size_t bytes = count * dtype_size(dtype);
  size_t nvec = bytes / 16;
  int grid = v1_grid(Algo::kOneshotPull, bytes, h.world, h.max_blocks);
  bool in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  bool out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;
  with_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    with_world(h.world, [&](auto w) {
      oneshot_pull_kernel<T, decltype(w)::value><<<grid, kThreads, 0, stream>>>(
          h, static_cast<const T*>(in), static_cast<T*>(out), nvec, in_aligned, out_aligned);
    });
  });
  CUSTOMAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace customar::detail
