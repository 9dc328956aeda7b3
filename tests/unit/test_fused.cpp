// All-reduce + residual add + RMSNorm without a GPU: the argument rules (every bad input a clear InvalidArgument),
// the plan (which path for which shape, thresholds, backend and capacity; grids within the limits), the row shape
// every path shares and the e4m3 encoding of GPUs without the conversion instruction.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <string>

#include "customar/communicator.h"
#include "customar/dispatch.h"
#include "customar/error.h"
#include "dispatch/plan.h"
#include "kernels/rows.h"
#include "kernels/variants.h"

using namespace customar;
using namespace customar::detail;

namespace {

// ---- arguments -------------------------------------------------------------------------------------------------

// Distinct, 16-byte aligned fake device addresses, far apart: check_norm_args reads pointer values only.
void* at(uintptr_t mib) { return reinterpret_cast<void*>(mib << 20); }

AddRmsNormArgs good_args(size_t tokens = 8, size_t hidden = 4096) {
  AddRmsNormArgs a;
  a.in = at(1024);
  a.residual_in = at(2048);
  a.gamma = at(3072);
  a.residual_out = at(4096);
  a.norm_out = at(5120);
  a.tokens = tokens;
  a.hidden = hidden;
  a.dtype = DataType::kBFloat16;
  a.eps = 1e-6f;
  return a;
}

// The message of the InvalidArgument `a` gets, or "" when it passes.
std::string rejection(const AddRmsNormArgs& a) {
  try {
    check_norm_args(a);
  } catch (const InvalidArgument& e) {
    return e.what();
  }
  return "";
}

void expect_rejected(const AddRmsNormArgs& a, const std::string& mentions) {
  const std::string why = rejection(a);
  EXPECT_NE(why.find("all_reduce_add_rmsnorm"), std::string::npos) << why;
  EXPECT_NE(why.find(mentions), std::string::npos) << "expected '" << mentions << "' in: " << why;
}

}  // namespace

TEST(NormArgs, AValidCallPasses) {
  EXPECT_EQ(rejection(good_args()), "");
  EXPECT_EQ(rejection(good_args(1, 1024)), "");
  EXPECT_EQ(rejection(good_args(8192, 16384)), "");
  AddRmsNormArgs fp16 = good_args();
  fp16.dtype = DataType::kFloat16;
  EXPECT_EQ(rejection(fp16), "");
}

TEST(NormArgs, TheTwoInPlacePairsAreAllowed) {
  AddRmsNormArgs a = good_args();
  a.residual_out = const_cast<void*>(a.residual_in);
  a.norm_out = a.in;
  EXPECT_EQ(rejection(a), "");
}

TEST(NormArgs, DtypesOtherThanFp16AndBf16AreRefused) {
  for (DataType d : {DataType::kFloat32, DataType::kFloat64, DataType::kInt32, DataType::kFloat8E4M3}) {
    AddRmsNormArgs a = good_args();
    a.dtype = d;
    expect_rejected(a, "fp16 or bf16");
    expect_rejected(a, std::string(dtype_name(d)));
  }
  AddRmsNormArgs a = good_args();
  a.dtype = static_cast<DataType>(99);
  expect_rejected(a, "dtype 99");
}

TEST(NormArgs, HiddenOutsideTheRangeOrNotAMultipleOf8IsRefused) {
  for (size_t h : {size_t(0), size_t(8), size_t(1016), size_t(1030), size_t(4100), size_t(16392), size_t(1) << 20}) {
    AddRmsNormArgs a = good_args(8, h);
    expect_rejected(a, "hidden " + std::to_string(h));
    expect_rejected(a, "1024..16384 elements, a multiple of 8");
  }
}

TEST(NormArgs, MoreThan8192TokensIsRefused) {
  expect_rejected(good_args(8193), "tokens 8193");
  expect_rejected(good_args(size_t(1) << 40), "at most 8192");
}

TEST(NormArgs, ZeroTokensNeedsNoPointers) {
  AddRmsNormArgs a = good_args(0);
  a.in = nullptr;
  a.norm_out = nullptr;
  EXPECT_EQ(rejection(a), "");
}

TEST(NormArgs, EveryNullPointerIsNamed) {
  const char* names[] = {"in", "residual_in", "gamma", "residual_out", "norm_out"};
  for (int k = 0; k < 5; ++k) {
    AddRmsNormArgs a = good_args();
    void** slots[] = {&a.in, const_cast<void**>(&a.residual_in), const_cast<void**>(&a.gamma), &a.residual_out,
                      &a.norm_out};
    *slots[k] = nullptr;
    expect_rejected(a, std::string(names[k]) + " is null");
  }
}

TEST(NormArgs, PointersOff16BytesAreRefused) {
  const char* names[] = {"in", "residual_in", "gamma", "residual_out", "norm_out"};
  for (int k = 0; k < 5; ++k) {
    AddRmsNormArgs a = good_args();
    void** slots[] = {&a.in, const_cast<void**>(&a.residual_in), const_cast<void**>(&a.gamma), &a.residual_out,
                      &a.norm_out};
    *slots[k] = static_cast<char*>(*slots[k]) + 8;
    expect_rejected(a, std::string(names[k]) + " is not 16-byte aligned (8 bytes off)");
  }
}

TEST(NormArgs, EpsMustBeFiniteAndNotNegative) {
  for (float eps : {-1e-6f, std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    AddRmsNormArgs a = good_args();
    a.eps = eps;
    expect_rejected(a, "is not a finite number >= 0");
  }
  AddRmsNormArgs zero = good_args();
  zero.eps = 0;
  EXPECT_EQ(rejection(zero), "");
}

TEST(NormArgs, Fp8NeedsAnAlignedScaleAndOnlyFp8TakesOne) {
  AddRmsNormArgs a = good_args();
  a.fp8_out = true;
  expect_rejected(a, "fp8_out needs scale");
  a.scale = static_cast<const float*>(at(6144));
  EXPECT_EQ(rejection(a), "");
  a.scale = reinterpret_cast<const float*>(static_cast<char*>(at(6144)) + 2);
  expect_rejected(a, "scale is not 4-byte aligned");
  AddRmsNormArgs b = good_args();
  b.scale = static_cast<const float*>(at(6144));
  expect_rejected(b, "fp8_out is off");
}

TEST(NormArgs, OutputsThatOverlapAnotherTensorAreRefused) {
  const size_t bytes = 8 * 4096 * 2;
  AddRmsNormArgs a = good_args();
  a.residual_out = static_cast<char*>(a.in) + 16;
  expect_rejected(a, "residual_out overlaps in");
  a = good_args();
  a.residual_out = static_cast<char*>(const_cast<void*>(a.residual_in)) + 16;  // partly, not in place
  expect_rejected(a, "residual_out overlaps residual_in");
  a = good_args();
  a.norm_out = static_cast<char*>(a.residual_out) + bytes - 16;
  expect_rejected(a, "the two outputs must not overlap");
  a = good_args();
  a.norm_out = const_cast<void*>(a.gamma);
  expect_rejected(a, "norm_out overlaps gamma");
  a = good_args();
  a.norm_out = static_cast<char*>(a.in) + 32;
  expect_rejected(a, "norm_out overlaps in");
  a = good_args();
  a.fp8_out = true;
  a.scale = static_cast<const float*>(a.norm_out);
  expect_rejected(a, "norm_out overlaps scale");
}

TEST(NormArgs, AnFp8NormOutMayNotBeTheInput) {
  AddRmsNormArgs a = good_args();
  a.fp8_out = true;
  a.scale = static_cast<const float*>(at(6144));
  a.norm_out = a.in;
  expect_rejected(a, "an e4m3 norm_out must overlap no other tensor");
}

TEST(NormArgs, TheKernelsSeeTheCheckedCall) {
  AddRmsNormArgs a = good_args(3, 1032);
  a.fp8_out = true;
  a.scale = static_cast<const float*>(at(6144));
  a.eps = 1e-5f;
  const NormCall c = norm_call(a);
  EXPECT_EQ(c.in, a.in);
  EXPECT_EQ(c.norm_out, a.norm_out);
  EXPECT_EQ(c.scale, a.scale);
  EXPECT_EQ(c.tokens, 3u);
  EXPECT_EQ(c.hidden, 1032u);
  EXPECT_EQ(c.eps, 1e-5f);
  EXPECT_EQ(c.fp8, 1);
}

// ---- the plan --------------------------------------------------------------------------------------------------

namespace {

// push <= 64 KiB, pull <= 256 KiB, two-shot <= 8 MiB, then NCCL; V1 one-shot <= 128 KiB.
const Thresholds kTable{64 << 10, 256 << 10, 8 << 20, 128 << 10};

PlanFacts facts(Backend b, size_t capacity = size_t(16) << 20, size_t push_capacity = size_t(1) << 20, int world = 4) {
  PlanFacts f;
  f.backend = b;
  f.world = world;
  f.thresholds = kTable;
  f.capacity = capacity;
  f.push_capacity = push_capacity;
  return f;
}

NormPath path(const PlanFacts& f, size_t tokens, size_t hidden = 4096, bool fp8 = false) {
  return plan_norm_call(f, tokens, hidden, DataType::kBFloat16, fp8).path;
}

LaunchLimits limits(int max_blocks, size_t max_grid_threads = 0, bool pdl = true) {
  LaunchLimits l;
  l.max_blocks = max_blocks;
  l.max_grid_threads = max_grid_threads;
  l.pdl = pdl;
  return l;
}

}  // namespace

TEST(NormPlan, V2FusesThePushAndTheTwoshotByTheAllReducesThresholds) {
  const PlanFacts f = facts(Backend::kV2);
  // bytes = tokens x hidden x 2 = tokens x 8 KiB at hidden 4096.
  EXPECT_EQ(path(f, 1), NormPath::kFusedPush);
  EXPECT_EQ(path(f, 8), NormPath::kFusedPush);  // 64 KiB: the push threshold
  const NormCallPlan pull = plan_norm_call(f, 9, 4096, DataType::kBFloat16, false);
  EXPECT_EQ(pull.path, NormPath::kUnfused) << "the pull band runs unfused";
  EXPECT_EQ(pull.algo, Algo::kOneshotPull);
  EXPECT_NE(std::string(pull.reason).find("pull"), std::string::npos) << pull.reason;
  EXPECT_EQ(path(f, 33), NormPath::kFusedTwoshot);
  EXPECT_EQ(plan_norm_call(f, 512, 4096, DataType::kBFloat16, false).algo, Algo::kTwoshot);
}

TEST(NormPlan, AboveTheCrossoverItIsNcclThenTheNormKernel) {
  const NormCallPlan p = plan_norm_call(facts(Backend::kV2), 2048, 4096, DataType::kBFloat16, false);  // 16 MiB
  EXPECT_EQ(p.path, NormPath::kUnfused);
  EXPECT_EQ(p.algo, Algo::kNccl);
}

TEST(NormPlan, V1AndNcclAlwaysRunUnfused) {
  for (Backend b : {Backend::kV1, Backend::kNccl})
    for (size_t tokens : {size_t(1), size_t(8), size_t(64), size_t(512)}) {
      PlanFacts f = facts(b);
      f.force_norm_path = NormPath::kFusedTwoshot;  // not even forced: neither has fused kernels
      EXPECT_EQ(path(f, tokens), NormPath::kUnfused) << backend_name(b) << " " << tokens;
    }
  EXPECT_EQ(plan_norm_call(facts(Backend::kV1), 1, 4096, DataType::kFloat16, false).algo, Algo::kOneshotPull);
  EXPECT_EQ(plan_norm_call(facts(Backend::kV1), 64, 4096, DataType::kFloat16, false).algo, Algo::kTwoshot);
  EXPECT_EQ(plan_norm_call(facts(Backend::kNccl), 1, 4096, DataType::kFloat16, false).algo, Algo::kNccl);
}

TEST(NormPlan, AFusedPushLargerThanThePushBuffersRunsUnfused) {
  PlanFacts f = facts(Backend::kV2, size_t(16) << 20, size_t(32) << 10);  // 32 KiB push slots
  f.thresholds.oneshot_push_max = kUnlimited;
  EXPECT_EQ(path(f, 4), NormPath::kFusedPush);
  const NormCallPlan p = plan_norm_call(f, 5, 4096, DataType::kBFloat16, false);
  // plan_call already turns a push larger than the push buffers into a pull: unfused.
  EXPECT_EQ(p.path, NormPath::kUnfused);
  f.force_norm_path = NormPath::kFusedPush;
  EXPECT_EQ(path(f, 5), NormPath::kUnfused) << "forced, but it does not fit";
  EXPECT_EQ(path(f, 4), NormPath::kFusedPush);
}

TEST(NormPlan, AFusedTwoshotNeedsRoomForTheInputAndTheNormRows) {
  // 1 MiB staging: the input (tokens x 8 KiB) plus its norm rows (the same again, half for e4m3).
  PlanFacts f = facts(Backend::kV2, size_t(1) << 20);
  f.thresholds = {0, 0, kUnlimited, 0};
  EXPECT_EQ(path(f, 64), NormPath::kFusedTwoshot);  // 512 KiB + 512 KiB
  EXPECT_EQ(path(f, 65), NormPath::kUnfused);
  EXPECT_EQ(path(f, 85, 4096, true), NormPath::kFusedTwoshot);  // 680 + 340 KiB
  EXPECT_EQ(path(f, 86, 4096, true), NormPath::kUnfused);
  EXPECT_EQ(plan_norm_call(f, 65, 4096, DataType::kBFloat16, false).algo, Algo::kTwoshot)
      << "the unfused fallback still runs the planned two-shot all-reduce";
  EXPECT_EQ(fused_twoshot_staging_bytes(64, 4096, 2), size_t(1) << 20);
}

TEST(NormPlan, SetNormPathAndSetAlgoForceEachPathWhereItFits) {
  PlanFacts f = facts(Backend::kV2);
  f.force_norm_path = NormPath::kFusedPush;
  EXPECT_EQ(path(f, 64), NormPath::kFusedPush) << "512 KiB fits the 1 MiB push slots";
  f.force_norm_path = NormPath::kFusedTwoshot;
  EXPECT_EQ(path(f, 1), NormPath::kFusedTwoshot);
  f.force_norm_path = NormPath::kUnfused;
  const NormCallPlan u = plan_norm_call(f, 1, 4096, DataType::kBFloat16, false);
  EXPECT_EQ(u.path, NormPath::kUnfused);
  EXPECT_EQ(u.algo, Algo::kOneshotPush) << "unfused keeps the all-reduce the thresholds pick";
  f.force_norm_path.reset();
  f.force_algo = Algo::kTwoshot;
  EXPECT_EQ(path(f, 1), NormPath::kFusedTwoshot);
  f.force_algo = Algo::kOneshotPull;
  EXPECT_EQ(path(f, 1), NormPath::kUnfused);
  f.force_algo = Algo::kNccl;
  EXPECT_EQ(plan_norm_call(f, 1, 4096, DataType::kBFloat16, false).algo, Algo::kNccl);
}

TEST(NormPlan, PathNames) {
  EXPECT_STREQ(norm_path_name(NormPath::kFusedPush), "fused_push");
  EXPECT_STREQ(norm_path_name(NormPath::kFusedTwoshot), "fused_twoshot");
  EXPECT_STREQ(norm_path_name(NormPath::kUnfused), "unfused");
}

TEST(NormLaunch, TheFusedPushOwnsWholeRowsOnAResidentGrid) {
  PlanFacts f = facts(Backend::kV2);
  f.force_norm_path = NormPath::kFusedPush;
  const NormPlan one = plan_norm_launch(f, limits(132), 1, 4096, DataType::kBFloat16, false);
  EXPECT_EQ(one.kernel.kernel, Kernel::kPushAddRmsNorm);
  EXPECT_TRUE(takes_norm_call(one.kernel.kernel));
  EXPECT_EQ(one.kernel.grid, 1u);
  EXPECT_EQ(one.kernel.block, 512u);
  EXPECT_EQ(one.kernel.nvec, 512u);
  EXPECT_TRUE(one.kernel.pdl);
  EXPECT_EQ(plan_norm_launch(f, limits(132), 64, 4096, DataType::kBFloat16, false).kernel.grid, 64u);
  EXPECT_EQ(plan_norm_launch(f, limits(100), 128, 4096, DataType::kBFloat16, false).kernel.grid, 100u)
      << "at most one block per agreed SM: every block is resident at once";
  EXPECT_EQ(plan_norm_launch(f, limits(132), 8, 1024, DataType::kBFloat16, false).kernel.block, 128u);
}

TEST(NormLaunch, TheFusedTwoshotGridIsAgreedAndCoversAPartsRows) {
  PlanFacts f = facts(Backend::kV2, size_t(64) << 20, size_t(1) << 20, 8);
  f.force_norm_path = NormPath::kFusedTwoshot;
  const NormPlan p = plan_norm_launch(f, limits(128), 512, 4096, DataType::kBFloat16, false);
  EXPECT_EQ(p.kernel.kernel, Kernel::kTwoshotAddRmsNorm);
  EXPECT_EQ(p.kernel.grid, 64u) << "512 rows in 8 parts of 64";
  EXPECT_EQ(plan_norm_launch(f, limits(128), 1, 4096, DataType::kBFloat16, false).kernel.grid, 1u);
  EXPECT_EQ(plan_norm_launch(f, limits(128), 8192, 2048, DataType::kBFloat16, false).kernel.grid, 128u);
  EXPECT_EQ(plan_norm_launch(f, limits(128), 8192, 2048, DataType::kBFloat16, false).kernel.block, 256u);
}

TEST(NormLaunch, UnfusedCarriesTheAllReducePlanAndAOneRowPerBlockNormKernel) {
  const NormPlan pull = plan_norm_launch(facts(Backend::kV2), limits(132), 16, 8192, DataType::kBFloat16, false);
  EXPECT_EQ(pull.call.path, NormPath::kUnfused);
  EXPECT_EQ(pull.kernel.kernel, Kernel::kOneshotPull);
  EXPECT_EQ(pull.norm_grid, 16u);
  EXPECT_EQ(pull.norm_block, 512u);
  EXPECT_TRUE(pull.norm_pdl) << "after a custom kernel with PDL";
  const NormPlan nccl =
      plan_norm_launch(facts(Backend::kNccl), limits(1, 0, false), 8192, 16384, DataType::kBFloat16, false);
  EXPECT_EQ(nccl.kernel.kernel, Kernel::kNone);
  EXPECT_EQ(nccl.norm_grid, 8192u);
  EXPECT_FALSE(nccl.norm_pdl);
  const NormPlan alone = norm_only_plan(limits(1), 3, 1032);
  EXPECT_EQ(alone.norm_grid, 3u);
  EXPECT_EQ(alone.norm_block, 160u);
}

TEST(NormLaunch, GridsStayWithinMaxGridThreads) {
  // A virtual rank's share: 16 SMs of 512 threads. The barrier and push grids follow max_blocks (capped to the share
  // by the virtual topology); the norm kernel caps itself.
  const LaunchLimits l = limits(16, size_t(16) * 512);
  for (NormPath forced : {NormPath::kFusedPush, NormPath::kFusedTwoshot, NormPath::kUnfused})
    for (size_t tokens : {size_t(1), size_t(7), size_t(128), size_t(512), size_t(2048)})
      for (size_t hidden : {size_t(1024), size_t(4096), size_t(16384)}) {
        PlanFacts f = facts(Backend::kV2, size_t(64) << 20, size_t(4) << 20);
        f.force_norm_path = forced;
        const NormPlan p = plan_norm_launch(f, l, tokens, hidden, DataType::kBFloat16, false);
        if (p.kernel.kernel != Kernel::kNone) {
          EXPECT_LE(size_t(p.kernel.grid) * p.kernel.block, l.max_grid_threads);
          if (takes_norm_call(p.kernel.kernel)) {
            EXPECT_LE(p.kernel.grid, 16u) << "a block per agreed SM at most";
          }
        }
        if (p.call.path == NormPath::kUnfused) {
          EXPECT_LE(size_t(p.norm_grid) * p.norm_block, l.max_grid_threads) << tokens << " x " << hidden;
          EXPECT_GE(p.norm_grid, 1u);
        }
      }
  LaunchLimits tight = limits(16, 256);
  PlanFacts f = facts(Backend::kV2);
  f.force_norm_path = NormPath::kFusedPush;
  EXPECT_THROW(plan_norm_launch(f, tight, 4, 4096, DataType::kBFloat16, false), InvalidArgument);
}

// ---- the row shape and the row parts ---------------------------------------------------------------------------

TEST(RowShape, EveryHiddenSizeFitsOneBlockOfWholeWarps) {
  for (unsigned hidden = 1024; hidden <= 16384; hidden += 8) {
    const unsigned vecs = row_vecs(hidden);
    const unsigned t = row_threads(vecs);
    ASSERT_EQ(t % 32, 0u) << hidden;
    ASSERT_LE(t, kRowMaxThreads) << hidden;
    ASSERT_GE(t * kRowMaxVecs, vecs) << hidden << ": a thread holds at most kRowMaxVecs vectors of a row";
    const unsigned per = (vecs + kRowMaxThreads - 1) / kRowMaxThreads;
    ASSERT_LT(t - 32, (vecs + per - 1) / per) << hidden << ": the last warp holds vectors too";
  }
  EXPECT_EQ(row_threads(row_vecs(4096)), 512u);
  EXPECT_EQ(row_threads(row_vecs(8192)), 512u);
  EXPECT_EQ(row_threads(row_vecs(16384)), 512u);
  EXPECT_EQ(row_threads(row_vecs(1032)), 160u);
  EXPECT_EQ(row_threads(row_vecs(5120)), 320u);
}

TEST(RowShape, RowPartsCoverEveryRowOnce) {
  for (unsigned tokens : {1u, 3u, 7u, 8u, 9u, 512u, 8191u})
    for (int world = 2; world <= 8; ++world) {
      unsigned next = 0;
      for (int q = 0; q < world; ++q) {
        const RowRange r = row_part(tokens, world, q);
        EXPECT_EQ(r.beg, next) << tokens << " rows, part " << q << " of " << world;
        EXPECT_LE(r.beg, r.end);
        next = r.end;
      }
      EXPECT_EQ(next, tokens);
    }
}

// ---- e4m3 ------------------------------------------------------------------------------------------------------

namespace {

// The e4m3 value of a byte (0x7f / 0xff: NaN).
double e4m3_value(uint8_t b) {
  const int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
  const double v = e == 0 ? std::ldexp(m / 8.0, -6) : std::ldexp(1 + m / 8.0, e - 7);
  return s ? -v : v;
}

// The reference: the nearest finite e4m3 value, ties to the even code, saturated at 448.
uint8_t e4m3_reference(float x) {
  if (std::isnan(x)) return std::signbit(x) ? 0xff : 0x7f;
  const double a = std::fabs(double(x));
  uint8_t best = 0;
  for (int c = 1; c <= 0x7e; ++c) {
    const double d = std::fabs(e4m3_value(uint8_t(c)) - a), db = std::fabs(e4m3_value(best) - a);
    if (d < db || (d == db && (c & 1) == 0)) best = uint8_t(c);
  }
  return uint8_t(best | (std::signbit(x) ? 0x80 : 0));
}

uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

}  // namespace

TEST(E4m3, EveryCodeItsMidpointsAndTheirNeighboursRoundLikeTheReference) {
  for (int c = 0; c <= 0x7e; ++c) {
    const double v = e4m3_value(uint8_t(c)), next = c < 0x7e ? e4m3_value(uint8_t(c + 1)) : 480.0;
    for (double x : {v, (v + next) / 2}) {
      const float f = float(x);
      for (float y : {f, std::nextafter(f, 0.f), std::nextafter(f, 1e30f), -f}) {
        ASSERT_EQ(e4m3_from_bits(bits_of(y)), e4m3_reference(y)) << y;
      }
    }
  }
}

TEST(E4m3, SaturatesInfinitiesAndKeepsNaN) {
  EXPECT_EQ(e4m3_from_bits(bits_of(448.f)), 0x7e);
  EXPECT_EQ(e4m3_from_bits(bits_of(1e6f)), 0x7e);
  EXPECT_EQ(e4m3_from_bits(bits_of(-std::numeric_limits<float>::infinity())), 0xfe);
  EXPECT_EQ(e4m3_from_bits(bits_of(std::numeric_limits<float>::infinity())), 0x7e);
  EXPECT_EQ(e4m3_from_bits(bits_of(std::numeric_limits<float>::quiet_NaN())) & 0x7f, 0x7f);
  EXPECT_EQ(e4m3_from_bits(bits_of(-0.f)), 0x80);
  EXPECT_EQ(e4m3_from_bits(bits_of(std::ldexp(1.f, -10))), 0x00) << "half the smallest subnormal: ties to even";
  EXPECT_EQ(e4m3_from_bits(bits_of(std::ldexp(1.5f, -10))), 0x01);
  EXPECT_EQ(e4m3_from_bits(bits_of(std::numeric_limits<float>::denorm_min())), 0x00);
}

TEST(E4m3, ASweepOfFloatsMatchesTheReference) {
  uint32_t u = 0x12345678u;
  for (int k = 0; k < 200000; ++k) {
    u = u * 1664525u + 1013904223u;
    // Spread over [-512, 512] and the subnormal range, the interesting part of the encoding.
    const float x = (k % 2 ? std::ldexp(float(int32_t(u)) / 2147483648.f, -5) : float(int32_t(u)) / 4194304.f);
    ASSERT_EQ(e4m3_from_bits(bits_of(x)), e4m3_reference(x)) << x;
  }
}
