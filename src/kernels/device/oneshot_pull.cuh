// One-shot pull: every rank reads every rank's staging buffer and reduces the whole message. Two NVLink crossings
// (flag, then data) and traffic that grows with world size: for small and mid messages.
#pragma once

#include "kernels/device/common.cuh"

namespace customar::detail {

template <typename T, int W, bool kPdl>
__device__ __forceinline__ void oneshot_pull_body(const DeviceHandle& h, const T* in, T* out, size_t nvec,
                                                  bool in_aligned, bool out_aligned) {
  __shared__ CallState s;
  const size_t per = (nvec + gridDim.x - 1) / gridDim.x;
  const size_t beg = blockIdx.x * per;
  const size_t end = beg + per < nvec ? beg + per : nvec;
  // Only with PDL is there a previous kernel's drain to hide the parameter misses behind (V1 is unchanged).
  if constexpr (kPdl) touch_params<W>(h, in, out, nvec, in_aligned, out_aligned);
  begin_call<kPdl>(h, s);
  if (s.abort) return;
  uint4* mine = staging(h, h.rank, s.epoch);
  // Fused staging copy: the input goes into this rank's peer-visible buffer inside the kernel, so graph-captured
  // inputs need no IPC registration. Block b copies exactly the range block b of every peer will read.
  copy_in<kUnroll<W>>(mine, in, beg, end, in_aligned);
  if (!block_barrier<W>(h, 0, s)) return;
  pdl_launch_dependents<kPdl>();
  const uint4* src[W];
#pragma unroll
  for (int r = 0; r < W; ++r) src[r] = staging(h, r, s.epoch);
  reduce_range<T, W, kUnroll<W>>(src, beg, end, out, out_aligned, nullptr);
  end_call(h, s);
}

}  // namespace customar::detail
