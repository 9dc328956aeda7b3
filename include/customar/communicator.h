// The all-reduce object. Built collectively over a Group; the dispatcher picks its backend before anything is
// allocated, and a backend object exists only if it works: a Communicator never holds a half-built backend.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <string>

#include "customar/dispatch.h"
#include "customar/group.h"
#include "customar/types.h"

namespace customar {

namespace detail {
struct LabAccess;
}

/// Options of a Communicator. Defaults suit every caller; the fields exist for tests, tools and applications that
/// already own an NCCL communicator.
struct CommOptions {
  /// Use this NCCL communicator for the NCCL path instead of creating one (it must span the same ranks in the same
  /// order, and outlive the Communicator). nullptr: the Communicator creates and owns one.
  ncclComm_t nccl_comm = nullptr;
  /// Caps the backend (e.g. Backend::kV1 to measure V1 on a machine that would run V2; kNccl for NCCL only). Must be
  /// the same on every rank. nullopt: whatever the dispatcher picks.
  std::optional<Backend> max_backend;
  /// Size the custom buffers at the library's limits (64 MiB per staging buffer and, for V2, 4 MiB per push slot)
  /// instead of by this config's thresholds, so that set_algo() can force every algorithm at every size up to those
  /// limits. For the tuner (customar-perf --tune), which must measure an algorithm beyond the threshold it is about
  /// to move; the config's thresholds still pick the algorithm otherwise. Costs 2 x 64 MiB (+ 3 x (world - 1) x 4 MiB
  /// for V2) of device memory per rank. Must be the same on every rank (ranks that differ get NCCL: region sizes are
  /// compared when the buffers are mapped).
  bool max_buffers = false;
};

/// One all-reduce + residual add + RMSNorm call (Communicator::all_reduce_add_rmsnorm), the step an inference engine
/// runs after every attention and MLP block of a tensor-parallel model:
///   residual_out = allreduce(in) + residual_in
///   norm_out     = rmsnorm(residual_out) * gamma                       (fp8_out: sat_e4m3(... / *scale))
/// Tensors are row-major [tokens x hidden] (gamma [hidden]) of `dtype`, contiguous, in device memory, 16-byte
/// aligned (whole allocations are; a row slice of one stays aligned, since a row is a multiple of 16 bytes).
///
/// Rounding (docs/fused-norm.md), with x = residual_out as stored:
///   residual_out = round(sum of the ranks' `in`, in fp32 in rank order, + residual_in)   -- one rounding, on the
///                  fused paths; the unfused path rounds the all-reduce's result first (NCCL may round at each hop)
///   r            = rsqrtf(fp32 sum of x^2 over the row / hidden + eps)
///   norm_out     = round(x * r * gamma)                                (fp32 products, one rounding)
///   fp8 norm_out = sat_e4m3(x * r * gamma * (1 / *scale))              (round to nearest even, saturated to +-448)
/// `scale` is the dequantisation scale of a static per-tensor FP8 quantisation (real value = fp8 value x *scale, as
/// in vLLM and TensorRT-LLM), read from device memory by the kernel, so a captured graph picks up a new scale.
struct AddRmsNormArgs {
  /// [tokens x hidden]: this rank's partial sums. Its contents are unspecified after the call unless norm_out == in
  /// (the unfused path all-reduces in place into it).
  void* in = nullptr;
  /// [tokens x hidden], the same on every rank (the model's residual stream is replicated).
  const void* residual_in = nullptr;
  /// [hidden]: the RMSNorm weight.
  const void* gamma = nullptr;
  /// [tokens x hidden] of dtype. May be residual_in (in place); otherwise it overlaps no other tensor.
  void* residual_out = nullptr;
  /// [tokens x hidden] of dtype, or of e4m3 where fp8_out. May be `in` when not fp8_out; otherwise it overlaps no other
  /// tensor.
  void* norm_out = nullptr;
  size_t tokens = 0;                     ///< 1..8192; 0 does nothing
  size_t hidden = 0;                     ///< 1024..16384, a multiple of 8
  DataType dtype = DataType::kBFloat16;  ///< kFloat16 or kBFloat16; accumulation is fp32
  float eps = 1e-6f;                     ///< added to the mean square; finite, >= 0
  /// norm_out as OCP e4m3 ("fn", DataType::kFloat8E4M3) bytes, scaled by 1 / *scale and saturated to +-448.
  bool fp8_out = false;
  /// fp8_out only (nullptr otherwise): device pointer to the fp32 dequantisation scale (finite, > 0), 4-byte aligned.
  const float* scale = nullptr;
};

/// Sums a tensor across the ranks of a group, in place or out of place, for fp16, bf16 and fp32.
///
/// Thread-safety: one thread per rank drives a Communicator; calls on all ranks must come in the same order with the
/// same count and dtype (CUSTOMAR_CHECK=1 verifies this on every eager call). Successive eager calls may use
/// different streams: the Communicator orders each call after the previous one itself (a stream may be destroyed once
/// its calls are issued). Replays of a captured graph are ordered by the stream the caller launches them on, as any
/// graph is: a replay and an eager call on two streams need an order from the caller (an event), exactly as two NCCL
/// calls would.
///
/// CUDA graphs: all_reduce() may be captured as it is; nothing needs registering. The custom kernels copy the input
/// into the Communicator's own peer-visible buffer inside the kernel (a fused staging copy), so graph inputs need no
/// IPC handles, any allocator (VMM, expandable segments) works, and ranks cannot disagree on registered buffers.
///
/// Symmetric memory (docs/symmetric-buffers.md): buffers from alloc_symmetric() are mapped by every peer, so a call
/// whose input lies there, at the same offset of the same allocation on every rank, reads the peers' inputs where
/// they lie: no staging copy and no size limit from the staging buffers (V2; other backends run such calls as any).
/// Eager and captured calls alike; the choice is made per call from where the buffers lie, which every rank knows
/// alike under that rule.
///
/// Failure: a custom kernel that waits longer than CUSTOMAR_TIMEOUT_MS for a peer abandons the call and records the
/// missing rank. The next all_reduce() or check() on that rank throws TimeoutError naming it, and the Communicator
/// is then broken for good: every later call throws StateError. Destroy it and build a new one (with the surviving
/// ranks) to continue; the output of the call that timed out is undefined. A rank that times out also tells every
/// peer that it left (a word in each peer's region): a peer that was only late fails its next custom call at once
/// with TimeoutError naming the rank that left, and no rank's destructor then waits in a barrier for one that gave
/// up. A late peer whose next call goes to NCCL waits in NCCL as NCCL does; its destructor aborts the NCCL
/// communicator.
class Communicator {
 public:
  /// Collective over `group` (every rank calls it). `device` is this rank's CUDA ordinal; the caller's current device
  /// is left as it was. `group` must outlive the Communicator (its destructor runs a barrier on it).
  /// Every failure during creation throws on every rank alike (each step ends with an exchange of outcomes), so no
  /// rank is left waiting in an exchange another rank never reaches. Throws InvalidArgument (bad device, world size
  /// 1), ConfigError (a bad device on some rank of a group; ranks that disagree on CUSTOMAR_TOPO_FILE, CUSTOMAR_ALGO,
  /// CUSTOMAR_CHECK or, for a custom backend, the config's thresholds; a CUSTOMAR_TOPO_FILE that claims peer access
  /// the creation-time probe disproves, while a detected topology that the probe disproves falls back to NCCL with
  /// the reason in reason()), CudaError / NcclError / Error (set-up failed) or TimeoutError (a rank did not join).
  Communicator(Group& group, int device, const CommOptions& options = {});
  /// Waits for every rank (bounded by CUSTOMAR_INIT_TIMEOUT_MS) before unmapping peers' buffers, so no peer still
  /// reads them. Never throws; failures are logged.
  ~Communicator();
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  /// out[i] = sum over ranks of in[i], for i < count. `in == out` is allowed. Enqueued on `stream`; returns before
  /// the result is ready. Pointers must be device memory aligned to the element size. Calls the custom path cannot
  /// take (byte count not a multiple of 16, larger than its buffers, above the config's crossover) go to NCCL on
  /// every rank alike, since the choice depends only on count and dtype. count == 0 does nothing.
  /// Symmetric buffers: an input that lies in a symmetric allocation (and is 16-byte aligned) must lie at the same
  /// offset of the same allocation on every rank, and so must an output that lies in one; every other rank then
  /// passes symmetric buffers too. The plan then depends on that as well (plan_call() with CallBuffers); ranks that
  /// break the rule sum wrong data or time out, and CUSTOMAR_CHECK=1 turns that into InvalidArgument on every rank.
  /// Throws InvalidArgument for null pointers, an unknown dtype, a misaligned pointer, a byte count that overflows,
  /// or a buffer that starts in a symmetric allocation and runs past its end; TimeoutError / StateError after a
  /// timed-out call (see above); StateError after a replayed graph met a freed symmetric buffer.
  void all_reduce(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream);

  /// residual_out = allreduce(in) + residual_in, norm_out = rmsnorm(residual_out) * gamma (AddRmsNormArgs), as one
  /// collective call: every rank passes the same tokens, hidden, dtype, eps, fp8_out and residual_in. Enqueued on
  /// `stream`; may be captured in a CUDA graph as all_reduce() may, and mixed with all_reduce() calls in any order.
  /// The path (norm_path_for(); docs/fused-norm.md): V2 fuses the norm into its one-shot push or two-shot; V1, NCCL
  /// and V2's one-shot pull band run the all-reduce, then customar's add + RMSNorm kernel. Every rank's outputs are
  /// bitwise identical on the fused paths and on every custom all-reduce. tokens == 0 does nothing.
  /// Throws InvalidArgument (saying what was wrong and what is allowed) for a dtype other than fp16 / bf16, a shape
  /// outside the ranges above, a null or misaligned pointer, overlapping tensors other than the two in-place pairs,
  /// a scale with fp8_out off or none with it on, or a negative or non-finite eps; TimeoutError / StateError as
  /// all_reduce().
  void all_reduce_add_rmsnorm(const AddRmsNormArgs& args, cudaStream_t stream);

  /// The path all_reduce_add_rmsnorm() would take for this shape (plan_norm_call(), customar/dispatch.h).
  NormPath norm_path_for(size_t tokens, size_t hidden, DataType dtype, bool fp8_out) const;
  /// Forces the path of later all_reduce_add_rmsnorm() calls (nullopt: back to the planner's choice), for tests,
  /// tools and the tuner; every rank must make the same call at the same point. A fused path the backend cannot run
  /// (V1, NCCL) or that does not fit the buffers runs unfused; kUnfused runs the all-reduce set_algo() /
  /// the thresholds pick, then the norm kernel.
  void set_norm_path(std::optional<NormPath> path);

  /// all_reduce() for a caller that means `in` to be symmetric: throws InvalidArgument before anything runs when `in`
  /// lies in no live symmetric allocation (saying whether it lay in one freed since) or its bytes run past the
  /// allocation's end. Otherwise exactly all_reduce().
  void all_reduce_symmetric(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream);

  /// Allocates `bytes` of device memory on this rank's device that every peer maps: a symmetric allocation, zeroed
  /// and aligned to at least 256 bytes. Collective: every rank asks for the same `bytes`, and every rank makes its
  /// alloc_symmetric() and free_symmetric() calls in the same order, so that the k-th allocation is the same buffer on
  /// every rank and an offset into it names the same element everywhere. Lives until free_symmetric() or the
  /// Communicator's destruction. Shared through VMM and POSIX file descriptors where every rank's driver allows it,
  /// else CUDA IPC (rounded up to 2 MiB); plain memory no peer maps where the backend's kernels read no peer (NCCL,
  /// V1, world size 1), so code that allocates symmetric buffers runs on every backend. At most 64 allocations are
  /// live at once. Not while this device is capturing a CUDA graph. Throws, the same on every rank and with nothing
  /// allocated: InvalidArgument when the ranks ask for different sizes (or are at different points of their sequences
  /// of allocations), for 0 bytes or with 64 live; CudaError / Error when memory cannot be allocated or mapped;
  /// TimeoutError when a rank does not join within CUSTOMAR_INIT_TIMEOUT_MS; StateError after a timed-out call.
  void* alloc_symmetric(size_t bytes);

  /// Frees a symmetric allocation. Collective, like alloc_symmetric(): every rank frees the same allocation, by the
  /// pointer alloc_symmetric() returned. Waits for this rank's device to finish its work, and unmaps only once every
  /// rank has, so that no kernel still reads the memory. A CUDA graph that captured a call on it must not be replayed
  /// afterwards: the replayed call is dropped and later calls throw StateError. Throws InvalidArgument on every rank,
  /// freeing nothing, when a rank's pointer does not start a live allocation or the ranks name different ones;
  /// StateError after a timed-out call.
  void free_symmetric(void* ptr);

  /// Device memory this rank holds for symmetric allocations, in bytes, with the allocation granularity (2 MiB on
  /// current GPUs) included; the custom backend's own buffers (capacity()) are not counted. Nothing else is allocated
  /// for symmetric memory, at allocation or per call.
  size_t symmetric_bytes() const;

  /// The plan all_reduce(in, out, count, dtype) would run: its algorithm, why, and whether it reads the inputs in
  /// place (CallPlan::symmetric). Throws InvalidArgument like all_reduce() for bad arguments.
  CallPlan plan_for(const void* in, const void* out, size_t count, DataType dtype) const;

  /// Throws TimeoutError if an earlier call on this rank timed out waiting for a peer. Does not synchronise.
  void check();

  /// The backend serving this group (kNone for world size 1).
  Backend backend() const;
  /// Why the dispatcher chose it, e.g. "NVLink and peer access between every pair of 4 GPUs".
  const std::string& reason() const;
  /// The algorithm all_reduce() would run for `count` elements of `dtype` (what the last call ran, before it runs).
  Algo algo_for(size_t count, DataType dtype) const;
  /// Forces an algorithm for later calls (nullopt: back to the config's choice), overriding CUSTOMAR_ALGO. For tools
  /// and the tuner; every rank must make the same call at the same point. An algorithm the backend cannot run for a
  /// given call falls back as plan_call() (customar/dispatch.h) describes.
  void set_algo(std::optional<Algo> algo);

  /// The largest message, in bytes, that the custom backend's buffers hold (0 for NCCL / none).
  size_t capacity() const;
  int rank() const;
  int size() const;
  int device() const;

  struct Impl;

 private:
  friend struct detail::LabAccess;
  std::unique_ptr<Impl> impl_;
};

}  // namespace customar
