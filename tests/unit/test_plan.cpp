// The plan of one call (dispatch/plan.h): algorithm, kernel record and launch shape, as pure functions of the agreed
// facts, this rank's limits and the call.
#include <gtest/gtest.h>

#include "customar/dispatch.h"
#include "customar/error.h"
#include "dispatch/plan.h"
#include "kernels/shape.h"
#include "kernels/variants.h"

using namespace customar;
using namespace customar::detail;

namespace {

PlanFacts facts(Backend b, Thresholds t, size_t capacity = size_t(1) << 22, size_t push_capacity = size_t(1) << 22,
                std::optional<Algo> force = std::nullopt) {
  PlanFacts f;
  f.backend = b;
  f.world = 4;
  f.thresholds = t;
  f.capacity = capacity;
  f.push_capacity = push_capacity;
  f.force_algo = force;
  return f;
}

Algo algo(const PlanFacts& f, size_t bytes, DataType d = DataType::kBFloat16) {
  return plan_call(f, bytes / dtype_size(d), d).algo;
}

const Thresholds kTable{4096, 65536, 1 << 20, 8192};

LaunchLimits limits(int max_blocks, int sm_threads) {
  LaunchLimits l;
  l.max_blocks = max_blocks;
  for (auto& t : l.push_sm_threads) t[0] = t[1] = sm_threads;
  return l;
}

}  // namespace

TEST(PlanCall, FollowsTheThresholds) {
  EXPECT_EQ(algo(facts(Backend::kV2, kTable), 4096), Algo::kOneshotPush);
  EXPECT_EQ(algo(facts(Backend::kV2, kTable), 4112), Algo::kOneshotPull);
  EXPECT_EQ(algo(facts(Backend::kV2, kTable), 65552), Algo::kTwoshot);
  EXPECT_EQ(algo(facts(Backend::kV2, kTable), (1 << 20) + 16), Algo::kNccl);
  EXPECT_EQ(algo(facts(Backend::kV1, kTable), 4096), Algo::kOneshotPull);
  EXPECT_EQ(algo(facts(Backend::kV1, kTable), 8208), Algo::kTwoshot);
  EXPECT_EQ(algo(facts(Backend::kNccl, kTable), 16), Algo::kNccl);
}

TEST(PlanCall, WhatTheCustomPathCannotTakeGoesToNccl) {
  const Thresholds all{kUnlimited, kUnlimited, kUnlimited, kUnlimited};
  EXPECT_EQ(algo(facts(Backend::kV1, all, 1 << 20), 1026), Algo::kNccl) << "not a multiple of 16 bytes";
  EXPECT_EQ(algo(facts(Backend::kV1, all, 1 << 20), (1 << 20) + 16), Algo::kNccl) << "larger than the buffers";
  EXPECT_EQ(algo(facts(Backend::kV2, all, 1 << 20, 1 << 20, Algo::kTwoshot), (1 << 20) + 16), Algo::kNccl);
}

TEST(PlanCall, DtypesOnlyNcclReducesGoToNccl) {
  for (DataType d : {DataType::kFloat64, DataType::kInt8, DataType::kUInt8, DataType::kInt32, DataType::kUInt32,
                     DataType::kInt64, DataType::kUInt64, DataType::kFloat8E4M3, DataType::kFloat8E5M2}) {
    const CallPlan p = plan_call(facts(Backend::kV2, kTable, 1 << 22, 1 << 22, Algo::kOneshotPush), 1024, d);
    EXPECT_EQ(p.algo, Algo::kNccl) << dtype_name(d);
    EXPECT_NE(std::string(p.reason).find("dtype"), std::string::npos) << p.reason;
  }
  for (DataType d : {DataType::kFloat16, DataType::kBFloat16, DataType::kFloat32})
    EXPECT_EQ(plan_call(facts(Backend::kV2, kTable), 256, d).algo, Algo::kOneshotPush) << dtype_name(d);
}

TEST(PlanCall, ForcedAlgorithms) {
  EXPECT_EQ(algo(facts(Backend::kV2, kTable, 1 << 22, 1 << 22, Algo::kOneshotPush), 1 << 19), Algo::kOneshotPush);
  EXPECT_EQ(algo(facts(Backend::kV1, kTable, 1 << 22, 0, Algo::kTwoshot), 1024), Algo::kTwoshot);
  EXPECT_EQ(algo(facts(Backend::kV2, kTable, 1 << 22, 1 << 22, Algo::kNccl), 1024), Algo::kNccl);
  // V1 has no push kernel: the table decides.
  EXPECT_EQ(algo(facts(Backend::kV1, kTable, 1 << 22, 0, Algo::kOneshotPush), 1024), Algo::kOneshotPull);
}

TEST(PlanCall, APushLargerThanThePushBuffersIsAPull) {
  const Thresholds push_all{kUnlimited, kUnlimited, kUnlimited, kUnlimited};
  EXPECT_EQ(algo(facts(Backend::kV2, push_all, 1 << 22, 1 << 18), 1 << 18), Algo::kOneshotPush);
  const CallPlan p = plan_call(facts(Backend::kV2, push_all, 1 << 22, 1 << 18), (1 << 17) + 8, DataType::kBFloat16);
  EXPECT_EQ(p.algo, Algo::kOneshotPull);
  EXPECT_STREQ(p.reason, "larger than the push buffers");
}

TEST(PlanLaunch, PicksThePushKernelByGridAndSize) {
  const PlanFacts f = facts(Backend::kV2, {kUnlimited, kUnlimited, kUnlimited, kUnlimited}, 64 << 20, 4 << 20);
  const LaunchLimits l = limits(128, kPushThreadsPerSm);
  EXPECT_EQ(plan_launch(f, l, 512, DataType::kBFloat16).kernel, Kernel::kPushOneBlock);   // 1 KiB
  EXPECT_EQ(plan_launch(f, l, 2048, DataType::kBFloat16).kernel, Kernel::kPushOneBlock);  // 4 KiB: 256 vectors
  EXPECT_EQ(plan_launch(f, l, 2056, DataType::kBFloat16).kernel, Kernel::kPushMultiBlock);
  EXPECT_EQ(plan_launch(f, l, (1 << 19) - 8, DataType::kBFloat16).kernel, Kernel::kPushMultiBlock);
  EXPECT_EQ(plan_launch(f, l, 1 << 19, DataType::kBFloat16).kernel, Kernel::kPushWide);  // 1 MiB
  const Plan p = plan_launch(f, l, 1 << 20, DataType::kBFloat16);                        // 2 MiB
  EXPECT_EQ(p.grid, 512u);
  EXPECT_EQ(p.block, unsigned(kWidePushBlock));
  EXPECT_EQ(p.nvec, size_t(1) << 17);
}

TEST(PlanLaunch, BarrierKernelsGetTheAgreedGrid) {
  const PlanFacts f = facts(Backend::kV1, {0, 0, kUnlimited, 8192}, 64 << 20, 0);
  const Plan pull = plan_launch(f, limits(100, kSafePushThreadsPerSm), 4096, DataType::kFloat16);
  EXPECT_EQ(pull.kernel, Kernel::kOneshotPull);
  EXPECT_EQ(pull.block, unsigned(kThreads));
  EXPECT_EQ(pull.grid, 1u);
  const Plan two = plan_launch(f, limits(100, kSafePushThreadsPerSm), 16 << 20, DataType::kFloat16);
  EXPECT_EQ(two.kernel, Kernel::kTwoshot);
  EXPECT_EQ(two.grid, 100u) << "capped at the agreed block count";
  EXPECT_FALSE(two.pdl);
  EXPECT_EQ(plan_launch(f, limits(100, 512), 1 << 20, DataType::kInt32).kernel, Kernel::kNone);
}

TEST(PlanLaunch, EveryKernelRecordIsInEnumOrder) {
  for (int k = 0; k < kKernelCount; ++k) EXPECT_EQ(static_cast<int>(kKernelVariants[k].id), k);
  EXPECT_FALSE(kernel_variant(Kernel::kPushWide).in_v1);
  EXPECT_TRUE(kernel_variant(Kernel::kTwoshot).in_v1);
}

TEST(Shape, BarrierGridGivesEachThreadOneUnrolledStep) {
  EXPECT_EQ(barrier_grid(false, 1, 2, 128), 1u);
  EXPECT_EQ(barrier_grid(false, size_t(kThreads) * 4, 4, 128), 1u);
  EXPECT_EQ(barrier_grid(false, size_t(kThreads) * 4 + 1, 4, 128), 2u);
  EXPECT_EQ(barrier_grid(false, size_t(kThreads) * 2 + 1, 8, 128), 2u) << "unroll 2 from 5 ranks";
  EXPECT_EQ(barrier_grid(true, size_t(kThreads) * 2 * 8 * 3, 8, 128), 3u) << "two-shot reduces 1/world per rank";
  EXPECT_EQ(barrier_grid(false, size_t(1) << 30, 2, 77), 77u);
  EXPECT_EQ(unroll_for(4), 4);
  EXPECT_EQ(unroll_for(5), 2);
}

TEST(Shape, PushShapeCoversEveryVectorOncePerThreadUpToTheCap) {
  // A message that fits one block gets one block of whole warps.
  EXPECT_EQ(push_shape(1, 128, kSafePushThreadsPerSm).blocks, 1u);
  EXPECT_EQ(push_shape(1, 128, kSafePushThreadsPerSm).threads, 32u);
  EXPECT_EQ(push_shape(64, 128, kSafePushThreadsPerSm).threads, 64u);
  EXPECT_EQ(push_shape(100, 128, kSafePushThreadsPerSm).threads, 128u);
  EXPECT_EQ(push_shape(256, 128, kSafePushThreadsPerSm).blocks, 1u);
  // Then blocks of 128 threads below 1 MiB, 256 from it, at most 1024 threads per agreed SM where they fit, so one
  // vector per thread up to 2 MiB on 128 SMs.
  EXPECT_EQ(push_shape(257, 128, kSafePushThreadsPerSm).blocks, 3u);
  EXPECT_EQ(push_shape(257, 128, kSafePushThreadsPerSm).threads, 128u);
  const int wide = kPushThreadsPerSm;
  EXPECT_EQ(push_shape(kWidePushVecs - 1, 128, wide).threads, 128u);
  EXPECT_EQ(push_shape(kWidePushVecs - 1, 128, wide).blocks, 512u);
  EXPECT_EQ(push_shape(kWidePushVecs, 128, wide).threads, 256u);
  EXPECT_EQ(push_shape(kWidePushVecs, 128, wide).blocks, 256u);
  EXPECT_EQ(push_shape(2 * kWidePushVecs, 128, wide).blocks, 512u);
  EXPECT_EQ(push_shape(4 * kWidePushVecs, 128, wide).blocks, 512u);
  EXPECT_EQ(push_shape(2 * kWidePushVecs, 64, wide).blocks, 256u);
  // Where four 256-thread blocks do not fit, the cap is what __launch_bounds__(512) guarantees.
  EXPECT_EQ(push_shape(2 * kWidePushVecs, 128, kSafePushThreadsPerSm).blocks, 256u);
  EXPECT_EQ(push_shape(kWidePushVecs - 1, 128, kSafePushThreadsPerSm).blocks, 512u);
  for (int sm_threads : {kSafePushThreadsPerSm, kPushThreadsPerSm}) {
    for (size_t nvec : {size_t(1), size_t(31), size_t(1000), size_t(65536), size_t(1) << 22}) {
      const PushShape s = push_shape(nvec, 128, sm_threads);
      EXPECT_GE(s.threads, 32u);
      EXPECT_LE(s.threads, 512u);
      EXPECT_EQ(s.threads % 32, 0u);
      EXPECT_GE(s.blocks, 1u);
      // The cap is also what the push's state slots cover (block b reads slot b of kMaxPushBlocks).
      EXPECT_LE(s.blocks, unsigned(kMaxPushBlocks));
      const size_t cap_threads = size_t(128) * sm_threads;
      EXPECT_LE(size_t(s.blocks) * s.threads, cap_threads);
      if (s.blocks < unsigned(kMaxPushBlocks) && size_t(s.blocks) * s.threads < cap_threads) {
        EXPECT_GE(size_t(s.blocks) * s.threads, nvec) << nvec;
      }
    }
  }
}

TEST(Shape, PushShapeGivesEveryDecodeSizeOneThreadPerVector) {
  // The push runs straight-line code (no loop back edges) only when every vector has its own thread, which also keeps
  // the rank's own share in a register: up to 2 MiB where the wide grid fits, 1 MiB where it does not.
  for (size_t nvec : {size_t(1), size_t(64), size_t(256), size_t(257), size_t(1000), size_t(4096), size_t(32768),
                      size_t(65535), size_t(65536), size_t(131072)}) {
    const PushShape s = push_shape(nvec, 128, kPushThreadsPerSm);
    EXPECT_GE(size_t(s.blocks) * s.threads, nvec) << nvec;
    if (nvec <= 65536) {
      const PushShape safe = push_shape(nvec, 128, kSafePushThreadsPerSm);
      EXPECT_GE(size_t(safe.blocks) * safe.threads, nvec) << nvec;
    }
  }
  const PushShape big = push_shape(131073, 128, kPushThreadsPerSm);
  EXPECT_LT(size_t(big.blocks) * big.threads, size_t(131073));
}

TEST(PlanLaunch, AGridThatCannotBeCoResidentIsRefusedAtPlanning) {
  const PlanFacts f = facts(Backend::kV2, {kUnlimited, kUnlimited, kUnlimited, kUnlimited}, 64 << 20, 4 << 20);
  LaunchLimits l = limits(8, kSafePushThreadsPerSm);
  l.max_grid_threads = size_t(8) * kSafePushThreadsPerSm;
  EXPECT_NO_THROW(plan_launch(f, l, 1 << 20, DataType::kBFloat16));  // the planned grids respect the share
  l.max_grid_threads = 1024;
  try {
    plan_launch(f, l, 1 << 20, DataType::kBFloat16);
    ADD_FAILURE() << "no throw";
  } catch (const InvalidArgument& e) {
    EXPECT_NE(std::string(e.what()).find("cannot be resident"), std::string::npos) << e.what();
  }
}
