#include "dispatch/plan.h"

#include <string>

#include "customar/error.h"

namespace customar {

CallPlan plan_call(const PlanFacts& f, size_t count, DataType dtype) {
  if (f.backend != Backend::kV1 && f.backend != Backend::kV2)
    return {Algo::kNccl, "the communicator's backend is NCCL"};
  if (!custom_dtype(dtype)) return {Algo::kNccl, "a dtype only NCCL reduces"};
  const size_t bytes = count * dtype_size(dtype);
  if (bytes % 16 != 0) return {Algo::kNccl, "byte count not a multiple of 16"};
  if (bytes > f.capacity) return {Algo::kNccl, "message larger than the custom buffers"};
  const Thresholds& t = f.thresholds;
  CallPlan p{};
  const bool forced = f.force_algo.has_value() && (*f.force_algo != Algo::kOneshotPush || f.backend == Backend::kV2);
  if (forced) {
    p = {*f.force_algo, *f.force_algo == Algo::kNccl ? "CUSTOMAR_ALGO=nccl" : "forced by CUSTOMAR_ALGO"};
  } else if (bytes > t.custom_max) {
    p = {Algo::kNccl, "above the config's crossover to NCCL"};
  } else if (f.backend == Backend::kV2) {
    p = bytes <= t.oneshot_push_max   ? CallPlan{Algo::kOneshotPush, "at or below the one-shot push threshold"}
        : bytes <= t.oneshot_pull_max ? CallPlan{Algo::kOneshotPull, "at or below the one-shot pull threshold"}
                                      : CallPlan{Algo::kTwoshot, "above the one-shot thresholds"};
  } else {
    p = bytes <= t.v1_oneshot_max ? CallPlan{Algo::kOneshotPull, "at or below V1's one-shot threshold"}
                                  : CallPlan{Algo::kTwoshot, "above V1's one-shot threshold"};
  }
  if (p.algo == Algo::kOneshotPush && bytes > f.push_capacity) p = {Algo::kOneshotPull, "larger than the push buffers"};
  return p;
}

namespace detail {

Plan plan_launch(const PlanFacts& facts, const LaunchLimits& limits, size_t count, DataType dtype) {
  const CallPlan c = plan_call(facts, count, dtype);
  Plan p;
  p.algo = c.algo;
  p.reason = c.reason;
  if (c.algo == Algo::kNccl) return p;
  p.nvec = count * dtype_size(dtype) / 16;
  p.pdl = limits.pdl;
  if (c.algo == Algo::kOneshotPush) {
    const bool wide = p.nvec >= kWidePushVecs;
    const PushShape s = push_shape(p.nvec, limits.max_blocks, limits.push_sm_threads[static_cast<int>(dtype)][wide]);
    p.kernel = s.blocks == 1 ? Kernel::kPushOneBlock : wide ? Kernel::kPushWide : Kernel::kPushMultiBlock;
    p.grid = s.blocks;
    p.block = s.threads;
  } else {
    const bool twoshot = c.algo == Algo::kTwoshot;
    p.kernel = twoshot ? Kernel::kTwoshot : Kernel::kOneshotPull;
    p.grid = barrier_grid(twoshot, p.nvec, facts.world, limits.max_blocks);
    p.block = kThreads;
  }
  if (limits.max_grid_threads != 0 && size_t(p.grid) * p.block > limits.max_grid_threads)
    throw InvalidArgument(std::string("a grid of ") + std::to_string(p.grid) + " x " + std::to_string(p.block) +
                          " threads (" + kernel_variant(p.kernel).name + ") cannot be resident beside the other " +
                          "ranks' kernels: the limit is " + std::to_string(limits.max_grid_threads) +
                          " threads per kernel");
  return p;
}

}  // namespace detail
}  // namespace customar
