// Every kernel the custom backends launch, one record each: which algorithm it runs, its device body
// (kernels/device/), how it takes the handle, and whether V1 precompiles it. The plan names a record; V2 generates
// one NVRTC entry point per record and dtype from this table, V1 instantiates the records it has.
#pragma once

#include "customar/types.h"

namespace customar::detail {

/// The kernel a call runs. kNone: the call goes to NCCL (or copies, for world size 1).
enum class Kernel : int {
  kPushOneBlock = 0,
  kPushMultiBlock,
  kPushWide,
  kOneshotPull,
  kTwoshot,
  kPushAddRmsNorm,
  kTwoshotAddRmsNorm,
  kSymmetricPull,
  kSymmetricTwoshot,
  kSymmetricTwoshotPush,
  kNone
};

struct KernelVariant {
  Kernel id;
  Algo algo;
  const char* name;  ///< entry point customar_v2_<name>_<dtype>
  const char* body;  ///< the device template it instantiates
  /// `const __grid_constant__ DeviceHandle` (the parameter stays in the constant bank) instead of a by-value handle.
  /// The pull indexes regions[] at run time and is faster this way at every size (8-16 MiB by 1.5 us); the push and
  /// two-shot are 0.1-0.2 us faster by value below 1 MiB, where the compiler's copy of the handle to local memory
  /// pays its constant-bank misses during the PDL wait (both measured on 2x H200).
  bool grid_constant;
  bool in_v1;  ///< precompiled by nvcc into V1 (V1 has no push)
};

inline constexpr KernelVariant kKernelVariants[] = {
    {Kernel::kPushOneBlock, Algo::kOneshotPush, "push_one_block", "push_one_block_body", false, false},
    {Kernel::kPushMultiBlock, Algo::kOneshotPush, "push_multi_block", "push_multi_block_body", false, false},
    {Kernel::kPushWide, Algo::kOneshotPush, "push_wide", "push_wide_body", false, false},
    {Kernel::kOneshotPull, Algo::kOneshotPull, "oneshot_pull", "oneshot_pull_body", true, true},
    {Kernel::kTwoshot, Algo::kTwoshot, "twoshot", "twoshot_body", false, true},
    // All-reduce + residual add + RMSNorm (kernels/device/push_add_rmsnorm.cuh, twoshot_add_rmsnorm.cuh): entry
    // points taking (DeviceHandle, NormCall) instead of the all-reduce's pointers (takes_norm_call() below). By-value
    // handle, as the kernels they extend.
    {Kernel::kPushAddRmsNorm, Algo::kOneshotPush, "push_add_rmsnorm", "push_add_rmsnorm_body", false, false},
    {Kernel::kTwoshotAddRmsNorm, Algo::kTwoshot, "twoshot_add_rmsnorm", "twoshot_add_rmsnorm_body", false, false},
    // On symmetric inputs (kernels/device/symmetric.cuh), V2 only. __grid_constant__ as the pull: their barriers and
    // the all-gather index regions[] at run time.
    {Kernel::kSymmetricPull, Algo::kOneshotPull, "symmetric_pull", "symmetric_pull_body", true, false},
    {Kernel::kSymmetricTwoshot, Algo::kTwoshot, "symmetric_twoshot", "symmetric_twoshot_body", true, false},
    {Kernel::kSymmetricTwoshotPush, Algo::kTwoshot, "symmetric_twoshot_push", "symmetric_twoshot_push_body", true,
     false},
};
inline constexpr int kKernelCount = static_cast<int>(sizeof(kKernelVariants) / sizeof(kKernelVariants[0]));
static_assert(kKernelCount == static_cast<int>(Kernel::kNone), "one record per Kernel value, in enum order");

/// The record of `k` (k != kNone).
constexpr const KernelVariant& kernel_variant(Kernel k) { return kKernelVariants[static_cast<int>(k)]; }

/// True for the records whose entry points take (DeviceHandle, NormCall) (kernels/rows.h): the fused all-reduce +
/// residual add + RMSNorm kernels, launched by Kernels::launch_norm().
constexpr bool takes_norm_call(Kernel k) { return k == Kernel::kPushAddRmsNorm || k == Kernel::kTwoshotAddRmsNorm; }

}  // namespace customar::detail
