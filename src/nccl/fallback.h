// The path of every call the custom kernels do not take. On a real machine it is NCCL (nccl/nccl_comm.h); in a
// virtual world (threads on one GPU, which NCCL cannot serve) it is the in-process reference all-reduce
// (virtual/reference.h). The dispatcher's choices are the same either way.
#pragma once

#include <cuda_runtime_api.h>

#include <string>

#include "customar/types.h"

namespace customar::detail {

class Fallback {
 public:
  virtual ~Fallback() = default;
  /// out = sum over ranks of in, for every DataType. Enqueued on `stream`. Throws NcclError / CudaError.
  virtual void all_reduce(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream) = 0;
  /// Returns when the path can serve calls; else throws NcclError("<context>; <why it cannot>").
  virtual void require(const std::string& context) const = 0;
  /// Frees with an abort instead of an orderly destroy: for a group that lost a rank. Called at most once, from the
  /// owner's destructor.
  virtual void abort_on_destroy() = 0;
  /// 0, or the error word of a wait that gave up (the custom backend's encoding, kernels/handle.h): set only by a
  /// path whose kernels wait for peers with customar's bounded waits. Never synchronises.
  virtual int error() const { return 0; }
};

}  // namespace customar::detail
