#include "comm/custom_backend.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <random>

#include "common/check.h"
#include "common/log.h"
#include "group/agree.h"
#include "virtual/virtual_group.h"

namespace customar::detail {

CustomBackend::CustomBackend(Group& group, int device, const Topology& topo, size_t capacity, size_t push_capacity,
                             uint64_t timeout_ns) {
  const int world = group.size();
  const int rank = group.rank();
  try {
    run_step(group, "allocating the custom backend's counters", [&] {
      CUSTOMAR_CUDA_CHECK(cudaMalloc(&counters_, kCounterCount * sizeof(uint64_t)));
      CUSTOMAR_CUDA_CHECK(cudaMemset(counters_, 0, kCounterCount * sizeof(uint64_t)));
      CUSTOMAR_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&error_host_), sizeof(int), cudaHostAllocMapped));
      *error_host_ = 0;
    });
    // open_ipc_peer_memory is collective: every rank reaches its one exchange (handle or allocation error), and a
    // failure to open a peer's handle, which is local, is agreed on by the step.
    run_step(group, "mapping peer memory", [&] {
      const size_t bytes = region_bytes(capacity, push_capacity, world);
      memory_ = as_virtual(group) != nullptr ? open_local_peer_memory(group, device, bytes)
                                             : open_ipc_peer_memory(group, device, bytes);
    });

    handle_.rank = rank;
    handle_.world = world;
    handle_.capacity = capacity;
    handle_.push_capacity = push_capacity;
    handle_.timeout_ns = timeout_ns;
    int min_sms = topo.gpus.empty() ? kMaxBlocks : topo.gpus[0].sm_count;
    for (const GpuInfo& g : topo.gpus) min_sms = std::min(min_sms, g.sm_count);
    handle_.max_blocks = std::clamp(min_sms, 1, kMaxBlocks);
    for (int r = 0; r < world; ++r) handle_.regions[r] = static_cast<uint8_t*>(memory_->peer(r));
    handle_.counters = static_cast<uint64_t*>(counters_);
    run_step(group, "mapping the error word and arming the push buffers", [&] {
      CUSTOMAR_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&handle_.error), error_host_, 0));
      if (push_capacity > 0) {
        launch_fill_words(handle_.regions[rank] + kStagingOffset + 2 * capacity,
                          push_buffers_bytes(push_capacity, world), kSentinelWord, nullptr);
        CUSTOMAR_CUDA_CHECK(cudaDeviceSynchronize());
      }
    });

    // Probe: a topology can claim peer access that the hardware does not give (a wrong topology file, a container
    // without the right IPC namespace). Prove it with the same kind of store the kernels use, bounded in time.
    uint64_t nonce = 0;
    if (rank == 0) nonce = std::random_device{}() | (uint64_t(std::random_device{}()) << 32);
    nonce = all_gather_value(group, nonce)[0];
    run_step(group, "peer-access probe (write)", [&] {
      launch_probe(handle_, nonce, nullptr);
      CUSTOMAR_CUDA_CHECK(cudaDeviceSynchronize());
    });
    run_step(group, "peer-access probe (check)", [&] {
      uint64_t got[kMaxRanks] = {};
      CUSTOMAR_CUDA_CHECK(cudaMemcpy(got, handle_.regions[rank] + kProbeOffset, sizeof(got), cudaMemcpyDeviceToHost));
      for (int src = 0; src < world; ++src) {
        if (src != rank && got[src] != probe_token(nonce, src, rank))
          throw Error("rank " + std::to_string(src) +
                      "'s write through peer memory did not arrive: the topology "
                      "claims peer access that this machine does not give");
      }
    });
  } catch (...) {
    release();
    throw;
  }
  CUSTOMAR_INFO("INIT", "custom backend ready: %d ranks, %zu-byte staging, up to %d blocks", world, capacity,
                handle_.max_blocks);
}

CustomBackend::~CustomBackend() { release(); }

int CustomBackend::peer_gave_up() const {
  uint32_t who = 0;
  if (cudaMemcpy(&who, handle_.regions[handle_.rank] + kPoisonOffset, sizeof(who), cudaMemcpyDeviceToHost) !=
      cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return static_cast<int>(who);
}

void CustomBackend::release() {
  memory_.reset();
  if (counters_ != nullptr) (void)cudaFree(counters_);
  if (error_host_ != nullptr) (void)cudaFreeHost(error_host_);
  counters_ = nullptr;
  error_host_ = nullptr;
}

}  // namespace customar::detail
