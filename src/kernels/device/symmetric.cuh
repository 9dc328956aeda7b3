// Kernels on symmetric inputs: every rank's input lies in memory that every peer has mapped, at the same offset of
// the same allocation on every rank (memory/symmetric_heap.h), so a rank reads its peers' inputs where they lie
// instead of copying its own into a staging buffer first. The communicator's table (kernels/symmetric.h) says where
// each rank's copy of an address is. The flags, counters and staging buffers are the custom backend's, through the
// same DeviceHandle as every other kernel, so calls on symmetric and ordinary buffers interleave freely.
//
// Ordering, for every kernel here:
//   - Before it reads a peer's input, block b meets block b of every peer (phase 0): a peer's block arrives only
//     after its pdl_wait(), so the kernel that wrote that input (the caller's previous kernel) has completed.
//   - A rank must not return while a peer may still read its input: the caller's next kernel (or the next replay of
//     a graph, or a kernel launched early under PDL, whose own wait still waits for this grid) may overwrite it. So
//     every kernel meets its peers once more (phase 1) after its last read of a peer's input, and the kernels that
//     let a peer read something of this rank's after that point read only the staging buffers, whose reuse the
//     parity of the call epoch guards (common.cuh, staging()).
//   - Writes into a peer's output come after phase 0 (the peer's previous kernel, which may read that output, has
//     completed) and before phase 1 (the peer returns only once they have landed: each block's flag is released after
//     its stores, which __syncthreads() orders before the release).
// Every rank sums in rank order 0..W-1, so results are bitwise identical on every rank.
#pragma once

#include "kernels/device/common.cuh"
#include "kernels/device/twoshot.cuh"
#include "kernels/symmetric.h"

namespace customar::detail {

// Where this call's buffers lie on every rank, as byte offsets from this rank's addresses.
struct SymmetricPeers {
  long long in[kMaxRanks];
  long long out[kMaxRanks];
  int missing;  // a buffer the kernel reads or writes on a peer lies in no live allocation
};

static_assert(kMaxSymmetricAllocations == 64, "the table search reads two entries per lane of one warp");

// The table entry holding address `a`, or -1; lane l holds entries l (b0, e0) and l + 32 (b1, e1).
__device__ __forceinline__ int symmetric_slot(uint64_t a, uint64_t b0, uint64_t e0, uint64_t b1, uint64_t e1) {
  const unsigned lo = __ballot_sync(0xffffffffu, b0 != 0 && a >= b0 && a < e0);
  const unsigned hi = __ballot_sync(0xffffffffu, b1 != 0 && a >= b1 && a < e1);
  return lo != 0 ? __ffs(lo) - 1 : hi != 0 ? 31 + __ffs(hi) : -1;
}

// Fills `p` from this rank's table: warp 0 searches, the others go on. The host writes the table only while no kernel
// of the communicator runs, so this may run before pdl_wait(), its loads overlapping the previous kernel's tail; the
// caller's __syncthreads() (begin_call's) publishes `p`. `with_out`: the kernel writes into the peers' outputs too.
template <int W>
__device__ __forceinline__ void locate_peers(const DeviceHandle& h, const void* in, const void* out, bool with_out,
                                             SymmetricPeers& p) {
  if (threadIdx.x >= 32) return;
  const auto* t = reinterpret_cast<const SymmetricTable*>(h.regions[h.rank] + kSymmetricTableOffset);
  const int lane = threadIdx.x;
  const uint64_t b0 = t->begin[lane], e0 = t->end[lane], b1 = t->begin[lane + 32], e1 = t->end[lane + 32];
  const int si = symmetric_slot(reinterpret_cast<uint64_t>(in), b0, e0, b1, e1);
  const int so = with_out ? symmetric_slot(reinterpret_cast<uint64_t>(out), b0, e0, b1, e1) : 0;
  if (lane < W) {
    p.in[lane] = si >= 0 ? t->delta[si][lane] : 0;
    p.out[lane] = with_out && so >= 0 ? t->delta[so][lane] : 0;
  }
  if (lane == 0) p.missing = si < 0 || so < 0;
}

// Every rank's copy of this rank's address `a`, by the offsets in `delta`.
template <int W, typename P>
__device__ __forceinline__ void peer_copies(P* a, const long long (&delta)[kMaxRanks], P* (&copies)[W]) {
#pragma unroll
  for (int r = 0; r < W; ++r)
    copies[r] =
        reinterpret_cast<P*>(reinterpret_cast<unsigned long long>(a) + static_cast<unsigned long long>(delta[r]));
}

// The first part of every kernel here: the parameter touch and the table (both before the PDL wait), the wait and
// the counters, then phase 0. False when the block must leave: the communicator is broken, a buffer is gone (every
// rank finds the same: allocations are freed collectively), or a peer did not arrive.
template <int W, bool kPdl>
__device__ __forceinline__ bool symmetric_begin(const DeviceHandle& h, const void* in, const void* out, size_t nvec,
                                                bool in_aligned, bool out_aligned, bool with_out, CallState& s,
                                                SymmetricPeers& p) {
  if constexpr (kPdl) touch_params<W>(h, in, out, nvec, in_aligned, out_aligned);
  locate_peers<W>(h, in, out, with_out, p);
  begin_call<kPdl>(h, s);
  if (s.abort) return false;
  if (p.missing) {
    if (threadIdx.x == 0) mark_failed(h, s, kErrorSymmetricUnmapped);
    return false;
  }
  return block_barrier<W>(h, 0, s);
}

// One-shot pull on symmetric inputs: every rank reads every rank's input where it lies and reduces the whole message
// into its output. Out of place only: in place, a rank would overwrite its input while peers still read it.
template <typename T, int W, bool kPdl>
__device__ __forceinline__ void symmetric_pull_body(const DeviceHandle& h, const T* in, T* out, size_t nvec,
                                                    bool in_aligned, bool out_aligned) {
  __shared__ CallState s;
  __shared__ SymmetricPeers p;
  const size_t per = (nvec + gridDim.x - 1) / gridDim.x;
  const size_t beg = blockIdx.x * per;
  const size_t end = beg + per < nvec ? beg + per : nvec;
  if (!symmetric_begin<W, kPdl>(h, in, out, nvec, in_aligned, out_aligned, false, s, p)) return;
  pdl_launch_dependents<kPdl>();
  const uint4* src[W];
  peer_copies<W>(reinterpret_cast<const uint4*>(in), p.in, src);
  reduce_range<T, W, kUnroll<W>>(src, beg, end, out, out_aligned, nullptr);
  // Block b of every peer has read this rank's range of block b: the input may be overwritten once this returns.
  if (!block_barrier<W>(h, 1, s)) return;
  end_call(h, s);
}

// Two-shot on symmetric inputs, gathering through the staging buffers: rank q reduces part q of the message from
// every rank's input where it lies into its output and its own staging buffer; after phase 1 (no rank reads an input
// any more) every rank copies the other parts from their owners' staging buffers. Any output, in place included: part
// q of a rank's input is read only by rank q, before phase 1, and overwritten only after it.
template <typename T, int W, bool kPdl>
__device__ __forceinline__ void symmetric_twoshot_body(const DeviceHandle& h, const T* in, T* out, size_t nvec,
                                                       bool in_aligned, bool out_aligned) {
  __shared__ CallState s;
  __shared__ SymmetricPeers p;
  if (!symmetric_begin<W, kPdl>(h, in, out, nvec, in_aligned, out_aligned, false, s, p)) return;
  const uint4* src[W];
  peer_copies<W>(reinterpret_cast<const uint4*>(in), p.in, src);
  const Range my = twoshot_slice(nvec, W, h.rank);
  reduce_range<T, W, kUnroll<W>>(src, my.beg, my.end, out, out_aligned, staging(h, h.rank, s.epoch));
  if (!block_barrier<W>(h, 1, s)) return;
  pdl_launch_dependents<kPdl>();
#pragma unroll
  for (int d = 1; d < W; ++d) {
    const int q = (h.rank + d) % W;
    const Range r = twoshot_slice(nvec, W, q);
    copy_out<kUnroll<W>>(staging(h, q, s.epoch), r.beg, r.end, out, out_aligned);
  }
  end_call(h, s);
}

// dst[r][i] = sum over ranks of src[r][i] for every rank r, i in [beg, end): this rank's part, reduced from every
// rank's input in rank order and stored into every rank's output. The ranks are indexed at compile time only: a
// run-time index into the pointer arrays would put them in local memory.
template <typename T, int W, int U>
__device__ __forceinline__ void reduce_to_all(const uint4* const (&src)[W], uint4* const (&dst)[W], size_t beg,
                                              size_t end) {
  for (size_t base = beg + threadIdx.x; base < end; base += size_t(kThreads) * U) {
    uint4 v[U][W];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const size_t i = base + size_t(u) * kThreads;
      if (i < end) {
#pragma unroll
        for (int r = 0; r < W; ++r) v[u][r] = __ldcg(src[r] + i);  // all loads in flight before the first add
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      const size_t i = base + size_t(u) * kThreads;
      if (i < end) {
        float acc[Elem<T>::kPerVec] = {};
#pragma unroll
        for (int r = 0; r < W; ++r) accumulate<T>(acc, v[u][r]);
        const uint4 sum = pack<T>(acc);
#pragma unroll
        for (int r = 0; r < W; ++r) dst[r][i] = sum;
      }
    }
  }
}

// Two-shot on symmetric inputs and outputs (or in place): rank q reduces part q of the message from every rank's
// input where it lies and pushes the sum into every rank's output. No staging buffer and no size limit: the large-
// message path. Phase 1 is the last barrier: after it every part has landed everywhere and no input is read any more.
// In place, part q of every rank's buffer is read and then overwritten by rank q alone, by the same thread.
template <typename T, int W, bool kPdl>
__device__ __forceinline__ void symmetric_twoshot_push_body(const DeviceHandle& h, const T* in, T* out, size_t nvec,
                                                            bool in_aligned, bool out_aligned) {
  __shared__ CallState s;
  __shared__ SymmetricPeers p;
  if (!symmetric_begin<W, kPdl>(h, in, out, nvec, in_aligned, out_aligned, true, s, p)) return;
  pdl_launch_dependents<kPdl>();
  const uint4* src[W];
  uint4* dst[W];
  peer_copies<W>(reinterpret_cast<const uint4*>(in), p.in, src);
  peer_copies<W>(reinterpret_cast<uint4*>(out), p.out, dst);
  const Range my = twoshot_slice(nvec, W, h.rank);
  reduce_to_all<T, W, kUnroll<W>>(src, dst, my.beg, my.end);
  if (!block_barrier<W>(h, 1, s)) return;
  end_call(h, s);
}

}  // namespace customar::detail
