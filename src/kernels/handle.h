// What the custom kernels see of a communicator: plain pointers and sizes, no host classes. Shared by V1 (here) and
// the run-time compiled V2 kernels, which is why it is plain C++ that NVRTC can also compile.
#pragma once

#include <cstddef>
#include <cstdint>

namespace customar::detail {

inline constexpr int kMaxRanks = 8;
// Per-block flags: a block barriers only with the same block index on the peers, so blocks never wait on each
// other inside one rank. At most one block per SM of the smallest GPU (132 on H100/H200), capped here.
inline constexpr int kMaxBlocks = 128;
inline constexpr int kThreads = 512;
inline constexpr int kPhases = 2;  // two-shot needs two barriers per call; one-shot uses phase 0

// Layout of every rank's peer-visible region.
inline constexpr size_t kFlagBytes = sizeof(uint64_t) * kPhases * kMaxBlocks * kMaxRanks;
inline constexpr size_t kProbeOffset = kFlagBytes;   // set-up probe: one u64 per source rank
inline constexpr size_t kStagingOffset = 64 * 1024;  // 64 KiB: keeps staging 16-byte aligned
static_assert(kProbeOffset + kMaxRanks * sizeof(uint64_t) <= kStagingOffset);

/// Region bytes for a staging capacity: flags, probe, then two staging buffers (alternating calls), each `capacity`.
inline size_t region_bytes(size_t capacity) { return kStagingOffset + 2 * capacity; }

struct DeviceHandle {
  uint8_t* regions[kMaxRanks];  ///< every rank's region, mapped here; regions[rank] is local
  int rank;
  int world;
  int max_blocks;             ///< agreed across ranks (min SM count, capped): never from the local SM count alone
  size_t capacity;            ///< bytes per staging buffer
  uint64_t* epoch;            ///< local device counter of completed custom calls (graph-safe: read by the kernel)
  unsigned int* blocks_done;  ///< local: blocks of the current call that have finished
  int* error;                 ///< host-mapped: 0, or 1 + the rank a timed-out wait was waiting for
  uint64_t timeout_ns;
  int skip_copy_in;  ///< benchmarks only: skip the fused staging copy to measure what it costs (wrong sums)
};

}  // namespace customar::detail
