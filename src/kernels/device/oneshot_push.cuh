// One-shot push with the flag in the data (Lamport): every rank stores its input straight into a slot of every
// peer's push buffer; receivers poll their own slots until no lane holds the sentinel, reduce (their own share taken
// from registers or the input, never from memory they wrote), and the buffer is re-armed with the sentinel in the next
// push call. One NVLink crossing and no barrier: the lowest latency there is for small messages. Three buffers rotate:
// a peer can be at most one push call ahead (it cannot finish call j+1 without this rank's data of call j+1), so while
// this rank reads buffer j%3, peers may write only (j+1)%3, and the buffer cleared in call j, (j+2)%3, was last read in
// call j-1.
#pragma once

#include "kernels/device/common.cuh"

namespace customar::detail {

// The slot in `owner`'s buffer buf that rank src (never owner itself) writes: peers in rank order, owner skipped.
// `region` is owner's region as mapped here.
__device__ __forceinline__ uint4* push_slot_in(const DeviceHandle& h, uint8_t* region, int owner, unsigned buf,
                                               int src) {
  size_t slot_vecs = h.push_capacity / 16;
  size_t base = kStagingOffset + 2 * h.capacity;
  const int peer = src < owner ? src : src - 1;
  return reinterpret_cast<uint4*>(region + base) + (size_t(buf) * (h.world - 1) + peer) * slot_vecs;
}

__device__ __forceinline__ uint4* push_slot(const DeviceHandle& h, int owner, unsigned buf, int src) {
  return push_slot_in(h, h.regions[owner], owner, buf, src);
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

// A rank's share as it travels: every lane that would read as the sentinel made ready.
template <typename T>
__device__ __forceinline__ uint4 as_sent(uint4 v) {
  v.x = unsentinel<T>(v.x);
  v.y = unsentinel<T>(v.y);
  v.z = unsentinel<T>(v.z);
  v.w = unsentinel<T>(v.w);
  return v;
}

// The poll checks for a timeout or a departed peer once every this many spins (each spin one L2 round trip of a few
// hundred ns, so a check well under every millisecond), never in the loop condition: the check costs more than a poll
// (0.04-0.09 us at 1 KiB on 2x H200 when it ran every spin).
constexpr uint32_t kPollCheckSpins = 1024;

// Send, re-arm, receive. kOne: every loop runs at most once (the message and the previous push each fit in one vector
// per thread, which covers every decode-sized message). The loops are the same code either way; a uniform branch picks
// the variant, so the common case has no loop back edges (0.12 us at 1 KiB on 2x H200).
// A thread that gives up waiting returns at once (the communicator is then marked failed).
// kWeak: the sends are plain stores instead of st.volatile: in the one-block kernel and the multi-block kernel below
// 1 MiB, not in the wide one (see push_one_block_body for why that is safe, push_call for where).
// kDirect: no run-time index into the handle (see push_wide_body).
template <typename T, int W, bool kPdl, bool kOne, bool kWeak, bool kDirect>
__device__ __forceinline__ void push_exchange(const DeviceHandle& h, const T* in, T* out, size_t nvec, size_t last,
                                              unsigned buf, uint4 v0, bool in_aligned, bool out_aligned) {
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t first = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  // Send: each vector to its slot in every peer. This rank's own share is not stored and read back (a local slot costs
  // a store, a re-arm store and a load per vector: 0.2-0.9 us from 1 to 4 MiB on 2x H200). The share it reduces is the
  // same unsentinel()ed vector the peers receive, so every rank sums the same bits in the same order and results stay
  // bitwise identical.
  // This rank's region, for kDirect only: picked without indexing regions[] at run time. The other kernels index it
  // where it is used, as measured (hoisting it changes their schedule).
  uint8_t* self = nullptr;
  if constexpr (kDirect) self = region_of<W>(h, h.rank);
  // wait_expired's world: compile-time (no run-time index into the handle) only for kDirect.
  constexpr int kWaitWorld = kDirect ? W : 0;
  uint4 own = make_uint4(0, 0, 0, 0);
  for (size_t i = first; i < nvec; i += stride) {
    uint4 v = as_sent<T>(i == first ? v0 : load_user(in, i, in_aligned));
#pragma unroll
    for (int r = 0; r < W; ++r) {
      if (r == h.rank) continue;
      if constexpr (kWeak)
        push_slot(h, r, buf, h.rank)[i] = v;
      else
        st_volatile_v4(push_slot(h, r, buf, h.rank) + i, v);
    }
    if constexpr (kOne) {
      own = v;
      break;
    }
  }
  pdl_launch_dependents<kPdl>();

  // Re-arm the buffer the previous push call read (local stores only), sized by that call.
  {
    const uint4 sentinel = make_uint4(kSentinelWord, kSentinelWord, kSentinelWord, kSentinelWord);
    const unsigned old_buf = buf == 0 ? 2u : buf - 1u;
    for (int r = 0; r < W; ++r) {
      if (r == h.rank) continue;
      uint4* old = kDirect ? push_slot_in(h, self, h.rank, old_buf, r) : push_slot(h, h.rank, old_buf, r);
      for (size_t i = first; i < last; i += stride) {
        old[i] = sentinel;
        if constexpr (kOne) break;
      }
    }
  }

  // Receive and reduce, in fixed rank order.
  const uint4* slot[W];
#pragma unroll
  for (int r = 0; r < W; ++r)
    slot[r] = r == h.rank ? nullptr : kDirect ? push_slot_in(h, self, h.rank, buf, r) : push_slot(h, h.rank, buf, r);
  for (size_t i = first; i < nvec; i += stride) {
    // This rank's share: kept from the send when each thread has one vector, else read again from the input (this
    // thread alone touches index i of in and out, so an in-place call has not overwritten it yet).
    uint4 mine = own;
    if constexpr (!kOne) mine = as_sent<T>(i == first ? v0 : load_user(in, i, in_aligned));
    // Every peer's slot is loaded before any is tested: the W polls then cost one load latency, not W in a row.
    uint4 got[W];
#pragma unroll
    for (int r = 0; r < W; ++r) got[r] = r == h.rank ? mine : ld_volatile_v4(slot[r] + i);
    float acc[Elem<T>::kPerVec] = {};
#pragma unroll
    for (int r = 0; r < W; ++r) {
      CallState s;  // wait_expired's abort flag; the push carries its abort by returning instead
      uint64_t start = 0;
      for (uint32_t spins = 1; !vec_ready<T>(got[r]); ++spins) {
        got[r] = ld_volatile_v4(slot[r] + i);
        if (spins % kPollCheckSpins != 0) continue;
        if (wait_expired<kWaitWorld>(h, kDirect ? self : h.regions[h.rank], s, r, start)) return;
      }
      accumulate<T>(acc, got[r]);
    }
    store_user(out, i, pack<T>(acc), out_aligned);
    if constexpr (kOne) break;
  }
}

// kSingle: the grid is one block (the host launches the push_one_block kernels only then; gridDim.x is checked anyway).
// kDirect: see push_exchange.
template <typename T, int W, bool kPdl, bool kSingle, bool kDirect>
__device__ __forceinline__ void push_call(const DeviceHandle& h, const T* in, T* out, size_t nvec, bool in_aligned,
                                          bool out_aligned) {
  // The whole call state is one shared word: (vectors of the previous push << 8) | (failed << 2) | this call's buffer,
  // read and written once per call: the fewest shared-memory round trips on the latency path.
  __shared__ unsigned long long state;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t first = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  pdl_wait<kPdl>();
  // Load the first input vector before reading the counters, so the two loads' latencies overlap.
  uint4 v0 = make_uint4(0, 0, 0, 0);
  if (first < nvec) v0 = load_user(in, first, in_aligned);
  if (threadIdx.x == 0) {
    // Written by the previous push call (every block of it has finished: the kernel boundary, or pdl_wait, makes it
    // visible). Two independent loads, one round trip.
    const unsigned long long c = h.counters[kCounterPushState + blockIdx.x];
    const unsigned long long failed = h.counters[kCounterFailed];
    const unsigned long long prev = c & 3u;
    state = ((c >> 2) << 8) | (failed != 0 ? 4u : 0u) | (prev == 2 ? 0u : prev + 1);
  }
  __syncthreads();
  const unsigned long long word = state;
  // After a timeout the communicator is broken; kernels already queued (a replayed graph holds many) must not each
  // wait out the timeout again.
  if (word & 4u) return;
  const unsigned buf = static_cast<unsigned>(word & 3u);
  const size_t last = static_cast<size_t>(word >> 8);
  if constexpr (kSingle) {
    if (gridDim.x == 1) {
      if (nvec <= stride && last <= stride)
        push_exchange<T, W, kPdl, true, true, kDirect>(h, in, out, nvec, last, buf, v0, in_aligned, out_aligned);
      else
        push_exchange<T, W, kPdl, false, true, kDirect>(h, in, out, nvec, last, buf, v0, in_aligned, out_aligned);
      // The one block writes every slot, two per 16-byte store (kCounterPushState is 32-byte aligned): 256 stores
      // instead of 512.
      static_assert(kMaxPushBlocks % 2 == 0, "the slots are written two per store");
      const unsigned long long record = (static_cast<unsigned long long>(nvec) << 2) | buf;
      const uint4 pair = make_uint4(unsigned(record), unsigned(record >> 32), unsigned(record), unsigned(record >> 32));
      uint4* slots = reinterpret_cast<uint4*>(h.counters + kCounterPushState);
      for (unsigned i = threadIdx.x; i < unsigned(kMaxPushBlocks) / 2; i += blockDim.x) slots[i] = pair;
      return;
    }
  }
  // Plain-store sends in the multi-block kernel below 1 MiB, volatile ones in the wide kernel: each the faster there
  // (plain: 0.05-0.15 us less from 8 to 512 KiB; volatile: 0.12 us less at 1 MiB; on 2x H200). The one-block kernel's
  // copy of this path (for a grid it is never launched with) keeps them volatile, so that its code is the one measured.
  constexpr bool kWeakSends = !kDirect && !kSingle;
  // Uniform across the grid (nvec, last and the grid size are), so no block diverges from another.
  if (nvec <= stride && last <= stride)
    push_exchange<T, W, kPdl, true, kWeakSends, kDirect>(h, in, out, nvec, last, buf, v0, in_aligned, out_aligned);
  else
    push_exchange<T, W, kPdl, false, kWeakSends, kDirect>(h, in, out, nvec, last, buf, v0, in_aligned, out_aligned);
  // Record this call for the next push in every slot: slot s by block s % gridDim.x, so a block writes its own slot
  // (after reading it) and slots no block of this call reads. No block waits for another: electing a last block to
  // write one shared word puts an atomic round trip at the end of every multi-block call (0.15-0.3 us from 8 KiB to
  // 1 MiB on 2x H200). A one-block grid runs push_one_block, which writes the slots two per store. A thread that gave
  // up records too: it has marked the communicator failed, so every later push returns as soon as it has read them.
  const unsigned long long record = (static_cast<unsigned long long>(nvec) << 2) | buf;
  for (unsigned slot = blockIdx.x + threadIdx.x * gridDim.x; slot < unsigned(kMaxPushBlocks);
       slot += blockDim.x * gridDim.x)
    h.counters[kCounterPushState + slot] = record;
}

// The push of a multi-block grid below 1 MiB (kWidePushVecs), with plain-store sends (push_call). It indexes the
// by-value handle with run-time ranks, so the compiler copies the handle (120 bytes) to local memory at kernel entry,
// before the PDL wait: the constant-bank misses of its fields are then paid while the previous kernel drains (without
// the copy it is 0.05-0.1 us slower from 8 to 128 KiB on 2x H200).
template <typename T, int W, bool kPdl>
__device__ __forceinline__ void push_multi_block_body(const DeviceHandle& h, const T* in, T* out, size_t nvec,
                                                      bool in_aligned, bool out_aligned) {
  push_call<T, W, kPdl, false, false>(h, in, out, nvec, in_aligned, out_aligned);
}

// The push from 1 MiB (the wide grid: up to 1024 threads per SM), with no run-time index into the handle and so no
// local copy of it: 120 bytes written and read back per thread is 16 MiB of local-memory traffic on a grid of 131072
// threads, and the copy's loads turn the re-arm's stores into generic ones (1.4 us at 2 MiB, 2.3 at 4 MiB, on
// 2x H200).
template <typename T, int W, bool kPdl>
__device__ __forceinline__ void push_wide_body(const DeviceHandle& h, const T* in, T* out, size_t nvec, bool in_aligned,
                                               bool out_aligned) {
  push_call<T, W, kPdl, false, true>(h, in, out, nvec, in_aligned, out_aligned);
}

// The push of a one-block grid (messages up to 4 KiB with the built-in shape), a kernel of its own: plain stores for
// the sends and the call record two slots per store (0.1 us at 1 KiB on 2x H200). Each push kernel is an entry point
// of its own because an edit to one then leaves the others' SASS as it was: as branches of one kernel, edits for one
// size range moved the others by 0.03-0.4 us (register allocation or code layout). Plain stores are safe for the
// Lamport protocol: each slot is written once per call and read only after a poll saw every lane of it arrive (the
// 32-bit elements of a vector store are single-copy atomic, and lanes are checked one by one), and the kernel boundary
// orders them before the next call's re-arm.
template <typename T, int W, bool kPdl>
__device__ __forceinline__ void push_one_block_body(const DeviceHandle& h, const T* in, T* out, size_t nvec,
                                                    bool in_aligned, bool out_aligned) {
  push_call<T, W, kPdl, true, false>(h, in, out, nvec, in_aligned, out_aligned);
}

}  // namespace customar::detail
