// One rank of customar-floor (included by customar_floor.cu only): its stream, the push grid its rows run on, its
// peer memory and its timing, for a process per GPU or a thread of a virtual world alike.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <exception>
#include <functional>
#include <memory>

#include "check_kernels.h"
#include "customar/group.h"
#include "floor_kernels.cuh"
#include "graph_timing.h"
#include "kernels/shape.h"
#include "memory/peer_memory.h"
#include "virtual/virtual_group.h"

namespace customar::lab {

struct Options {
  int gpus = 0;           // -g: one process per GPU (0: every visible GPU)
  int virtual_ranks = 0;  // --virtual: that many threads on GPU 0 instead
  int iters = 20, replays = 15, roundtrips = 20000;
};

// Host-mapped words the kernels write and the host reads after synchronising.
struct HostWords {
  unsigned long long pingpong_ns;  // one ping-pong run, ~0 when it gave up
  int gave_up;                     // set by a Lamport poll that gave up; cleared at the start of each checked row
};

// What every row of one rank works with. In a virtual world the rank's thread starts in its own context (a green
// context or the device's) and only frees or synchronises the device between barriers that every rank's kernels have
// finished before: cudaFree and cudaDeviceSynchronize wait for every rank's kernels there.
struct Rank {
  Rank(Group& group, const Options& options)
      : g(group), o(options), rank(g.rank()), world(g.size()), virt(as_virtual(g)) {
    if (virt != nullptr) {
      device = virt->device();
      s = virt->stream();
      // Every rank's kernel and its early-launched PDL successor resident at once: the rank's share of blocks, at the
      // threads per SM that __launch_bounds__ guarantees.
      max_blocks = std::min(virt->sm_share(), kMaxBlocks);
      sm_threads = kLamportMaxThreads;
    } else {
      device = rank;
      TEST_CUDA(cudaSetDevice(device));
      TEST_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    }
    TEST_CUDA(cudaMallocHost(&host, sizeof(HostWords)));
    load_floor_kernels(world);
  }
  // Only at the end of a run that succeeded: on the way out through an exception a kernel may still write `host`, and
  // the process ends soon after.
  void finish() {
    g.barrier();
    TEST_CUDA(cudaFreeHost(host));
    if (virt == nullptr) TEST_CUDA(cudaStreamDestroy(s));
  }

  // Zeroed peer memory for one row: mapped through CUDA IPC, or shared by pointer between virtual ranks. Collective.
  std::unique_ptr<PeerMemory> peer_memory(size_t bytes) {
    return virt != nullptr ? open_local_peer_memory(g, device, bytes) : open_ipc_peer_memory(g, device, bytes);
  }
  PushShape shape(size_t nvec) const { return push_shape(nvec, max_blocks, sm_threads); }
  // `issue` enqueues one call on s; three warm-up replays keep module load and first-launch costs out of the floors.
  double time(const std::function<void()>& issue) { return test::time_graph(g, issue, o.iters, 3, o.replays, s); }

  Group& g;
  const Options& o;
  const int rank, world;
  const VirtualGroup* const virt;  // nullptr: a process per GPU
  int device = 0;
  cudaStream_t s = nullptr;
  HostWords* host = nullptr;
  int max_blocks = kMaxBlocks, sm_threads = kPushThreadsPerSm;
};

// Peer memory of one row. Freed only by close(), after the barrier that tells this rank no peer still touches it; on
// the way out through an exception that barrier was skipped, so the memory is left for the process exit instead of
// freed under a peer's kernel.
struct PeerBuffers {
  std::unique_ptr<PeerMemory> mem;
  const int uncaught = std::uncaught_exceptions();
  ~PeerBuffers() {
    if (std::uncaught_exceptions() > uncaught) (void)mem.release();
  }
  void close(Group& g) {
    g.barrier();
    mem.reset();
  }
};

// Device memory that only this rank's kernels touch.
struct DeviceBuffer {
  void* p = nullptr;
  explicit DeviceBuffer(size_t bytes) { TEST_CUDA(cudaMalloc(&p, bytes)); }
  ~DeviceBuffer() { (void)cudaFree(p); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  template <typename T>
  T* as() const {
    return static_cast<T*>(p);
  }
};

}  // namespace customar::lab
