#include <cuda_runtime_api.h>

#include <optional>
#include <vector>

#include "common/check.h"
#include "common/device_guard.h"
#include "common/log.h"
#include "common/serialize.h"
#include "group/agree.h"
#include "memory/peer_memory.h"

namespace customar::detail {

namespace {

class IpcPeerMemory final : public PeerMemory {
 public:
  IpcPeerMemory(Group& group, int device, size_t bytes) : rank_(group.rank()), device_(device), bytes_(bytes) {
    ptrs_.assign(group.size(), nullptr);
    // The allocation, the handle and the peer mappings all belong to `device`, whatever the caller's current device
    // is (a test tool with its own static CUDA runtime has its own idea of the current device). Made current inside
    // the local part, so a rank that cannot switch still takes part in the exchange; kept until the mappings exist.
    std::optional<DeviceGuard> on_device;
    try {
      // Local part first, its outcome then travels with the handle: a rank whose allocation failed still takes part
      // in the one exchange, so no rank reads an error message as a handle (or waits for a handle never sent).
      cudaIpcMemHandle_t mine{};
      std::string err = local_error([&] {
        on_device.emplace(device);
        CUSTOMAR_CUDA_CHECK(cudaMalloc(&ptrs_[rank_], bytes));
        // Zeroed before any peer can see it: flags start at 0 and epochs start at 1.
        CUSTOMAR_CUDA_CHECK(cudaMemset(ptrs_[rank_], 0, bytes));
        CUSTOMAR_CUDA_CHECK(cudaDeviceSynchronize());
        CUSTOMAR_CUDA_CHECK(cudaIpcGetMemHandle(&mine, ptrs_[rank_]));
      });
      Writer w;
      w.put_string(err).put<uint64_t>(bytes).put(mine);
      std::vector<Bytes> all = group.all_gather(w.bytes());
      std::vector<cudaIpcMemHandle_t> handles(group.size());
      for (int r = 0; r < group.size(); ++r) {
        Reader rd(all[r]);
        std::string peer_err = rd.get_string();
        if (!peer_err.empty())
          throw Error("allocating " + std::to_string(bytes) + " bytes of peer memory failed on rank " +
                      std::to_string(r) + ": " + peer_err);
        auto peer_bytes = rd.get<uint64_t>();
        if (peer_bytes != bytes)
          throw Error("peer memory: rank " + std::to_string(r) + " allocated " + std::to_string(peer_bytes) +
                      " bytes and rank " + std::to_string(rank_) + " " + std::to_string(bytes) +
                      "; every rank must size its region alike");
        handles[r] = rd.get<cudaIpcMemHandle_t>();
      }
      for (int r = 0; r < group.size(); ++r) {
        if (r == rank_) continue;
        cudaError_t e = cudaIpcOpenMemHandle(&ptrs_[r], handles[r], cudaIpcMemLazyEnablePeerAccess);
        if (e != cudaSuccess) {
          (void)cudaGetLastError();
          ptrs_[r] = nullptr;
          throw CudaError(std::string("cudaIpcOpenMemHandle(rank ") + std::to_string(r) + ") failed: " +
                          cudaGetErrorName(e) + " (" + cudaGetErrorString(e) + ") at " + where(__FILE__, __LINE__));
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
    // Best effort from a destructor: a device that cannot be made current is logged, and the frees are still tried.
    DeviceGuard on_device(device_, std::nothrow);
    if (!on_device.ok())
      CUSTOMAR_WARN("MEM", "releasing peer memory: cannot make device %d current; freeing on the current one", device_);
    for (size_t r = 0; r < ptrs_.size(); ++r) {
      if (ptrs_[r] == nullptr) continue;
      cudaError_t err = static_cast<int>(r) == rank_ ? cudaFree(ptrs_[r]) : cudaIpcCloseMemHandle(ptrs_[r]);
      if (err != cudaSuccess) CUSTOMAR_WARN("MEM", "releasing rank %zu's buffer: %s", r, cudaGetErrorName(err));
      ptrs_[r] = nullptr;
    }
  }

  int rank_;
  int device_;
  size_t bytes_;
  std::vector<void*> ptrs_;
};

}  // namespace

std::unique_ptr<PeerMemory> open_ipc_peer_memory(Group& group, int device, size_t bytes) {
  return std::make_unique<IpcPeerMemory>(group, device, bytes);
}

}  // namespace customar::detail
