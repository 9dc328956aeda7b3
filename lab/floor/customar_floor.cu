// customar-floor: the latency floors a small all-reduce cannot go under on this machine, measured the way
// customar-perf times (CUDA graphs, median of replays, worst rank), so the two tables can be read side by side.
//
//   customar-floor [-g N] [-n ITERS] [-r REPLAYS] [-p ROUNDTRIPS]
//
// Rows (µs):
//   graph-empty        one empty kernel per graph node: the launch gap every graph-replayed call pays.
//   graph-empty-pdl    the same with programmatic dependent launch (what V2 launches with).
//   graph-2blocks-pdl  the same with two blocks.
//   graph-state-pdl    one block that reads its call state from device memory after the PDL wait and writes the next
//                      one at its end, as every customar kernel keeps its state (graphs replay fixed arguments, so the
//                      state that picks buffers and flag values must live in device memory).
//   graph-atomic-pdl   two blocks that meet on one device-memory counter (an atomic with return from each), the way
//                      customar's kernels elected a last block before per-block counter slots.
//   nvlink-oneway-*    half of a one-flag round trip between rank 0 and each other rank, one thread each side:
//                      "vol" with volatile stores and polls (what the push's data and polls are), "rel" with
//                      release stores and acquire polls (what the barrier flags of pull and two-shot are).
//   push-floor         graph-state-pdl + the slowest volatile one-way: a one-shot push that keeps its state on the
//                      device (as any graph-safe one must) cannot be faster.
//   mini-push-N        the smallest complete graph-safe one-shot push we can write, every rank taking part: one
//                      block of N threads, one 16-byte bf16 vector each (N = 64 is 1 KiB), one state word, three
//                      rotating Lamport buffers, compile-time world, no timeout bookkeeping on the fast path. Its
//                      result is checked. customar's push at the same size minus this row is what customar's own
//                      structure costs (handle, counters, abort checks, dtype and alignment paths); this row minus
//                      push-floor is what the sum of the separately measured parts leaves out.
//   store-stream-N     every rank stores N bytes (1 to 16 MiB) into each peer's memory in 16-byte volatile stores, as
//                      the push's send does, on the push's grid at that size, and does nothing else (no poll,
//                      re-arm, reduction or flag): the NVLink part of a one-shot push, both directions at once.
//   read-stream-N      the same with volatile 16-byte loads from each peer: the NVLink part of a one-shot pull.
//   lamport-N          mini-push's body at N bytes (16 KiB to 16 MiB) on the push's grid: the input read, the sends,
//                      the re-arm of the previous call's buffer, the polls, the sum and the output store, with one
//                      state word per block and nothing else (no sizes that change between calls, no timeout
//                      reporting beyond a rare timer, no dtype or alignment paths). Checked like mini-push. The
//                      smallest one-shot Lamport push at that size: customar's push minus this row is its own cost,
//                      this row minus store-stream what the Lamport design adds to the links.
//   The stream and lamport rows run the push's built-in grid for 128 SMs with up to 1024 threads per SM. Where the
//   library's push kernel fits fewer (it asks the occupancy calculator; at 8 ranks its registers allow 512 from
//   1 MiB), its grid is narrower than these rows' and the two are not the same shape.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "check_kernels.h"
#include "customar/group.h"
#include "customar/launcher.h"
#include "graph_timing.h"
#include "kernels/device/oneshot_push.cuh"  // the flag, timer, PDL and Lamport primitives customar's kernels use
#include "kernels/shape.h"                  // push_shape: the streams run on the push's grid
#include "memory/peer_memory.h"

using namespace customar;
using namespace customar::test;
using namespace customar::detail;

namespace {

struct Options {
  int gpus = 0;
  int iters = 20, replays = 15, roundtrips = 20000;
};

__global__ void empty_kernel() {}

__global__ void empty_kernel_pdl() {
  pdl_wait<true>();
  pdl_launch_dependents<true>();
}

// Each block's thread 0 adds one; the last block resets the counter, as last_block_done() does for the barrier
// kernels (the push no longer elects a last block: bench/NOTES.md 15).
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

__device__ __forceinline__ uint64_t ld_volatile(const uint64_t* p) {
  uint64_t v;
  asm volatile("ld.volatile.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
  return v;
}
__device__ __forceinline__ void st_volatile(uint64_t* p, uint64_t v) {
  asm volatile("st.volatile.global.u64 [%0], %1;" ::"l"(p), "l"(v) : "memory");
}

// Rank 0 (initiator) sends i and waits for i back; the peer echoes. `base` makes flags of successive runs distinct,
// so no reset is needed between runs. Gives up after ~2 s so a missing peer cannot hang the tool.
template <bool kVolatile>
__global__ void pingpong(uint64_t* peer_flag, const uint64_t* my_flag, uint64_t base, int n, bool initiator,
                         unsigned long long* ns_out) {
  const uint64_t t0 = global_timer_ns();
  auto send = [&](uint64_t v) {
    if constexpr (kVolatile)
      st_volatile(peer_flag, v);
    else
      st_release_sys(peer_flag, v);
  };
  for (int i = 1; i <= n; ++i) {
    const uint64_t want = base + i;
    if (initiator) send(want);
    while ((kVolatile ? ld_volatile(my_flag) : ld_acquire_sys(my_flag)) < want)
      if (global_timer_ns() - t0 > 2000000000ull) {
        *ns_out = ~0ull;
        return;
      }
    if (!initiator) send(want);
  }
  *ns_out = global_timer_ns() - t0;
}

// ---- mini-push ---------------------------------------------------------------------------------------------------
// Every rank's Lamport buffer: 3 rotations x kMaxRanks source slots x kMiniVecs vectors, the sentinel where empty.
constexpr int kMiniVecs = 64;
constexpr int kMiniMaxThreads = kMiniVecs;

struct MiniPush {
  uint4* buf[kMaxRanks];  // buf[r]: rank r's buffer, mapped here
  uint4* mine;            // buf[rank], so that no kernel indexes buf[] at run time (that copies the struct to local)
  unsigned long long* state;
  const uint4* in;
  uint4* out;
  int* timed_out;  // set when a poll gave up (~2 s): the tool reports it instead of hanging
  int rank;
};

__device__ __forceinline__ uint4* mini_slot(uint4* base, unsigned long long epoch, int src, int i) {
  return base + (static_cast<int>(epoch % 3) * kMaxRanks + src) * kMiniVecs + i;
}

__device__ __forceinline__ bool mini_ready(const uint4& v) {
  auto ok = [](uint32_t w) { return (w & 0xffffu) != 0x8000u && (w >> 16) != 0x8000u; };
  return ok(v.x) && ok(v.y) && ok(v.z) && ok(v.w);
}

// Polls *slot into v until every lane has arrived; after about 2 s it sets *timed_out and stops, so that the tool
// reports a broken exchange instead of hanging. Once any wait has given up, every later one stops at its first timer
// check (a few hundred µs): a broken row then ends in seconds, not 2 s per vector, peer and launch.
__device__ __forceinline__ void mini_wait(const uint4* slot, uint4& v, int* timed_out) {
  uint64_t t0 = 0;
  for (uint32_t spins = 1; !mini_ready(v); ++spins) {
    v = ld_volatile_v4(slot);
    if ((spins & 1023u) != 0) continue;  // the timer is read rarely: it costs more than a poll
    if (*reinterpret_cast<volatile int*>(timed_out) != 0) return;
    const uint64_t now = global_timer_ns();
    if (t0 == 0) {
      t0 = now;
    } else if (now - t0 > 2000000000ull) {
      *timed_out = 1;
      return;
    }
  }
}

template <int W>
__global__ void __launch_bounds__(kMiniMaxThreads) mini_push_kernel(MiniPush p) {
  __shared__ unsigned long long s;
  const int i = threadIdx.x;
  pdl_wait<true>();
  const uint4 v = p.in[i];  // issued before the state load, so the two latencies overlap (as customar's push does)
  if (i == 0) s = *p.state;
  __syncthreads();
  const unsigned long long e = s;
  uint4* const mine = p.mine;
#pragma unroll
  for (int r = 0; r < W; ++r) {
    uint4* dst = mini_slot(p.buf[r], e, p.rank, i);
    asm volatile("st.volatile.global.v4.u32 [%0], {%1, %2, %3, %4};" ::"l"(dst), "r"(v.x), "r"(v.y), "r"(v.z), "r"(v.w)
                 : "memory");
  }
  pdl_launch_dependents<true>();
  // Re-arm the buffer the previous call read; the rotation argument is customar's (oneshot_push.cuh).
  const uint4 sentinel = make_uint4(kSentinelWord, kSentinelWord, kSentinelWord, kSentinelWord);
#pragma unroll
  for (int r = 0; r < W; ++r) *mini_slot(mine, e + 2, r, i) = sentinel;
  uint4 got[W];
#pragma unroll
  for (int r = 0; r < W; ++r) got[r] = ld_volatile_v4(mini_slot(mine, e, r, i));
  float acc[8] = {};
#pragma unroll
  for (int r = 0; r < W; ++r) {
    mini_wait(mini_slot(mine, e, r, i), got[r], p.timed_out);
    accumulate<bf16>(acc, got[r]);
  }
  p.out[i] = pack<bf16>(acc);
  __syncthreads();
  if (i == 0) *p.state = e + 1;
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

// ---- lamport-N: mini-push's body on the push's grid ----------------------------------------------------------------
struct Lamport {
  uint4* buf[kMaxRanks];  // rank r's buffer: 3 rotations x world sources x slot_vecs vectors
  uint4* mine;
  unsigned long long* state;  // one word per block: every call of one measurement has the same grid
  const uint4* in;
  uint4* out;
  int* timed_out;
  size_t nvec, slot_vecs;
  int rank;
};

template <int W>
__device__ __forceinline__ uint4* lamport_slot(uint4* base, unsigned long long e, int src, size_t i, size_t slot_vecs) {
  return base + (size_t(e % 3) * W + src) * slot_vecs + i;
}

// kOne: one vector per thread (the share stays in a register), else a loop that reads the share again from the input.
template <int W, bool kOne>
__global__ void __launch_bounds__(256) lamport_kernel(Lamport p) {
  __shared__ unsigned long long s;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  const size_t first = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  pdl_wait<true>();
  const uint4 v0 = first < p.nvec ? p.in[first] : make_uint4(0, 0, 0, 0);
  if (threadIdx.x == 0) s = p.state[blockIdx.x];
  __syncthreads();
  const unsigned long long e = s;
  for (size_t i = first; i < p.nvec; i += stride) {
    const uint4 v = i == first ? v0 : p.in[i];
#pragma unroll
    for (int r = 0; r < W; ++r)
      if (r != p.rank) st_volatile_v4(lamport_slot<W>(p.buf[r], e, p.rank, i, p.slot_vecs), v);
    if constexpr (kOne) break;
  }
  pdl_launch_dependents<true>();
  const uint4 sentinel = make_uint4(kSentinelWord, kSentinelWord, kSentinelWord, kSentinelWord);
  for (size_t i = first; i < p.nvec; i += stride) {
#pragma unroll
    for (int r = 0; r < W; ++r)
      if (r != p.rank) *lamport_slot<W>(p.mine, e + 2, r, i, p.slot_vecs) = sentinel;
    if constexpr (kOne) break;
  }
  for (size_t i = first; i < p.nvec; i += stride) {
    const uint4 own = kOne || i == first ? v0 : p.in[i];
    uint4 got[W];
#pragma unroll
    for (int r = 0; r < W; ++r)
      got[r] = r == p.rank ? own : ld_volatile_v4(lamport_slot<W>(p.mine, e, r, i, p.slot_vecs));
    float acc[8] = {};
#pragma unroll
    for (int r = 0; r < W; ++r) {
      mini_wait(lamport_slot<W>(p.mine, e, r, i, p.slot_vecs), got[r], p.timed_out);
      accumulate<bf16>(acc, got[r]);
    }
    p.out[i] = pack<bf16>(acc);
    if constexpr (kOne) break;
  }
  __syncthreads();
  if (threadIdx.x == 0) p.state[blockIdx.x] = e + 1;
}

__global__ void fill_sentinel(uint4* p, size_t n) {
  const uint4 sentinel = make_uint4(kSentinelWord, kSentinelWord, kSentinelWord, kSentinelWord);
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = sentinel;
}

// bf16 bits of a small whole number (exact).
uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return static_cast<uint16_t>(u >> 16);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename... Args>
void launch_pdl(cudaStream_t s, unsigned blocks, unsigned threads, void (*kernel)(Args...), Args... args) {
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

using MiniKernel = void (*)(MiniPush);
MiniKernel mini_kernel(int world) {
  static const MiniKernel kByWorld[] = {mini_push_kernel<2>, mini_push_kernel<3>, mini_push_kernel<4>,
                                        mini_push_kernel<5>, mini_push_kernel<6>, mini_push_kernel<7>,
                                        mini_push_kernel<8>};
  // The tool runs 2 to 8 ranks; anything else would take the 8-rank kernel, as a switch's default did.
  return kByWorld[world >= 2 && world <= 7 ? world - 2 : 6];
}

using LamportKernel = void (*)(Lamport);
LamportKernel lamport_kernel_for(int world, bool one) {
  static const LamportKernel kOneByWorld[] = {lamport_kernel<2, true>, lamport_kernel<3, true>, lamport_kernel<4, true>,
                                              lamport_kernel<5, true>, lamport_kernel<6, true>, lamport_kernel<7, true>,
                                              lamport_kernel<8, true>};
  static const LamportKernel kLoopByWorld[] = {
      lamport_kernel<2, false>, lamport_kernel<3, false>, lamport_kernel<4, false>, lamport_kernel<5, false>,
      lamport_kernel<6, false>, lamport_kernel<7, false>, lamport_kernel<8, false>};
  const int k = world >= 2 && world <= 7 ? world - 2 : 6;
  return one ? kOneByWorld[k] : kLoopByWorld[k];
}

// Peer buffers for one measurement, mapped by the library (allocated on this rank's device, zeroed). Freed only after
// the barrier that tells this rank no peer still writes into them; on the way out through an exception that barrier
// was skipped, so the mapping is left for process exit instead of freed under a peer's kernel.
struct PeerBuffers {
  std::unique_ptr<customar::detail::PeerMemory> mem;
  const int uncaught = std::uncaught_exceptions();
  ~PeerBuffers() {
    if (std::uncaught_exceptions() > uncaught) (void)mem.release();
  }
};

// The input of the exchange rows on the device: lane j of rank r is (r + 1) * (j % 5 + 1), so every sum is a whole
// number under 256, exact in bf16, and no input is the sentinel.
void* device_input(int rank, size_t lanes) {
  std::vector<uint16_t> in(lanes);
  for (size_t j = 0; j < lanes; ++j) in[j] = bf16_bits(float((rank + 1) * (j % 5 + 1)));
  void* d = nullptr;
  TEST_CUDA(cudaMalloc(&d, lanes * 2));
  TEST_CUDA(cudaMemcpy(d, in.data(), lanes * 2, cudaMemcpyHostToDevice));
  return d;
}

// Lanes among the first `lanes` of `out` that are not the exact sum both exchange rows expect: lane j of rank r's input
// is (r + 1) * (j % 5 + 1).
int wrong_lanes(const std::vector<uint16_t>& out, size_t lanes, int world) {
  int wrong = 0;
  for (size_t j = 0; j < lanes; ++j)
    if (out[j] != bf16_bits(float(world * (world + 1) / 2 * (j % 5 + 1)))) ++wrong;
  return wrong;
}

// The end of a checked exchange row: waits until no peer touches this rank's buffer, frees the row's memory, and
// throws if any rank counted a wrong lane or a poll that gave up.
void end_checked(Group& g, PeerBuffers& bufs, std::initializer_list<void*> device, int* timed_out, int wrong,
                 const std::string& row) {
  if (*timed_out != 0) ++wrong;
  g.barrier();
  bufs.mem.reset();
  for (void* d : device) TEST_CUDA(cudaFree(d));
  TEST_CUDA(cudaFreeHost(timed_out));
  int total = 0;
  for (int w : all_gather_value(g, wrong)) total += w;
  if (total != 0) throw std::runtime_error(row + ": " + std::to_string(total) + " wrong lanes or timed-out polls");
}

// mini-push with `threads` vectors, timed like every other row; throws if any rank's result is wrong or a poll gave
// up, so a row is never a number from a broken exchange.
double mini_push_us(Group& g, const Options& o, cudaStream_t s, int threads) {
  const int rank = g.rank(), world = g.size();
  const size_t buf_vecs = size_t(3) * kMaxRanks * kMiniVecs;
  MiniPush p{};
  p.rank = rank;
  PeerBuffers bufs{customar::detail::open_ipc_peer_memory(g, rank, buf_vecs * sizeof(uint4))};  // armed below
  for (int r = 0; r < world; ++r) p.buf[r] = static_cast<uint4*>(bufs.mem->peer(r));
  fill_sentinel<<<256, 256>>>(p.buf[rank], buf_vecs);  // complete at the cudaDeviceSynchronize before the barrier
  TEST_CUDA(cudaGetLastError());
  std::vector<uint16_t> out(size_t(kMiniVecs) * 8, 0xffff);
  void* d_in = device_input(rank, out.size());
  void* d_out = nullptr;
  TEST_CUDA(cudaMalloc(&d_out, out.size() * 2));
  TEST_CUDA(cudaMemcpy(d_out, out.data(), out.size() * 2, cudaMemcpyHostToDevice));
  TEST_CUDA(cudaMalloc(&p.state, sizeof(*p.state)));
  TEST_CUDA(cudaMemset(p.state, 0, sizeof(*p.state)));
  TEST_CUDA(cudaMallocHost(&p.timed_out, sizeof(int)));
  *p.timed_out = 0;
  p.mine = p.buf[rank];
  p.in = static_cast<const uint4*>(d_in);
  p.out = static_cast<uint4*>(d_out);
  TEST_CUDA(cudaDeviceSynchronize());
  g.barrier();
  const MiniKernel kernel = mini_kernel(world);
  const double us = time_graph(
      g, [&] { launch_pdl(s, 1, static_cast<unsigned>(threads), kernel, p); }, o.iters, 3, o.replays, s);
  TEST_CUDA(cudaStreamSynchronize(s));
  TEST_CUDA(cudaMemcpy(out.data(), d_out, out.size() * 2, cudaMemcpyDeviceToHost));
  const int wrong = wrong_lanes(out, size_t(threads) * 8, world);
  end_checked(g, bufs, {d_in, d_out, p.state}, p.timed_out, wrong, "mini-push-" + std::to_string(threads));
  return us;
}

// Store and read streams of 1 to 16 MiB per peer, every rank at once, on the push's grid for that size.
std::vector<std::pair<std::string, double>> stream_us(Group& g, const Options& o, cudaStream_t s) {
  const int rank = g.rank(), world = g.size();
  constexpr size_t kMaxBytes = size_t(16) << 20;
  // Rank src's share lands at src x 16 MiB in every peer, as each sender has its own slot in a push buffer.
  PeerBuffers bufs{customar::detail::open_ipc_peer_memory(g, rank, kMaxBytes * world)};
  Stream p{};
  for (int r = 0; r < world; ++r)
    if (r != rank) p.peer[p.npeers++] = static_cast<uint4*>(bufs.mem->peer(r)) + size_t(rank) * kMaxBytes / 16;
  TEST_CUDA(cudaMalloc(&p.sink, sizeof(uint4)));
  TEST_CUDA(cudaDeviceSynchronize());
  g.barrier();
  std::vector<std::pair<std::string, double>> rows;
  for (int kind = 0; kind < 2; ++kind)
    for (size_t mib : {1, 2, 4, 8, 16}) {
      p.nvec = (mib << 20) / 16;
      const PushShape shape = push_shape(p.nvec, kMaxBlocks, kPushThreadsPerSm);
      auto kernel = kind == 0 ? store_stream : read_stream;
      const double us = time_graph(
          g, [&] { launch_pdl(s, shape.blocks, shape.threads, kernel, p); }, o.iters, 3, o.replays, s);
      rows.push_back({std::string(kind == 0 ? "store-stream-" : "read-stream-") + std::to_string(mib) + "M", us});
    }
  TEST_CUDA(cudaStreamSynchronize(s));
  g.barrier();  // no peer still touches this rank's buffer
  bufs.mem.reset();
  TEST_CUDA(cudaFree(p.sink));
  return rows;
}

// lamport-N for N = 16 KiB .. 16 MiB; throws if any rank's result is wrong or a poll gave up.
std::vector<std::pair<std::string, double>> lamport_us(Group& g, const Options& o, cudaStream_t s) {
  const int rank = g.rank(), world = g.size();
  constexpr size_t kMaxVecs = (size_t(16) << 20) / 16;
  const size_t buf_vecs = size_t(3) * world * kMaxVecs;
  Lamport p{};
  p.rank = rank;
  p.slot_vecs = kMaxVecs;
  PeerBuffers bufs{customar::detail::open_ipc_peer_memory(g, rank, buf_vecs * sizeof(uint4))};
  for (int r = 0; r < world; ++r) p.buf[r] = static_cast<uint4*>(bufs.mem->peer(r));
  p.mine = p.buf[rank];
  std::vector<uint16_t> out(kMaxVecs * 8);
  void* d_in = device_input(rank, out.size());
  void* d_out = nullptr;
  TEST_CUDA(cudaMalloc(&d_out, out.size() * 2));
  TEST_CUDA(cudaMalloc(&p.state, kMaxPushBlocks * sizeof(*p.state)));
  TEST_CUDA(cudaMallocHost(&p.timed_out, sizeof(int)));
  *p.timed_out = 0;
  p.in = static_cast<const uint4*>(d_in);
  p.out = static_cast<uint4*>(d_out);
  std::vector<std::pair<std::string, double>> rows;
  int wrong = 0;
  for (size_t kib : {16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}) {
    p.nvec = (kib << 10) / 16;
    const PushShape shape = push_shape(p.nvec, kMaxBlocks, kPushThreadsPerSm);
    // A fresh start per size: every block's range of vectors changes with the grid, so the rotation restarts from
    // armed buffers and epoch 0 on every rank (the barrier: no peer still writes into this rank's buffer).
    g.barrier();
    fill_sentinel<<<256, 256, 0, s>>>(p.mine, buf_vecs);
    TEST_CUDA(cudaMemsetAsync(p.state, 0, kMaxPushBlocks * sizeof(*p.state), s));
    TEST_CUDA(cudaMemsetAsync(d_out, 0xff, out.size() * 2, s));
    TEST_CUDA(cudaStreamSynchronize(s));
    g.barrier();
    const LamportKernel kernel = lamport_kernel_for(world, p.nvec <= size_t(shape.blocks) * shape.threads);
    const double us = time_graph(
        g, [&] { launch_pdl(s, shape.blocks, shape.threads, kernel, p); }, o.iters, 3, o.replays, s);
    TEST_CUDA(cudaStreamSynchronize(s));
    TEST_CUDA(cudaMemcpy(out.data(), d_out, p.nvec * 16, cudaMemcpyDeviceToHost));
    wrong += wrong_lanes(out, p.nvec * 8, world);
    rows.push_back({"lamport-" + (kib < 1024 ? std::to_string(kib) + "K" : std::to_string(kib >> 10) + "M"), us});
  }
  end_checked(g, bufs, {d_in, d_out, p.state}, p.timed_out, wrong, "lamport-N");
  return rows;
}

int run_rank(Group& g, const Options& o) {
  const int rank = g.rank(), world = g.size();
  TEST_CUDA(cudaSetDevice(rank));
  cudaStream_t s;
  TEST_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  // Three warm-up replays: module load and first-launch costs stay out of the floors.
  auto graph_us = [&](const std::function<void()>& launch) { return time_graph(g, launch, o.iters, 3, o.replays, s); };
  const double empty = graph_us([&] { empty_kernel<<<1, 32, 0, s>>>(); });
  const double empty_pdl = graph_us([&] { launch_pdl(s, 1, 32, empty_kernel_pdl); });
  unsigned long long* done = nullptr;
  TEST_CUDA(cudaMalloc(&done, sizeof(*done)));
  TEST_CUDA(cudaMemset(done, 0, sizeof(*done)));
  const double two_pdl = graph_us([&] { launch_pdl(s, 2, 32, empty_kernel_pdl); });
  const double atomic_pdl = graph_us([&] { launch_pdl(s, 2, 32, atomic_kernel_pdl, done); });
  const double state_pdl = graph_us([&] { launch_pdl(s, 1, 32, state_kernel_pdl, done); });

  // One flag word per peer in every rank's buffer: flags[src] is written by rank src.
  PeerBuffers flag_bufs{customar::detail::open_ipc_peer_memory(g, rank, 8 * sizeof(uint64_t))};
  uint64_t* flags = static_cast<uint64_t*>(flag_bufs.mem->local());
  std::vector<uint64_t*> peer(world, nullptr);
  for (int r = 0; r < world; ++r) peer[r] = static_cast<uint64_t*>(flag_bufs.mem->peer(r));
  unsigned long long* ns = nullptr;
  TEST_CUDA(cudaMallocHost(&ns, sizeof(*ns)));
  TEST_CUDA(cudaDeviceSynchronize());
  g.barrier();
  // Rank 0 against each peer in turn, volatile then release/acquire; the other ranks wait at the barrier. Flag values
  // only grow (`base`), so no reset is needed between runs.
  std::vector<double> oneway[2];
  uint64_t base = 0;
  for (int kind = 0; kind < 2; ++kind) {
    for (int p = 1; p < world; ++p) {
      std::vector<double> runs;
      for (int run = 0; run < 5; ++run, base += o.roundtrips) {
        g.barrier();
        auto kernel = kind == 0 ? pingpong<true> : pingpong<false>;
        if (rank == 0) {
          kernel<<<1, 1, 0, s>>>(peer[p] + 0, flags + p, base, o.roundtrips, true, ns);
        } else if (rank == p) {
          kernel<<<1, 1, 0, s>>>(peer[0] + p, flags + 0, base, o.roundtrips, false, ns);
        }
        TEST_CUDA(cudaGetLastError());
        TEST_CUDA(cudaStreamSynchronize(s));
        if (rank == 0) {
          if (*ns == ~0ull) throw std::runtime_error("ping-pong with rank " + std::to_string(p) + " timed out");
          runs.push_back(double(*ns) / 1000.0 / o.roundtrips / 2);
        }
      }
      if (rank == 0) oneway[kind].push_back(median(runs));
    }
  }
  const double mini1 = mini_push_us(g, o, s, 1);
  const double mini64 = mini_push_us(g, o, s, kMiniVecs);
  const auto streams = stream_us(g, o, s);
  const auto lamports = lamport_us(g, o, s);
  if (rank == 0) {
    const double worst_oneway = *std::max_element(oneway[0].begin(), oneway[0].end());
    cudaDeviceProp prop{};
    TEST_CUDA(cudaGetDeviceProperties(&prop, 0));
    std::printf("# customar-floor: %d x %s, %d kernels per graph, %d replays, %d round trips\n", world, prop.name,
                o.iters, o.replays, o.roundtrips);
    std::printf("%-22s %8s\n", "# floor", "us");
    std::printf("%-22s %8.2f\n", "graph-empty", empty);
    std::printf("%-22s %8.2f\n", "graph-empty-pdl", empty_pdl);
    std::printf("%-22s %8.2f\n", "graph-2blocks-pdl", two_pdl);
    std::printf("%-22s %8.2f\n", "graph-atomic-pdl", atomic_pdl);
    std::printf("%-22s %8.2f\n", "graph-state-pdl", state_pdl);
    for (int kind = 0; kind < 2; ++kind)
      for (size_t i = 0; i < oneway[kind].size(); ++i)
        std::printf("nvlink-oneway-%s-0-%zu %8.2f\n", kind == 0 ? "vol" : "rel", i + 1, oneway[kind][i]);
    std::printf("%-22s %8.2f\n", "push-floor", state_pdl + worst_oneway);
    std::printf("%-22s %8.2f\n", "mini-push-1", mini1);
    std::printf("%-22s %8.2f\n", "mini-push-64", mini64);
    for (const auto& [name, us] : streams) std::printf("%-22s %8.2f\n", name.c_str(), us);
    for (const auto& [name, us] : lamports) std::printf("%-22s %8.2f\n", name.c_str(), us);
  }
  g.barrier();
  flag_bufs.mem.reset();
  TEST_CUDA(cudaFree(done));
  TEST_CUDA(cudaFreeHost(ns));
  TEST_CUDA(cudaStreamDestroy(s));
  return 0;
}

int parse_int(const char* flag, const char* v) {
  char* end = nullptr;
  long x = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || x < 1 || x > 10000000)
    throw std::runtime_error(std::string(flag) + " " + v + ": expected a whole number from 1 to 10000000");
  return static_cast<int>(x);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      if (i + 1 >= argc) throw std::runtime_error(a + ": expected a value (flags: -g -n -r -p)");
      const char* v = argv[++i];
      if (a == "-g")
        o.gpus = parse_int("-g", v);
      else if (a == "-n")
        o.iters = parse_int("-n", v);
      else if (a == "-r")
        o.replays = parse_int("-r", v);
      else if (a == "-p")
        o.roundtrips = parse_int("-p", v);
      else
        throw std::runtime_error("unknown flag " + a + " (flags: -g GPUS -n ITERS -r REPLAYS -p ROUNDTRIPS)");
    }
    if (o.gpus == 0) o.gpus = visible_gpu_count();
    if (o.gpus < 2 || o.gpus > 8)
      throw std::runtime_error("customar-floor needs 2 to 8 GPUs, found " + std::to_string(o.gpus));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "customar-floor: %s\n", e.what());
    return 2;
  }
  auto exits = launch(
      o.gpus, [&](Group& g) { return run_rank(g, o); }, LaunchOptions{300});
  int rc = 0;
  for (const auto& e : exits)
    if (!e.ok()) {
      std::fprintf(stderr, "customar-floor: rank %d exited with %d\n", e.rank, e.exit_code);
      rc = 1;
    }
  return rc;
}
