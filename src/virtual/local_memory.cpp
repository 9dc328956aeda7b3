// Peer memory of a virtual world: the ranks are threads of one process on one GPU, so a rank's buffer is reachable
// from every other rank by its plain device pointer.
#include <cuda_runtime_api.h>

#include <vector>

#include "common/check.h"
#include "common/device_guard.h"
#include "common/log.h"
#include "common/serialize.h"
#include "group/agree.h"
#include "memory/peer_memory.h"

namespace customar::detail {

namespace {

class LocalPeerMemory final : public PeerMemory {
 public:
  LocalPeerMemory(Group& group, int device, size_t bytes) : rank_(group.rank()), device_(device), bytes_(bytes) {
    ptrs_.assign(group.size(), nullptr);
    void* mine = nullptr;
    // The allocation's outcome travels with the pointer, so a rank whose allocation failed still takes part in the
    // one exchange.
    const std::string err = local_error([&] {
      DeviceGuard on_device(device);
      CUSTOMAR_CUDA_CHECK(cudaMalloc(&mine, bytes));
      // Zeroed before any peer can see it: flags start at 0 and epochs start at 1.
      CUSTOMAR_CUDA_CHECK(cudaMemset(mine, 0, bytes));
      CUSTOMAR_CUDA_CHECK(cudaDeviceSynchronize());
    });
    ptrs_[rank_] = mine;
    Writer w;
    w.put_string(err).put<uint64_t>(bytes).put<uint64_t>(reinterpret_cast<uint64_t>(mine));
    std::vector<Bytes> all = group.all_gather(w.bytes());
    try {
      for (int r = 0; r < group.size(); ++r) {
        Reader rd(all[r]);
        const std::string peer_err = rd.get_string();
        if (!peer_err.empty())
          throw Error("allocating " + std::to_string(bytes) + " bytes of peer memory failed on rank " +
                      std::to_string(r) + ": " + peer_err);
        if (rd.get<uint64_t>() != bytes)
          throw Error("peer memory: rank " + std::to_string(r) + " sized its region differently from rank " +
                      std::to_string(rank_) + "; every rank must size its region alike");
        const auto p = reinterpret_cast<void*>(rd.get<uint64_t>());
        if (r != rank_) ptrs_[r] = p;
      }
    } catch (...) {
      release();
      throw;
    }
    CUSTOMAR_INFO("MEM", "virtual ranks: %zu bytes of device memory per rank, shared by pointer", bytes);
  }
  ~LocalPeerMemory() override { release(); }

  void* local() const override { return ptrs_[rank_]; }
  void* peer(int r) const override { return ptrs_[r]; }
  size_t bytes() const override { return bytes_; }

 private:
  void release() {
    if (ptrs_[rank_] == nullptr) return;
    DeviceGuard on_device(device_, std::nothrow);
    const cudaError_t err = cudaFree(ptrs_[rank_]);
    if (err != cudaSuccess) CUSTOMAR_WARN("MEM", "releasing virtual peer memory: %s", cudaGetErrorName(err));
    ptrs_[rank_] = nullptr;
  }

  int rank_;
  int device_;
  size_t bytes_;
  std::vector<void*> ptrs_;
};

}  // namespace

std::unique_ptr<PeerMemory> open_local_peer_memory(Group& group, int device, size_t bytes) {
  return std::make_unique<LocalPeerMemory>(group, device, bytes);
}

}  // namespace customar::detail
