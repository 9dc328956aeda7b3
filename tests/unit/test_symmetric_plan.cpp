// The plans of calls on symmetric buffers (plan_call with CallBuffers, plan_launch): which algorithm and kernel for
// which size, where the output lies and whether the call is in place; ordinary buffers plan as before.
#include <gtest/gtest.h>

#include "customar/config.h"
#include "customar/dispatch.h"
#include "dispatch/plan.h"
#include "kernels/shape.h"
#include "kernels/variants.h"

using namespace customar;
using namespace customar::detail;

namespace {

constexpr size_t K = 1024, M = 1024 * 1024;

PlanFacts hopper(int world, Backend b = Backend::kV2, std::optional<Algo> force = std::nullopt) {
  PlanFacts f;
  f.backend = b;
  f.world = world;
  f.thresholds = *builtin_config().find(ArchFamily::kHopper, world);
  f.capacity = f.thresholds.custom_max;
  f.push_capacity = 4 * M;
  f.force_algo = force;
  return f;
}

const CallBuffers kSymmetricIn{true, false, false};
const CallBuffers kSymmetricBoth{true, true, false};
const CallBuffers kInPlace{true, true, true};

CallPlan plan(const PlanFacts& f, size_t bytes, const CallBuffers& b, DataType d = DataType::kBFloat16) {
  return plan_call(f, bytes / dtype_size(d), d, b);
}

Kernel kernel(const PlanFacts& f, size_t bytes, const CallBuffers& b) {
  LaunchLimits l;
  l.max_blocks = 128;
  return plan_launch(f, l, bytes / 2, DataType::kBFloat16, b).kernel;
}

}  // namespace

TEST(SymmetricPlan, OrdinaryBuffersPlanExactlyAsBefore) {
  for (int world : {2, 4, 8})
    for (std::optional<Algo> force :
         {std::optional<Algo>(), std::optional<Algo>(Algo::kTwoshot), std::optional<Algo>(Algo::kOneshotPush)})
      for (size_t bytes = 16; bytes <= 512 * M; bytes *= 4) {
        const PlanFacts f = hopper(world, Backend::kV2, force);
        const CallPlan a = plan_call(f, bytes / 2, DataType::kBFloat16);
        for (const CallBuffers& b : {CallBuffers{}, CallBuffers{false, true, false}}) {
          const CallPlan c = plan(f, bytes, b);
          EXPECT_EQ(c.algo, a.algo) << world << " " << bytes;
          EXPECT_STREQ(c.reason, a.reason);
          EXPECT_FALSE(c.symmetric);
        }
      }
}

TEST(SymmetricPlan, OnlyV2ReadsInPlace) {
  for (Backend b : {Backend::kV1, Backend::kNccl}) {
    const PlanFacts f = hopper(2, b);
    for (size_t bytes : {size_t(1) * K, 8 * M, 256 * M}) {
      EXPECT_FALSE(plan(f, bytes, kSymmetricBoth).symmetric) << backend_name(b) << " " << bytes;
      EXPECT_EQ(plan(f, bytes, kSymmetricBoth).algo, plan_call(f, bytes / 2, DataType::kBFloat16).algo);
    }
  }
}

TEST(SymmetricPlan, TwoRanksByTheirThresholds) {
  const PlanFacts f = hopper(2);  // push up to 4 MiB, pull unlimited
  EXPECT_EQ(plan(f, 4 * M, kSymmetricIn).algo, Algo::kOneshotPush) << "the push has no staging copy to save";
  EXPECT_FALSE(plan(f, 4 * M, kSymmetricIn).symmetric);
  const CallPlan pull = plan(f, 8 * M, kSymmetricIn);
  EXPECT_EQ(pull.algo, Algo::kOneshotPull);
  EXPECT_TRUE(pull.symmetric);
  EXPECT_EQ(kernel(f, 8 * M, kSymmetricIn), Kernel::kSymmetricPull);
  EXPECT_EQ(kernel(f, 16 * M, kSymmetricIn), Kernel::kSymmetricPull);
}

TEST(SymmetricPlan, FromThirtyTwoMegabytesTheTwoShotWhateverThePullThreshold) {
  const PlanFacts f = hopper(2);
  EXPECT_EQ(plan(f, kSymmetricTwoshotMin - 16, kSymmetricBoth).algo, Algo::kOneshotPull);
  EXPECT_EQ(plan(f, kSymmetricTwoshotMin, kSymmetricBoth).algo, Algo::kTwoshot);
  EXPECT_EQ(kernel(f, kSymmetricTwoshotMin, kSymmetricBoth), Kernel::kSymmetricTwoshotPush);
}

TEST(SymmetricPlan, TwoRanksHaveNoCrossoverToNccl) {
  const PlanFacts f = hopper(2);
  for (size_t bytes : {64 * M, 256 * M, size_t(4096) * M}) {
    EXPECT_EQ(plan(f, bytes, kSymmetricBoth).algo, Algo::kTwoshot) << bytes;
    EXPECT_EQ(kernel(f, bytes, kSymmetricBoth), Kernel::kSymmetricTwoshotPush);
  }
}

TEST(SymmetricPlan, TheTwoShotGathersThroughStagingWhenTheOutputIsOrdinary) {
  PlanFacts f = hopper(4);  // push 256 KiB, pull 1 MiB, crossover 16 MiB
  EXPECT_EQ(kernel(f, 2 * M, kSymmetricIn), Kernel::kSymmetricTwoshot);
  EXPECT_EQ(kernel(f, 2 * M, kSymmetricBoth), Kernel::kSymmetricTwoshotPush);
  // Larger than the staging buffers: no gathering two-shot; above 2 ranks the ordinary plan (NCCL here).
  f.capacity = 1 * M;
  EXPECT_EQ(plan(f, 2 * M, kSymmetricIn).algo, Algo::kNccl);
  EXPECT_FALSE(plan(f, 2 * M, kSymmetricIn).symmetric);
  // At 2 ranks the pull moves as much as a two-shot.
  PlanFacts two = hopper(2);
  two.capacity = 1 * M;
  EXPECT_EQ(kernel(two, 64 * M, kSymmetricIn), Kernel::kSymmetricPull);
}

TEST(SymmetricPlan, InPlaceNeverRunsThePull) {
  // A pull in place would overwrite its input while peers still read it.
  const PlanFacts f = hopper(4);
  EXPECT_EQ(plan(f, 512 * K, kSymmetricBoth).algo, Algo::kOneshotPull);
  EXPECT_EQ(plan(f, 512 * K, kInPlace).algo, Algo::kTwoshot);
  EXPECT_EQ(kernel(f, 512 * K, kInPlace), Kernel::kSymmetricTwoshotPush);
  EXPECT_EQ(plan(hopper(2), 8 * M, kInPlace).algo, Algo::kTwoshot);
  const PlanFacts forced = hopper(4, Backend::kV2, Algo::kOneshotPull);
  EXPECT_EQ(kernel(forced, 64 * K, kInPlace), Kernel::kSymmetricTwoshotPush);
  EXPECT_EQ(kernel(forced, 64 * K, kSymmetricIn), Kernel::kSymmetricPull);
}

TEST(SymmetricPlan, AboveTwoRanksTheCrossoverIsTwiceTheConfigs) {
  const PlanFacts f = hopper(4);  // the config sends the ordinary path to NCCL above 16 MiB
  EXPECT_EQ(plan(f, 32 * M, kSymmetricBoth).algo, Algo::kTwoshot);
  const CallPlan above = plan(f, 32 * M + 16, kSymmetricBoth);
  EXPECT_EQ(above.algo, Algo::kNccl);
  EXPECT_NE(std::string(above.reason).find("symmetric crossover"), std::string::npos);
}

TEST(SymmetricPlan, WhatOnlyNcclCanTakeStillGoesToNccl) {
  const PlanFacts f = hopper(2);
  EXPECT_EQ(plan(f, 8 * M + 2, kSymmetricBoth).algo, Algo::kNccl) << "not a multiple of 16 bytes";
  EXPECT_EQ(plan(f, 8 * M, kSymmetricBoth, DataType::kFloat64).algo, Algo::kNccl);
  EXPECT_EQ(plan(hopper(2, Backend::kV2, Algo::kNccl), 8 * M, kSymmetricBoth).algo, Algo::kNccl);
}

TEST(SymmetricPlan, ForcedAlgorithmsRunWhereTheyCan) {
  EXPECT_EQ(plan(hopper(4, Backend::kV2, Algo::kOneshotPush), 64 * K, kSymmetricBoth).algo, Algo::kOneshotPush);
  EXPECT_EQ(kernel(hopper(4, Backend::kV2, Algo::kOneshotPush), 8 * M, kSymmetricIn), Kernel::kSymmetricPull)
      << "larger than the push buffers";
  EXPECT_EQ(kernel(hopper(2, Backend::kV2, Algo::kTwoshot), 64 * K, kSymmetricBoth), Kernel::kSymmetricTwoshotPush);
  // Forcing ignores the crossover, as for ordinary buffers.
  EXPECT_EQ(plan(hopper(8, Backend::kV2, Algo::kTwoshot), 256 * M, kSymmetricBoth).algo, Algo::kTwoshot);
}

TEST(SymmetricPlan, SymmetricKernelsAreBarrierKernelsOfTheUsualGrid) {
  LaunchLimits l;
  l.max_blocks = 96;
  const PlanFacts f = hopper(4);
  for (const CallBuffers& b : {kSymmetricIn, kSymmetricBoth}) {
    const Plan p = plan_launch(f, l, 2 * M / 2, DataType::kBFloat16, b);
    EXPECT_EQ(p.block, static_cast<unsigned>(kThreads));
    EXPECT_EQ(p.grid, barrier_grid(true, 2 * M / 16, 4, 96));
  }
  const Plan pull = plan_launch(f, l, 512 * K / 2, DataType::kBFloat16, kSymmetricIn);
  EXPECT_EQ(pull.grid, barrier_grid(false, 512 * K / 16, 4, 96));
}
