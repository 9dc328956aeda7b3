#include "common/driver.h"

#include "common/check.h"
#include "customar/error.h"

namespace customar::detail {

std::string driver_error(const std::string& call, CUresult result) {
  static const auto error_name = [] {
    decltype(&cuGetErrorName) fn = nullptr;
    std::string missing;
    bind_driver_entry("cuGetErrorName", &fn, &missing);
    return fn;
  }();
  const char* name = nullptr;
  if (error_name == nullptr || error_name(result, &name) != CUDA_SUCCESS || name == nullptr)
    name = "an unknown CUresult";
  return call + " failed: " + name + " (" + std::to_string(static_cast<int>(result)) + ")";
}

void check_driver(CUresult result, const std::string& call, const char* file, int line) {
  if (result == CUDA_SUCCESS) return;
  throw CudaError(driver_error(call, result) + " at " + where(file, line));
}

}  // namespace customar::detail
