// All-reduce + residual add + RMSNorm on the one-shot push (Lamport, oneshot_push.cuh): every rank holds the whole
// reduced tensor after the push, so each normalises every row itself (redundant compute, no extra traffic). A block
// owns whole rows: it sends its rows' vectors to every peer's slot, re-arms, then receives its rows, adds the residual,
// reduces the row's sum of squares and writes residual_out and norm_out.
//
// It is a push call like any other: the same three rotating buffers, the same per-block state slots
// (kCounterPushState), the same re-arm of what the previous push call (of any kind) wrote and the same record of this
// call, so fused and plain pushes mix freely in one sequence. Sends and receives use the message's vector index
// (row * row_vecs + j) as the plain push does, so which block of a peer sent a vector does not matter.
#pragma once

#include "kernels/device/oneshot_push.cuh"
#include "kernels/device/rmsnorm.cuh"

namespace customar::detail {

// This block's push state, as push_call reads it: (vectors of the previous push << 8) | (failed << 2) | this call's
// buffer. Thread 0 only.
__device__ __forceinline__ unsigned long long fused_push_state(const DeviceHandle& h) {
  const unsigned long long c = h.counters[kCounterPushState + blockIdx.x];
  const unsigned long long failed = h.counters[kCounterFailed];
  const unsigned long long prev = c & 3u;
  return ((c >> 2) << 8) | (failed != 0 ? 4u : 0u) | (prev == 2 ? 0u : prev + 1);
}

// The record of this call in every state slot, as push_call writes it for a multi-block grid: slot s by block
// s % gridDim.x, so a block writes its own slot (after reading it) and slots no block of this call reads.
__device__ __forceinline__ void fused_push_record(const DeviceHandle& h, size_t nvec, unsigned buf) {
  const unsigned long long record = (static_cast<unsigned long long>(nvec) << 2) | buf;
  for (unsigned slot = blockIdx.x + threadIdx.x * gridDim.x; slot < unsigned(kMaxPushBlocks);
       slot += blockDim.x * gridDim.x)
    h.counters[kCounterPushState + slot] = record;
}

// Re-arms this rank's slots of the buffer the previous push call used, vectors [0, last), grid-stride (local stores).
template <int W>
__device__ __forceinline__ void fused_push_rearm(const DeviceHandle& h, unsigned buf, size_t last) {
  const uint4 sentinel = make_uint4(kSentinelWord, kSentinelWord, kSentinelWord, kSentinelWord);
  const unsigned old_buf = buf == 0 ? 2u : buf - 1u;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (int r = 0; r < W; ++r) {
    if (r == h.rank) continue;
    uint4* old = push_slot(h, h.rank, old_buf, r);
    for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < last; i += stride) old[i] = sentinel;
  }
}

// acc = sum over ranks, in rank order, of vector i: this rank's own share `mine`, the peers' from their slots. Every
// peer's slot is loaded before any is tested, and each spin polls every peer still pending, so the polls overlap; the
// rare part of the wait (wait_expired, for the lowest pending rank, as the plain push would name it) has one call site
// per vector. False when the wait gave up (the communicator is then marked failed).
template <typename T, int W>
__device__ __forceinline__ bool fused_push_receive(const DeviceHandle& h, const uint4* const (&slot)[W], size_t i,
                                                   const uint4& mine, float (&acc)[Elem<T>::kPerVec]) {
  uint4 got[W];
  unsigned pending = 0;
#pragma unroll
  for (int r = 0; r < W; ++r) got[r] = r == h.rank ? mine : ld_volatile_v4(slot[r] + i);
#pragma unroll
  for (int r = 0; r < W; ++r)
    if (r != h.rank && !vec_ready<T>(got[r])) pending |= 1u << r;
  CallState s;  // wait_expired's abort flag; this kernel carries its abort in the return value
  uint64_t start = 0;
  for (uint32_t spins = 1; pending != 0; ++spins) {
#pragma unroll
    for (int r = 0; r < W; ++r) {
      if ((pending & (1u << r)) == 0) continue;
      got[r] = ld_volatile_v4(slot[r] + i);
      if (vec_ready<T>(got[r])) pending &= ~(1u << r);
    }
    if (pending == 0 || spins % kPollCheckSpins != 0) continue;
    if (wait_expired(h, h.regions[h.rank], s, __ffs(pending) - 1, start)) return false;
  }
#pragma unroll
  for (int r = 0; r < W; ++r) accumulate<T>(acc, got[r]);
  return true;
}

// The fused push. Rows blockIdx.x, + gridDim.x, ... belong to this block; a block sends exactly the rows it later
// normalises, so an in-place call (norm_out == in) overwrites only input this block has already sent. A thread whose
// wait gave up carries on to the block's next barrier, where the whole block leaves the row loop together and still
// records the call (as the plain push does).
template <typename T, int W, bool kPdl>
__device__ __forceinline__ void push_add_rmsnorm_body(const DeviceHandle& h, const NormCall& c) {
  if constexpr (SameType<T, float>::value) {
    return;  // every record has an entry per custom dtype; the fused call takes fp16 and bf16 only
  } else {
    __shared__ unsigned long long state;
    __shared__ float red[kRowMaxThreads / 32];
    const unsigned vecs = row_vecs(c.hidden);
    const size_t nvec = size_t(c.tokens) * vecs;
    const uint4* in = static_cast<const uint4*>(c.in);
    pdl_wait<kPdl>();
    if (threadIdx.x == 0) state = fused_push_state(h);
    __syncthreads();
    const unsigned long long word = state;
    if (word & 4u) return;  // a wait of an earlier call gave up: the communicator is broken
    const unsigned buf = static_cast<unsigned>(word & 3u);
    const size_t last = static_cast<size_t>(word >> 8);

    // Send. The receive reads this rank's share again from `in` (a cache hit): keeping it in registers instead made
    // the kernel spill at 8 ranks.
    for (unsigned row = blockIdx.x; row < c.tokens; row += gridDim.x) {
#pragma unroll
      for (unsigned k = 0; k < kRowMaxVecs; ++k) {
        if (!holds(k, vecs)) continue;
        const size_t i = size_t(row) * vecs + vec_of(k);
        const uint4 v = as_sent<T>(in[i]);
#pragma unroll
        for (int r = 0; r < W; ++r)
          if (r != h.rank) st_volatile_v4(push_slot(h, r, buf, h.rank) + i, v);
      }
    }
    pdl_launch_dependents<kPdl>();
    fused_push_rearm<W>(h, buf, last);

    // Receive, add the residual, normalise.
    const uint4* slot[W];
#pragma unroll
    for (int r = 0; r < W; ++r) slot[r] = r == h.rank ? nullptr : push_slot(h, h.rank, buf, r);
    const float qf = quant_factor(c);
    for (unsigned row = blockIdx.x; row < c.tokens; row += gridDim.x) {
      uint4 x[kRowMaxVecs];
      float ss;
      // Not unrolled: the poll is most of the kernel's code, and four copies of it cost 1 s of NVRTC time per module
      // at 8 ranks; x[] then lives in local memory, written once and read back once by the norm.
      const bool ok = residual_row<T, 1>(c, row, x, ss, [&](size_t i, auto& acc) {
        return fused_push_receive<T, W>(h, slot, i, as_sent<T>(in[i]), acc);
      });
      if (__syncthreads_or(!ok)) break;
      store_row(c.residual_out, row, vecs, x);
      store_norm_row<T>(c, row, x, ss, qf, red, nullptr);
    }
    fused_push_record(h, nvec, buf);
  }
}

}  // namespace customar::detail
