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
//                      one at its end, as every customar kernel does (graphs replay fixed arguments, so the state that
//                      picks buffers and flag values must live in device memory).
//   graph-atomic-pdl   two blocks that meet on one device-memory counter (an atomic with return from each), the way
//                      customar's kernels elected a last block before per-block counter slots.
//   nvlink-oneway-*    half of a one-flag round trip between rank 0 and each other rank, one thread each side:
//                      "vol" with volatile stores and polls (what the push's data and polls are), "rel" with
//                      release stores and acquire polls (what the barrier flags of pull and two-shot are).
//   push-floor         graph-state-pdl + the slowest volatile one-way: a one-shot push that keeps its state on the
//                      device (as any graph-safe one must) cannot be faster.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "check_kernels.h"
#include "customar/group.h"
#include "customar/launcher.h"
#include "graph_timing.h"
#include "kernels/device/common.cuh"  // the flag, timer and PDL primitives customar's kernels use

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

// Each block's thread 0 adds one; the last block resets the counter, as end_call() does.
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

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename... Args>
void launch_pdl(cudaStream_t s, unsigned blocks, void (*kernel)(Args...), Args... args) {
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(blocks);
  cfg.blockDim = dim3(32);
  cfg.stream = s;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = 1;
  TEST_CUDA(cudaLaunchKernelEx(&cfg, kernel, args...));
}

int run_rank(Group& g, const Options& o) {
  const int rank = g.rank(), world = g.size();
  TEST_CUDA(cudaSetDevice(rank));
  cudaStream_t s;
  TEST_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));

  // Three warm-up replays: module load and first-launch costs stay out of the floors.
  auto graph_us = [&](const std::function<void()>& launch) { return time_graph(g, launch, o.iters, 3, o.replays, s); };
  const double empty = graph_us([&] { empty_kernel<<<1, 32, 0, s>>>(); });
  const double empty_pdl = graph_us([&] { launch_pdl(s, 1, empty_kernel_pdl); });
  unsigned long long* done = nullptr;
  TEST_CUDA(cudaMalloc(&done, sizeof(*done)));
  TEST_CUDA(cudaMemset(done, 0, sizeof(*done)));
  const double two_pdl = graph_us([&] { launch_pdl(s, 2, empty_kernel_pdl); });
  const double atomic_pdl = graph_us([&] { launch_pdl(s, 2, atomic_kernel_pdl, done); });
  const double state_pdl = graph_us([&] { launch_pdl(s, 1, state_kernel_pdl, done); });

  // One flag word per peer in every rank's buffer: flags[src] is written by rank src.
  uint64_t* flags = nullptr;
  TEST_CUDA(cudaMalloc(&flags, 8 * sizeof(uint64_t)));
  TEST_CUDA(cudaMemset(flags, 0, 8 * sizeof(uint64_t)));
  unsigned long long* ns = nullptr;
  TEST_CUDA(cudaMallocHost(&ns, sizeof(*ns)));
  cudaIpcMemHandle_t mine{};
  TEST_CUDA(cudaIpcGetMemHandle(&mine, flags));
  std::vector<cudaIpcMemHandle_t> handles = all_gather_value(g, mine);
  std::vector<uint64_t*> peer(world, nullptr);
  for (int r = 0; r < world; ++r)
    if (r != rank) {
      void* p = nullptr;
      TEST_CUDA(cudaIpcOpenMemHandle(&p, handles[r], cudaIpcMemLazyEnablePeerAccess));
      peer[r] = static_cast<uint64_t*>(p);
    }
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
  }
  g.barrier();
  for (int r = 0; r < world; ++r)
    if (peer[r] != nullptr) TEST_CUDA(cudaIpcCloseMemHandle(peer[r]));
  TEST_CUDA(cudaFree(flags));
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
