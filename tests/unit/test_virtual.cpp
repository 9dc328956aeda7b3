// Virtual ranks without a GPU: what can be checked before any device is touched (argument errors, the topology file
// marking), and that a machine without a GPU gets an error, not a crash or a hang. The ranks themselves run on the GPU
// machine (tests/gpu, --virtual N).
#include <gtest/gtest.h>

#include "customar/error.h"
#include "customar/topology.h"
#include "customar/virtual.h"
#include "virtual/virtual_group.h"

using namespace customar;

TEST(Virtual, RankCountOutsideOneToEightIsRefused) {
  for (int n : {0, -1, 9, 64}) {
    try {
      launch_virtual(n, [](Group&) { return 0; });
      ADD_FAILURE() << n << " accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("allowed: 1..8"), std::string::npos) << e.what();
    }
  }
}

TEST(Virtual, NoGpuIsAnErrorNotACrash) {
  int ran = 0;
  try {
    launch_virtual(2, [&](Group&) { return ++ran, 0; });
  } catch (const Error& e) {
    EXPECT_EQ(ran, 0) << "no rank runs without a device";
    return;
  }
  GTEST_SKIP() << "this machine has a GPU: the ranks ran";
}

TEST(Virtual, StreamsOfOtherGroupsAreRefused) {
  std::unique_ptr<Group> single = make_single_group();
  EXPECT_EQ(detail::as_virtual(*single), nullptr);
  EXPECT_THROW(virtual_stream(*single), InvalidArgument);
  EXPECT_THROW(virtual_partition(*single), InvalidArgument);
}

TEST(Virtual, TopologySaysPlainlyThatItIsVirtual) {
  Topology t = example_topology().prefix(4);
  t.virtual_ranks = true;
  const std::string text = topology_to_json(t);
  EXPECT_NE(text.find("\"virtual\": true"), std::string::npos);
  EXPECT_TRUE(topology_from_json(text).virtual_ranks);
  EXPECT_TRUE(topology_from_json(text).prefix(2).virtual_ranks);
  EXPECT_FALSE(topology_from_json(topology_to_json(example_topology())).virtual_ranks);
  EXPECT_THROW(topology_from_json(text.substr(0, text.rfind('}')) + ", \"virtual\": 1}"), ConfigError);
}
