#include "memory/vmm_api.h"

namespace customar::detail {

const VmmApi& vmm_api() {
  static const VmmApi api = [] {
    VmmApi a;
    bind_driver_entry("cuDeviceGet", &a.device_get, &a.missing);
    bind_driver_entry("cuDeviceGetAttribute", &a.device_attribute, &a.missing);
    bind_driver_entry("cuMemGetAllocationGranularity", &a.granularity, &a.missing);
    bind_driver_entry("cuMemCreate", &a.create, &a.missing);
    bind_driver_entry("cuMemRelease", &a.release, &a.missing);
    bind_driver_entry("cuMemExportToShareableHandle", &a.export_handle, &a.missing);
    bind_driver_entry("cuMemImportFromShareableHandle", &a.import_handle, &a.missing);
    bind_driver_entry("cuMemAddressReserve", &a.reserve, &a.missing);
    bind_driver_entry("cuMemAddressFree", &a.address_free, &a.missing);
    bind_driver_entry("cuMemMap", &a.map, &a.missing);
    bind_driver_entry("cuMemUnmap", &a.unmap, &a.missing);
    bind_driver_entry("cuMemSetAccess", &a.set_access, &a.missing);
    return a;
  }();
  return api;
}

}  // namespace customar::detail
