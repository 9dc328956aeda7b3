// The CUDA driver's virtual memory management calls (cuMem*), looked up once through the runtime's
// cudaGetDriverEntryPointByVersion so that customar links no libcuda. Multicast objects (cuMulticast*) are
// deliberately absent: NVLink multicast is never used.
#pragma once

#include <cuda.h>
#include <cuda_runtime_api.h>

#include <string>

namespace customar::detail {

/// Sets `*fn` to the driver's entry point `name` of the version this runtime was built against; when the driver lacks
/// it, leaves `*fn` alone and, if `*missing` is empty, names it there. Never throws.
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

struct VmmApi {
  decltype(&cuDeviceGet) device_get = nullptr;
  decltype(&cuDeviceGetAttribute) device_attribute = nullptr;
  decltype(&cuMemGetAllocationGranularity) granularity = nullptr;
  decltype(&cuMemCreate) create = nullptr;
  decltype(&cuMemRelease) release = nullptr;
  decltype(&cuMemExportToShareableHandle) export_handle = nullptr;
  decltype(&cuMemImportFromShareableHandle) import_handle = nullptr;
  decltype(&cuMemAddressReserve) reserve = nullptr;
  decltype(&cuMemAddressFree) address_free = nullptr;
  decltype(&cuMemMap) map = nullptr;
  decltype(&cuMemUnmap) unmap = nullptr;
  decltype(&cuMemSetAccess) set_access = nullptr;
  decltype(&cuGetErrorName) error_name = nullptr;
  /// The first entry point the driver lacks; empty when every one was found.
  std::string missing;
};

/// The entry points, looked up on first use (thread-safe). Never throws: a missing one is named in `missing`.
const VmmApi& vmm_api();

/// Throws CudaError "<call> failed: <CUDA_ERROR_...> at <file:line>" unless `result` is CUDA_SUCCESS.
void check_driver(CUresult result, const std::string& call, const char* file, int line);

}  // namespace customar::detail

/// CUSTOMAR_CUDA_CHECK for a driver call made through vmm_api(); `what` names it (with the arguments that matter).
#define CUSTOMAR_DRIVER_CHECK(call, what) ::customar::detail::check_driver((call), (what), __FILE__, __LINE__)
