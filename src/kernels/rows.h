// The kernels of all-reduce + residual add + RMSNorm, which own whole rows: the call as they see it, the launch-shape
// rules every path shares (so the host sizes grids by the numbers the device loops by), and the FP8 encoding. One
// definition, compiled by the host compiler, by nvcc (the norm kernel) and by NVRTC (V2's fused push and two-shot),
// so it uses no standard header (handle.h's guard gives the integer types).
#pragma once

#include "kernels/handle.h"

namespace customar::detail {

/// One call as its kernels see it: the public AddRmsNormArgs, checked, as plain pointers and sizes.
struct NormCall {
  const void* in;           ///< [tokens x hidden]: this rank's partial sums (the norm kernel: the all-reduced sums)
  const void* residual_in;  ///< [tokens x hidden]
  const void* gamma;        ///< [hidden]
  void* residual_out;       ///< [tokens x hidden]
  void* norm_out;           ///< [tokens x hidden], of the input dtype, or e4m3 where fp8 != 0
  const float* scale;       ///< fp8 only: the dequantisation scale, read on the device
  uint32_t tokens;
  uint32_t hidden;
  float eps;
  int fp8;  ///< 1: norm_out is e4m3, saturated, divided by *scale
};

/// Every tensor of a call is 16-byte aligned and a row is a whole number of 16-byte vectors (hidden a multiple of 8
/// two-byte elements), so the kernels move rows as 16-byte vectors (8-byte ones for an e4m3 output row).
constexpr unsigned kRowElemsPerVec = 8;
/// Threads of a row block at most, and 16-byte vectors each thread holds of one row at most: 2048 vectors, a row of
/// 16384 two-byte elements.
constexpr unsigned kRowMaxThreads = 512;
constexpr unsigned kRowMaxVecs = 4;

/// 16-byte vectors of a row of `hidden` two-byte elements.
constexpr unsigned row_vecs(unsigned hidden) { return hidden / kRowElemsPerVec; }

/// Threads of the block that owns a row of `vecs` vectors: each thread holds the fewest vectors that fit
/// kRowMaxThreads threads, spread evenly, in whole warps. Every path (fused push, fused two-shot, norm kernel) and
/// every rank uses this one shape for a hidden size, so the sum of squares adds in the same order everywhere.
constexpr unsigned row_threads(unsigned vecs) {
  const unsigned per = (vecs + kRowMaxThreads - 1) / kRowMaxThreads;
  const unsigned threads = per == 0 ? 1 : (vecs + per - 1) / per;
  return (threads + 31) / 32 * 32;
}

/// Rows of rank q's part in the fused two-shot (tokens split into world parts of ceil(tokens / world) rows; the last
/// parts may be short or empty): [beg, end).
struct RowRange {
  unsigned beg, end;
};
constexpr RowRange row_part(unsigned tokens, int world, int q) {
  const unsigned per = (tokens + static_cast<unsigned>(world) - 1) / static_cast<unsigned>(world);
  const unsigned beg = per * static_cast<unsigned>(q) < tokens ? per * static_cast<unsigned>(q) : tokens;
  const unsigned end = beg + per < tokens ? beg + per : tokens;
  return {beg, end};
}

/// Bytes the fused two-shot needs in a staging buffer: every rank's input copy, then the normalised rows (of
/// `out_esize` bytes an element) that the all-gather carries. The residual rows go back over this rank's own part of
/// the input copy, which no peer reads.
constexpr size_t fused_twoshot_staging_bytes(size_t tokens, size_t hidden, size_t out_esize) {
  return tokens * hidden * 2 + tokens * hidden * out_esize;
}

/// x >> s rounded to nearest, ties to even; s >= 1.
constexpr uint32_t shift_right_rne(uint32_t x, uint32_t s) {
  if (s >= 32) return 0;
  const uint32_t q = x >> s;
  const uint32_t rem = x & ((1u << s) - 1u);
  const uint32_t half = 1u << (s - 1);
  return q + ((rem > half || (rem == half && (q & 1u) != 0)) ? 1u : 0u);
}

/// The OCP e4m3 ("fn") byte of the fp32 value with bits `bits`: rounded to nearest even, saturated to +-448 (so
/// infinities become +-448), NaN to NaN (0x7f with the sign). What PTX's cvt.rn.satfinite.e4m3x2.f32 computes, in
/// integer arithmetic, for GPUs without that instruction (before sm_89) and for host-side tests.
constexpr uint8_t e4m3_from_bits(uint32_t bits) {
  const uint32_t sign = (bits >> 24) & 0x80u;
  const uint32_t a = bits & 0x7fffffffu;
  if (a > 0x7f800000u) return static_cast<uint8_t>(sign | 0x7fu);
  if (a >= 0x43e00000u) return static_cast<uint8_t>(sign | 0x7eu);  // 448 and above
  if (a < 0x3c800000u) {                                            // below 2^-6: subnormal, multiples of 2^-9
    const uint32_t e = a >> 23;
    if (e == 0) return static_cast<uint8_t>(sign);  // fp32 subnormals are far below 2^-10
    // value = m * 2^(e - 150) = m * 2^(e - 141) units of 2^-9; e <= 120, so the shift is at least 21.
    const uint32_t m = (a & 0x7fffffu) | 0x800000u;
    return static_cast<uint8_t>(sign | shift_right_rne(m, 141u - e));
  }
  // Normal: round the fp32 mantissa to 3 bits (a carry moves into the exponent), rebias 127 -> 7. Below 448, so at
  // most 0x7e.
  const uint32_t r = (a + 0x7ffffu + ((a >> 20) & 1u)) >> 20;
  return static_cast<uint8_t>(sign | (r - (120u << 3)));
}

}  // namespace customar::detail
