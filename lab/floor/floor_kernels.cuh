// The kernels of customar-floor (included by customar_floor.cu only; its header says what each row measures): launch
// gaps, the one-way ping, the Lamport push of mini-push and lamport-N (one kernel, two shapes) and the NVLink streams,
// built from the primitives of customar's own kernels. Every wait gives up after kGiveUpNs, so a broken row fails
// instead of hanging.
#pragma once

#include <cuda_runtime.h>

#include <utility>

#include "check_kernels.h"
#include "kernels/device/oneshot_push.cuh"  // the flag, timer, PDL and Lamport primitives customar's kernels use

namespace customar::lab {

using namespace customar::detail;

constexpr uint64_t kGiveUpNs = 2000000000ull;  // every wait in this tool gives up after 2 s
// The Lamport kernel's __launch_bounds__: one block of this many threads is resident on every SM, whatever its
// registers (virtual ranks size their grids by it).
constexpr int kLamportMaxThreads = 256;

// ---- launch gaps ---------------------------------------------------------------------------------------------------
__global__ void empty_kernel() {}

__global__ void empty_kernel_pdl() {
  pdl_wait<true>();
  pdl_launch_dependents<true>();
}

// Each block's thread 0 adds one; the last block resets the counter, as last_block_done() does.
__global__ void atomic_kernel_pdl(unsigned long long* done) {
  pdl_wait<true>();
  pdl_launch_dependents<true>();
  __syncthreads();
  if (threadIdx.x == 0 && atomicAdd(done, 1ull) == gridDim.x - 1) *done = 0;
}

// Reads the state, shares it through shared memory, writes state + 1: the bookkeeping of every customar call.
__global__ void state_kernel_pdl(unsigned long long* state) {
  __shared__ unsigned long long s;
  pdl_wait<true>();
  if (threadIdx.x == 0) s = *state;
  __syncthreads();
  pdl_launch_dependents<true>();
  __syncthreads();
  if (threadIdx.x == 0) *state = s + 1;
}

// ---- one-way: rank 0 (initiator) sends i and waits for i back; the peer echoes -----------------------------------
template <bool kVolatile>
__device__ __forceinline__ void send_flag(uint64_t* p, uint64_t v) {
  if constexpr (kVolatile)
    st_volatile_u64(p, v);
  else
    st_release_sys(p, v);
}

// `base` makes the flags of successive runs distinct, so no reset is needed between runs. Writes ~0 to *ns_out when
// it gave up (kGiveUpNs after its start), so that a missing peer cannot hang the tool.
template <bool kVolatile>
__global__ void pingpong(uint64_t* peer_flag, const uint64_t* my_flag, uint64_t base, int n, bool initiator,
                         unsigned long long* ns_out) {
  const uint64_t t0 = global_timer_ns();
  for (int i = 1; i <= n; ++i) {
    const uint64_t want = base + i;
    if (initiator) send_flag<kVolatile>(peer_flag, want);
    while ((kVolatile ? ld_volatile_u64(my_flag) : ld_acquire_sys(my_flag)) < want)
      if (global_timer_ns() - t0 > kGiveUpNs) {
        *ns_out = ~0ull;
        return;
      }
    if (!initiator) send_flag<kVolatile>(peer_flag, want);
  }
  *ns_out = global_timer_ns() - t0;
}

// ---- the Lamport push: mini-push (one block) and lamport-N (the push's grid) ---------------------------------------
// Every rank's buffer: 3 rotations x W sources x slot_vecs vectors, the sentinel where empty. A rank's own slot is
// never written: its share stays in a register or the input, as in customar's push. The rotation argument is customar's
// (oneshot_push.cuh).
// buf[] is indexed only in unrolled loops: a run-time index copies the struct to local memory.
struct Lamport {
  uint4* buf[kMaxRanks];      // buf[r]: rank r's buffer, mapped here
  uint4* mine;                // buf[rank]
  unsigned long long* state;  // one word per block: every call of one measurement has the same grid
  const uint4* in;
  uint4* out;
  int* gave_up;  // host-mapped: set by a poll that gave up, read by every later one
  size_t nvec, slot_vecs;
  int rank;
};

template <int W>
__device__ __forceinline__ uint4* lamport_slot(const Lamport& p, uint4* base, unsigned long long e, int src, size_t i) {
  return base + (size_t(e % 3) * W + src) * p.slot_vecs + i;
}

// This rank's share of vector i: the first from a register, the others read again from the input.
__device__ __forceinline__ uint4 lamport_share(const Lamport& p, size_t i, size_t first, const uint4& sent0) {
  return i == first ? sent0 : as_sent<bf16>(p.in[i]);
}

// Polls *slot into v until every lane has arrived; false when it gave up: kGiveUpNs after its first timer check, or
// at its first check once any poll of this rank has given up, so a broken row ends in well under a second per launch.
__device__ __forceinline__ bool lamport_wait(const uint4* slot, uint4& v, int* gave_up) {
  uint64_t t0 = 0;
  for (uint32_t spins = 1; !vec_ready<bf16>(v); ++spins) {
    v = ld_volatile_v4(slot);
    if (spins % kPollCheckSpins != 0) continue;  // the timer is read rarely: it costs more than a poll
    if (*reinterpret_cast<volatile int*>(gave_up) != 0) return false;
    const uint64_t now = global_timer_ns();
    if (t0 == 0) {
      t0 = now;
    } else if (now - t0 > kGiveUpNs) {
      *gave_up = 1;
      return false;
    }
  }
  return true;
}

// kOne (in the three steps below): each thread has at most one vector, so every loop runs at most once.
template <int W, bool kOne>
__device__ __forceinline__ void lamport_send(const Lamport& p, unsigned long long e, const uint4& sent0) {
  const size_t first = size_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = first; i < p.nvec; i += stride) {
    const uint4 v = lamport_share(p, i, first, sent0);
#pragma unroll
    for (int r = 0; r < W; ++r)
      if (r != p.rank) st_volatile_v4(lamport_slot<W>(p, p.buf[r], e, p.rank, i), v);
    if constexpr (kOne) break;
  }
}

// Re-arms rotation e (the one the previous call read) with the sentinel.
template <int W, bool kOne>
__device__ __forceinline__ void lamport_rearm(const Lamport& p, unsigned long long e) {
  const uint4 sentinel = make_uint4(kSentinelWord, kSentinelWord, kSentinelWord, kSentinelWord);
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.nvec; i += stride) {
#pragma unroll
    for (int r = 0; r < W; ++r)
      if (r != p.rank) *lamport_slot<W>(p, p.mine, e, r, i) = sentinel;
    if constexpr (kOne) break;
  }
}

// Every peer's slot is loaded before any is tested, then summed in rank order. A thread that gives up stops.
template <int W, bool kOne>
__device__ __forceinline__ void lamport_receive(const Lamport& p, unsigned long long e, const uint4& sent0) {
  const size_t first = size_t(blockIdx.x) * blockDim.x + threadIdx.x, stride = size_t(gridDim.x) * blockDim.x;
  for (size_t i = first; i < p.nvec; i += stride) {
    const uint4 own = kOne ? sent0 : lamport_share(p, i, first, sent0);
    uint4 got[W];
#pragma unroll
    for (int r = 0; r < W; ++r) got[r] = r == p.rank ? own : ld_volatile_v4(lamport_slot<W>(p, p.mine, e, r, i));
    float acc[Elem<bf16>::kPerVec] = {};
#pragma unroll
    for (int r = 0; r < W; ++r) {
      if (!lamport_wait(lamport_slot<W>(p, p.mine, e, r, i), got[r], p.gave_up)) return;
      accumulate<bf16>(acc, got[r]);
    }
    p.out[i] = pack<bf16>(acc);
    if constexpr (kOne) break;
  }
}

template <int W, bool kOne>
__global__ void __launch_bounds__(kLamportMaxThreads) lamport_kernel(Lamport p) {
  __shared__ unsigned long long s;
  const size_t first = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  pdl_wait<true>();
  // The first vector is loaded before the state word, so that the two latencies overlap (as customar's push does).
  const uint4 v0 = first < p.nvec ? p.in[first] : make_uint4(0, 0, 0, 0);
  if (threadIdx.x == 0) s = p.state[blockIdx.x];
  __syncthreads();
  const unsigned long long e = s;
  const uint4 sent0 = as_sent<bf16>(v0);
  lamport_send<W, kOne>(p, e, sent0);
  pdl_launch_dependents<true>();
  lamport_rearm<W, kOne>(p, e + 2);
  lamport_receive<W, kOne>(p, e, sent0);
  __syncthreads();
  if (threadIdx.x == 0) p.state[blockIdx.x] = e + 1;
}

using LamportKernel = void (*)(Lamport);

template <bool kOne, int... W>
LamportKernel lamport_for(int world, std::integer_sequence<int, W...>) {
  LamportKernel k = lamport_kernel<kMaxRanks, kOne>;
  ((k = world == W ? lamport_kernel<W, kOne> : k), ...);
  return k;
}

// The kernel for a world of 2 to 8 ranks; `one`: every thread has at most one vector.
inline LamportKernel lamport_kernel_for(int world, bool one) {
  using Worlds = std::integer_sequence<int, 2, 3, 4, 5, 6, 7, 8>;
  return one ? lamport_for<true>(world, Worlds{}) : lamport_for<false>(world, Worlds{});
}

// ---- NVLink streams ------------------------------------------------------------------------------------------------
struct Stream {
  uint4* peer[kMaxRanks];  // where this rank's share lands (or is read from) in each peer; peers first, npeers of them
  uint4* sink;             // keeps the loads of read_stream from being dropped
  size_t nvec;
  int npeers;
};

// The push's send with nothing around it. PDL as the V2 kernels launch, so successive calls overlap the same way.
__global__ void store_stream(Stream p) {
  pdl_wait<true>();
  const uint4 v = make_uint4(threadIdx.x, blockIdx.x, 0x3f803f80u, 0x3f803f80u);
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.nvec; i += size_t(gridDim.x) * blockDim.x)
    for (int r = 0; r < p.npeers; ++r) st_volatile_v4(p.peer[r] + i, v);
  pdl_launch_dependents<true>();
}

__global__ void read_stream(Stream p) {
  pdl_wait<true>();
  pdl_launch_dependents<true>();
  uint4 acc = make_uint4(0, 0, 0, 0);
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < p.nvec; i += size_t(gridDim.x) * blockDim.x)
    for (int r = 0; r < p.npeers; ++r) {
      const uint4 v = ld_volatile_v4(p.peer[r] + i);
      acc.x ^= v.x, acc.y ^= v.y, acc.z ^= v.z, acc.w ^= v.w;
    }
  if ((acc.x & acc.y & acc.z & acc.w) == 0xffffffffu) *p.sink = acc;  // never true: the stored words differ
}

// ---- host ----------------------------------------------------------------------------------------------------------
// Loads every kernel into this rank's context before any kernel waits for a peer: under lazy module loading a first
// launch can wait for the context's running kernels, and virtual ranks share one (kernels/kernels.h).
template <typename... K>
inline void load_kernels(K... kernels) {
  for (const void* k : {reinterpret_cast<const void*>(kernels)...}) customar::test::load_kernel(k);
}

inline void load_floor_kernels(int world) {
  load_kernels(&empty_kernel, &empty_kernel_pdl, &atomic_kernel_pdl, &state_kernel_pdl, &pingpong<true>,
               &pingpong<false>, lamport_kernel_for(world, true), lamport_kernel_for(world, false), &store_stream,
               &read_stream);
}

template <typename... Args>
inline void launch_pdl(cudaStream_t s, unsigned blocks, unsigned threads, void (*kernel)(Args...), Args... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(threads);
  cfg.stream = s;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  TEST_CUDA(cudaLaunchKernelEx(&cfg, kernel, args...));
}

}  // namespace customar::lab
