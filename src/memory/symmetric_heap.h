// Symmetric memory of a communicator: buffers that every rank allocates together, of the same size and in the same
// order, so that the k-th allocation is the same buffer on every rank and an offset into it means the same thing
// everywhere. Each allocation is peer memory (memory/peer_memory.h) that every peer maps; the kernels find every
// rank's copy through a table (kernels/symmetric.h) that the heap keeps up to date.
//
// The heap's own logic (agreement on sizes and order, table slots, lookups) runs without a GPU: what maps memory and
// writes the table is a SymmetricOps, which tests replace.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "customar/group.h"
#include "memory/peer_memory.h"

namespace customar::detail {

/// One live symmetric allocation, as this rank sees it.
struct SymmetricBuffer {
  uint64_t id = 0;          ///< 1 + the number of allocations this heap made before it: the same on every rank
  uint8_t* base = nullptr;  ///< this rank's copy
  size_t bytes = 0;         ///< as asked for (the mapping may be larger)
  int slot = -1;            ///< its entry in the kernels' table
  std::unique_ptr<PeerMemory> memory;
};

/// What a heap needs from its surroundings.
class SymmetricOps {
 public:
  virtual ~SymmetricOps() = default;
  /// Collective: `bytes` of memory on every rank, mapped by every peer where there are kernels to read it. Throws the
  /// same Error on every rank. `id` names the allocation (equal on every rank).
  virtual std::unique_ptr<PeerMemory> open(Group& group, size_t bytes, uint64_t id) = 0;
  /// Local: writes table entry `slot` for `memory`'s mappings, or clears it (memory == nullptr). Called only while
  /// no kernel of the communicator runs.
  virtual void publish(int slot, const PeerMemory* memory) = 0;
  /// Local: returns once no kernel of this rank may still touch symmetric memory.
  virtual void quiesce() = 0;
  /// How the memory is shared, for logs and reason(), e.g. "VMM, POSIX file descriptors over Unix sockets".
  virtual std::string describe() const = 0;
};

class SymmetricHeap {
 public:
  /// Local. `group` must outlive the heap.
  SymmetricHeap(Group& group, std::unique_ptr<SymmetricOps> ops);
  /// Local: unmaps every live allocation. The owner makes sure first that no peer reads them any more.
  ~SymmetricHeap();
  SymmetricHeap(const SymmetricHeap&) = delete;
  SymmetricHeap& operator=(const SymmetricHeap&) = delete;

  /// Collective. Every rank asks for the same `bytes` as its allocation number `id` (the same order of allocations
  /// and frees everywhere); otherwise, for 0 bytes, or with kMaxSymmetricAllocations live already, every rank throws
  /// the same InvalidArgument before anything is mapped. Mapping failures throw the same Error on every rank.
  void* allocate(size_t bytes);
  /// Collective. `ptr` must be what allocate() returned, the same allocation on every rank; otherwise every rank
  /// throws the same InvalidArgument and nothing is freed. Waits for this rank's device (quiesce) before the table
  /// entry goes, and for every rank's before the memory is unmapped.
  void release(const void* ptr);

  /// The live allocation holding address `p`, or nullptr.
  const SymmetricBuffer* find(const void* p) const;
  /// find(p), and [p, p + bytes) must lie inside its allocation: throws InvalidArgument naming `what`, the allocation
  /// and by how much the range runs past its end. nullptr when p lies in no allocation.
  const SymmetricBuffer* find_range(const void* p, size_t bytes, const char* what) const;
  /// Why `p` is in no live allocation, for messages: "it lies in no live symmetric allocation (its address was in
  /// allocation #3, freed since: ...)" or "it lies in no symmetric allocation of this communicator". An address a
  /// freed allocation held may since belong to new ordinary memory, so the first says both.
  std::string why_not_symmetric(const void* p) const;

  /// Device memory this rank holds for symmetric allocations, in bytes (what the mappings take, granularity included).
  size_t bytes() const;
  /// Live allocations.
  size_t count() const { return live_.size(); }
  std::string describe() const { return ops_->describe(); }

 private:
  int free_slot() const;
  void agree_request(size_t bytes, int slot);
  const SymmetricBuffer& agree_release(const void* ptr);

  Group& group_;
  std::unique_ptr<SymmetricOps> ops_;
  std::vector<std::unique_ptr<SymmetricBuffer>> live_;
  uint64_t next_id_ = 1;
  // Recently freed ranges (begin, end, id), for messages only: never consulted to decide a call's path, since the
  // addresses may belong to new memory by now.
  std::deque<std::pair<std::pair<uintptr_t, uintptr_t>, uint64_t>> freed_;
};

/// The GPU side of a heap for a communicator on `device`. `region`: this rank's custom region
/// (DeviceHandle::regions[rank]), whose header holds the kernels' table (kernels/symmetric.h), for a communicator whose
/// kernels read peers' symmetric memory; the ranks then agree how to share it: by pointer in a virtual world, else
/// through VMM and POSIX file descriptors where every rank's driver allows it, else through CUDA IPC (each allocation
/// rounded up to 2 MiB, so that no neighbouring allocation is shared with it). nullptr for a communicator whose kernels
/// never read a peer's buffer (NCCL, V1, world size 1): its allocations are plain device memory that no peer maps.
/// `timeout` bounds each descriptor exchange. Collective where `region` is given.
std::unique_ptr<SymmetricOps> make_symmetric_ops(Group& group, int device, void* region,
                                                 std::chrono::milliseconds timeout);

}  // namespace customar::detail
