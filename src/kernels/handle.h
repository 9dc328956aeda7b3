// What the custom kernels see of a communicator: plain pointers and sizes, no host classes. Compiled by the host
// compiler, by nvcc (V1) and by NVRTC (V2, where no standard headers exist), hence the guard below.
#pragma once

#ifdef __CUDACC_RTC__
typedef unsigned long long uint64_t;
typedef unsigned int uint32_t;
typedef unsigned char uint8_t;
typedef decltype(sizeof(0)) size_t;
#else
#include <cstddef>
#include <cstdint>
#endif

namespace customar::detail {

constexpr int kMaxRanks = 8;
// Per-block flags: a block barriers only with the same block index on the peers, so blocks never wait on each
// other inside one rank. At most one block per SM of the smallest GPU (132 on H100/H200), capped here.
constexpr int kMaxBlocks = 128;
constexpr int kPhases = 2;  // two-shot needs two barriers per call; one-shot uses phase 0

// Layout of every rank's peer-visible region:
//   [flags][probe] ... 64 KiB | staging 0 (capacity) | staging 1 (capacity) | push buffers (3 x (world - 1) x
//   push_capacity: one slot per peer, none for the rank itself, whose share never leaves its registers or input)
constexpr size_t kFlagBytes = sizeof(uint64_t) * kPhases * kMaxBlocks * kMaxRanks;
constexpr size_t kProbeOffset = kFlagBytes;  // set-up probe: one u64 per source rank
// Written by a peer whose wait timed out: (1 + that peer) | (1 + the rank it waited for) << 8. That peer has left the
// communicator, so a rank that finds this word set stops waiting (and its destructor skips the barrier the peer will
// never enter), instead of timing out on its own later or hanging in a barrier. The missing rank travels with it so
// that every other survivor names the same missing rank as the first one did.
constexpr size_t kPoisonOffset = kProbeOffset + kMaxRanks * sizeof(uint64_t);
constexpr size_t kStagingOffset = 64 * 1024;
static_assert(kPoisonOffset + sizeof(uint64_t) <= kStagingOffset, "flags overflow the header");
// Error word values: 1 + the rank that did not arrive (found by this rank's wait or by a peer's), or, on the rank a
// peer waited for in vain (it was late, not gone), kErrorPeerGaveUp | (1 + the rank that gave up on it).
constexpr int kErrorPeerGaveUp = 1 << 16;

// The Lamport sentinel, as a 32-bit word: two fp16/bf16 negative zeros (0x8000 each), and for fp32 a negative
// denormal (-4.6e-41) that senders replace by -0.0. One pattern for every dtype, because the push buffers are
// cleared for a later call whose dtype is not yet known.
constexpr uint32_t kSentinelWord = 0x80008000u;

/// Bytes of the three rotating push buffers, one slot of push_capacity per peer in each.
constexpr size_t push_buffers_bytes(size_t push_capacity, int world) {
  return 3 * static_cast<size_t>(world - 1) * push_capacity;
}

/// Region bytes for a staging capacity and a push capacity (per slot) at a world size.
constexpr size_t region_bytes(size_t capacity, size_t push_capacity, int world) {
  return kStagingOffset + 2 * capacity + push_buffers_bytes(push_capacity, world);
}

// Kernels take it as `const __grid_constant__ DeviceHandle` or by value, per kernel record (kernels/variants.h says
// which and why): by value, a run-time index into regions[] makes the compiler copy the parameter (120 bytes) to
// local memory at kernel start.
struct DeviceHandle {
  uint8_t* regions[kMaxRanks];  ///< every rank's region, mapped here; regions[rank] is local
  int rank;
  int world;
  int max_blocks;  ///< agreed across ranks (min SM count, capped): never from the local SM count alone
  /// Always 0. A named word rather than a hole before the 8-byte fields: the by-value kernels copy the whole handle to
  /// local memory, and the compiler copies a struct with a hole in other, slower pieces.
  int pad;
  size_t capacity;       ///< bytes per staging buffer
  size_t push_capacity;  ///< bytes per push slot (0: no push buffers)
  uint64_t* counters;    ///< local device counters, see kCounter*
  int* error;            ///< host-mapped: 0, or a value as documented at kErrorPeerGaveUp
  uint64_t timeout_ns;
};

// Local device counters. Kept on the device (not passed as arguments) so that replayed CUDA graphs stay correct.
/// The push's grid never has more blocks than this: one state slot per block (kCounterPushState). 512 is four blocks
/// per SM on 128 agreed SMs (of 128 threads below 1 MiB, of 256 from it); the host clamps the grid to it and refuses
/// a launch above it.
constexpr int kMaxPushBlocks = 512;

constexpr int kCounterEpoch = 0;       ///< barrier calls (pull, two-shot) completed: flag values and staging parity
constexpr int kCounterBlocksDone = 1;  ///< blocks of the current barrier call that have finished
constexpr int kCounterFailed = 2;      ///< set by a timed-out wait, never cleared: every later kernel returns at once
// Index 3 is unused: it keeps the push slots 32-byte aligned.
/// First of kMaxPushBlocks slots, each the last push call's buffer (0-2) | its vector count << 2: which buffer the
/// next push uses and how much of the previous one it re-arms. Every push call that runs writes every slot (one that
/// finds kCounterFailed set returns first, and then so does every later one); block b reads slot b, which only block
/// b of a call writes, so no block waits for the others to record the call.
constexpr int kCounterPushState = 4;
constexpr int kCounterCount = kCounterPushState + kMaxPushBlocks;

}  // namespace customar::detail
