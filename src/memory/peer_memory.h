// Peer-shared device memory: a buffer this rank allocates and every other rank maps. The interface hides how the
// mapping is made: CUDA IPC (memory/ipc_memory.cpp), the virtual memory management API with POSIX file descriptors
// (memory/vmm_memory.cpp, which symmetric memory uses where the driver allows it), or plain pointers between the
// threads of a virtual world (virtual/local_memory.cpp).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "customar/group.h"

namespace customar::detail {

class PeerMemory {
 public:
  virtual ~PeerMemory() = default;
  /// This rank's own buffer.
  virtual void* local() const = 0;
  /// Rank r's buffer as mapped in this process (local() for r == rank).
  virtual void* peer(int r) const = 0;
  /// Size of every rank's buffer in bytes (the same on all ranks).
  virtual size_t bytes() const = 0;
};

/// Allocates `bytes` of zeroed device memory on `device` and maps every peer's through cudaIpcGetMemHandle /
/// cudaIpcOpenMemHandle. Collective. The caller must barrier on the group before destroying the result, so that no
/// peer still reads the buffer being freed. Throws CudaError naming the failing call and peer.
std::unique_ptr<PeerMemory> open_ipc_peer_memory(Group& group, int device, size_t bytes);

/// Whether `device` can share memory through the virtual memory management API and POSIX file descriptors: the driver
/// has the cuMem* entry points and reports both CU_DEVICE_ATTRIBUTE_VIRTUAL_MEMORY_MANAGEMENT_SUPPORTED and
/// CU_DEVICE_ATTRIBUTE_HANDLE_TYPE_POSIX_FILE_DESCRIPTOR_SUPPORTED. Otherwise false, with what is missing in `*why`.
/// Local; never throws.
bool vmm_fd_supported(int device, std::string* why);

/// Allocates `bytes` (rounded up to the recommended granularity, 2 MiB on current GPUs) of zeroed device memory on
/// `device` with cuMemCreate, exports it as a POSIX file descriptor, passes the descriptors between the ranks over Unix
/// sockets (memory/fd_exchange.h; `tag` names the exchange and must be equal on every rank; `timeout` bounds it) and
/// maps every peer's into this process. Every descriptor is closed as soon as it has been passed on or imported.
/// Collective: a failure on any rank throws the same Error on every rank, with nothing left mapped. The caller must
/// barrier before destroying the result, so that no peer still reads the memory being unmapped. bytes() is the
/// rounded size of this rank's allocation.
std::unique_ptr<PeerMemory> open_vmm_peer_memory(Group& group, int device, size_t bytes, uint64_t tag,
                                                 std::chrono::milliseconds timeout);

/// `bytes` of zeroed device memory on `device` that no peer maps (peer(r) is nullptr for every other rank): the
/// symmetric memory of a communicator whose kernels never read a peer's buffer. Local. Throws CudaError.
std::unique_ptr<PeerMemory> open_unshared_memory(int rank, int device, size_t bytes);

/// The same for the ranks of a virtual world (threads of this process on one GPU): every rank's buffer is plain
/// device memory of the one context, and the exchange carries the pointers themselves. Collective.
std::unique_ptr<PeerMemory> open_local_peer_memory(Group& group, int device, size_t bytes);

}  // namespace customar::detail
