#include <cuda_runtime_api.h>

#include <vector>

#include "common/check.h"
#include "common/log.h"
#include "memory/peer_memory.h"

namespace customar::detail {

namespace {

class IpcPeerMemory final : public PeerMemory {
 public:
  IpcPeerMemory(Group& group, int device, size_t bytes) : rank_(group.rank()), bytes_(bytes) {
    ptrs_.assign(group.size(), nullptr);
    CUSTOMAR_CUDA_CHECK(cudaMalloc(&ptrs_[rank_], bytes));
    try {
      // Zeroed before any peer can see it: flags start at 0 and epochs start at 1.
      CUSTOMAR_CUDA_CHECK(cudaMemset(ptrs_[rank_], 0, bytes));
      CUSTOMAR_CUDA_CHECK(cudaDeviceSynchronize());
      cudaIpcMemHandle_t mine{};
      CUSTOMAR_CUDA_CHECK(cudaIpcGetMemHandle(&mine, ptrs_[rank_]));
      std::vector<cudaIpcMemHandle_t> all = all_gather_value(group, mine);
      for (int r = 0; r < group.size(); ++r) {
        if (r == rank_) continue;
        cudaError_t err = cudaIpcOpenMemHandle(&ptrs_[r], all[r], cudaIpcMemLazyEnablePeerAccess);
        if (err != cudaSuccess) {
          (void)cudaGetLastError();
          ptrs_[r] = nullptr;
          throw CudaError(std::string("cudaIpcOpenMemHandle(rank ") + std::to_string(r) + ") failed: " +
                          cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") at " + where(__FILE__, __LINE__));
        }
      }
    } catch (...) {
      release();
      throw;
    }
    CUSTOMAR_INFO("MEM", "mapped %zu bytes from each of %d ranks through CUDA IPC", bytes, group.size());
  }
  ~IpcPeerMemory() override { release(); }

  void* local() const override { return ptrs_[rank_]; }
  void* peer(int r) const override { return ptrs_[r]; }
  size_t bytes() const override { return bytes_; }

 private:
  void release() {
    for (size_t r = 0; r < ptrs_.size(); ++r) {
      if (ptrs_[r] == nullptr) continue;
      cudaError_t err = static_cast<int>(r) == rank_ ? cudaFree(ptrs_[r]) : cudaIpcCloseMemHandle(ptrs_[r]);
      if (err != cudaSuccess) CUSTOMAR_WARN("MEM", "releasing rank %zu's buffer: %s", r, cudaGetErrorName(err));
      ptrs_[r] = nullptr;
    }
  }

  int rank_;
  size_t bytes_;
  std::vector<void*> ptrs_;
};

}  // namespace

std::unique_ptr<PeerMemory> open_ipc_peer_memory(Group& group, int device, size_t bytes) {
  return std::make_unique<IpcPeerMemory>(group, device, bytes);
}

}  // namespace customar::detail
