#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "customar/error.h"
#include "customar/launcher.h"

using namespace customar;

TEST(Launcher, AllGatherAcrossFourForkedProcesses) {
  auto exits = launch(
      4,
      [](Group& g) {
        if (g.size() != 4) return 2;
        // Lengths differ per rank, and rank 3 sends more than one shared-memory round (64 KiB) holds.
        for (int iter = 0; iter < 3; ++iter) {
          size_t len = g.rank() == 3 ? 200000 + iter : 7 * g.rank() + iter;
          Bytes mine(len);
          for (size_t i = 0; i < len; ++i) mine[i] = static_cast<uint8_t>(g.rank() * 31 + i * 7 + iter);
          auto all = g.all_gather(mine);
          if (all.size() != 4) return 3;
          for (int r = 0; r < 4; ++r) {
            size_t want = r == 3 ? 200000 + iter : 7 * r + iter;
            if (all[r].size() != want) return 4;
            for (size_t i = 0; i < want; ++i)
              if (all[r][i] != static_cast<uint8_t>(r * 31 + i * 7 + iter)) return 5;
          }
          g.barrier();
        }
        return 0;
      },
      LaunchOptions{60});
  ASSERT_EQ(exits.size(), 4u);
  for (const auto& e : exits) EXPECT_EQ(e.exit_code, 0) << "rank " << e.rank;
}

TEST(Launcher, ReturnCodesAndExceptionsReachTheParent) {
  auto exits = launch(
      3,
      [](Group& g) {
        if (g.rank() == 1) throw InvalidArgument("boom");
        return g.rank() == 2 ? 7 : 0;
      },
      LaunchOptions{60});
  EXPECT_EQ(exits[0].exit_code, 0);
  EXPECT_EQ(exits[1].exit_code, 1);
  EXPECT_EQ(exits[2].exit_code, 7);
}

TEST(Launcher, ADeadRankFailsTheOthersNamingIt) {
  auto start = std::chrono::steady_clock::now();
  auto exits = launch(
      4,
      [](Group& g) {
        if (g.rank() == 2) raise(SIGKILL);
        try {
          g.barrier();
        } catch (const TimeoutError& e) {
          return e.missing_rank() == 2 ? 0 : 3;
        }
        return 4;
      },
      LaunchOptions{60});
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_EQ(exits[2].exit_code, 128 + SIGKILL);
  for (int r : {0, 1, 3}) EXPECT_EQ(exits[r].exit_code, 0) << "rank " << r;
  EXPECT_LT(secs, 30.0) << "waiting ranks were not told of the dead rank";
}

TEST(Launcher, ARankThatReturnsEarlyIsNamedNotWaitedFor) {
  auto start = std::chrono::steady_clock::now();
  auto exits = launch(
      3,
      [](Group& g) {
        g.barrier();
        if (g.rank() == 1) return 0;  // leaves before the second barrier
        try {
          g.barrier();
        } catch (const TimeoutError& e) {
          return e.missing_rank() == 1 ? 0 : 3;
        }
        return 4;
      },
      LaunchOptions{60});
  for (const auto& e : exits) EXPECT_EQ(e.exit_code, 0) << "rank " << e.rank;
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 30.0);
}

TEST(Launcher, DeadlineKillsAHungJob) {
  auto exits = launch(
      2,
      [](Group& g) {
        if (g.rank() == 0) std::this_thread::sleep_for(std::chrono::seconds(60));
        return 0;
      },
      LaunchOptions{1.0});
  EXPECT_EQ(exits[0].exit_code, 128 + SIGKILL);
  EXPECT_EQ(exits[1].exit_code, 0);
}

TEST(Launcher, RejectsBadSizes) {
  EXPECT_THROW(launch(0, [](Group&) { return 0; }), InvalidArgument);
  EXPECT_THROW(launch(65, [](Group&) { return 0; }), InvalidArgument);
}

TEST(Launcher, SingleGroup) {
  auto g = make_single_group();
  Bytes b = {1, 2, 3};
  auto all = g->all_gather(b);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0], b);
  g->barrier();
}
