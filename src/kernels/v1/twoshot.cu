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
#pragma unroll
  for (int q = 0; q < W; ++q) {
    if (h.skip_copy_in) break;
    Range r = slice(nvec, W, q);
    for (size_t i = r.beg + threadIdx.x; i < r.end; i += kThreads) mine[i] = load_user(in, i, in_aligned);
  }
  if (!block_barrier<W>(h, 0, s)) return;

  const uint4* src[W];
#pragma unroll
  for (int r = 0; r < W; ++r) src[r] = staging(h, r, s.epoch);
  // Reduce-scatter: this rank's part, from every rank, in fixed rank order. The result goes back into this rank's own
  // staging buffer (no peer reads this rank's part of it until the second barrier) and straight to the output.
  Range my = slice(nvec, W, h.rank);
  for (size_t i = my.beg + threadIdx.x; i < my.end; i += kThreads) {
    uint4 v[W];
#pragma unroll
    for (int r = 0; r < W; ++r) v[r] = __ldcg(src[r] + i);
    float acc[Elem<T>::kPerVec] = {};
#pragma unroll
    for (int r = 0; r < W; ++r) accumulate<T>(acc, v[r]);
    uint4 sum = pack<T>(acc);
    mine[i] = sum;
    store_user(out, i, sum, out_aligned);
  }
  if (!block_barrier<W>(h, 1, s)) return;

    // All-gather: every other rank's reduced part.
#pragma unroll
  for (int d = 1; d < W; ++d) {
    int q = (h.rank + d) % W;  // start at a different peer on each rank to spread the NVLink load
    Range r = slice(nvec, W, q);
    for (size_t i = r.beg + threadIdx.x; i < r.end; i += kThreads) store_user(out, i, __ldcg(src[q] + i), out_aligned);
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
