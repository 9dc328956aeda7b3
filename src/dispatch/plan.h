// The whole plan of one call: algorithm, kernel variant and launch shape, from the agreed facts of the communicator,
// this rank's launch limits and the call. Computed once per call by one pure function; the kernels interface
// (kernels/kernels.h) launches it as it is.
#pragma once

#include <cstddef>

#include "customar/communicator.h"
#include "customar/dispatch.h"
#include "kernels/rows.h"
#include "kernels/shape.h"
#include "kernels/variants.h"

namespace customar::detail {

/// What this rank's kernels can run at once, fixed at creation.
struct LaunchLimits {
  /// Blocks a barrier kernel may use (agreed across ranks: the barrier pairs block b with block b of every peer) and
  /// the SM budget the push's grid is sized from.
  int max_blocks = 1;
  /// Push threads per SM that are resident at once, per custom dtype (fp16, bf16, fp32) and for the multi-block (0)
  /// and wide (1) kernels: kPushThreadsPerSm where the occupancy calculator says they fit, else
  /// kSafePushThreadsPerSm.
  int push_sm_threads[3][2] = {{kSafePushThreadsPerSm, kSafePushThreadsPerSm},
                               {kSafePushThreadsPerSm, kSafePushThreadsPerSm},
                               {kSafePushThreadsPerSm, kSafePushThreadsPerSm}};
  /// Launch with programmatic dependent launch (V2 on sm90+).
  bool pdl = false;
  /// Threads one kernel may use so that every rank's kernels are resident at once (virtual ranks share one GPU); a
  /// plan past it throws instead of launching a grid that could wait forever. 0: no limit (a GPU per rank).
  size_t max_grid_threads = 0;
};

/// One call, planned.
struct Plan {
  Algo algo = Algo::kNccl;
  const char* reason = "";
  Kernel kernel = Kernel::kNone;  ///< kNone: NCCL (or the copy of world size 1)
  unsigned grid = 0, block = 0;
  size_t nvec = 0;  ///< 16-byte vectors of the message
  bool pdl = false;
};

/// plan_call() and, for a custom algorithm, the kernel that runs it and its grid. Pure. Throws InvalidArgument for a
/// grid past limits.max_grid_threads.
Plan plan_launch(const PlanFacts& facts, const LaunchLimits& limits, size_t count, DataType dtype);

/// One all-reduce + residual add + RMSNorm call, planned.
struct NormPlan {
  NormCallPlan call;
  /// Fused paths: the fused kernel (a takes_norm_call() record) and its grid. Unfused: the all-reduce's plan
  /// (plan_launch(); kernel kNone for the NCCL path, or none at all for world size 1).
  Plan kernel;
  /// Unfused: the norm kernel's grid and block (row_threads()), and whether it launches with PDL (after a custom
  /// kernel that has PDL).
  unsigned norm_grid = 0, norm_block = 0;
  bool norm_pdl = false;
};

/// plan_norm_call() and the kernels and grids that run it. Every grid holds whole rows in blocks of row_threads()
/// threads: the fused push min(tokens, max_blocks) blocks (each resident at once: a block waits for its rows from
/// the peers), the fused two-shot min(rows of a part, max_blocks) (agreed across ranks: its barrier pairs block b
/// with block b), the norm kernel one block per row, capped by max_grid_threads. `world` > 1 backends only; world
/// size 1 runs the norm kernel alone (norm_only_plan()). Pure. Throws InvalidArgument for a grid past
/// limits.max_grid_threads.
NormPlan plan_norm_launch(const PlanFacts& facts, const LaunchLimits& limits, size_t tokens, size_t hidden,
                          DataType dtype, bool fp8_out);

/// The plan of a call with nothing to all-reduce (world size 1): the norm kernel alone.
NormPlan norm_only_plan(const LaunchLimits& limits, size_t tokens, size_t hidden);

/// Throws InvalidArgument, naming what is wrong and what is allowed, unless `args` is a valid call
/// (Communicator::all_reduce_add_rmsnorm's rules). Reads only pointer values, never memory.
void check_norm_args(const AddRmsNormArgs& args);

/// The kernels' view of checked arguments.
NormCall norm_call(const AddRmsNormArgs& args);
/// The same for a call whose buffers lie as `buffers` says: plan_call(facts, count, dtype, buffers), and a symmetric
/// plan runs a kernel that reads the inputs in place (symmetric_pull, symmetric_twoshot_push where the output is
/// symmetric or the call is in place, else symmetric_twoshot).
Plan plan_launch(const PlanFacts& facts, const LaunchLimits& limits, size_t count, DataType dtype,
                 const CallBuffers& buffers);

}  // namespace customar::detail
