// All-reduce + residual add + RMSNorm on the two-shot, rows split by token: rank q owns rows row_part(q). Each rank
// reduces its rows from every rank's staging copy, adds the residual, normalises them whole, and the all-gather then
// carries the finished rows (residual_out and norm_out) instead of the sums. A barrier kernel like twoshot.cuh: the
// same epoch, staging parity and per-block barriers, so it mixes with the other barrier kernels in any order.
//
// Staging layout of one call (fused_twoshot_staging_bytes): [input copy, tokens x hidden][norm rows]. A rank writes
// its residual rows over its own part of its input copy (no peer reads that part) and its norm rows at their row's
// place in the norm region; block b of every rank handles rows part.beg + b, + gridDim.x, ... of every part, so block
// b's barriers cover exactly the rows it exchanges.
#pragma once

#include "kernels/device/rmsnorm.cuh"

namespace customar::detail {

// Copies this block's rows of `part` (rows of `vecs` vectors of type V) from `from` to `to`, same index in both.
template <typename V>
__device__ __forceinline__ void copy_rows(const V* from, V* to, RowRange part, unsigned vecs) {
  for (unsigned row = part.beg + blockIdx.x; row < part.end; row += gridDim.x) {
    V v[kRowMaxVecs];
#pragma unroll
    for (unsigned k = 0; k < kRowMaxVecs; ++k)
      if (holds(k, vecs)) v[k] = __ldcg(from + size_t(row) * vecs + vec_of(k));
#pragma unroll
    for (unsigned k = 0; k < kRowMaxVecs; ++k)
      if (holds(k, vecs)) to[size_t(row) * vecs + vec_of(k)] = v[k];
  }
}

// This block's rows of this rank's part: reduced from every staging copy in rank order, plus the residual, written to
// residual_out and over this rank's part of its own copy (`mine`), then normalised into norm_out and the norm region
// `norm_stage`.
template <typename T, int W>
__device__ __forceinline__ void twoshot_norm_rows(const DeviceHandle& h, const NormCall& c,
                                                  const uint4* const (&src)[W], uint4* mine, uint8_t* norm_stage,
                                                  float* red) {
  const unsigned vecs = row_vecs(c.hidden);
  const float qf = quant_factor(c);
  const RowRange part = row_part(c.tokens, W, h.rank);
  for (unsigned row = part.beg + blockIdx.x; row < part.end; row += gridDim.x) {
    uint4 x[kRowMaxVecs];
    float ss;
    residual_row<T>(c, row, x, ss, [&](size_t i, auto& acc) {
      uint4 v[W];
#pragma unroll
      for (int r = 0; r < W; ++r) v[r] = __ldcg(src[r] + i);  // all loads in flight before the first add
#pragma unroll
      for (int r = 0; r < W; ++r) accumulate<T>(acc, v[r]);
      return true;
    });
    store_row(c.residual_out, row, vecs, x);
    store_row(mine, row, vecs, x);
    store_norm_row<T>(c, row, x, ss, qf, red, norm_stage);
  }
}

template <typename T, int W, bool kPdl>
__device__ __forceinline__ void twoshot_add_rmsnorm_body(const DeviceHandle& h, const NormCall& c) {
  if constexpr (SameType<T, float>::value) {
    return;  // every record has an entry per custom dtype; the fused call takes fp16 and bf16 only
  } else {
    __shared__ CallState s;
    __shared__ float red[kRowMaxThreads / 32];
    begin_call<kPdl>(h, s);
    if (s.abort) return;
    const unsigned vecs = row_vecs(c.hidden);
    const size_t nvec = size_t(c.tokens) * vecs;
    uint4* mine = staging(h, h.rank, s.epoch);
    // Fused staging copy of every part's rows this block exchanges. The loops over parts are not unrolled: each step
    // is a whole row copy, and unrolled they made these entry points compile 2.5 times slower at 8 ranks.
#pragma unroll 1
    for (int q = 0; q < W; ++q) copy_rows(static_cast<const uint4*>(c.in), mine, row_part(c.tokens, W, q), vecs);
    if (!block_barrier<W>(h, 0, s)) return;

    const uint4* src[W];
#pragma unroll
    for (int r = 0; r < W; ++r) src[r] = staging(h, r, s.epoch);
    twoshot_norm_rows<T, W>(h, c, src, mine, reinterpret_cast<uint8_t*>(mine + nvec), red);
    if (!block_barrier<W>(h, 1, s)) return;
    pdl_launch_dependents<kPdl>();

    // All-gather of the finished rows, starting at a different peer on each rank to spread NVLink load.
#pragma unroll 1
    for (int d = 1; d < W; ++d) {
      const int q = (h.rank + d) % W;
      const RowRange part = row_part(c.tokens, W, q);
      const uint4* from = staging(h, q, s.epoch);
      copy_rows(from, static_cast<uint4*>(c.residual_out), part, vecs);
      if (c.fp8)
        copy_rows(reinterpret_cast<const uint2*>(from + nvec), static_cast<uint2*>(c.norm_out), part, vecs);
      else
        copy_rows(from + nvec, static_cast<uint4*>(c.norm_out), part, vecs);
    }
    end_call(h, s);
  }
}

}  // namespace customar::detail
