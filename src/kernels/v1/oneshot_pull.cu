// V1 one-shot pull: the shared kernel body (kernels/device/oneshot_pull.cuh), precompiled, without PDL.
#include "common/check.h"
#include "kernels/device/oneshot_pull.cuh"
#include "kernels/v1/dispatch.cuh"
#include "kernels/v1/launch.h"

namespace customar::detail {

namespace {
template <typename T, int W>
__global__ void __launch_bounds__(kThreads)
    oneshot_pull_kernel(const __grid_constant__ DeviceHandle h, const T* in, T* out, size_t nvec, bool in_aligned,
                        bool out_aligned) {
  oneshot_pull_body<T, W, false>(h, in, out, nvec, in_aligned, out_aligned);
}
struct Pick {
  template <typename T, int W>
  static auto get() {
    return &oneshot_pull_kernel<T, W>;
  }
};
}  // namespace

void launch_v1_oneshot_pull(const Plan& plan, const DeviceHandle& h, const void* in, void* out, DataType dtype,
                            cudaStream_t stream) {
  launch_v1_kernel<Pick>(plan, h, in, out, dtype, stream);
}

const void* v1_oneshot_pull_kernel(int world, DataType dtype) { return v1_kernel<Pick>(world, dtype); }

}  // namespace customar::detail
