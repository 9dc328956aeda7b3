#include <gtest/gtest.h>
#include <unistd.h>

#include <fstream>

#include "customar/error.h"
#include "customar/topology.h"

using namespace customar;

namespace {
std::string data(const char* name) { return std::string(CUSTOMAR_TEST_DATA) + "/" + name; }

std::string expect_config_error(const std::string& text) {
  try {
    topology_from_json(text);
  } catch (const ConfigError& e) {
    return e.what();
  }
  ADD_FAILURE() << "accepted: " << text;
  return "";
}

const char* kGood = R"({"gpus": [
  {"host": "n", "pci_bus_id": "0000:18:00.0", "name": "G", "sm": 90, "sm_count": 132},
  {"host": "n", "pci_bus_id": "0000:2a:00.0", "name": "G", "sm": 90, "sm_count": 132}],
  "nvlink": [[false, true], [true, false]], "p2p": [[false, true], [true, false]]})";
}  // namespace

TEST(Topology, RoundTripsThroughJson) {
  Topology t = example_topology();
  t.gpus[3].uuid = "GPU-0123";
  t.nvlink[2][5] = t.nvlink[5][2] = false;
  Topology back = topology_from_json(topology_to_json(t));
  EXPECT_EQ(back, t);
  t.nvrtc.reset();
  EXPECT_EQ(topology_from_json(topology_to_json(t)), t);
}

TEST(Topology, FileRoundTripIsAtomicWrite) {
  std::string path = testing::TempDir() + "/topo_" + std::to_string(getpid()) + ".json";
  Topology t = load_topology_file(data("pcie2.json"));
  save_topology_file(t, path);
  EXPECT_EQ(load_topology_file(path), t);
  EXPECT_NE(access((path + ".tmp." + std::to_string(getpid())).c_str(), F_OK), 0) << "temporary file left behind";
  unlink(path.c_str());
}

TEST(Topology, GoodFileParses) {
  Topology t = topology_from_json(kGood);
  EXPECT_EQ(t.world_size(), 2);
  EXPECT_TRUE(t.all_nvlink());
  EXPECT_TRUE(t.single_host());
  EXPECT_FALSE(t.nvrtc.has_value());
}

TEST(Topology, MalformedFilesNameTheField) {
  std::string good = kGood;
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = good;
    size_t at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return s.replace(at, from.size(), to);
  };
  EXPECT_NE(expect_config_error(with("\"sm\": 90,", "\"sm\": \"90\",")).find("gpus[0].sm"), std::string::npos);
  EXPECT_NE(expect_config_error(with("\"sm\": 90,", "")).find("gpus[0].sm\": missing"), std::string::npos);
  EXPECT_NE(expect_config_error(with("\"sm_count\": 132}", "\"sm_count\": -1}")).find("sm_count"), std::string::npos);
  EXPECT_NE(expect_config_error(with("\"nvlink\": [[false, true], [true, false]]", "\"nvlink\": [[false, true]]"))
                .find("nvlink"),
            std::string::npos);
  EXPECT_NE(
      expect_config_error(with("\"p2p\": [[false, true], [true, false]]", "\"p2p\": [[false, true], [false, false]]"))
          .find("not symmetric"),
      std::string::npos);
  EXPECT_NE(expect_config_error(with("[[false, true], [true, false]], \"p2p\"", "[[false, 1], [true, false]], \"p2p\""))
                .find("nvlink[0][1]"),
            std::string::npos);
  EXPECT_NE(expect_config_error(with("\"gpus\"", "\"gpu\"")).find("unknown field"), std::string::npos);
  EXPECT_NE(expect_config_error(with("\"name\": \"G\", \"sm\": 90, \"sm_count\": 132},\n",
                                     "\"name\": \"G\", \"sm\": 90, \"sm_count\": 132, \"x\": 1},\n"))
                .find("gpus[0].x"),
            std::string::npos);
  EXPECT_NE(expect_config_error(with("0000:2a:00.0", "0000:18:00.0")).find("appears twice"), std::string::npos);
  EXPECT_NE(expect_config_error(R"({"gpus": [], "nvlink": [], "p2p": []})").find("at least one"), std::string::npos);
  EXPECT_NE(expect_config_error("[1, 2]").find("expected an object"), std::string::npos);
  expect_config_error(with("}],", "}, 7],"));
  expect_config_error(std::string(kGood).substr(0, 60));
}

TEST(Topology, MissingFileIsAClearError) {
  try {
    load_topology_file("/nonexistent/topo.json");
    FAIL();
  } catch (const ConfigError& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/topo.json"), std::string::npos);
  }
}

TEST(Topology, CombineLinksIsALogicalAnd) {
  Topology t = example_topology().prefix(4);
  t.p2p[2][1] = false;  // rank 2 could not reach rank 1; rank 1 thinks it can reach rank 2
  combine_links(t);
  EXPECT_FALSE(t.p2p[1][2]);
  EXPECT_FALSE(t.p2p[2][1]);
  EXPECT_TRUE(t.p2p[0][1]);
  EXPECT_FALSE(t.all_p2p());
}

TEST(Topology, PrefixAndPredicates) {
  Topology t = load_topology_file(data("two_hosts.json"));
  EXPECT_FALSE(t.single_host());
  EXPECT_TRUE(t.prefix(2).single_host());
  EXPECT_THROW(t.prefix(5), InvalidArgument);
  EXPECT_FALSE(load_topology_file(data("nvlink4_missing_pair.json")).all_nvlink());
}

TEST(Topology, DetectWithoutGpuIsEmptyNotACrash) {
  // On CI there is no GPU and no driver: detection must report nothing rather than throw or crash.
  Topology t = detect_local_machine();
  EXPECT_GE(t.world_size(), 0);
  EXPECT_EQ(static_cast<int>(t.nvlink.size()), t.world_size());
}
