// Set-up agreement across ranks (forked processes, no GPU): every rank makes the same exchanges whatever it found
// locally, and disagreement or a local failure ends with the same error on every rank, never a hang or a rank
// reading one exchange's message as another's.
#include <gtest/gtest.h>

#include <string>

#include "customar/config.h"
#include "customar/error.h"
#include "customar/launcher.h"
#include "dispatch/setup.h"
#include "topology/detect.h"

using namespace customar;

namespace {

const std::string kData = CUSTOMAR_TEST_DATA;

// Runs `fn` on `n` forked ranks; each returns 0 on success or a code naming the failed expectation.
void expect_all_zero(int n, const std::function<int(Group&)>& fn) {
  auto exits = launch(n, fn, LaunchOptions{60});
  ASSERT_EQ(exits.size(), static_cast<size_t>(n));
  for (const auto& e : exits) EXPECT_EQ(e.exit_code, 0) << "rank " << e.rank;
}

// 0 when `f` throws ConfigError whose message contains `needle`; else 1 (no throw) or 2 (wrong error).
template <typename F>
int throws_config_error(F&& f, const std::string& needle) {
  try {
    f();
  } catch (const ConfigError& e) {
    return std::string(e.what()).find(needle) != std::string::npos ? 0 : 2;
  } catch (...) {
    return 3;
  }
  return 1;
}

detail::LocalChoice v2_choice() {
  detail::LocalChoice c;
  c.decision = {Backend::kV2, "full NVLink"};
  c.thresholds = *builtin_config().find(ArchFamily::kHopper, 4);
  return c;
}

}  // namespace

TEST(SetupVote, IdenticalChoicesAgreeAndKeepTheSettings) {
  expect_all_zero(4, [](Group& g) {
    detail::LocalChoice c = v2_choice();
    c.force_algo = Algo::kTwoshot;
    c.check = true;
    detail::AgreedChoice a = detail::agree_choice(g, c);
    if (a.decision.backend != Backend::kV2 || a.decision.reason != "full NVLink") return 10;
    if (!(a.thresholds == c.thresholds) || a.force_algo != Algo::kTwoshot || !a.check) return 11;
    return 0;
  });
}

TEST(SetupVote, TheLowestBackendWinsWithItsVotersReason) {
  expect_all_zero(3, [](Group& g) {
    detail::LocalChoice c = v2_choice();
    if (g.rank() == 2) c.decision = {Backend::kV1, "CUSTOMAR_DISABLE_V2=1"};
    detail::AgreedChoice a = detail::agree_choice(g, c);
    if (a.decision.backend != Backend::kV1) return 10;
    if (g.rank() != 2 && a.decision.reason != "rank 2: CUSTOMAR_DISABLE_V2=1") return 11;
    return 0;
  });
}

TEST(SetupVote, ALocalFailureThrowsOnEveryRankNamingIt) {
  // Say rank 1's CUSTOMAR_CONFIG_FILE does not parse: every rank throws, none is left in the next exchange.
  expect_all_zero(3, [](Group& g) {
    detail::LocalChoice c = v2_choice();
    if (g.rank() == 1) c.error = "CUSTOMAR_CONFIG_FILE=x.json: not JSON";
    int r = throws_config_error([&] { detail::agree_choice(g, c); }, "rank 1 could not choose a backend: ");
    if (r != 0) return 10 + r;
    g.barrier();  // still aligned: every rank made exactly one exchange
    return 0;
  });
}

TEST(SetupVote, DifferentThresholdsAreRejectedForACustomBackend) {
  expect_all_zero(2, [](Group& g) {
    detail::LocalChoice c = v2_choice();
    if (g.rank() == 1) c.thresholds.oneshot_push_max *= 2;  // another tuned config on rank 1
    return throws_config_error([&] { detail::agree_choice(g, c); }, "thresholds differ between ranks");
  });
}

TEST(SetupVote, DifferentThresholdsDoNotMatterWhenNcclServes) {
  expect_all_zero(2, [](Group& g) {
    detail::LocalChoice c = v2_choice();
    c.decision = {Backend::kNccl, "CUSTOMAR_DISABLE=1"};
    if (g.rank() == 1) c.thresholds.custom_max /= 2;
    return detail::agree_choice(g, c).decision.backend == Backend::kNccl ? 0 : 10;
  });
}

TEST(SetupVote, DifferentForcedAlgorithmsAndCheckModesAreRejected) {
  expect_all_zero(2, [](Group& g) {
    detail::LocalChoice c = v2_choice();
    if (g.rank() == 0) c.force_algo = Algo::kOneshotPush;
    int r = throws_config_error([&] { detail::agree_choice(g, c); }, "CUSTOMAR_ALGO differs between ranks");
    if (r != 0) return 10 + r;
    // CUSTOMAR_CHECK changes the exchanges of every call, NCCL's included: rejected whatever the backend.
    detail::LocalChoice d = v2_choice();
    d.decision = {Backend::kNccl, "no NVLink"};
    d.check = g.rank() == 1;
    r = throws_config_error([&] { detail::agree_choice(g, d); }, "CUSTOMAR_CHECK differs between ranks");
    return r == 0 ? 0 : 20 + r;
  });
}

TEST(SetupVote, LocalChoiceCapsAtMaxBackend) {
  Topology t = example_topology().prefix(2);
  t.nvrtc = true;
  detail::LocalChoice c = detail::local_choice(t, Backend::kV1);
  EXPECT_TRUE(c.error.empty()) << c.error;
  EXPECT_EQ(c.decision.backend, Backend::kV1);
  EXPECT_NE(c.decision.reason.find("max_backend"), std::string::npos) << c.decision.reason;
  EXPECT_TRUE(c.thresholds == *builtin_config().find(arch_family(t.gpus[0].sm), 2));
}

TEST(GroupTopology, EveryRankReadingTheSameFileGetsIt) {
  expect_all_zero(4, [](Group& g) {
    Topology t = detail::detect_group_topology_from(g, 0, kData + "/nvlink8.json");
    return t.world_size() == 4 && t.all_nvlink() && t.all_p2p() ? 0 : 10;
  });
}

TEST(GroupTopology, AFileOnSomeRanksOnlyFailsOnEveryRank) {
  // Rank 1 detects (and, on a machine without GPUs, fails to): ranks must not split between paths with different
  // numbers of exchanges.
  expect_all_zero(3, [](Group& g) {
    std::string file = g.rank() == 1 ? "" : kData + "/nvlink8.json";
    int r = throws_config_error([&] { detail::detect_group_topology_from(g, 0, file); }, "differs between ranks");
    if (r != 0) return 10 + r;
    g.barrier();
    return 0;
  });
}

TEST(GroupTopology, DifferentFilesFailOnEveryRank) {
  expect_all_zero(2, [](Group& g) {
    std::string file = kData + (g.rank() == 0 ? "/nvlink8.json" : "/pcie4.json");
    return throws_config_error([&] { detail::detect_group_topology_from(g, 0, file); }, "another topology");
  });
}

TEST(GroupTopology, AnUnreadableFileOnOneRankFailsOnEveryRank) {
  expect_all_zero(2, [](Group& g) {
    std::string file = kData + (g.rank() == 0 ? "/nvlink8.json" : "/bad_shape.json");
    return throws_config_error([&] { detail::detect_group_topology_from(g, 0, file); }, "rank 1 could not describe");
  });
}

TEST(LauncherGroup, AFailedExchangeLeavesTheGroupRefusingFurtherOnes) {
  // Rank 1 leaves without entering the barrier: rank 0's barrier fails naming it, and every later exchange on rank 0
  // is refused (its arrival count no longer matches) instead of pairing messages of different rounds.
  auto exits = launch(
      2,
      [](Group& g) {
        if (g.rank() == 1) return 0;
        try {
          g.barrier();
          return 10;
        } catch (const TimeoutError& e) {
          if (e.missing_rank() != 1) return 11;
        }
        try {
          g.all_gather(Bytes{1, 2, 3});
          return 12;
        } catch (const StateError& e) {
          return std::string(e.what()).find("earlier exchange failed") != std::string::npos ? 0 : 13;
        }
      },
      LaunchOptions{60});
  EXPECT_EQ(exits[0].exit_code, 0);
  EXPECT_EQ(exits[1].exit_code, 0);
}
