// CUDA driver calls without linking libcuda: entry points come from the runtime's cudaGetDriverEntryPointByVersion,
// at the version this runtime was built against, and their failures are named as the runtime's are.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <string>

namespace customar::detail {

/// Sets `*fn` to the driver's entry point `name`; when the driver lacks it, leaves `*fn` alone and, if `*missing` is
/// empty, names it there. Never throws.
template <typename F>
void bind_driver_entry(const char* name, F* fn, std::string* missing) {
  void* p = nullptr;
  cudaDriverEntryPointQueryResult status{};
  if (cudaGetDriverEntryPointByVersion(name, &p, CUDART_VERSION, cudaEnableDefault, &status) != cudaSuccess ||
      status != cudaDriverEntryPointSuccess || p == nullptr) {
    (void)cudaGetLastError();
    if (missing->empty()) *missing = name;
    return;
  }
  *fn = reinterpret_cast<F>(p);
}

/// "<call> failed: CUDA_ERROR_... (<number>)"; "an unknown CUresult" where the driver cannot name it.
std::string driver_error(const std::string& call, CUresult result);

/// Throws CudaError "driver_error(call, result) at <file:line>" unless `result` is CUDA_SUCCESS.
void check_driver(CUresult result, const std::string& call, const char* file, int line);

}  // namespace customar::detail

/// CUSTOMAR_CUDA_CHECK for a driver call made through an entry point; `what` names it (with the arguments that matter).
#define CUSTOMAR_DRIVER_CHECK(call, what) ::customar::detail::check_driver((call), (what), __FILE__, __LINE__)
