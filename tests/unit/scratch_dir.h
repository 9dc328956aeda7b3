// For tests that plant files: a scratch directory per test case, named after the test and the process (ctest runs
// cases side by side) and emptied first; and a way to make a file another user's.
#pragma once

#include <gtest/gtest.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <string>

namespace customar::testing_support {

/// "<gtest temp dir>/customar_<tag>_<pid>_<test name>", removed. With `create`, made again, mode 0700.
inline std::string scratch_dir(const std::string& tag, bool create) {
  std::string dir = testing::TempDir() + "/customar_" + tag + "_" + std::to_string(getpid()) + "_" +
                    testing::UnitTest::GetInstance()->current_test_info()->name();
  std::filesystem::remove_all(dir);
  if (create) {
    std::filesystem::create_directories(dir);
    chmod(dir.c_str(), 0700);
  }
  return dir;
}

/// Gives `path` to the user "nobody". False when this process may not (only root may give a file away): the caller
/// then skips with GTEST_SKIP.
inline bool give_to_nobody(const std::string& path) {
  if (geteuid() != 0) return false;
  const passwd* pw = getpwnam("nobody");
  return chown(path.c_str(), pw != nullptr ? pw->pw_uid : 65534, static_cast<gid_t>(-1)) == 0;
}

}  // namespace customar::testing_support
