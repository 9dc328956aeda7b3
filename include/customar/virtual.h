// Virtual ranks: N ranks as N threads of this process on one GPU, so that every world size (2..8) runs the real
// kernels on a machine with one GPU. For correctness, not speed: the ranks share one GPU's SMs and memory, so NVLink
// latency and cross-GPU memory ordering are out of sight (docs/virtual-ranks.md says what it can and cannot see).
//
// Inside a virtual world the Communicator works as on a real machine of the same shape (N GPUs with NVLink between
// every pair, unless CUSTOMAR_TOPO_FILE says otherwise): the same dispatcher decisions, thresholds, crossover and
// fallbacks. What differs: peer memory is plain device memory of the one context, kernel grids are capped so that all
// N ranks' kernels are resident at once, and the calls that would go to NCCL (which cannot run several ranks on one
// GPU) go to an in-process reference all-reduce (sum in fixed rank order, same result on every rank).
#pragma once

#include <cuda_runtime_api.h>

#include <functional>
#include <string>
#include <vector>

#include "customar/group.h"
#include "customar/launcher.h"

namespace customar {

/// How the ranks of a virtual world share the GPU's SMs.
enum class SmPartition : int {
  kAuto = 0,           ///< green contexts where the driver offers them, else capped grids
  kGreenContexts = 1,  ///< each rank in a green context of its own SMs; creation fails if the driver cannot
  kCappedGrids = 2,    ///< every rank on all SMs, each kernel's grid capped to a share of them
};

struct VirtualOptions {
  /// The CUDA device every rank runs on.
  int device = 0;
  SmPartition partition = SmPartition::kAuto;
};

/// Runs fn(group) on `nranks` threads of this process (rank r on the r-th), all on `options.device`, and waits for
/// every one. Each thread starts with the rank's context current (its green context, or the device's primary
/// context) and should enqueue its work on virtual_stream(group). The return value of fn is the rank's exit code; an
/// exception is printed and gives 1; a rank that ends makes the others' pending and later group calls fail with a
/// TimeoutError naming it. nranks must be 1..8. Throws InvalidArgument for a bad rank count or device, CudaError
/// when the device cannot be used, and for SmPartition::kGreenContexts when the driver cannot make the partition.
/// Not reentrant: fn must not start another virtual world. A Communicator of a virtual world keeps each rank's eager
/// calls at most 8 ahead of the GPU; fn should not queue hundreds of its own kernels between two collective calls
/// without synchronising its stream (docs/virtual-ranks.md, "Queue depth").
std::vector<RankExit> launch_virtual(int nranks, const std::function<int(Group&)>& fn,
                                     const VirtualOptions& options = {});

/// The stream of this rank of a virtual world: created in the rank's green context (so that its kernels run on the
/// rank's SMs), or a non-blocking stream of the device. Owned by the world; valid while fn runs. Throws
/// InvalidArgument for a group that launch_virtual() did not make.
cudaStream_t virtual_stream(const Group& group);

/// How the virtual world of `group` shares the GPU, e.g. "8 green contexts of 16 SMs" or "capped grids on 132 SMs
/// (green contexts unavailable: ...)". Throws InvalidArgument like virtual_stream().
std::string virtual_partition(const Group& group);

}  // namespace customar
