#include "nccl/nccl_comm.h"

#include <nccl.h>

#include "common/check.h"
#include "common/log.h"
#include "group/agree.h"

namespace customar::detail {

namespace {
// NCCL's own numbering of its types (nccl.h), indexed by the DataType value.
ncclDataType_t nccl_type(DataType dtype) {
  static constexpr ncclDataType_t kNcclTypes[kDataTypeCount] = {
      ncclFloat16, ncclBfloat16, ncclFloat32, ncclFloat64, ncclInt8,  ncclUint8,
      ncclInt32,   ncclUint32,   ncclInt64,   ncclUint64,  ncclFloat8e4m3, ncclFloat8e5m2};
  (void)dtype_size(dtype);  // throws InvalidArgument for a value outside DataType
  return kNcclTypes[static_cast<int>(dtype)];
}
}  // namespace

NcclComm::NcclComm(Group& group, int device, ncclComm_t external) {
  // Each local step is agreed (group/agree.h) before the next exchange, so a rank that fails here throws together
  // with its peers instead of leaving them waiting in an exchange it never reaches.
  if (external != nullptr) {
    run_step(group, "checking CommOptions::nccl_comm", [&] {
      int n = 0, r = 0;
      CUSTOMAR_NCCL_CHECK(ncclCommCount(external, &n));
      CUSTOMAR_NCCL_CHECK(ncclCommUserRank(external, &r));
      if (n != group.size() || r != group.rank())
        throw InvalidArgument("CommOptions::nccl_comm has rank " + std::to_string(r) + " of " + std::to_string(n) +
                              " but the group has rank " + std::to_string(group.rank()) + " of " +
                              std::to_string(group.size()));
    });
    comm_ = external;
    return;
  }
  ncclUniqueId id{};
  run_step(group, "creating the NCCL unique id", [&] {
    if (group.rank() == 0) CUSTOMAR_NCCL_CHECK(ncclGetUniqueId(&id));
  });
  id = all_gather_value(group, id)[0];
  run_step(group, "ncclCommInitRank",
           [&] { CUSTOMAR_NCCL_CHECK(ncclCommInitRank(&comm_, group.size(), id, group.rank())); });
  owned_ = true;
  CUSTOMAR_INFO("INIT", "NCCL communicator of %d ranks on device %d", group.size(), device);
}

NcclComm::~NcclComm() {
  if (owned_ && comm_ != nullptr) {
    ncclResult_t r = abort_ ? ncclCommAbort(comm_) : ncclCommDestroy(comm_);
    if (r != ncclSuccess) CUSTOMAR_WARN("INIT", "releasing the NCCL communicator: %s", ncclGetErrorString(r));
  }
}

void NcclComm::all_reduce(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream) {
  CUSTOMAR_NCCL_CHECK(ncclAllReduce(in, out, count, nccl_type(dtype), ncclSum, comm_, stream));
}

}  // namespace customar::detail
