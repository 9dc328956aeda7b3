#include <gtest/gtest.h>

#include <cmath>

#include "config/tune.h"

using namespace customar;

namespace {
// A ladder shaped like a 2x H200 measurement: push best to 2 MiB, pull to 32 MiB, NCCL at
// 64 MiB; two-shot never best.
std::vector<SizeTiming> h200_like() {
  std::vector<SizeTiming> t;
  for (size_t b = 1024; b <= (size_t(64) << 20); b *= 2) {
    double x = double(b) / (1 << 20);
    SizeTiming s;
    s.bytes = b;
    s.push_us = b <= (size_t(4) << 20) ? 2.2 + 4.0 * x : -1;  // push buffers hold 4 MiB
    s.pull_us = 3.9 + 3.6 * x;
    s.twoshot_us = 7.5 + 3.7 * x;
    s.nccl_us = 5.8 + 3.66 * x;
    if (b <= (size_t(2) << 20))
      s.push_us = std::min(s.push_us, s.pull_us - 0.5);
    else if (s.push_us > 0)
      s.push_us = s.pull_us + 0.5;
    if (b == (size_t(64) << 20)) s.pull_us = -1, s.twoshot_us = -1;  // above the staging capacity
    t.push_back(s);
  }
  return t;
}
}  // namespace

TEST(Tune, FindsTheCrossoversOfAMeasuredLadder) {
  Thresholds t = tune_thresholds(h200_like(), builtin_config().table.at({ArchFamily::kHopper, 2}));
  EXPECT_EQ(t.oneshot_push_max, size_t(2) << 20);
  EXPECT_EQ(t.oneshot_pull_max, size_t(32) << 20);
  EXPECT_EQ(t.custom_max, size_t(32) << 20);  // nothing custom measured at 64 MiB: NCCL there
  EXPECT_DOUBLE_EQ(threshold_loss(h200_like(), t), 0.0);
}

TEST(Tune, PicksTheLeastLossWhenRegionsInterleave) {
  // Pull wins at 1 and 3 KiB, push at 2 KiB: thresholds are nested, so one of them must lose somewhere; the tuner
  // takes the cheaper loss.
  std::vector<SizeTiming> t = {{1024, 2.1, 2.0, 9, 9}, {2048, 2.0, 2.4, 9, 9}, {3072, 3.0, 2.9, 9, 9}};
  Thresholds got = tune_thresholds(t, Thresholds{});
  double loss = threshold_loss(t, got);
  for (size_t a : {size_t(0), size_t(1024), size_t(2048), size_t(3072)})
    for (size_t b : {size_t(0), size_t(1024), size_t(2048), size_t(3072)}) {
      if (b < a) continue;
      EXPECT_LE(loss, threshold_loss(t, Thresholds{a, b, kUnlimited, 0}) + 1e-12);
    }
}

TEST(Tune, NcclWinsAtTheTopGivesACrossover) {
  std::vector<SizeTiming> t = {{1 << 20, 5, 6, 7, 9}, {2 << 20, 9, 8, 10, 12}, {4 << 20, -1, 20, 19, 15}};
  Thresholds got = tune_thresholds(t, Thresholds{});
  EXPECT_EQ(got.oneshot_push_max, size_t(1) << 20);
  EXPECT_EQ(got.oneshot_pull_max, size_t(2) << 20);
  EXPECT_EQ(got.custom_max, size_t(2) << 20);
}

TEST(Tune, V1RunSetsTheV1Boundary) {
  std::vector<SizeTiming> t = {{1 << 16, -1, 4, 6, 7}, {1 << 20, -1, 12, 10, 14}};
  Thresholds got = tune_thresholds(t, Thresholds{});
  EXPECT_EQ(got.v1_oneshot_max, size_t(1) << 16);
  // Custom wins the largest size measured; above it nothing was measured, so NCCL keeps it.
  EXPECT_EQ(got.custom_max, size_t(1) << 20);
}

TEST(Tune, LossFollowsTheDispatchOrderNcclCrossoverFirst) {
  // The built-in 2-GPU row says pull up to "unlimited" but NCCL above 32 MiB: at 64 MiB the dispatcher runs NCCL, so
  // the loss must be finite (it was infinite when pull, unmeasurable there, was looked up first).
  Thresholds builtin = builtin_config().table.at({ArchFamily::kHopper, 2});
  ASSERT_EQ(builtin.oneshot_pull_max, kUnlimited);
  ASSERT_LT(builtin.custom_max, size_t(64) << 20);
  const double loss = threshold_loss(h200_like(), builtin);
  EXPECT_TRUE(std::isfinite(loss)) << loss;
  EXPECT_GE(loss, 0.0);
}
