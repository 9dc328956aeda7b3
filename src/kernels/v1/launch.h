// Precompiled (V1) kernel launchers: raw pointers and a stream in, nothing else.
#pragma once

#include <cuda_runtime_api.h>

#include "customar/types.h"
#include "kernels/handle.h"

namespace customar::detail {

/// Grid size of a one-shot pull or two-shot message: a function of values every rank agrees on (bytes, world,
/// max_blocks) only. The push's shape is push_shape() (kernels/v2/v2_kernels.h).
int v1_grid(Algo algo, size_t bytes, int world, int max_blocks);

/// One-shot pull: copy `in` into the local staging buffer, barrier per block, every rank reads every rank's
/// staging buffer and reduces all of it in fixed rank order. bytes % 16 == 0, bytes <= capacity.
void launch_oneshot_pull(const DeviceHandle& h, const void* in, void* out, size_t count, DataType dtype,
                         cudaStream_t stream);

/// Two-shot: copy in, barrier, each rank reduces its 1/world part from every staging buffer into its own, barrier,
/// each rank gathers every part. Same preconditions as one-shot.
void launch_twoshot(const DeviceHandle& h, const void* in, void* out, size_t count, DataType dtype,
                    cudaStream_t stream);

}  // namespace customar::detail
