// V2: the shared kernel bodies compiled at run time by NVRTC for this exact GPU and world size, with programmatic
// dependent launch, plus the one-shot push (Lamport) kernel that V1 does not have.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "customar/types.h"
#include "kernels/handle.h"

namespace customar::detail {

/// The device part of the V2 source: the built-in text (src/kernels/handle.h and device/*.cuh) when `file` is empty,
/// else that file's text (CUSTOMAR_V2_SOURCE). Throws ConfigError for a file that cannot be read or is empty.
std::string v2_device_source(const std::string& file);

/// The NVRTC source of the V2 module for a world size: `device_source` followed by extern "C" kernels
/// customar_v2_<algo>_<dtype> for oneshot_push, oneshot_pull, twoshot, oneshot_push1 (the push of a one-block grid) and
/// oneshot_pushw (the push from kWidePushVecs) x f16, bf16, f32.
std::string v2_source(int world, const std::string& device_source);

/// v2_source() of this process's device source (built-in, or CUSTOMAR_V2_SOURCE).
std::string v2_source(int world);

/// Module name used in the cache key and dumps, e.g. "customar_v2_w4".
std::string v2_module_name(int world);

/// From this many 16-byte vectors (1 MiB) the built-in push shape uses kWidePushBlock-thread blocks instead of
/// kPushBlock, and the wide push kernel runs it.
constexpr size_t kWidePushVecs = size_t(1) << 16;
/// Threads per block of the built-in multi-block push shape, below and from kWidePushVecs.
constexpr int kPushBlock = 128;
constexpr int kWidePushBlock = 256;

/// Push threads per agreed SM at most, where the registers of the kernel that runs the grid let that many be resident
/// at once (V2Kernels asks the occupancy calculator): four 256-thread blocks, so that a 2 MiB push has one vector per
/// thread.
constexpr int kPushThreadsPerSm = 1024;
/// The cap that holds without asking: one 512-thread block per SM is what __launch_bounds__(512) guarantees.
constexpr int kSafePushThreadsPerSm = 512;

/// Grid and block of a one-shot push of `nvec` 16-byte vectors: one vector per thread, a single block of whole warps
/// while the message fits one block, else blocks of `threads` (0: the built-in shape, 128 threads, 256 from
/// kWidePushVecs), at most max_blocks x sm_threads threads (kSafePushThreadsPerSm for a `threads` override) and 512
/// blocks in all (more vectors loop). sm_threads must be resident per SM at once for the block size chosen, so that
/// every block of the grid runs in one wave: a block waits for its peers' blocks of the same index, and a grid that
/// does not fit would also pay a second wave. The push has no cross-block barrier, so ranks need not agree on this
/// shape.
struct PushShape {
  unsigned blocks, threads;
};
PushShape push_shape(size_t nvec, int max_blocks, int threads, int sm_threads = kSafePushThreadsPerSm);

/// Loaded V2 kernels for one (world size, architecture).
class V2Kernels {
 public:
  /// Compiles (or loads from the cache) and loads the module. Throws Error on any failure.
  V2Kernels(int world, int sm);
  ~V2Kernels();
  V2Kernels(const V2Kernels&) = delete;
  V2Kernels& operator=(const V2Kernels&) = delete;

  /// Launches `algo` (not kNccl) with PDL. Same preconditions as V1's launchers; push also needs
  /// bytes <= h.push_capacity.
  void launch(Algo algo, const DeviceHandle& h, const void* in, void* out, size_t count, DataType dtype,
              cudaStream_t stream) const;

  double compile_ms() const { return compile_ms_; }
  const char* compile_source() const { return compile_source_; }

 private:
  cudaLibrary_t lib_ = nullptr;
  // [oneshot_push, oneshot_pull, twoshot, oneshot_push1, oneshot_pushw][f16, bf16, f32]
  cudaKernel_t kernels_[5][3] = {};
  // Threads per SM a push grid may use, per dtype: [t][0] below kWidePushVecs, [t][1] from it (the wide kernel).
  int push_sm_threads_[3][2] = {{kSafePushThreadsPerSm, kSafePushThreadsPerSm},
                                {kSafePushThreadsPerSm, kSafePushThreadsPerSm},
                                {kSafePushThreadsPerSm, kSafePushThreadsPerSm}};
  double compile_ms_ = 0;
  const char* compile_source_ = "";
};

}  // namespace customar::detail
