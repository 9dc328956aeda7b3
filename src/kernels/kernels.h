// The one seam between a planned call and the GPU: V1 (precompiled) and V2 (run-time compiled) kernels behind one
// interface that launches a Plan (dispatch/plan.h) as it is. The host object owns the loaded code; the kernels see
// only the plain DeviceHandle.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "customar/types.h"
#include "dispatch/plan.h"
#include "kernels/handle.h"
#include "kernels/rows.h"

namespace customar::detail {

class Kernels {
 public:
  virtual ~Kernels() = default;
  /// Enqueues `plan` (plan.kernel != kNone) for `dtype` on `stream`: the kernel plan.kernel names, on plan.grid x
  /// plan.block, with PDL where plan.pdl. `in` and `out` need element alignment only. Throws CudaError.
  virtual void launch(const Plan& plan, const DeviceHandle& h, const void* in, void* out, DataType dtype,
                      cudaStream_t stream) const = 0;
  /// Enqueues a fused all-reduce + residual add + RMSNorm plan (takes_norm_call(plan.kernel)) of `call` for `dtype`
  /// (fp16 / bf16) on `stream`, as launch() does. Throws CudaError; InvalidArgument from kernels that have no such
  /// kernel (the default: V1, and kernels built outside the product).
  virtual void launch_norm(const Plan& plan, const DeviceHandle& h, const NormCall& call, DataType dtype,
                           cudaStream_t stream) const;
  /// Threads per SM a push grid of `kernel` may use for `dtype` (a custom dtype): what is resident at once on the
  /// current device (see LaunchLimits::push_sm_threads).
  virtual int push_sm_threads(Kernel kernel, DataType dtype) const = 0;
  /// Where the code came from, for the communicator's reason(), e.g. "V2 kernels compiled in 812 ms".
  virtual std::string describe() const = 0;
};

/// The precompiled kernels (one-shot pull and two-shot, sm_80 and sm_90) of one world size, launched without PDL,
/// loaded into the current context. Throws InvalidArgument for a world size outside 2..8.
std::unique_ptr<Kernels> make_v1_kernels(int world);

/// The V2 kernels of every record in kKernelVariants for one (world size, architecture), compiled by NVRTC (or
/// loaded from the kernel cache) from the built-in device source. Throws Error on any failure.
std::unique_ptr<Kernels> make_v2_kernels(int world, int sm);

/// The same from another device source (the built-in text is v2_device_source()). For the lab's A/B runs of kernel
/// variants: the product never calls it.
std::unique_ptr<Kernels> make_v2_kernels_from_source(int world, int sm, const std::string& device_source);

/// Loads `kernel` (a __global__ function or a cudaKernel_t) into the current context now instead of at its first
/// launch. Under lazy module loading (CUDA's default) a first launch can wait for the context's running kernels, and
/// a kernel that spins until a peer kernel of the same context arrives then waits forever: virtual ranks share one
/// context. Throws CudaError.
void load_into_context(const void* kernel);

/// The launch limits of `kernels` on a grid of `max_blocks` agreed blocks.
LaunchLimits launch_limits(const Kernels& kernels, int max_blocks, bool pdl);

}  // namespace customar::detail
