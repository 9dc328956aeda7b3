#include "virtual/green_contexts.h"

#include <cuda.h>

#include "common/check.h"
#include "common/driver.h"
#include "common/log.h"

namespace customar::detail {

namespace {

// The driver entry points green contexts need, looked up once.
struct GreenApi {
  decltype(&cuDeviceGet) device_get = nullptr;
  decltype(&cuDeviceGetDevResource) get_resource = nullptr;
  decltype(&cuDevSmResourceSplitByCount) split = nullptr;
  decltype(&cuDevResourceGenerateDesc) generate_desc = nullptr;
  decltype(&cuGreenCtxCreate) create = nullptr;
  decltype(&cuGreenCtxDestroy) destroy = nullptr;
  decltype(&cuCtxFromGreenCtx) to_context = nullptr;
  decltype(&cuGreenCtxStreamCreate) stream_create = nullptr;
  decltype(&cuStreamDestroy) stream_destroy = nullptr;
  decltype(&cuCtxSetCurrent) set_current = nullptr;
  std::string missing;  // the first entry point the driver lacks
};

const GreenApi& green_api() {
  static const GreenApi api = [] {
    GreenApi a;
    bind_driver_entry("cuDeviceGet", &a.device_get, &a.missing);
    bind_driver_entry("cuDeviceGetDevResource", &a.get_resource, &a.missing);
    bind_driver_entry("cuDevSmResourceSplitByCount", &a.split, &a.missing);
    bind_driver_entry("cuDevResourceGenerateDesc", &a.generate_desc, &a.missing);
    bind_driver_entry("cuGreenCtxCreate", &a.create, &a.missing);
    bind_driver_entry("cuGreenCtxDestroy", &a.destroy, &a.missing);
    bind_driver_entry("cuCtxFromGreenCtx", &a.to_context, &a.missing);
    bind_driver_entry("cuGreenCtxStreamCreate", &a.stream_create, &a.missing);
    bind_driver_entry("cuStreamDestroy", &a.stream_destroy, &a.missing);
    bind_driver_entry("cuCtxSetCurrent", &a.set_current, &a.missing);
    return a;
  }();
  return api;
}

}  // namespace

std::unique_ptr<GreenPartition> GreenPartition::create(int device, int n, std::string* why) {
  const GreenApi& api = green_api();
  if (!api.missing.empty()) {
    *why = "the driver has no " + api.missing;
    return nullptr;
  }
  CUSTOMAR_CUDA_CHECK(cudaSetDevice(device));
  CUSTOMAR_CUDA_CHECK(cudaFree(nullptr));  // the primary context, which every green context retains
  CUdevice dev = 0;
  CUdevResource all{};
  CUresult r = api.device_get(&dev, device);
  if (r == CUDA_SUCCESS) r = api.get_resource(dev, &all, CU_DEV_RESOURCE_TYPE_SM);
  if (r != CUDA_SUCCESS) {
    *why = driver_error("cuDeviceGetDevResource", r);
    return nullptr;
  }
  // Equal partitions in the driver's granularity: the largest multiple of the alignment that n of them fit in.
  const unsigned align = all.sm.smCoscheduledAlignment > 0 ? all.sm.smCoscheduledAlignment : 1;
  const unsigned each = all.sm.smCount / static_cast<unsigned>(n) / align * align;
  if (each == 0 || each < all.sm.minSmPartitionSize) {
    *why = std::to_string(all.sm.smCount) + " SMs do not split into " + std::to_string(n) + " partitions of at least " +
           std::to_string(all.sm.minSmPartitionSize);
    return nullptr;
  }
  std::vector<CUdevResource> parts(n);
  unsigned groups = static_cast<unsigned>(n);
  CUdevResource rest{};
  r = api.split(parts.data(), &groups, &all, &rest, 0, each);
  if (r != CUDA_SUCCESS || groups != static_cast<unsigned>(n)) {
    *why = r != CUDA_SUCCESS ? driver_error("cuDevSmResourceSplitByCount", r)
                             : "the driver made " + std::to_string(groups) + " partitions of " + std::to_string(each) +
                                   " SMs, not " + std::to_string(n);
    return nullptr;
  }
  std::unique_ptr<GreenPartition> p(new GreenPartition);
  p->sms_each_ = static_cast<int>(parts[0].sm.smCount);
  for (int i = 0; i < n; ++i) {
    CUdevResourceDesc desc = nullptr;
    CUgreenCtx g = nullptr;
    CUcontext ctx = nullptr;
    CUstream s = nullptr;
    r = api.generate_desc(&desc, &parts[i], 1);
    if (r == CUDA_SUCCESS) r = api.create(&g, desc, dev, CU_GREEN_CTX_DEFAULT_STREAM);
    if (r == CUDA_SUCCESS) p->green_.push_back(g);
    if (r == CUDA_SUCCESS) r = api.to_context(&ctx, g);
    if (r == CUDA_SUCCESS) r = api.stream_create(&s, g, CU_STREAM_NON_BLOCKING, 0);
    if (r != CUDA_SUCCESS) {
      *why = driver_error("creating green context " + std::to_string(i), r);
      return nullptr;  // the destructor releases what was made
    }
    p->contexts_.push_back(ctx);
    p->streams_.push_back(reinterpret_cast<cudaStream_t>(s));
  }
  CUSTOMAR_INFO("INIT", "virtual ranks: %d green contexts of %d SMs on device %d", n, p->sms_each_, device);
  return p;
}

GreenPartition::~GreenPartition() {
  const GreenApi& api = green_api();
  for (cudaStream_t s : streams_) (void)api.stream_destroy(reinterpret_cast<CUstream>(s));
  for (void* g : green_) (void)api.destroy(static_cast<CUgreenCtx>(g));
}

void GreenPartition::make_current(int r) const {
  const CUresult res = green_api().set_current(static_cast<CUcontext>(contexts_[r]));
  if (res != CUDA_SUCCESS) throw CudaError(driver_error("cuCtxSetCurrent(green context)", res));
}

}  // namespace customar::detail
