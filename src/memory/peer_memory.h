// Peer-shared device memory: a buffer this rank allocates and every other rank maps. The interface hides how the
// mapping is made so a virtual-memory / file-descriptor implementation (cuMem* with POSIX fds, which works with
// VMM allocators) can replace the CUDA IPC one without touching the backends.
#pragma once

#include <cstddef>
#include <memory>

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

/// The same for the ranks of a virtual world (threads of this process on one GPU): every rank's buffer is plain
/// device memory of the one context, and the exchange carries the pointers themselves. Collective.
std::unique_ptr<PeerMemory> open_local_peer_memory(Group& group, int device, size_t bytes);

}  // namespace customar::detail
