// The symmetric-memory table: where the kernels that read their inputs in place (kernels/device/symmetric.cuh) find
// every rank's copy of a buffer. Each rank keeps its own table, in the unused part of the header of its own custom
// region (DeviceHandle::regions[rank]), so that those kernels take the same DeviceHandle and parameters as every
// other kernel. The host writes an entry when a symmetric allocation is made and clears it when it is freed, both while
// no kernel of the communicator runs (memory/symmetric_heap.h); kernels only read it. Compiled by the host compiler,
// nvcc and NVRTC, like handle.h.
#pragma once

#include "kernels/handle.h"

namespace customar::detail {

/// Live symmetric allocations a communicator holds at once: one warp searches the table, two entries per lane.
constexpr int kMaxSymmetricAllocations = 64;

/// This process's view of every live symmetric allocation: entry s covers this rank's addresses [begin[s], end[s])
/// (begin 0: the entry is free), and rank r's copy of an address a in it is a + delta[s][r] (0 for this rank).
struct SymmetricTable {
  uint64_t begin[kMaxSymmetricAllocations];
  uint64_t end[kMaxSymmetricAllocations];
  long long delta[kMaxSymmetricAllocations][kMaxRanks];
};

/// Where the table lies in this rank's region: past the flags, the probe slots and the poison word, before staging.
constexpr size_t kSymmetricTableOffset = 32 * 1024;
static_assert(kSymmetricTableOffset >= kPoisonOffset + sizeof(uint64_t), "the table overlaps the header's words");
static_assert(kSymmetricTableOffset + sizeof(SymmetricTable) <= kStagingOffset, "the table overlaps staging");

/// Error word value (DeviceHandle::error) of a kernel that found its symmetric buffer in no live allocation: a CUDA
/// graph replayed a call whose buffer has been freed since. Distinct from 1 + rank and from kErrorPeerGaveUp.
constexpr int kErrorSymmetricUnmapped = 1 << 17;

}  // namespace customar::detail
