// The on-disk kernel cache against entries and directories another local user could have planted: loading a
// foreign CUBIN is code execution on the GPU, and an entry that blocks would hang every process. Exercised through
// DiskCache with small payloads (no compile needed).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "jit/cache.h"
#include "scratch_dir.h"

namespace fs = std::filesystem;
using namespace customar::detail;

namespace {

const std::vector<char> kPayload = {'\x7f', 'E', 'L', 'F', 1, 2, 3, 4};

class JitCache : public testing::Test {
 protected:
  void SetUp() override {
    dir_ = customar::testing_support::scratch_dir("jit_cache", false);
    key_ = make_cache_key({"module", testing::UnitTest::GetInstance()->current_test_info()->name()});
  }
  void TearDown() override {
    fs::remove_all(dir_);
    fs::remove_all(dir_ + "-link");
  }
  // Stores a valid entry, so that only what the test then changes can make a load fail.
  std::string stored_entry() {
    std::string why;
    EXPECT_TRUE(DiskCache(dir_).store(key_, kPayload, &why)) << why;
    return DiskCache(dir_).path_of(key_);
  }
  CacheState load(const std::string& dir, std::string* why) const {
    std::vector<char> out;
    return DiskCache(dir).load(key_, &out, why);
  }
  std::string dir_;
  CacheKey key_;
};

}  // namespace

TEST_F(JitCache, AStoredEntryLoads) {
  stored_entry();
  std::vector<char> out;
  std::string why;
  EXPECT_EQ(DiskCache(dir_).load(key_, &out, &why), CacheState::kHit) << why;
  EXPECT_EQ(out, kPayload);
}

TEST_F(JitCache, AMissingDirectoryIsAMiss) {
  std::string why;
  EXPECT_EQ(load(dir_, &why), CacheState::kMiss);
}

// The load runs in a child with an alarm, so that a loader that blocks fails this test instead of hanging it.
TEST_F(JitCache, AFifoEntryIsRejectedNotWaitedOn) {
  std::string path = stored_entry();
  fs::remove(path);
  ASSERT_EQ(mkfifo(path.c_str(), 0600), 0);
  pid_t pid = fork();
  if (pid == 0) {
    alarm(5);
    std::string why;
    _exit(load(dir_, &why) == CacheState::kRejected && why.find("FIFO") != std::string::npos ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_FALSE(WIFSIGNALED(status)) << "the load blocked on the FIFO (killed by signal " << WTERMSIG(status) << ")";
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

TEST_F(JitCache, AnEntryInALinkedDirectoryIsRejected) {
  stored_entry();
  fs::create_directory_symlink(dir_, dir_ + "-link");
  std::string why;
  EXPECT_EQ(load(dir_ + "-link", &why), CacheState::kRejected);
  EXPECT_NE(why.find("symbolic link"), std::string::npos) << why;
}

TEST_F(JitCache, AnEntryInADirectoryOthersCanWriteIsRejected) {
  stored_entry();
  chmod(dir_.c_str(), 0777);
  std::string why;
  EXPECT_EQ(load(dir_, &why), CacheState::kRejected);
  EXPECT_NE(why.find("writable by group or others"), std::string::npos) << why;
  EXPECT_FALSE(DiskCache(dir_).store(key_, kPayload, &why)) << "stored into a directory others can write";
}

TEST_F(JitCache, AnEntryOthersCanWriteIsRejected) {
  chmod(stored_entry().c_str(), 0666);
  std::string why;
  EXPECT_EQ(load(dir_, &why), CacheState::kRejected);
  EXPECT_NE(why.find("writable by group or others"), std::string::npos) << why;
}

TEST_F(JitCache, AnEntryOfAnotherUserIsRejected) {
  if (!customar::testing_support::give_to_nobody(stored_entry()))
    GTEST_SKIP() << "giving a file to another user needs root";
  std::string why;
  EXPECT_EQ(load(dir_, &why), CacheState::kRejected);
  EXPECT_NE(why.find("not by this user"), std::string::npos) << why;
}

TEST_F(JitCache, ALinkedEntryIsRejected) {
  std::string path = stored_entry();
  fs::rename(path, dir_ + "/real");
  fs::create_symlink(dir_ + "/real", path);
  std::string why;
  EXPECT_EQ(load(dir_, &why), CacheState::kRejected);
  EXPECT_NE(why.find("symbolic link"), std::string::npos) << why;
}

TEST_F(JitCache, AStoreNeverWritesThroughALinkedEntry) {
  std::string path = stored_entry();
  std::string victim = dir_ + "-victim";
  std::ofstream(victim) << "someone else's";
  fs::remove(path);
  fs::create_symlink(victim, path);
  std::string why;
  EXPECT_FALSE(DiskCache(dir_).store(key_, kPayload, &why));
  std::ifstream f(victim);
  EXPECT_EQ(std::string(std::istreambuf_iterator<char>(f), {}), "someone else's");
  fs::remove(victim);
  int others = 0;
  for (auto& e : fs::directory_iterator(dir_)) others += e.path() != path;
  EXPECT_EQ(others, 0) << "a temporary file was left behind";
}
