// One-shot push with the flag in the data (Lamport): every rank stores its input straight into a slot of every
// peer's push buffer; receivers poll their own slots until no lane holds the sentinel, reduce, and the buffer is
// re-armed with the sentinel two calls later. One NVLink crossing and no barrier: the lowest latency there is for
// small messages. Three buffers rotate: a peer can be at most one push call ahead (it cannot finish call j+1 without
// this rank's data of call j+1), so while this rank reads buffer j%3, peers may write only (j+1)%3, and the buffer
// cleared in call j, (j+2)%3, was last read in call j-1.
#pragma once

#include "kernels/device/common.cuh"

namespace customar::detail {

__device__ __forceinline__ uint4* push_slot(const DeviceHandle& h, int owner, uint64_t push_epoch, int src) {
  size_t slot_vecs = h.push_capacity / 16;
  size_t base = kStagingOffset + 2 * h.capacity;
  return reinterpret_cast<uint4*>(h.regions[owner] + base) + ((push_epoch % 3) * h.world + src) * slot_vecs;
}

__device__ __forceinline__ void st_volatile_v4(uint4* p, const uint4& v) {
  asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(p), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
               : "memory");
}

__device__ __forceinline__ uint4 ld_volatile_v4(const uint4* p) {
  uint4 v;
  asm volatile("ld.volatile.global.v4.u32 {%0, %1, %2, %3}, [%4];"
               : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
               : "l"(p)
               : "memory");
  return v;
}

// 16-bit types: a lane is ready when it is not 0x8000 (senders never send -0.0). fp32: a word is ready when it is not
// the sentinel word (senders never send that denormal). Checking per lane, not per vector, is what makes a 16-byte
// store that arrives in pieces safe.
template <typename T>
__device__ __forceinline__ bool lane_ready(uint32_t w) {
  if constexpr (SameType<T, float>::value)
    return w != kSentinelWord;
  else
    return (w & 0xffffu) != 0x8000u && (w >> 16) != 0x8000u;
}

template <typename T>
__device__ __forceinline__ bool vec_ready(const uint4& v) {
  return lane_ready<T>(v.x) && lane_ready<T>(v.y) && lane_ready<T>(v.z) && lane_ready<T>(v.w);
}

template <typename T>
__device__ __forceinline__ uint32_t unsentinel(uint32_t w) {
  if constexpr (SameType<T, float>::value) {
    return w == kSentinelWord ? 0x80000000u : w;  // a -4.6e-41 denormal becomes -0.0
  } else {
    // -0.0 becomes +0.0 lane by lane; the sum is the same.
    uint32_t lo = (w & 0xffffu) == 0x8000u ? 0u : (w & 0xffffu);
    uint32_t hi = (w >> 16) == 0x8000u ? 0u : (w >> 16);
    return lo | (hi << 16);
  }
}

template <typename T, int W, bool kPdl>
__device__ __forceinline__ void oneshot_push_body(const DeviceHandle& h, const T* in, T* out, size_t nvec,
                                                  bool in_aligned, bool out_aligned) {
  __shared__ CallState s;
  // The block size is chosen per call (a small message needs fewer than kThreads threads).
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t first = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  pdl_wait<kPdl>();
  // Load the first input vector before reading the counters, so the two loads' latencies overlap.
  uint4 v0 = make_uint4(0, 0, 0, 0);
  if (first < nvec) v0 = load_user(in, first, in_aligned);
  read_counters(h, s);
  if (s.abort) return;

  // Send: each vector to its slot in every rank (this one included, so every rank reduces the same bits in the same
  // order and results are bitwise identical).
  for (size_t i = first; i < nvec; i += stride) {
    uint4 v = i == first ? v0 : load_user(in, i, in_aligned);
    v.x = unsentinel<T>(v.x);
    v.y = unsentinel<T>(v.y);
    v.z = unsentinel<T>(v.z);
    v.w = unsentinel<T>(v.w);
#pragma unroll
    for (int r = 0; r < W; ++r) st_volatile_v4(push_slot(h, r, s.push_epoch, h.rank) + i, v);
  }
  pdl_launch_dependents<kPdl>();

  // Re-arm the buffer the previous push call read (local stores only), sized by that call.
  {
    const size_t last = static_cast<size_t>(s.push_last);
    const uint4 sentinel = make_uint4(kSentinelWord, kSentinelWord, kSentinelWord, kSentinelWord);
    for (int r = 0; r < W; ++r) {
      uint4* old = push_slot(h, h.rank, s.push_epoch + 2, r);
      for (size_t i = first; i < last; i += stride) old[i] = sentinel;
    }
  }

  // Receive and reduce, in fixed rank order.
  const uint4* slot[W];
#pragma unroll
  for (int r = 0; r < W; ++r) slot[r] = push_slot(h, h.rank, s.push_epoch, r);
  bool timed_out = false;
  for (size_t i = first; i < nvec && !timed_out; i += stride) {
    // Every rank's slot is loaded before any is tested: the W polls then cost one load latency, not W in a row.
    uint4 got[W];
#pragma unroll
    for (int r = 0; r < W; ++r) got[r] = ld_volatile_v4(slot[r] + i);
    float acc[Elem<T>::kPerVec] = {};
#pragma unroll
    for (int r = 0; r < W; ++r) {
      uint4 v = got[r];
      uint64_t start = 0;
      for (uint32_t spins = 0; !vec_ready<T>(v) && !timed_out; ++spins) {
        v = ld_volatile_v4(slot[r] + i);
        if ((spins & 255u) != 255u) continue;
        if (peer_gave_up(h, s)) {
          timed_out = true;
          break;
        }
        uint64_t now = global_timer_ns();
        if (start == 0) {
          start = now;
        } else if (now - start > h.timeout_ns) {
          report_timeout(h, s, r);
          timed_out = true;
        }
      }
      accumulate<T>(acc, v);
    }
    if (!timed_out) store_user(out, i, pack<T>(acc), out_aligned);
  }
  // Every thread reaches this barrier, also those that gave up, so none is left waiting on an exited one.
  __syncthreads();
  if (s.abort) return;
  end_call(h, s, static_cast<long long>(nvec));
}

}  // namespace customar::detail
