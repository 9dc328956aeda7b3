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

namespace {

// Symmetric calls go to NCCL above this many bytes. At 2 ranks never: PyTorch's SymmetricMemory two-shot, the
// algorithm of symmetric_twoshot_push, runs at 0.90-0.92 x NCCL at 64 and 256 MiB on 2x H200 (bench/RESULTS.md). Above
// 2 ranks at twice the config's crossover: there the staged two-shot ties NCCL at the crossover (16 MiB on 4x H200)
// with the copy 8 % of its time, and PyTorch's two-shot loses to NCCL by 6 % at 64 MiB; in between is unmeasured.
size_t symmetric_crossover(const PlanFacts& f) {
  const size_t t = f.thresholds.custom_max;
  return f.world == 2 || t > kUnlimited / 2 ? kUnlimited : 2 * t;
}

// The two-shot of a symmetric input, by where its output lies.
CallPlan symmetric_twoshot(const PlanFacts& f, size_t count, DataType dtype, const CallBuffers& b) {
  const size_t bytes = count * dtype_size(dtype);
  if (b.out_symmetric || b.in_place)
    return {Algo::kTwoshot, "symmetric buffers: two-shot pushing into every rank's output", true};
  if (bytes <= f.capacity)
    return {Algo::kTwoshot, "symmetric input, ordinary output: two-shot gathering through the staging buffers", true};
  if (f.world == 2)
    return {Algo::kOneshotPull,
            "symmetric input, ordinary output larger than the staging buffers: one-shot pull (at 2 ranks it moves as "
            "much as a two-shot)",
            true};
  return plan_call(f, count, dtype);
}

CallPlan symmetric_pull_or_twoshot(const PlanFacts& f, size_t count, DataType dtype, const CallBuffers& b,
                                   const char* why) {
  if (b.in_place) return symmetric_twoshot(f, count, dtype, b);
  return {Algo::kOneshotPull, why, true};
}

CallPlan symmetric_forced(const PlanFacts& f, size_t count, DataType dtype, const CallBuffers& b) {
  const size_t bytes = count * dtype_size(dtype);
  switch (*f.force_algo) {
    case Algo::kNccl:
      return {Algo::kNccl, "CUSTOMAR_ALGO=nccl"};
    case Algo::kOneshotPush:
      if (bytes <= f.push_capacity) return {Algo::kOneshotPush, "forced by CUSTOMAR_ALGO"};
      return symmetric_pull_or_twoshot(f, count, dtype, b, "forced push larger than the push buffers: pull in place");
    case Algo::kOneshotPull:
      return symmetric_pull_or_twoshot(f, count, dtype, b, "forced by CUSTOMAR_ALGO: pull reading the inputs in place");
    case Algo::kTwoshot:
      return symmetric_twoshot(f, count, dtype, b);
  }
  return plan_call(f, count, dtype);
}

}  // namespace

CallPlan plan_call(const PlanFacts& f, size_t count, DataType dtype, const CallBuffers& b) {
  if (!b.in_symmetric || f.backend != Backend::kV2) return plan_call(f, count, dtype);
  if (!custom_dtype(dtype)) return {Algo::kNccl, "a dtype only NCCL reduces"};
  const size_t bytes = count * dtype_size(dtype);
  if (bytes % 16 != 0) return {Algo::kNccl, "byte count not a multiple of 16"};
  if (f.force_algo.has_value()) return symmetric_forced(f, count, dtype, b);
  const Thresholds& t = f.thresholds;
  if (bytes > symmetric_crossover(f)) return {Algo::kNccl, "symmetric input above the symmetric crossover to NCCL"};
  if (bytes <= t.oneshot_push_max && bytes <= f.push_capacity)
    return {Algo::kOneshotPush,
            "symmetric input at or below the one-shot push threshold (the push has no staging copy)"};
  if (bytes <= t.oneshot_pull_max && bytes < kSymmetricTwoshotMin)
    return symmetric_pull_or_twoshot(f, count, dtype, b,
                                     "symmetric input at or below the one-shot pull threshold: pull reading in place");
  return symmetric_twoshot(f, count, dtype, b);
}

namespace detail {

namespace {

// The pull or two-shot kernel of a call's plan.
Kernel barrier_kernel(const CallPlan& c, const CallBuffers& b) {
  const bool twoshot = c.algo == Algo::kTwoshot;
  if (!c.symmetric) return twoshot ? Kernel::kTwoshot : Kernel::kOneshotPull;
  if (!twoshot) return Kernel::kSymmetricPull;
  return b.out_symmetric || b.in_place ? Kernel::kSymmetricTwoshotPush : Kernel::kSymmetricTwoshot;
}

}  // namespace

Plan plan_launch(const PlanFacts& facts, const LaunchLimits& limits, size_t count, DataType dtype) {
  return plan_launch(facts, limits, count, dtype, CallBuffers{});
}

Plan plan_launch(const PlanFacts& facts, const LaunchLimits& limits, size_t count, DataType dtype,
                 const CallBuffers& buffers) {
  const CallPlan c = plan_call(facts, count, dtype, buffers);
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
    p.kernel = barrier_kernel(c, buffers);
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
