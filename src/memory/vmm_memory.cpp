// Peer memory through the virtual memory management API: cuMemCreate, exported as a POSIX file descriptor, passed to
// the peers over Unix sockets (memory/fd_exchange.h), imported and mapped by each. Unlike CUDA IPC it works with
// memory from any VMM allocator, and the descriptor is a capability that only the ranks it is sent to ever hold.
#include <cuda_runtime_api.h>

#include <optional>
#include <vector>

#include "common/check.h"
#include "common/device_guard.h"
#include "common/log.h"
#include "common/serialize.h"
#include "group/agree.h"
#include "memory/fd_exchange.h"
#include "memory/peer_memory.h"
#include "memory/vmm_api.h"

namespace customar::detail {

namespace {

CUmemAllocationProp allocation_prop(int device) {
  CUmemAllocationProp prop{};
  prop.type = CU_MEM_ALLOCATION_TYPE_PINNED;
  prop.requestedHandleTypes = CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR;
  prop.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
  prop.location.id = device;
  return prop;
}

// One range of this process's address space with memory mapped into it; unmapped and given back on destruction.
class Mapping {
 public:
  Mapping() = default;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() { reset(); }

  // Reserves `size` bytes of addresses, maps `handle` there and gives `device` read-write access.
  void map(CUmemGenericAllocationHandle handle, size_t size, size_t align, int device, const std::string& what) {
    const VmmApi& api = vmm_api();
    CUSTOMAR_DRIVER_CHECK(api.reserve(&va_, size, align, 0, 0), "cuMemAddressReserve(" + what + ")");
    size_ = size;
    CUSTOMAR_DRIVER_CHECK(api.map(va_, size, 0, handle, 0), "cuMemMap(" + what + ")");
    mapped_ = true;
    CUmemAccessDesc access{};
    access.location.type = CU_MEM_LOCATION_TYPE_DEVICE;
    access.location.id = device;
    access.flags = CU_MEM_ACCESS_FLAGS_PROT_READWRITE;
    CUSTOMAR_DRIVER_CHECK(api.set_access(va_, size, &access, 1), "cuMemSetAccess(" + what + ")");
  }
  void* ptr() const { return reinterpret_cast<void*>(va_); }
  size_t size() const { return size_; }
  // Best effort, from destructors: a failure is logged.
  void reset() {
    const VmmApi& api = vmm_api();
    if (mapped_ && api.unmap(va_, size_) != CUDA_SUCCESS) CUSTOMAR_WARN("MEM", "cuMemUnmap failed");
    if (va_ != 0 && api.address_free(va_, size_) != CUDA_SUCCESS) CUSTOMAR_WARN("MEM", "cuMemAddressFree failed");
    mapped_ = false;
    va_ = 0;
    size_ = 0;
  }

 private:
  CUdeviceptr va_ = 0;
  size_t size_ = 0;
  bool mapped_ = false;
};

// A physical allocation handle, released on destruction (the memory lives on while a mapping holds it).
struct Handle {
  CUmemGenericAllocationHandle h = 0;
  bool valid = false;
  Handle() = default;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }
  void reset() {
    if (valid && vmm_api().release(h) != CUDA_SUCCESS) CUSTOMAR_WARN("MEM", "cuMemRelease failed");
    valid = false;
  }
};

class VmmPeerMemory final : public PeerMemory {
 public:
  VmmPeerMemory(Group& group, int device, size_t bytes, uint64_t tag, std::chrono::milliseconds timeout)
      : rank_(group.rank()), device_(device), maps_(group.size()) {
    // The allocation, its export and every mapping belong to `device`; made current inside the local part, so that a
    // rank that cannot switch still takes part in every exchange.
    std::optional<DeviceGuard> on_device;
    try {
      UniqueFd exported;
      size_t align = 0;
      const std::string err = local_error([&] {
        on_device.emplace(device);
        exported = create_local(bytes, &align);
      });
      const std::vector<uint64_t> sizes = agree_sizes(group, err, bytes);
      std::vector<UniqueFd> fds;
      run_step(group, "passing symmetric memory descriptors over Unix sockets",
               [&] { fds = exchange_fds(group, exported.get(), tag, timeout); });
      exported.reset();  // every peer has its own reference now (or the step failed on every rank)
      run_step(group, "mapping the peers' symmetric memory", [&] {
        for (int r = 0; r < group.size(); ++r)
          if (r != rank_) map_peer(r, std::move(fds[r]), sizes[r], align);
      });
    } catch (...) {
      release();
      throw;
    }
    CUSTOMAR_INFO("MEM", "mapped %zu bytes from each of %d ranks through VMM file descriptors", maps_[rank_].size(),
                  group.size());
  }

  void* local() const override { return maps_[rank_].ptr(); }
  void* peer(int r) const override { return maps_[r].ptr(); }
  size_t bytes() const override { return maps_[rank_].size(); }

  ~VmmPeerMemory() override {
    DeviceGuard on_device(device_, std::nothrow);  // best effort: the calls below need no particular device
    release();
  }

 private:
  // Every mapping first, then this rank's handle: the memory goes once no mapping in any process holds it.
  void release() {
    for (Mapping& m : maps_) m.reset();
    own_.reset();
  }

  // cuMemCreate, mapped here, zeroed (flags and user data start from a known state), exported. Returns the descriptor.
  UniqueFd create_local(size_t bytes, size_t* align) {
    const VmmApi& api = vmm_api();
    if (!api.missing.empty()) throw CudaError("the CUDA driver has no " + api.missing);
    const CUmemAllocationProp prop = allocation_prop(device_);
    CUSTOMAR_DRIVER_CHECK(api.granularity(align, &prop, CU_MEM_ALLOC_GRANULARITY_RECOMMENDED),
                          "cuMemGetAllocationGranularity");
    const size_t size = (bytes + *align - 1) / *align * *align;
    CUSTOMAR_DRIVER_CHECK(api.create(&own_.h, size, &prop, 0), "cuMemCreate(" + std::to_string(size) + " bytes)");
    own_.valid = true;
    maps_[rank_].map(own_.h, size, *align, device_, "this rank's allocation");
    CUSTOMAR_CUDA_CHECK(cudaMemset(maps_[rank_].ptr(), 0, size));
    CUSTOMAR_CUDA_CHECK(cudaDeviceSynchronize());
    int fd = -1;
    CUSTOMAR_DRIVER_CHECK(api.export_handle(&fd, own_.h, CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR, 0),
                          "cuMemExportToShareableHandle(POSIX file descriptor)");
    return UniqueFd(fd);
  }

  // Every rank's outcome and size, so that a rank whose allocation failed still takes part, and every rank throws
  // alike.
  std::vector<uint64_t> agree_sizes(Group& group, const std::string& err, size_t bytes) {
    Writer w;
    w.put_string(err).put<uint64_t>(maps_[rank_].size());
    const std::vector<Bytes> all = group.all_gather(w.bytes());
    std::vector<uint64_t> sizes(group.size());
    for (int r = 0; r < group.size(); ++r) {
      Reader rd(all[r]);
      const std::string peer_err = rd.get_string();
      sizes[r] = rd.get<uint64_t>();
      rd.expect_end();
      if (!peer_err.empty())
        throw Error("allocating " + std::to_string(bytes) + " bytes of symmetric memory failed on rank " +
                    std::to_string(r) + ": " + peer_err);
    }
    return sizes;
  }

  void map_peer(int r, UniqueFd fd, size_t size, size_t align) {
    const std::string what = "rank " + std::to_string(r) + "'s allocation";
    Handle h;
    CUSTOMAR_DRIVER_CHECK(vmm_api().import_handle(&h.h, reinterpret_cast<void*>(static_cast<uintptr_t>(fd.get())),
                                                  CU_MEM_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR),
                          "cuMemImportFromShareableHandle(" + what + ")");
    h.valid = true;
    fd.reset();  // the imported handle holds the memory now
    maps_[r].map(h.h, size, align, device_, what);
  }

  int rank_;
  int device_;
  Handle own_;
  std::vector<Mapping> maps_;
};

}  // namespace

bool vmm_fd_supported(int device, std::string* why) {
  const VmmApi& api = vmm_api();
  if (!api.missing.empty()) {
    *why = "the CUDA driver has no " + api.missing;
    return false;
  }
  CUdevice dev = 0;
  int vmm = 0, fd = 0;
  if (api.device_get(&dev, device) != CUDA_SUCCESS ||
      api.device_attribute(&vmm, CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED, dev) != CUDA_SUCCESS ||
      api.device_attribute(&fd, CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED, dev) != CUDA_SUCCESS) {
    *why = "device " + std::to_string(device) + "'s attributes cannot be read";
    return false;
  }
  if (vmm == 0 || fd == 0) {
    *why = "device " + std::to_string(device) +
           (vmm == 0 ? " has no virtual memory management" : " cannot export memory as POSIX file descriptors");
    return false;
  }
  return true;
}

std::unique_ptr<PeerMemory> open_vmm_peer_memory(Group& group, int device, size_t bytes, uint64_t tag,
                                                 std::chrono::milliseconds timeout) {
  return std::make_unique<VmmPeerMemory>(group, device, bytes, tag, timeout);
}

}  // namespace customar::detail
