// Driver calls' errors name the call, the CUresult and where it failed, with or without a driver on the machine
// (without one, the name is "an unknown CUresult" and the number still tells it).
#include <gtest/gtest.h>

#include "common/driver.h"
#include "customar/error.h"

using namespace customar;

TEST(DriverError, NamesTheCallAndTheNumber) {
  const std::string text = detail::driver_error("cuMemCreate(4096 bytes)", CUDA_ERROR_OUT_OF_MEMORY);
  EXPECT_EQ(text.rfind("cuMemCreate(4096 bytes) failed: ", 0), 0u) << text;
  EXPECT_NE(text.find("(2)"), std::string::npos) << text;
}

TEST(DriverError, SuccessDoesNotThrow) { EXPECT_NO_THROW(CUSTOMAR_DRIVER_CHECK(CUDA_SUCCESS, "cuMemMap")); }

TEST(DriverError, FailureThrowsCudaErrorWithFileAndLine) {
  try {
    CUSTOMAR_DRIVER_CHECK(CUDA_ERROR_INVALID_VALUE, "cuMemMap(buffer)");
    FAIL() << "no exception";
  } catch (const CudaError& e) {
    const std::string text = e.what();
    EXPECT_NE(text.find("cuMemMap(buffer) failed: "), std::string::npos) << text;
    EXPECT_NE(text.find("test_driver.cpp:"), std::string::npos) << text;
  }
}
