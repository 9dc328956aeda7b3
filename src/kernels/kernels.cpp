#include "kernels/kernels.h"

#include "common/check.h"
#include "customar/error.h"
#include "kernels/v1/launch.h"

namespace customar::detail {

namespace {

class V1Kernels final : public Kernels {
 public:
  explicit V1Kernels(int world) {
    for (DataType d : {DataType::kFloat16, DataType::kBFloat16, DataType::kFloat32}) {
      load_into_context(v1_oneshot_pull_kernel(world, d));
      load_into_context(v1_twoshot_kernel(world, d));
    }
  }
  void launch(const Plan& plan, const DeviceHandle& h, const void* in, void* out, DataType dtype,
              cudaStream_t stream) const override {
    switch (plan.kernel) {
      case Kernel::kOneshotPull:
        launch_v1_oneshot_pull(plan, h, in, out, dtype, stream);
        return;
      case Kernel::kTwoshot:
        launch_v1_twoshot(plan, h, in, out, dtype, stream);
        return;
      default:
        throw InvalidArgument(std::string("V1 has no kernel ") +
                              (plan.kernel == Kernel::kNone ? "none" : kernel_variant(plan.kernel).name));
    }
  }
  int push_sm_threads(Kernel, DataType) const override { return kSafePushThreadsPerSm; }
  std::string describe() const override { return "V1 kernels precompiled"; }
};

}  // namespace

std::unique_ptr<Kernels> make_v1_kernels(int world) { return std::make_unique<V1Kernels>(world); }

void Kernels::launch_norm(const Plan& plan, const DeviceHandle&, const NormCall&, DataType, cudaStream_t) const {
  throw InvalidArgument(std::string("these kernels (") + describe() + ") have no fused all-reduce + RMSNorm kernel " +
                        (plan.kernel == Kernel::kNone ? "none" : kernel_variant(plan.kernel).name));
}

void load_into_context(const void* kernel) {
  cudaFuncAttributes attr{};
  CUSTOMAR_CUDA_CHECK(cudaFuncGetAttributes(&attr, kernel));
}

LaunchLimits launch_limits(const Kernels& kernels, int max_blocks, bool pdl) {
  LaunchLimits l;
  l.max_blocks = max_blocks;
  l.pdl = pdl;
  for (int t = 0; t < 3; ++t) {
    l.push_sm_threads[t][0] = kernels.push_sm_threads(Kernel::kPushMultiBlock, static_cast<DataType>(t));
    l.push_sm_threads[t][1] = kernels.push_sm_threads(Kernel::kPushWide, static_cast<DataType>(t));
  }
  return l;
}

}  // namespace customar::detail
