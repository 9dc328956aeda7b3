// DeviceGuard's two modes, on any machine: a device that cannot be made current (none on a machine without a GPU,
// -1 on one with) makes the throwing guard throw CudaError naming the call and leaves the nothrow guard not ok, the
// caller's current device unchanged either way.
#include <gtest/gtest.h>

#include <new>
#include <string>

#include "common/device_guard.h"
#include "customar/error.h"

namespace customar::detail {
namespace {

int current_device_or(int fallback) {
  int d = fallback;
  if (cudaGetDevice(&d) != cudaSuccess) {
    (void)cudaGetLastError();
    return fallback;
  }
  return d;
}

TEST(DeviceGuard, ThrowsNamingTheCallWhenTheDeviceCannotBeMadeCurrent) {
  const int before = current_device_or(-2);
  try {
    DeviceGuard g(-1);
    FAIL() << "DeviceGuard(-1) did not throw";
  } catch (const CudaError& e) {
    const std::string what = e.what();
    EXPECT_TRUE(what.find("cudaGetDevice") != std::string::npos || what.find("cudaSetDevice") != std::string::npos)
        << what;
  }
  (void)cudaGetLastError();
  EXPECT_EQ(current_device_or(-2), before);
}

TEST(DeviceGuard, NothrowModeReportsFailureAndLeavesTheDeviceAlone) {
  const int before = current_device_or(-2);
  {
    DeviceGuard g(-1, std::nothrow);
    EXPECT_FALSE(g.ok());
  }
  EXPECT_EQ(current_device_or(-2), before);
}

TEST(DeviceGuard, NothrowModeOnTheCurrentDeviceIsOk) {
  int d = 0;
  if (cudaGetDevice(&d) != cudaSuccess) {
    (void)cudaGetLastError();
    GTEST_SKIP() << "no GPU: no device can be current";
  }
  DeviceGuard g(d, std::nothrow);
  EXPECT_TRUE(g.ok());
  EXPECT_EQ(current_device_or(-2), d);
}

}  // namespace
}  // namespace customar::detail
