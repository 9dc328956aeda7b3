// The add + RMSNorm kernel that follows the all-reduce on the unfused paths (V1, NCCL, and V2 where fusing does not
// pay), precompiled by nvcc for every architecture the library is built for: no run-time compiler, no framework.
#pragma once

#include <cuda_runtime_api.h>

#include "customar/types.h"
#include "kernels/rows.h"

namespace customar::detail {

/// Enqueues the norm kernel on `stream` for `call` (call.in holds the all-reduced sums; the arithmetic is
/// kernels/device/rmsnorm.cuh's): `grid` blocks of row_threads(row_vecs(call.hidden)) threads, each owning rows
/// blockIdx.x, + grid, ...; with programmatic dependent launch where `pdl`. Throws InvalidArgument for a dtype other
/// than fp16 / bf16, CudaError when the launch fails.
void launch_add_rmsnorm(const NormCall& call, DataType dtype, unsigned grid, bool pdl, cudaStream_t stream);

/// The kernel launch_add_rmsnorm() runs for `dtype` (fp16 / bf16), for loading it into a context up front.
const void* add_rmsnorm_kernel(DataType dtype);

}  // namespace customar::detail
