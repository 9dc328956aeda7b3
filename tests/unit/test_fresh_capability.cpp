// The exact regression of the system customar rebuilds: its capability check read the threshold table's keys as the
// supported world sizes before anything had filled the table, so every machine was rejected. Here the check is the
// first customar call of the process (ctest sets CUSTOMAR_TOPO_FILE to 8 NVLink GPUs); it must fill the table itself.
#include <gtest/gtest.h>

#include "customar/dispatch.h"
#include "customar/launcher.h"

using namespace customar;

TEST(FreshProcess, CapabilityCheckFillsTheConfigItself) {
  // Forked ranks inherit a process in which nothing has touched the config yet.
  std::vector<RankExit> exits = launch(
      8, [](Group& g) { return can_use_custom_all_reduce_v2(g, g.rank()) ? 0 : 3; }, LaunchOptions{60});
  for (const RankExit& e : exits) EXPECT_EQ(e.exit_code, 0) << "rank " << e.rank << " rejected V2";
  // And in this process too, where the config is still untouched.
  EXPECT_EQ(global_config().world_sizes(arch_family(90)), (std::vector<int>{2, 3, 4, 5, 6, 7, 8}));
}
