// The NCCL backend: the fallback that always works, and the path for every call the custom kernels cannot take.
#pragma once

#include <cuda_runtime_api.h>

#include "customar/group.h"
#include "customar/types.h"

namespace customar::detail {

class NcclComm {
 public:
  /// Creates a communicator over `group` (rank 0 makes the unique id, the group carries it), or wraps `external`
  /// (not owned) when it is not null. Collective when creating. Throws NcclError.
  NcclComm(Group& group, int device, ncclComm_t external);
  ~NcclComm();
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  void all_reduce(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream);
  /// Frees an owned communicator with ncclCommAbort instead of ncclCommDestroy: for a group that lost a rank,
  /// where a destroy could wait for it forever. Called at most once, from the owner's destructor.
  void abort_on_destroy() { abort_ = true; }
  ncclComm_t get() const { return comm_; }

 private:
  ncclComm_t comm_ = nullptr;
  bool owned_ = false;
  bool abort_ = false;
};

}  // namespace customar::detail
