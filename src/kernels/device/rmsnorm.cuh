// The row epilogue every all-reduce + residual add + RMSNorm path shares (the fused push, the fused two-shot and the
// norm kernel): a block owns whole rows of row_threads() threads, thread t holding vectors t, t + blockDim.x, ... of
// the row (at most kRowMaxVecs). The arithmetic, one definition for every path:
//   residual_out = round(fp32 sum of the ranks' inputs in rank order, + residual_in)        (one rounding)
//   r = rsqrtf(sum of squares of residual_out as stored, in fp32 / hidden + eps)
//   norm_out = round(residual_out * r * gamma), or for e4m3: sat_e4m3(residual_out * r * gamma * (1 / *scale))
// The sum of squares adds each thread's elements in order with fused multiply-adds, then warps by a fixed tree and
// the block in warp order, so a row's result depends only on its hidden size: the same bits on every rank.
#pragma once

#include "kernels/device/common.cuh"
#include "kernels/rows.h"

namespace customar::detail {

// The sum of v over the block, the same bits in every thread. `red` holds kRowMaxThreads / 32 floats of shared
// memory; the trailing barrier lets the next row reuse it.
__device__ __forceinline__ float block_sum(float v, float* red) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if ((threadIdx.x & 31u) == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  float s = 0.f;
  for (unsigned w = 0; w < blockDim.x / 32; ++w) s += red[w];
  __syncthreads();
  return s;
}

// acc += residual, rounded to T: one vector of residual_out.
template <typename T>
__device__ __forceinline__ uint4 add_residual(float (&acc)[Elem<T>::kPerVec], const uint4& residual) {
  accumulate<T>(acc, residual);
  return pack<T>(acc);
}

template <typename T>
__device__ __forceinline__ float sum_squares(float s, const uint4& x) {
  const T* e = reinterpret_cast<const T*>(&x);
#pragma unroll
  for (int k = 0; k < Elem<T>::kPerVec; ++k) s = __fmaf_rn(to_float(e[k]), to_float(e[k]), s);
  return s;
}

// Eight fp32 values as e4m3 bytes, in order.
__device__ __forceinline__ uint2 pack_e4m3(const float (&y)[8]) {
  uint32_t w[2];
#pragma unroll
  for (int h = 0; h < 2; ++h) {
#if __CUDA_ARCH__ >= 890
    unsigned short lo, hi;  // cvt packs its first operand into the upper byte
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(lo) : "f"(y[4 * h + 1]), "f"(y[4 * h]));
    asm("cvt.rn.satfinite.e4m3x2.f32 %0, %1, %2;" : "=h"(hi) : "f"(y[4 * h + 3]), "f"(y[4 * h + 2]));
    w[h] = static_cast<uint32_t>(lo) | (static_cast<uint32_t>(hi) << 16);
#else
    w[h] = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) w[h] |= static_cast<uint32_t>(e4m3_from_bits(__float_as_uint(y[4 * h + k]))) << (8 * k);
#endif
  }
  return make_uint2(w[0], w[1]);
}

// The rows a thread holds: vector k of the row is j = threadIdx.x + k * blockDim.x, held while j < vecs.
__device__ __forceinline__ bool holds(unsigned k, unsigned vecs) { return threadIdx.x + k * blockDim.x < vecs; }
__device__ __forceinline__ unsigned vec_of(unsigned k) { return threadIdx.x + k * blockDim.x; }

// 1 / *scale for an e4m3 output (correctly rounded), 1 otherwise. Read after the PDL wait: the scale may come from
// the previous kernel.
__device__ __forceinline__ float quant_factor(const NormCall& c) { return c.fp8 ? 1.0f / *c.scale : 1.0f; }

// Normalises row `row` whose residual_out vectors this thread holds in x[], and stores it: into norm_out and, where
// `also` is given, at the same place of a row-major copy there (the fused two-shot's staging). `ss` is this thread's
// sum of squares of x[]. Every thread of the block calls it (block_sum synchronises).
template <typename T>
__device__ __forceinline__ void store_norm_row(const NormCall& c, unsigned row, const uint4 (&x)[kRowMaxVecs], float ss,
                                               float qf, float* red, uint8_t* also) {
  const unsigned vecs = row_vecs(c.hidden);
  const float r = rsqrtf(block_sum(ss, red) / static_cast<float>(c.hidden) + c.eps);
  const uint4* gamma = static_cast<const uint4*>(c.gamma);
#pragma unroll
  for (unsigned k = 0; k < kRowMaxVecs; ++k) {
    if (!holds(k, vecs)) continue;
    const unsigned j = vec_of(k);
    const uint4 g = __ldg(gamma + j);
    const T* xe = reinterpret_cast<const T*>(&x[k]);
    const T* ge = reinterpret_cast<const T*>(&g);
    float y[Elem<T>::kPerVec];
#pragma unroll
    for (int e = 0; e < Elem<T>::kPerVec; ++e) y[e] = to_float(xe[e]) * r * to_float(ge[e]);
    const size_t i = size_t(row) * vecs + j;
    if (c.fp8) {
#pragma unroll
      for (int e = 0; e < Elem<T>::kPerVec; ++e) y[e] *= qf;
      const uint2 q = pack_e4m3(y);
      static_cast<uint2*>(c.norm_out)[i] = q;
      if (also != nullptr) reinterpret_cast<uint2*>(also)[i] = q;
    } else {
      const uint4 q = pack<T>(y);
      static_cast<uint4*>(c.norm_out)[i] = q;
      if (also != nullptr) reinterpret_cast<uint4*>(also)[i] = q;
    }
  }
}

// This thread's vectors of residual_out for `row`, into x[]: the all-reduced sum, which `sum(i, acc)` adds into acc in
// fp32 for the vector of message index i, plus residual_in, rounded once; `ss` receives their sum of squares. `sum`
// returns false when a wait gave up: the rest of the row is skipped, and so returns this function. kUnroll: how far the
// loop over a thread's vectors unrolls (kRowMaxVecs: fully, x[] in registers; 1: x[] in local memory, for a `sum`
// whose code is long).
template <typename T, int kUnroll = kRowMaxVecs, typename Sum>
__device__ __forceinline__ bool residual_row(const NormCall& c, unsigned row, uint4 (&x)[kRowMaxVecs], float& ss,
                                             Sum&& sum) {
  const unsigned vecs = row_vecs(c.hidden);
  const uint4* res = static_cast<const uint4*>(c.residual_in);
  ss = 0.f;
  bool ok = true;
#pragma unroll kUnroll
  for (unsigned k = 0; k < kRowMaxVecs; ++k) {
    if (!holds(k, vecs) || !ok) continue;
    const size_t i = size_t(row) * vecs + vec_of(k);
    const uint4 residual = res[i];  // in flight while the sum is gathered
    float acc[Elem<T>::kPerVec] = {};
    ok = sum(i, acc);
    x[k] = add_residual<T>(acc, residual);
    ss = sum_squares<T>(ss, x[k]);
  }
  return ok;
}

// x[] as row `row` of `to`, a row-major tensor of 16-byte vectors.
__device__ __forceinline__ void store_row(void* to, unsigned row, unsigned vecs, const uint4 (&x)[kRowMaxVecs]) {
#pragma unroll
  for (unsigned k = 0; k < kRowMaxVecs; ++k)
    if (holds(k, vecs)) static_cast<uint4*>(to)[size_t(row) * vecs + vec_of(k)] = x[k];
}

// The norm kernel's body (all-reduce, then this): c.in holds the all-reduced sums; rows blockIdx.x, + gridDim.x, ...
// Each thread reads a vector before it writes it, and the norm is written after block_sum, so residual_out may be
// residual_in and norm_out may be c.in.
template <typename T, bool kPdl>
__device__ __forceinline__ void add_rmsnorm_body(const NormCall& c) {
  __shared__ float red[kRowMaxThreads / 32];
  pdl_wait<kPdl>();
  const unsigned vecs = row_vecs(c.hidden);
  const float qf = quant_factor(c);
  const uint4* in = static_cast<const uint4*>(c.in);
  for (unsigned row = blockIdx.x; row < c.tokens; row += gridDim.x) {
    uint4 x[kRowMaxVecs];
    float ss;
    residual_row<T>(c, row, x, ss, [&](size_t i, auto& acc) {
      accumulate<T>(acc, in[i]);
      return true;
    });
    store_row(c.residual_out, row, vecs, x);
    store_norm_row<T>(c, row, x, ss, qf, red, nullptr);
  }
}

}  // namespace customar::detail
