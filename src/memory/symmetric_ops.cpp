// The GPU side of the symmetric heap: how its allocations are made and shared, and the kernels' table.
#include <cuda_runtime_api.h>

#include <cstddef>

#include "common/check.h"
#include "common/device_guard.h"
#include "common/log.h"
#include "group/agree.h"
#include "kernels/symmetric.h"
#include "memory/peer_memory.h"
#include "memory/symmetric_heap.h"
#include "virtual/virtual_group.h"

namespace customar::detail {

namespace {

// CUDA IPC shares the whole block an allocation was carved from; rounded to this, an allocation is a block of its own.
constexpr size_t kIpcGranularity = size_t(2) << 20;

class UnsharedMemory final : public PeerMemory {
 public:
  UnsharedMemory(int rank, int device, size_t bytes) : rank_(rank), device_(device), bytes_(bytes) {
    DeviceGuard on_device(device);
    CUSTOMAR_CUDA_CHECK(cudaMalloc(&ptr_, bytes));
    const cudaError_t err = cudaMemset(ptr_, 0, bytes);
    if (err != cudaSuccess) {
      (void)cudaFree(ptr_);
      CUSTOMAR_CUDA_CHECK(err);
    }
  }
  ~UnsharedMemory() override {
    DeviceGuard on_device(device_, std::nothrow);
    if (cudaFree(ptr_) != cudaSuccess) CUSTOMAR_WARN("MEM", "freeing symmetric memory: cudaFree failed");
  }
  void* local() const override { return ptr_; }
  void* peer(int r) const override { return r == rank_ ? ptr_ : nullptr; }
  size_t bytes() const override { return bytes_; }

 private:
  int rank_, device_;
  size_t bytes_;
  void* ptr_ = nullptr;
};

enum class Transport { kUnshared, kVirtual, kVmm, kIpc };

// Every rank's driver must allow VMM file descriptors for the ranks to use them.
Transport agree_transport(Group& group, int device) {
  std::string why;
  const bool mine = vmm_fd_supported(device, &why);
  const std::vector<uint8_t> all = all_gather_value<uint8_t>(group, mine ? 1 : 0);
  for (int r = 0; r < group.size(); ++r) {
    if (all[r] != 0) continue;
    CUSTOMAR_INFO("MEM", "symmetric memory through CUDA IPC: rank %d cannot share VMM memory%s%s", r,
                  r == group.rank() ? ": " : "", r == group.rank() ? why.c_str() : "");
    return Transport::kIpc;
  }
  return Transport::kVmm;
}

class GpuSymmetricOps final : public SymmetricOps {
 public:
  GpuSymmetricOps(Group& group, int device, void* region, std::chrono::milliseconds timeout)
      : rank_(group.rank()),
        world_(group.size()),
        device_(device),
        region_(static_cast<uint8_t*>(region)),
        timeout_(timeout) {
    transport_ = region == nullptr              ? Transport::kUnshared
                 : as_virtual(group) != nullptr ? Transport::kVirtual
                                                : agree_transport(group, device);
  }

  std::unique_ptr<PeerMemory> open(Group& group, size_t bytes, uint64_t id) override {
    std::unique_ptr<PeerMemory> m;
    switch (transport_) {
      case Transport::kVirtual:
        return open_local_peer_memory(group, device_, bytes);
      case Transport::kVmm:
        return open_vmm_peer_memory(group, device_, bytes, id, timeout_);
      case Transport::kIpc:
        run_step(group, "mapping symmetric memory through CUDA IPC", [&] {
          m = open_ipc_peer_memory(group, device_, (bytes + kIpcGranularity - 1) / kIpcGranularity * kIpcGranularity);
        });
        return m;
      case Transport::kUnshared:
        break;
    }
    run_step(group, "allocating symmetric memory",
             [&] { m = std::make_unique<UnsharedMemory>(rank_, device_, bytes); });
    return m;
  }

  void publish(int slot, const PeerMemory* memory) override {
    if (region_ == nullptr) return;
    const uint64_t begin = memory != nullptr ? reinterpret_cast<uint64_t>(memory->local()) : 0;
    const uint64_t end = memory != nullptr ? begin + memory->bytes() : 0;
    long long delta[kMaxRanks] = {};
    for (int r = 0; memory != nullptr && r < world_; ++r)
      delta[r] = static_cast<long long>(reinterpret_cast<uint64_t>(memory->peer(r)) - begin);
    DeviceGuard on_device(device_);
    // begin marks the entry valid: written last, cleared first.
    if (memory == nullptr) write(offsetof(SymmetricTable, begin) + slot * sizeof(uint64_t), &begin, sizeof(begin));
    write(offsetof(SymmetricTable, delta) + slot * sizeof(delta), delta, sizeof(delta));
    write(offsetof(SymmetricTable, end) + slot * sizeof(uint64_t), &end, sizeof(end));
    if (memory != nullptr) write(offsetof(SymmetricTable, begin) + slot * sizeof(uint64_t), &begin, sizeof(begin));
    // A copy from pageable memory may return before it lands, and the caller's next kernel may run on any stream.
    CUSTOMAR_CUDA_CHECK(cudaDeviceSynchronize());
  }

  void quiesce() override {
    DeviceGuard on_device(device_);
    CUSTOMAR_CUDA_CHECK(cudaDeviceSynchronize());
  }

  std::string describe() const override {
    switch (transport_) {
      case Transport::kVirtual:
        return "device memory shared by pointer between the virtual ranks";
      case Transport::kVmm:
        return "VMM memory shared through POSIX file descriptors over Unix sockets";
      case Transport::kIpc:
        return "device memory shared through CUDA IPC";
      case Transport::kUnshared:
        break;
    }
    return "device memory no peer maps (the backend's kernels read no peer's buffer)";
  }

 private:
  void write(size_t offset, const void* src, size_t bytes) {
    CUSTOMAR_CUDA_CHECK(cudaMemcpy(region_ + kSymmetricTableOffset + offset, src, bytes, cudaMemcpyHostToDevice));
  }

  int rank_, world_, device_;
  uint8_t* region_;  // this rank's custom region: the table lies at kSymmetricTableOffset in it
  std::chrono::milliseconds timeout_;
  Transport transport_ = Transport::kUnshared;
};

}  // namespace

std::unique_ptr<PeerMemory> open_unshared_memory(int rank, int device, size_t bytes) {
  return std::make_unique<UnsharedMemory>(rank, device, bytes);
}

std::unique_ptr<SymmetricOps> make_symmetric_ops(Group& group, int device, void* region,
                                                 std::chrono::milliseconds timeout) {
  return std::make_unique<GpuSymmetricOps>(group, device, region, timeout);
}

}  // namespace customar::detail
