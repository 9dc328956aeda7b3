#include <gtest/gtest.h>

#include "customar/dispatch.h"
#include "customar/launcher.h"

using namespace customar;

namespace {
std::string data(const char* name) { return std::string(CUSTOMAR_TEST_DATA) + "/" + name; }

Decision decide_file(const char* file, DispatchOptions o = {}) {
  return decide_backend(load_topology_file(data(file)), builtin_config(), o);
}
}  // namespace

TEST(Dispatch, TwoPcieGpusWithPeerAccessGetV1NeverV2) {
  Decision d = decide_file("pcie2.json");
  EXPECT_EQ(d.backend, Backend::kV1) << d.reason;
  EXPECT_NE(d.reason.find("PCIe"), std::string::npos);
}

TEST(Dispatch, FourPcieGpusGetNccl) { EXPECT_EQ(decide_file("pcie4.json").backend, Backend::kNccl); }

TEST(Dispatch, EightNvlinkGpusGetV2) {
  Decision d = decide_file("nvlink8.json");
  EXPECT_EQ(d.backend, Backend::kV2) << d.reason;
}

TEST(Dispatch, NvlinkWithoutNvrtcGetsV1) {
  Decision d = decide_file("nvlink2_no_nvrtc.json");
  EXPECT_EQ(d.backend, Backend::kV1);
  EXPECT_NE(d.reason.find("NVRTC"), std::string::npos);
}

TEST(Dispatch, TwoHostsGetNccl) {
  Decision d = decide_file("two_hosts.json");
  EXPECT_EQ(d.backend, Backend::kNccl);
  EXPECT_NE(d.reason.find("host"), std::string::npos);
}

TEST(Dispatch, OneMissingNvlinkPairAmongFourGetsNccl) {
  Decision d = decide_file("nvlink4_missing_pair.json");
  EXPECT_EQ(d.backend, Backend::kNccl);
  EXPECT_NE(d.reason.find("ranks 1 and 3"), std::string::npos) << d.reason;
}

TEST(Dispatch, NoPeerAccessGetsNccl) { EXPECT_EQ(decide_file("pcie4_no_p2p.json").backend, Backend::kNccl); }

TEST(Dispatch, WorldSizeAboveEightGetsNccl) {
  Topology t = example_topology();
  GpuInfo extra = t.gpus[0];
  extra.pci_bus_id = "0000:fe:00.0";
  t.gpus.push_back(extra);
  for (auto* m : {&t.nvlink, &t.p2p}) {
    for (auto& row : *m) row.push_back(true);
    m->push_back(std::vector<bool>(9, true));
  }
  Decision d = decide_backend(t, builtin_config(), {});
  EXPECT_EQ(d.backend, Backend::kNccl);
  EXPECT_NE(d.reason.find("world size 9"), std::string::npos) << d.reason;
}

TEST(Dispatch, WorldSizeOneIsNone) {
  EXPECT_EQ(decide_backend(example_topology().prefix(1), builtin_config(), {}).backend, Backend::kNone);
}

TEST(Dispatch, EnvironmentSwitches) {
  DispatchOptions off, no_v2;
  off.disable = true;
  no_v2.disable_v2 = true;
  EXPECT_EQ(decide_file("nvlink8.json", off).backend, Backend::kNccl);
  EXPECT_EQ(decide_file("nvlink8.json", no_v2).backend, Backend::kV1);
  EXPECT_EQ(decide_file("pcie2.json", no_v2).backend, Backend::kV1);
  EXPECT_EQ(decide_file("pcie4.json", no_v2).backend, Backend::kNccl);
}

TEST(Dispatch, UnsupportedWorldSizeOrArchGetsNccl) {
  Config c = builtin_config();
  Topology t = example_topology();
  c.table.erase({ArchFamily::kHopper, 8});
  Decision d = decide_backend(t, c, {});
  EXPECT_EQ(d.backend, Backend::kNccl);
  EXPECT_NE(d.reason.find("not in the hopper config"), std::string::npos) << d.reason;
  // An empty (unfilled) table rejects everything: why the table must be filled before the check reads it.
  EXPECT_EQ(decide_backend(t, Config{}, {}).backend, Backend::kNccl);
  t.gpus[0].sm = 70;
  EXPECT_EQ(decide_backend(t, builtin_config(), {}).backend, Backend::kNccl);
  t.gpus[0].sm = 100;
  EXPECT_NE(decide_backend(t, builtin_config(), {}).reason.find("architectures"), std::string::npos);
}

TEST(Dispatch, LowerBackend) {
  EXPECT_EQ(lower_backend(Backend::kV2, Backend::kV1), Backend::kV1);
  EXPECT_EQ(lower_backend(Backend::kNccl, Backend::kV2), Backend::kNccl);
  EXPECT_EQ(lower_backend(Backend::kNone, Backend::kV1), Backend::kV1);
}

TEST(Agreement, OneRankWithoutPeerAccessPullsEveryRankDown) {
  // Rank 2's own measurement finds no peer access to rank 1; the others see full NVLink. Rows are combined with a
  // logical AND (as detect_group_topology does) and the decisions are voted, so every rank lands on the same path.
  auto exits = launch(
      4,
      [](Group& g) {
        Topology view = example_topology().prefix(4);
        if (g.rank() == 2) view.p2p[2][1] = false;
        // Exchange rows exactly as detection does.
        Bytes row;
        for (int j = 0; j < 4; ++j) row.push_back(view.p2p[g.rank()][j] ? 1 : 0);
        auto rows = g.all_gather(row);
        for (int i = 0; i < 4; ++i)
          for (int j = 0; j < 4; ++j) view.p2p[i][j] = rows[i][j] != 0;
        combine_links(view);
        Decision d = agree_on_backend(g, decide_backend(view, builtin_config(), {}));
        return d.backend == Backend::kNccl ? 0 : 10 + static_cast<int>(d.backend);
      },
      LaunchOptions{60});
  for (const auto& e : exits) EXPECT_EQ(e.exit_code, 0) << "rank " << e.rank;
}

TEST(Agreement, ARankThatDisablesV2PullsEveryRankToV1) {
  auto exits = launch(
      4,
      [](Group& g) {
        DispatchOptions o;
        o.disable_v2 = g.rank() == 3;  // say, CUSTOMAR_DISABLE_V2=1 set on one rank only
        Decision d = agree_on_backend(g, decide_backend(example_topology().prefix(4), builtin_config(), o));
        if (d.backend != Backend::kV1) return 10 + static_cast<int>(d.backend);
        if (g.rank() != 3 && d.reason.rfind("rank 3: ", 0) != 0) return 20;
        return 0;
      },
      LaunchOptions{60});
  for (const auto& e : exits) EXPECT_EQ(e.exit_code, 0) << "rank " << e.rank;
}
