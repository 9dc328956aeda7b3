// Launch-shape rules shared by the host (which sizes grids) and the device code (which loops by the same numbers):
// one definition, compiled by the host compiler, by nvcc (V1) and by NVRTC (V2), so it uses no standard header.
#pragma once

#include "kernels/handle.h"

namespace customar::detail {

/// Threads per block of the barrier kernels (one-shot pull, two-shot).
constexpr int kThreads = 512;

/// 16-byte vectors each thread of a barrier kernel keeps in flight per loop step: several loads in flight before
/// the first use reach memory and NVLink bandwidth with one block per SM; halved for wide worlds, whose W loads per
/// step would otherwise pass 128 registers.
constexpr int unroll_for(int world) { return world <= 4 ? 4 : 2; }

/// Blocks of a barrier kernel for a message of `nvec` 16-byte vectors: enough that each thread has one unrolled
/// step, at least one, at most `max_blocks` (agreed across ranks, so every rank launches the same grid: the
/// barrier pairs block b with block b of every peer). Two-shot reduces 1/world of the message per rank.
constexpr unsigned barrier_grid(bool twoshot, size_t nvec, int world, int max_blocks) {
  const size_t work = twoshot ? (nvec + static_cast<size_t>(world) - 1) / static_cast<size_t>(world) : nvec;
  const size_t per_block = static_cast<size_t>(kThreads) * static_cast<size_t>(unroll_for(world));
  const size_t blocks = (work + per_block - 1) / per_block;
  return blocks < 1                                 ? 1u
         : blocks > static_cast<size_t>(max_blocks) ? static_cast<unsigned>(max_blocks)
                                                    : static_cast<unsigned>(blocks);
}

/// From this many 16-byte vectors (1 MiB) the push runs in kWidePushBlock-thread blocks on its wide kernel.
constexpr size_t kWidePushVecs = size_t(1) << 16;
/// Threads per block of the multi-block push below kWidePushVecs, and from it. 128-thread blocks beat 512-thread
/// ones by 0.3-0.6 us from 8 KiB (fewer warps per SM to poll, more SMs issuing remote stores); from 1 MiB 256-thread
/// blocks halve the per-block state reads and call records (both measured on 2x H200).
constexpr int kPushBlock = 128;
constexpr int kWidePushBlock = 256;
/// A message of at most this many vectors runs as one block of one thread per vector (whole warps): a second block
/// costs more than the extra warps.
constexpr size_t kPushOneBlockVecs = 256;
/// Push threads per agreed SM at most, where the occupancy calculator says that many are resident at once (four
/// 256-thread blocks), so that a 2 MiB push still has one vector per thread.
constexpr int kPushThreadsPerSm = 1024;
/// The cap that holds without asking: one 512-thread block per SM is what __launch_bounds__(512) guarantees.
constexpr int kSafePushThreadsPerSm = 512;

/// Grid and block of a one-shot push.
struct PushShape {
  unsigned blocks, threads;
};

/// The push of `nvec` vectors: one vector per thread, a single block of whole warps while the message fits
/// kPushOneBlockVecs, else blocks of kPushBlock (kWidePushBlock from kWidePushVecs) threads, at most
/// max_blocks x sm_threads threads and kMaxPushBlocks blocks in all (more vectors loop). sm_threads must be resident
/// per SM at once for that block size, so that the grid runs in one wave: a block waits for its peers' blocks of the
/// same index. The push has no cross-block barrier, so ranks need not agree on this shape.
constexpr PushShape push_shape(size_t nvec, int max_blocks, int sm_threads) {
  if (nvec <= kPushOneBlockVecs) return {1u, static_cast<unsigned>(nvec < 32 ? 32 : (nvec + 31) / 32 * 32)};
  const size_t per_block = static_cast<size_t>(nvec >= kWidePushVecs ? kWidePushBlock : kPushBlock);
  size_t cap = static_cast<size_t>(max_blocks) * static_cast<size_t>(sm_threads) / per_block;
  cap = cap < 1 ? 1 : cap > static_cast<size_t>(kMaxPushBlocks) ? static_cast<size_t>(kMaxPushBlocks) : cap;
  const size_t blocks = (nvec + per_block - 1) / per_block;
  return {static_cast<unsigned>(blocks < cap ? blocks : cap), static_cast<unsigned>(per_block)};
}

}  // namespace customar::detail
