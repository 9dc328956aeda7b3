// The reference all-reduce of a virtual world: what runs there for every call a real machine would send to NCCL (NCCL
// cannot run several ranks on one GPU). A two-phase exchange through the one context's memory: each rank publishes
// its pointers, reduces its 1/N slice from every rank's input in fixed rank order (float accumulation for the
// floating types, wrapping integer sums as NCCL's), then copies the other slices from their owners, so every rank
// ends with the same bits. Graph-safe (the call state lives on the device) and bounded (a rank that does not arrive
// within CUSTOMAR_TIMEOUT_MS is named through the same error word as the custom kernels').
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "customar/group.h"
#include "nccl/fallback.h"

namespace customar::detail {

/// Collective over a virtual group (as_virtual(group) != nullptr). Throws CudaError / Error on every rank alike.
std::unique_ptr<Fallback> make_reference_all_reduce(Group& group, int device, uint64_t timeout_ns);

}  // namespace customar::detail
