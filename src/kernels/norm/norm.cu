// The unfused paths' add + RMSNorm kernel: the shared row body (kernels/device/rmsnorm.cuh), precompiled.
#include "common/check.h"
#include "customar/error.h"
#include "kernels/device/rmsnorm.cuh"
#include "kernels/norm/norm.h"

namespace customar::detail {

namespace {

// PDL-aware on every launch: without the launch attribute the wait returns at once. Two 512-thread blocks per SM (at
// most 64 registers a thread): at hidden 4096 a thread holds one vector of a row, and one block per SM would keep too
// few loads in flight to approach memory bandwidth.
template <typename T>
__global__ void __launch_bounds__(kRowMaxThreads, 2) add_rmsnorm_kernel_of(const __grid_constant__ NormCall c) {
  add_rmsnorm_body<T, true>(c);
}

}  // namespace

const void* add_rmsnorm_kernel(DataType dtype) {
  if (dtype == DataType::kFloat16) return reinterpret_cast<const void*>(&add_rmsnorm_kernel_of<f16>);
  if (dtype == DataType::kBFloat16) return reinterpret_cast<const void*>(&add_rmsnorm_kernel_of<bf16>);
  throw InvalidArgument("the add + RMSNorm kernel takes fp16 or bf16, not " + std::string(dtype_name(dtype)));
}

void launch_add_rmsnorm(const NormCall& call, DataType dtype, unsigned grid, bool pdl, cudaStream_t stream) {
  const void* kernel = add_rmsnorm_kernel(dtype);
  cudaLaunchConfig_t cfg{};
  cfg.gridDim = dim3(grid);
  cfg.blockDim = dim3(row_threads(row_vecs(call.hidden)));
  cfg.stream = stream;
  cudaLaunchAttribute attr{};
  attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
  attr.val.programmaticStreamSerializationAllowed = 1;
  cfg.attrs = &attr;
  cfg.numAttrs = pdl ? 1 : 0;
  NormCall c = call;
  void* args[] = {&c};
  CUSTOMAR_CUDA_CHECK(cudaLaunchKernelExC(&cfg, kernel, args));
}

}  // namespace customar::detail
