// The precompiled (V1) kernels, one launcher per algorithm file: a plan, raw pointers and a stream in.
#pragma once

#include <cuda_runtime_api.h>

#include "customar/types.h"
#include "dispatch/plan.h"
#include "kernels/handle.h"

namespace customar::detail {

/// One-shot pull: copy `in` into the local staging buffer, barrier per block, every rank reads every rank's
/// staging buffer and reduces all of it in fixed rank order.
void launch_v1_oneshot_pull(const Plan& plan, const DeviceHandle& h, const void* in, void* out, DataType dtype,
                            cudaStream_t stream);

/// Two-shot: copy in, barrier, each rank reduces its 1/world part from every staging buffer into its own, barrier,
/// each rank gathers every part.
void launch_v1_twoshot(const Plan& plan, const DeviceHandle& h, const void* in, void* out, DataType dtype,
                       cudaStream_t stream);

/// The kernels the two launchers run for a world size and dtype (for loading them up front).
const void* v1_oneshot_pull_kernel(int world, DataType dtype);
const void* v1_twoshot_kernel(int world, DataType dtype);

}  // namespace customar::detail
