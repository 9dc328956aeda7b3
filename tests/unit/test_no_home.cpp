// Run with HOME empty (CMake sets it for this binary): with no home and no CUSTOMAR_CACHE_DIR there is no kernel
// cache and no tuned config, rather than a directory under /tmp that every user shares (where another user could
// plant thresholds or entries, or pre-create the directory and so disable caching for good).
#include <gtest/gtest.h>

#include <cstdlib>

#include "common/files.h"
#include "config/tune.h"
#include "customar/config.h"
#include "customar/error.h"
#include "jit/cache.h"

using namespace customar;

namespace {
bool no_home() {
  const char* home = std::getenv("HOME");
  return (home == nullptr || home[0] != '/') && std::getenv("CUSTOMAR_CACHE_DIR") == nullptr;
}
}  // namespace

TEST(NoHome, TheCacheDirectoryIsNone) {
  if (!no_home()) GTEST_SKIP() << "needs HOME empty and CUSTOMAR_CACHE_DIR unset (as ctest runs it)";
  EXPECT_EQ(files::user_cache_dir(), "");
  EXPECT_EQ(tuned_config_path(), "");
}

TEST(NoHome, TheKernelCacheIsOffAndNeverTouchesTmp) {
  if (!no_home()) GTEST_SKIP() << "needs HOME empty and CUSTOMAR_CACHE_DIR unset (as ctest runs it)";
  detail::DiskCache cache;
  EXPECT_FALSE(cache.enabled());
  std::vector<char> out;
  std::string why;
  detail::CacheKey key = detail::make_cache_key({"x"});
  EXPECT_EQ(cache.load(key, &out, &why), detail::CacheState::kMiss);
  EXPECT_FALSE(cache.store(key, {'a'}, &why));
}

TEST(NoHome, TheThresholdsAreTheBuiltInOnes) {
  if (!no_home()) GTEST_SKIP() << "needs HOME empty and CUSTOMAR_CACHE_DIR unset (as ctest runs it)";
  EXPECT_EQ(global_config().source, "built-in");
  EXPECT_THROW(save_tuned_thresholds("", ArchFamily::kHopper, 2, Thresholds{}), ConfigError);
}
