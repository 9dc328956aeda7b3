// Device code shared by every all-reduce kernel. Written without any header so that the same text compiles with nvcc
// (V1, precompiled) and with NVRTC (V2, compiled at run time for the exact GPU, with programmatic dependent launch).
#pragma once

#include "kernels/shape.h"

namespace customar::detail {

// Element types as plain bits: the CUDA half/bf16 headers are not available to NVRTC without a toolkit install.
struct f16 {
  unsigned short bits;
};
struct bf16 {
  unsigned short bits;
};

template <typename A, typename B>
struct SameType {
  static constexpr bool value = false;
};
template <typename A>
struct SameType<A, A> {
  static constexpr bool value = true;
};

__device__ __forceinline__ float to_float(float x) { return x; }
__device__ __forceinline__ float to_float(f16 x) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(x.bits));
  return f;
}
__device__ __forceinline__ float to_float(bf16 x) { return __uint_as_float(static_cast<uint32_t>(x.bits) << 16); }

template <typename T>
__device__ __forceinline__ T from_float(float x) {
  if constexpr (SameType<T, float>::value) {
    return x;
  } else if constexpr (SameType<T, f16>::value) {
    f16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.bits) : "f"(x));
    return h;
  } else {
    bf16 h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h.bits) : "f"(x));
    return h;
  }
}

template <typename T>
struct Elem {
  static constexpr int kPerVec = 16 / sizeof(T);
};

// ---- programmatic dependent launch (sm90+) ----------------------------------------------------------------------
// With PDL the kernel may start while the previous kernel in the stream is still finishing; pdl_wait() is where it
// stops until that kernel's memory is visible, so everything before it must touch no memory others wrote.
template <bool kPdl>
__device__ __forceinline__ void pdl_wait() {
#if __CUDA_ARCH__ >= 900
  if constexpr (kPdl) asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}
template <bool kPdl>
__device__ __forceinline__ void pdl_launch_dependents() {
#if __CUDA_ARCH__ >= 900
  if constexpr (kPdl) asm volatile("griddepcontrol.launch_dependents;" ::: "memory");
#endif
}

// Kernel parameters live in the constant bank, and the first read of a parameter line in a new launch misses the
// constant cache (a memory round trip). ptxas places each parameter read next to its use, which for a __grid_constant__
// handle is after pdl_wait(), on the critical path. Folding the fast path's parameter words into one shared-memory
// store before the wait (a memory operation, so it stays before the wait; the value is never read) pays those misses
// while the previous kernel drains (0.1-0.2 us per pull call up to 4 MiB on 2x H200). One warp suffices: the constant
// cache is per SM. The by-value push and two-shot get the same from the compiler's copy of the handle to local memory
// at kernel entry.
template <int W>
__device__ __forceinline__ void touch_params(const DeviceHandle& h, const void* in, const void* out, size_t nvec,
                                             bool in_aligned, bool out_aligned) {
  __shared__ unsigned sink;
  unsigned long long x = reinterpret_cast<unsigned long long>(h.counters) ^ h.capacity ^ h.push_capacity ^
                         static_cast<unsigned long long>(h.rank) ^ reinterpret_cast<unsigned long long>(in) ^
                         reinterpret_cast<unsigned long long>(out) ^ nvec ^
                         static_cast<unsigned long long>(in_aligned) ^ static_cast<unsigned long long>(out_aligned);
#pragma unroll
  for (int r = 0; r < W; ++r) x ^= reinterpret_cast<unsigned long long>(h.regions[r]);
  if (threadIdx.x == 0)
    asm volatile("st.volatile.u32 [%0], %1;" ::"l"(&sink), "r"(static_cast<unsigned>(x ^ (x >> 32))) : "memory");
}

// ---- flags ------------------------------------------------------------------------------------------------------
// Flags cross GPUs, so both sides use system scope: the writer's release orders its block's earlier stores (made
// visible to it by __syncthreads) before the flag; the reader's acquire orders the flag before its later loads of the
// peer's data. Relaxed or .gpu-scope versions of these were the wrong-result bugs of earlier implementations.
__device__ __forceinline__ uint64_t ld_acquire_sys(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.acquire.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}

__device__ __forceinline__ void st_release_sys(uint64_t* p, uint64_t v) {
  asm volatile("st.release.sys.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

// Volatile 64-bit words: each access is one load or store that the compiler neither drops nor merges, with no memory
// ordering beyond that. Enough for a word that carries no data or that travels in the same store as its data.
__device__ __forceinline__ uint64_t ld_volatile_u64(const uint64_t* p) {
  return *static_cast<const volatile uint64_t*>(p);
}
__device__ __forceinline__ void st_volatile_u64(uint64_t* p, uint64_t v) { *static_cast<volatile uint64_t*>(p) = v; }

__device__ __forceinline__ uint64_t global_timer_ns() {
  uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

__device__ __forceinline__ uint64_t* flag_slot(uint8_t* region, int phase, int block, int src) {
  return reinterpret_cast<uint64_t*>(region) + (phase * kMaxBlocks + block) * kMaxRanks + src;
}

// Per-call state every block keeps in shared memory.
struct CallState {
  uint64_t epoch;  // 1 + the number of barrier calls completed before this one (push calls keep their own state)
  int abort;       // set when a wait timed out: the block leaves without finishing
};

// Reads this call's counters into shared memory. The caller has passed pdl_wait() (if it launched with PDL) and may
// have issued independent loads first, so their latencies overlap.
__device__ __forceinline__ void read_counters(const DeviceHandle& h, CallState& s) {
  if (threadIdx.x == 0) {
    // Written by the previous barrier kernel's last block; the kernel boundary (or pdl_wait) makes it visible.
    s.epoch = h.counters[kCounterEpoch] + 1;
    // After a timeout the communicator is broken; kernels already queued (a replayed graph holds many) must not
    // each wait out the timeout again.
    s.abort = h.counters[kCounterFailed] != 0;
  }
  __syncthreads();
}

template <bool kPdl>
__device__ __forceinline__ void begin_call(const DeviceHandle& h, CallState& s) {
  pdl_wait<kPdl>();
  read_counters(h, s);
}

// Thread 0 of each block, once per call: true in exactly one block, the last to finish. No fence needed: the counters
// are read only by the next kernel, after this one has completed. A grid of one block (every small message) skips the
// atomic round trip to L2, which is on the critical path of latency.
__device__ __forceinline__ bool last_block_done(const DeviceHandle& h) {
  if (gridDim.x == 1) return true;
  unsigned long long* done = reinterpret_cast<unsigned long long*>(&h.counters[kCounterBlocksDone]);
  const bool last = atomicAdd(done, 1ull) == gridDim.x - 1;  // every block has started and finished
  if (last) *done = 0;
  return last;
}

__device__ __forceinline__ void end_call(const DeviceHandle& h, const CallState& s) {
  __syncthreads();
  if (threadIdx.x == 0 && last_block_done(h)) h.counters[kCounterEpoch] = s.epoch;
}

__device__ __forceinline__ void mark_failed(const DeviceHandle& h, CallState& s, int error_word) {
  // Host-mapped memory, read by the host without synchronising. A plain store, not an atomic: atomics on host memory
  // need PCIe atomics, and any one missing rank is a right answer when several blocks report.
  *reinterpret_cast<volatile int*>(h.error) = error_word;
  __threadfence_system();
  h.counters[kCounterFailed] = 1;
  s.abort = 1;
}

// W > 0: the caller never indexes the handle at run time (kDirect in oneshot_push.cuh), so neither does this.
template <int W = 0>
__device__ __forceinline__ void report_timeout(const DeviceHandle& h, CallState& s, int missing) {
  // Tell every peer that this rank is leaving: one that was only late would otherwise finish this call, wait in the
  // next for a rank that never comes, and meet it nowhere (not in NCCL, not in the destructor's barrier).
  const uint32_t word = static_cast<uint32_t>(h.rank + 1) | (static_cast<uint32_t>(missing + 1) << 8);
  if constexpr (W > 0) {
#pragma unroll
    for (int r = 0; r < W; ++r)
      if (r != h.rank) *reinterpret_cast<volatile uint32_t*>(h.regions[r] + kPoisonOffset) = word;
  } else {
    for (int r = 0; r < h.world; ++r)
      if (r != h.rank) *reinterpret_cast<volatile uint32_t*>(h.regions[r] + kPoisonOffset) = word;
  }
  mark_failed(h, s, missing + 1);
}

// Called where a wait reads its timer: true (and the call aborted) when a peer has announced that it gave up. A rank
// that the peer waited for learns who left; any other rank reports the rank that did not arrive, as its own wait
// would have a moment later.
// `self` is this rank's region (h.regions[h.rank]).
__device__ __forceinline__ bool peer_gave_up(const DeviceHandle& h, const uint8_t* self, CallState& s) {
  uint32_t word = *reinterpret_cast<volatile const uint32_t*>(self + kPoisonOffset);
  if (word == 0) return false;
  const int gave_up = static_cast<int>(word & 0xffu) - 1;
  const int missing = static_cast<int>(word >> 8) - 1;
  mark_failed(h, s, missing == h.rank ? (kErrorPeerGaveUp | (gave_up + 1)) : missing + 1);
  return true;
}

// The rare part of every wait for rank `missing` (a barrier flag, a push slot), run once every so many spins: true,
// and the call aborted, when a peer has announced that it gave up or the wait has lasted past the timeout. `start` is
// the wait's own clock, 0 before its first check. `self` is this rank's region (h.regions[h.rank]); W > 0: no run-time
// index into the handle (kDirect in oneshot_push.cuh).
template <int W = 0>
__device__ __forceinline__ bool wait_expired(const DeviceHandle& h, const uint8_t* self, CallState& s, int missing,
                                             uint64_t& start) {
  if (peer_gave_up(h, self, s)) return true;
  const uint64_t now = global_timer_ns();
  if (start == 0) {
    start = now;
    return false;
  }
  if (now - start <= h.timeout_ns) return false;
  report_timeout<W>(h, s, missing);
  return true;
}

// regions[r] by a chain of selects over the compile-time world instead of an index: a run-time index into a by-value
// handle makes the compiler copy the whole handle to local memory at kernel entry.
template <int W>
__device__ __forceinline__ uint8_t* region_of(const DeviceHandle& h, int r) {
  uint8_t* p = h.regions[0];
#pragma unroll
  for (int k = 1; k < W; ++k) p = r == k ? h.regions[k] : p;
  return p;
}

// Block b of this rank meets block b of every peer. Thread t < world signals rank t and waits for rank t, so the
// waits for all peers run in parallel. Returns false if a peer did not arrive within the timeout.
template <int W>
__device__ __forceinline__ bool block_barrier(const DeviceHandle& h, int phase, CallState& s) {
  __syncthreads();
  const int t = threadIdx.x;
  if (t < W && t != h.rank) {
    st_release_sys(flag_slot(h.regions[t], phase, blockIdx.x, h.rank), s.epoch);
    const uint64_t* mine = flag_slot(h.regions[h.rank], phase, blockIdx.x, t);
    uint64_t start = 0;
    for (uint32_t spins = 0; ld_acquire_sys(mine) < s.epoch; ++spins) {
      if ((spins & 255u) != 255u) continue;  // read the timer rarely: it costs more than a flag load
      if (wait_expired(h, h.regions[h.rank], s, t, start)) break;
    }
  }
  __syncthreads();
  return s.abort == 0;
}

// ---- 16-byte vectors --------------------------------------------------------------------------------------------
template <typename T>
__device__ __forceinline__ void accumulate(float (&acc)[Elem<T>::kPerVec], const uint4& v) {
  const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int k = 0; k < Elem<T>::kPerVec; ++k) acc[k] += to_float(e[k]);
}

template <typename T>
__device__ __forceinline__ uint4 pack(const float (&acc)[Elem<T>::kPerVec]) {
  uint4 v;
  T* e = reinterpret_cast<T*>(&v);
#pragma unroll
  for (int k = 0; k < Elem<T>::kPerVec; ++k) e[k] = from_float<T>(acc[k]);
  return v;
}

// The caller's tensors need only element alignment; a pointer off 16 bytes is handled element by element (the choice
// is the same for the whole call, so the branch costs nothing per element).
template <typename T>
__device__ __forceinline__ uint4 load_user(const T* p, size_t vec, bool aligned) {
  if (aligned) return reinterpret_cast<const uint4*>(p)[vec];
  uint4 v;
  T* e = reinterpret_cast<T*>(&v);
#pragma unroll
  for (int k = 0; k < Elem<T>::kPerVec; ++k) e[k] = p[vec * Elem<T>::kPerVec + k];
  return v;
}

template <typename T>
__device__ __forceinline__ void store_user(T* p, size_t vec, const uint4& v, bool aligned) {
  if (aligned) {
    reinterpret_cast<uint4*>(p)[vec] = v;
    return;
  }
  const T* e = reinterpret_cast<const T*>(&v);
#pragma unroll
  for (int k = 0; k < Elem<T>::kPerVec; ++k) p[vec * Elem<T>::kPerVec + k] = e[k];
}

// Unroll factor of the per-thread loops (kernels/shape.h: the host sizes grids by the same rule).
template <int W>
constexpr int kUnroll = unroll_for(W);

// Copies vectors [beg, end) of the caller's input into a staging buffer.
template <int U, typename T>
__device__ __forceinline__ void copy_in(uint4* dst, const T* in, size_t beg, size_t end, bool aligned) {
  for (size_t base = beg + threadIdx.x; base < end; base += size_t(kThreads) * U) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      size_t i = base + size_t(u) * kThreads;
      if (i < end) v[u] = load_user(in, i, aligned);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      size_t i = base + size_t(u) * kThreads;
      if (i < end) dst[i] = v[u];
    }
  }
}

// out[i] (and also_to[i] when given) = sum over ranks r of src[r][i], i in [beg, end), in fixed rank order 0..W-1 on
// every rank, which makes the results bitwise identical across ranks.
template <typename T, int W, int U>
__device__ __forceinline__ void reduce_range(const uint4* const (&src)[W], size_t beg, size_t end, T* out,
                                             bool out_aligned, uint4* also_to) {
  for (size_t base = beg + threadIdx.x; base < end; base += size_t(kThreads) * U) {
    uint4 v[U][W];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      size_t i = base + size_t(u) * kThreads;
      if (i < end) {
#pragma unroll
        for (int r = 0; r < W; ++r) v[u][r] = __ldcg(src[r] + i);  // all loads in flight before the first add
      }
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      size_t i = base + size_t(u) * kThreads;
      if (i < end) {
        float acc[Elem<T>::kPerVec] = {};
#pragma unroll
        for (int r = 0; r < W; ++r) accumulate<T>(acc, v[u][r]);
        uint4 sum = pack<T>(acc);
        if (also_to != nullptr) also_to[i] = sum;
        store_user(out, i, sum, out_aligned);
      }
    }
  }
}

// out[i] = from[i] for i in [beg, end): the all-gather half of two-shot.
template <int U, typename T>
__device__ __forceinline__ void copy_out(const uint4* from, size_t beg, size_t end, T* out, bool out_aligned) {
  for (size_t base = beg + threadIdx.x; base < end; base += size_t(kThreads) * U) {
    uint4 v[U];
#pragma unroll
    for (int u = 0; u < U; ++u) {
      size_t i = base + size_t(u) * kThreads;
      if (i < end) v[u] = __ldcg(from + i);
    }
#pragma unroll
    for (int u = 0; u < U; ++u) {
      size_t i = base + size_t(u) * kThreads;
      if (i < end) store_user(out, i, v[u], out_aligned);
    }
  }
}

__device__ __forceinline__ uint4* staging(const DeviceHandle& h, int r, uint64_t epoch) {
  // Alternate two buffers by call parity: a rank can only start call k+2 (reusing call k's buffer) after every peer
  // met it in call k+1, which they enter only after finishing call k. So one barrier per call suffices.
  return reinterpret_cast<uint4*>(h.regions[r] + kStagingOffset + (epoch & 1) * h.capacity);
}

}  // namespace customar::detail
