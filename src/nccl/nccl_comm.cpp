#include "nccl/nccl_comm.h"

#include <algorithm>
#include <climits>

#include "common/check.h"
#include "common/log.h"
#include "common/serialize.h"
#include "group/agree.h"

namespace customar::detail {

namespace {
// NCCL's own numbering of its types (nccl.h), indexed by the DataType value.
NcclType nccl_type(DataType dtype) {
  static constexpr NcclType kNcclTypes[kDataTypeCount] = {
      NcclType::kFloat16, NcclType::kBfloat16, NcclType::kFloat32,    NcclType::kFloat64,
      NcclType::kInt8,    NcclType::kUint8,    NcclType::kInt32,      NcclType::kUint32,
      NcclType::kInt64,   NcclType::kUint64,   NcclType::kFloat8e4m3, NcclType::kFloat8e5m2};
  (void)dtype_size(dtype);  // throws InvalidArgument for a value outside DataType
  return kNcclTypes[static_cast<int>(dtype)];
}

bool is_fp8(DataType dtype) { return dtype == DataType::kFloat8E4M3 || dtype == DataType::kFloat8E5M2; }
}  // namespace

NcclAgreement agree_nccl(Group& group, const NcclLibrary& local) {
  Writer w;
  w.put<int32_t>(local.usable ? local.api.version : 0).put_string(local.usable ? "" : local.error());
  std::vector<Bytes> all = group.all_gather(w.bytes());
  NcclAgreement a;
  a.usable = true;
  a.min_version = INT_MAX;
  for (int r = 0; r < static_cast<int>(all.size()); ++r) {
    Reader rd(all[r]);
    const auto version = rd.get<int32_t>();
    const std::string error = rd.get_string();
    if (version != 0) {
      a.min_version = std::min<int>(a.min_version, version);
    } else if (a.usable) {
      a.usable = false;
      a.error = "NCCL is unusable on rank " + std::to_string(r) + ": " + error;
    }
  }
  if (!a.usable) a.min_version = 0;
  return a;
}

std::unique_ptr<NcclComm> NcclComm::create(Group& group, int device, ncclComm_t external, bool required,
                                           const NcclLibrary& local) {
  NcclAgreement agreed = agree_nccl(group, local);
  std::unique_ptr<NcclComm> c(new NcclComm());
  if (!agreed.usable) {
    if (required) throw NcclError("the NCCL backend cannot be built: " + agreed.error);
    CUSTOMAR_WARN("INIT", "the custom kernels serve without NCCL; a call they cannot take throws NcclError: %s",
                  agreed.error.c_str());
    c->unavailable_ = agreed.error;
    return c;
  }
  c->min_version_ = agreed.min_version;
  c->init(group, device, external, local.api);
  return c;
}

std::unique_ptr<NcclComm> NcclComm::create(Group& group, int device, ncclComm_t external, bool required) {
  return create(group, device, external, required, nccl_library());
}

void NcclComm::init(Group& group, int device, ncclComm_t external, const NcclApi& api) {
  api_ = api;
  // Each local step is agreed (group/agree.h) before the next exchange, so a rank that fails here throws together
  // with its peers instead of leaving them waiting in an exchange it never reaches.
  if (external != nullptr) {
    run_step(group, "checking CommOptions::nccl_comm", [&] {
      int n = 0, r = 0;
      CUSTOMAR_NCCL_CHECK(api_.ncclCommCount(external, &n));
      CUSTOMAR_NCCL_CHECK(api_.ncclCommUserRank(external, &r));
      if (n != group.size() || r != group.rank())
        throw InvalidArgument("CommOptions::nccl_comm has rank " + std::to_string(r) + " of " + std::to_string(n) +
                              " but the group has rank " + std::to_string(group.rank()) + " of " +
                              std::to_string(group.size()));
    });
    comm_ = external;
    return;
  }
  NcclUniqueId id{};
  run_step(group, "creating the NCCL unique id", [&] {
    if (group.rank() == 0) CUSTOMAR_NCCL_CHECK(api_.ncclGetUniqueId(&id));
  });
  id = all_gather_value(group, id)[0];
  run_step(group, "ncclCommInitRank",
           [&] { CUSTOMAR_NCCL_CHECK(api_.ncclCommInitRank(&comm_, group.size(), id, group.rank())); });
  owned_ = true;
  CUSTOMAR_INFO("INIT", "NCCL communicator of %d ranks on device %d (NCCL %s at %s)", group.size(), device,
                nccl_version_text(api_.version).c_str(), api_.path.c_str());
}

NcclComm::~NcclComm() {
  if (owned_ && comm_ != nullptr) {
    NcclResult r = abort_ ? api_.ncclCommAbort(comm_) : api_.ncclCommDestroy(comm_);
    if (r != kNcclSuccess) CUSTOMAR_WARN("INIT", "releasing the NCCL communicator: %s", api_.ncclGetErrorString(r));
  }
}

void NcclComm::require(const std::string& context) const {
  if (comm_ == nullptr) throw NcclError(context + ": " + unavailable_);
}

void NcclComm::all_reduce(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream) {
  const NcclType type = nccl_type(dtype);
  require("all_reduce of " + std::to_string(count) + " x " + std::string(dtype_name(dtype)) + " goes to NCCL");
  if (is_fp8(dtype) && min_version_ < kMinNcclFp8Version)
    throw NcclError("all_reduce of " + std::string(dtype_name(dtype)) + ": NCCL sums fp8 types from " +
                    nccl_version_text(kMinNcclFp8Version) + " on, and the oldest NCCL of this group is " +
                    nccl_version_text(min_version_) + " (this rank's: " + api_.path + ")");
  CUSTOMAR_NCCL_CHECK(api_.ncclAllReduce(in, out, count, type, NcclRedOp::kSum, comm_, stream));
}

}  // namespace customar::detail
