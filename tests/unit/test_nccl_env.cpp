// The process's NCCL when CUSTOMAR_NCCL_LIBRARY names one: this binary runs with it set to the usable stand-in
// (tests/unit/CMakeLists.txt), and no NCCL is loaded before the first resolution.
#include <gtest/gtest.h>

#include <string>

#include "common/check.h"
#include "customar/error.h"
#include "nccl/nccl_loader.h"

using namespace customar;
using namespace customar::detail;

namespace {
const std::string kDir = CUSTOMAR_FAKE_NCCL_DIR;
}

TEST(NcclEnv, ProcessTakesTheLibraryTheVariableNamesBeforeTheWheel) {
  set_python_nccl_library(kDir + "/libfake_nccl_old.so");  // comes after the variable: not even tried
  NcclLibrary lib = nccl_library();
  ASSERT_TRUE(lib.usable) << lib.error();
  EXPECT_EQ(lib.rule, NcclRule::kEnv);
  EXPECT_EQ(lib.api.path, kDir + "/libfake_nccl_ok.so");
  EXPECT_EQ(lib.describe().find("libfake_nccl_old"), std::string::npos) << lib.describe();
}

TEST(NcclEnv, FirstUsableResolutionIsKeptForTheProcess) {
  EXPECT_EQ(resolved_nccl_api(), nullptr);
  const NcclApi& api = nccl_api();
  EXPECT_EQ(resolved_nccl_api(), &api);
  EXPECT_EQ(&nccl_api(), &api);
  EXPECT_EQ(api.version, nccl_version_code(2, 28, 3));
}

TEST(NcclEnv, FailedCallNamesTheErrorAndTheLibrarysText) {
  (void)nccl_api();
  try {
    CUSTOMAR_NCCL_CHECK(kNcclInvalidUsage);
    FAIL() << "no error";
  } catch (const NcclError& e) {
    EXPECT_NE(std::string(e.what()).find("kNcclInvalidUsage failed: ncclInvalidUsage (fake NCCL error) at"),
              std::string::npos)
        << e.what();
  }
}
