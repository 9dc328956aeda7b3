// CUSTOMAR_TOPO_DUMP_FILE is a diagnostic (ctest points it at topo_dump/target.json in the build tree; each case
// points CUSTOMAR_TOPO_FILE at 8 NVLink GPUs before the first customar call): a dump that cannot be written is a
// warning, the backend choice goes on, no temporary file is left, and nothing at the target but a regular file is ever
// replaced or written through.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "customar/dispatch.h"
#include "customar/launcher.h"

namespace fs = std::filesystem;
using namespace customar;

namespace {

// The dump target from the environment, in an emptied directory of its own.
std::string fresh_target() {
  const char* target = std::getenv("CUSTOMAR_TOPO_DUMP_FILE");
  if (target == nullptr) return "";
  setenv("CUSTOMAR_TOPO_FILE", CUSTOMAR_TEST_DATA "/nvlink8.json", 1);
  fs::remove_all(fs::path(target).parent_path());
  fs::create_directories(fs::path(target).parent_path());
  return target;
}

// Two ranks agree on a backend; 0 when every rank got V2.
void expect_v2_on_every_rank() {
  auto exits = launch(
      2, [](Group& g) { return dispatch_custom_allreduce(g, g.rank()).backend == Backend::kV2 ? 0 : 3; },
      LaunchOptions{60});
  for (const RankExit& e : exits) EXPECT_EQ(e.exit_code, 0) << "rank " << e.rank;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> out;
  for (auto& e : fs::directory_iterator(dir)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST(TopoDump, IsWrittenWhenItCanBe) {
  std::string target = fresh_target();
  if (target.empty()) GTEST_SKIP() << "CUSTOMAR_TOPO_DUMP_FILE is set by ctest";
  expect_v2_on_every_rank();
  std::ifstream f(target);
  EXPECT_NE(std::string(std::istreambuf_iterator<char>(f), {}).find("\"gpus\""), std::string::npos);
  EXPECT_EQ(names_in(fs::path(target).parent_path()), std::vector<std::string>{"target.json"});
}

TEST(TopoDump, ThatCannotBeWrittenIsAWarningAndLeavesNoTemporaryFile) {
  std::string target = fresh_target();
  if (target.empty()) GTEST_SKIP() << "CUSTOMAR_TOPO_DUMP_FILE is set by ctest";
  fs::create_directory(target);  // a directory where the file should go: it cannot be replaced
  expect_v2_on_every_rank();
  EXPECT_TRUE(fs::is_directory(target));
  EXPECT_EQ(names_in(fs::path(target).parent_path()), std::vector<std::string>{"target.json"});
}

TEST(TopoDump, NeverWritesThroughALinkPlantedAtTheTarget) {
  std::string target = fresh_target();
  if (target.empty()) GTEST_SKIP() << "CUSTOMAR_TOPO_DUMP_FILE is set by ctest";
  fs::path victim = fs::path(target).parent_path() / "victim";
  std::ofstream(victim) << "someone else's";
  fs::create_symlink(victim, target);
  expect_v2_on_every_rank();
  std::ifstream f(victim);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(f), {}), "someone else's");
  EXPECT_TRUE(fs::is_symlink(target));
  EXPECT_EQ(names_in(fs::path(target).parent_path()), (std::vector<std::string>{"target.json", "victim"}));
}
