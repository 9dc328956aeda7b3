// The CUDA driver's virtual memory management calls (cuMem*), looked up once (common/driver.h: customar links no
// libcuda). Multicast objects (cuMulticast*) are deliberately absent: NVLink multicast is never used.
#pragma once

#include <cuda.h>

#include <string>

#include "common/driver.h"

namespace customar::detail {

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
  /// The first entry point the driver lacks; empty when every one was found.
  std::string missing;
};

/// The entry points, looked up on first use (thread-safe). Never throws: a missing one is named in `missing`.
const VmmApi& vmm_api();

}  // namespace customar::detail
