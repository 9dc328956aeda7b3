// V1 two-shot: reduce-scatter then all-gather through the staging buffers. Each rank reduces 1/world of the message,
// so NVLink traffic per rank stays ~2x the message whatever the world size: the algorithm for large messages.
#include "common/check.h"
#include "kernels/v1/device.cuh"
#include "kernels/v1/dispatch.cuh"
#include "kernels/v1/launch.h"

namespace customar::detail {

namespace {

struct Range {
  size_t beg, end;
};

// Block b's slice of part q: the same on every rank, so block b's barrier covers exactly the data it exchanges.
__device__ __forceinline__ Range slice(size_t nvec, int world, int q) {
  size_t part = (nvec + world - 1) / world;
  size_t pbeg = q * part < nvec ? q * part : nvec;
  size_t pend = pbeg + part < nvec ? pbeg + part : nvec;
  size_t per = (pend - pbeg + gridDim.x - 1) / gridDim.x;
  size_t beg = pbeg + blockIdx.x * per;
  if (beg > pend) beg = pend;
  size_t end = beg + per < pend ? beg + per : pend;
  return {beg, end};
}

template <typename T, int W>
__global__ void __launch_bounds__(kThreads)
    twoshot_kernel(DeviceHandle h, const T* in, T* out, size_t nvec, bool in_aligned, bool out_aligned) {
  __shared__ CallState s;
  begin_call(h, s);
  uint4* mine = staging(h, h.rank, s.epoch);
  // Fused staging copy of every part's slice this block will exchange.
  if (!h.skip_copy_in) {
#pragma unroll
    for (int q = 0; q < W; ++q) {
      Range r = slice(nvec, W, q);
      copy_in<kUnroll<W>>(mine, in, r.beg, r.end, in_aligned);
    }
  }
  if (!block_barrier<W>(h, 0, s)) return;

  const uint4* src[W];
#pragma unroll
  for (int r = 0; r < W; ++r) src[r] = staging(h, r, s.epoch);
  // Reduce-scatter: this rank's part, from every rank. The result goes back into this rank's own staging buffer (no
  // peer reads this rank's part of it until the second barrier) and straight to the output.
  Range my = slice(nvec, W, h.rank);
  reduce_range<T, W, kUnroll<W>>(src, my.beg, my.end, out, out_aligned, mine);
  if (!block_barrier<W>(h, 1, s)) return;

  // All-gather: every other rank's reduced part, starting at a different peer on each rank to spread NVLink load.
#pragma unroll
  for (int d = 1; d < W; ++d) {
    int q = (h.rank + d) % W;
    Range r = slice(nvec, W, q);
    copy_out<kUnroll<W>>(src[q], r.beg, r.end, out, out_aligned);
  }
  end_call(h, s);
}

}  // namespace

void launch_twoshot(const DeviceHandle& h, const void* in, void* out, size_t count, DataType dtype,
                    cudaStream_t stream) {
  size_t bytes = count * dtype_size(dtype);
  size_t nvec = bytes / 16;
  int grid = v1_grid(Algo::kTwoshot, bytes, h.world, h.max_blocks);
  bool in_aligned = reinterpret_cast<uintptr_t>(in) % 16 == 0;
  bool out_aligned = reinterpret_cast<uintptr_t>(out) % 16 == 0;
  with_dtype(dtype, [&](auto t) {
    using T = decltype(t);
    with_world(h.world, [&](auto w) {
      twoshot_kernel<T, decltype(w)::value><<<grid, kThreads, 0, stream>>>(
          h, static_cast<const T*>(in), static_cast<T*>(out), nvec, in_aligned, out_aligned);
    });
  });
  CUSTOMAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace customar::detail
