// Two-shot: reduce-scatter then all-gather through the staging buffers. Each rank reduces 1/world of the message, so
// NVLink traffic per rank stays about twice the message whatever the world size: for large messages.
#pragma once

#include "kernels/device/common.cuh"

namespace customar::detail {

struct Range {
  size_t beg, end;
};

// Block b's slice of part q: the same on every rank, so block b's barrier covers exactly the data it exchanges.
__device__ __forceinline__ Range twoshot_slice(size_t nvec, int world, int q) {
  size_t part = (nvec + world - 1) / world;
  size_t pbeg = q * part < nvec ? q * part : nvec;
  size_t pend = pbeg + part < nvec ? pbeg + part : nvec;
  size_t per = (pend - pbeg + gridDim.x - 1) / gridDim.x;
  size_t beg = pbeg + blockIdx.x * per;
  if (beg > pend) beg = pend;
  size_t end = beg + per < pend ? beg + per : pend;
  return {beg, end};
}

template <typename T, int W, bool kPdl>
__device__ __forceinline__ void twoshot_body(const DeviceHandle& h, const T* in, T* out, size_t nvec, bool in_aligned,
                                             bool out_aligned) {
  __shared__ CallState s;
  begin_call<kPdl>(h, s);
  if (s.abort) return;
  uint4* mine = staging(h, h.rank, s.epoch);
  // Fused staging copy of every part's slice this block will exchange.
#pragma unroll
  for (int q = 0; q < W; ++q) {
    Range r = twoshot_slice(nvec, W, q);
    copy_in<kUnroll<W>>(mine, in, r.beg, r.end, in_aligned);
  }
  if (!block_barrier<W>(h, 0, s)) return;

  const uint4* src[W];
#pragma unroll
  for (int r = 0; r < W; ++r) src[r] = staging(h, r, s.epoch);
  // Reduce-scatter: this rank's part, from every rank. The result goes back into this rank's own staging buffer (no
  // peer reads this rank's part of it until the second barrier) and straight to the output.
  Range my = twoshot_slice(nvec, W, h.rank);
  reduce_range<T, W, kUnroll<W>>(src, my.beg, my.end, out, out_aligned, mine);
  if (!block_barrier<W>(h, 1, s)) return;
  pdl_launch_dependents<kPdl>();

  // All-gather: every other rank's reduced part, starting at a different peer on each rank to spread NVLink load.
#pragma unroll
  for (int d = 1; d < W; ++d) {
    int q = (h.rank + d) % W;
    Range r = twoshot_slice(nvec, W, q);
    copy_out<kUnroll<W>>(src[q], r.beg, r.end, out, out_aligned);
  }
  end_call(h, s);
}

}  // namespace customar::detail
