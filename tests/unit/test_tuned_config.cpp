// The tuned config decides every rank's thresholds, so it is read only when this user wrote it: a file or directory
// another local user could have planted or changed is ignored (with a warning), never loaded, waited on or failed on.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "config/tune.h"
#include "customar/config.h"
#include "customar/error.h"
#include "scratch_dir.h"

namespace fs = std::filesystem;
using namespace customar;

namespace {

constexpr const char* kZeroThresholds =
    R"({"entries": [{"arch": "hopper", "world_size": 4, "oneshot_push_max": 0, "oneshot_pull_max": 0,
        "custom_max": 0}]})";

class TunedConfig : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing_support::scratch_dir("tuned", true);
    file_ = dir_ + "/tuned-config.json";
  }
  void TearDown() override { fs::remove_all(dir_); }
  void plant(const std::string& text, mode_t mode) const {
    std::ofstream(file_) << text;
    chmod(file_.c_str(), mode);
  }
  std::string dir_, file_;
};

Thresholds some_thresholds() { return Thresholds{1024, 4096, 1 << 20, 2048}; }

}  // namespace

TEST_F(TunedConfig, AFileThisUserWroteIsRead) {
  plant(kZeroThresholds, 0644);
  std::optional<std::string> text = read_tuned_config(file_);
  ASSERT_TRUE(text.has_value());
  EXPECT_EQ(*text, kZeroThresholds);
}

TEST_F(TunedConfig, NoFileOrNoPathIsNothingToLoad) {
  EXPECT_FALSE(read_tuned_config(file_).has_value());
  EXPECT_FALSE(read_tuned_config(dir_ + "/missing-dir/tuned-config.json").has_value());
  EXPECT_FALSE(read_tuned_config("").has_value());
}

TEST_F(TunedConfig, AWorldWritableFileIsIgnored) {
  plant(kZeroThresholds, 0666);
  EXPECT_FALSE(read_tuned_config(file_).has_value());
}

TEST_F(TunedConfig, AFileOfAnotherUserIsIgnored) {
  plant(kZeroThresholds, 0644);
  if (!testing_support::give_to_nobody(file_)) GTEST_SKIP() << "giving a file to another user needs root";
  EXPECT_FALSE(read_tuned_config(file_).has_value());
}

TEST_F(TunedConfig, AFifoIsIgnoredAtOnce) {
  ASSERT_EQ(mkfifo(file_.c_str(), 0600), 0);
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(read_tuned_config(file_).has_value());
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

TEST_F(TunedConfig, ALinkIsIgnored) {
  std::string elsewhere = dir_ + "/elsewhere.json";
  std::ofstream(elsewhere) << kZeroThresholds;
  fs::create_symlink(elsewhere, file_);
  EXPECT_FALSE(read_tuned_config(file_).has_value());
}

TEST_F(TunedConfig, AFileInADirectoryOthersCanWriteIsIgnored) {
  plant(kZeroThresholds, 0644);
  chmod(dir_.c_str(), 0777);
  EXPECT_FALSE(read_tuned_config(file_).has_value());
  chmod(dir_.c_str(), 0700);
  EXPECT_TRUE(read_tuned_config(file_).has_value());
}

TEST_F(TunedConfig, AFileInALinkedDirectoryIsIgnored) {
  plant(kZeroThresholds, 0644);
  std::string link = dir_ + "-link";
  fs::remove_all(link);
  fs::create_directory_symlink(dir_, link);
  EXPECT_FALSE(read_tuned_config(link + "/tuned-config.json").has_value());
  fs::remove(link);
}

TEST_F(TunedConfig, SaveKeepsTheOtherEntriesAndReadsBack) {
  plant(kZeroThresholds, 0644);
  EXPECT_EQ(save_tuned_thresholds(file_, ArchFamily::kHopper, 2, some_thresholds()), file_);
  std::optional<std::string> text = read_tuned_config(file_);
  ASSERT_TRUE(text.has_value());
  Config c = merge_config_json(Config{}, *text, file_);
  EXPECT_EQ(*c.find(ArchFamily::kHopper, 2), some_thresholds());
  ASSERT_NE(c.find(ArchFamily::kHopper, 4), nullptr);
  EXPECT_EQ(c.find(ArchFamily::kHopper, 4)->custom_max, 0u);
  EXPECT_EQ(fs::status(file_).permissions() & (fs::perms::group_write | fs::perms::others_write), fs::perms::none);
}

TEST_F(TunedConfig, SaveNeverWritesThroughALink) {
  std::string victim = dir_ + "/victim";
  std::ofstream(victim) << "someone else's";
  fs::create_symlink(victim, file_);
  EXPECT_THROW(save_tuned_thresholds(file_, ArchFamily::kHopper, 2, some_thresholds()), ConfigError);
  std::ifstream f(victim);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(f), {}), "someone else's");
  EXPECT_TRUE(fs::is_symlink(file_));
}

TEST_F(TunedConfig, SaveRefusesAMalformedFileInsteadOfDroppingIt) {
  plant("{not json", 0644);
  EXPECT_THROW(save_tuned_thresholds(file_, ArchFamily::kHopper, 2, some_thresholds()), ConfigError);
  std::ifstream f(file_);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(f), {}), "{not json");
}
