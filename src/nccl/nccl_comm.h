// The NCCL backend: the fallback that always works, and the path for every call the custom kernels cannot take.
// NCCL is found at run time (nccl/nccl_loader.h); a world whose NCCL is missing still runs every call the custom
// kernels take.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "customar/group.h"
#include "customar/types.h"
#include "nccl/fallback.h"
#include "nccl/nccl_api.h"
#include "nccl/nccl_loader.h"

namespace customar::detail {

/// Whether NCCL is usable on every rank of a group: the outcome of one exchange.
struct NcclAgreement {
  bool usable = false;
  int min_version = 0;  ///< the oldest rank's ncclGetVersion code, when usable
  std::string error;    ///< "NCCL is unusable on rank r: <what that rank tried>", when not usable
};

/// Collective (one all-gather): every rank brings its `local` resolution and all get the same answer; the error
/// names the lowest rank without a usable NCCL.
NcclAgreement agree_nccl(Group& group, const NcclLibrary& local);

class NcclComm final : public Fallback {
 public:
  /// The NCCL path of a communicator. Collective. First agrees (agree_nccl) whether `local` is usable on every rank.
  /// If it is: creates a communicator over `group` (rank 0 makes the unique id, the group carries it), or wraps
  /// `external` (not owned) when it is not null. If it is not: throws NcclError on every rank when `required` (the
  /// backend is NCCL), else returns an NcclComm without a communicator (`external` is then left unused) whose
  /// all_reduce() throws that NcclError (on every rank alike, since a call goes to NCCL by count and dtype alone).
  /// Throws NcclError / InvalidArgument / Error when creating fails, on every rank alike.
  static std::unique_ptr<NcclComm> create(Group& group, int device, ncclComm_t external, bool required,
                                          const NcclLibrary& local);
  /// The same with this process's NCCL (nccl_library()).
  static std::unique_ptr<NcclComm> create(Group& group, int device, ncclComm_t external, bool required);
  ~NcclComm() override;
  NcclComm(const NcclComm&) = delete;
  NcclComm& operator=(const NcclComm&) = delete;

  /// False when no rank-wide usable NCCL was found; every NCCL call then throws NcclError.
  bool available() const { return comm_ != nullptr; }
  /// Returns when available(); else throws NcclError("<context>; <why NCCL is unusable>").
  void require(const std::string& context) const override;
  /// ncclAllReduce (sum). Throws NcclError when NCCL is unavailable, when the call fails, or for an fp8 type on a
  /// group whose oldest NCCL predates fp8 (2.24).
  void all_reduce(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream) override;
  /// Frees an owned communicator with ncclCommAbort instead of ncclCommDestroy: for a group that lost a rank,
  /// where a destroy could wait for it forever. Called at most once, from the owner's destructor.
  void abort_on_destroy() override { abort_ = true; }
  ncclComm_t get() const { return comm_; }

 private:
  NcclComm() = default;
  void init(Group& group, int device, ncclComm_t external, const NcclApi& api);

  NcclApi api_;
  int min_version_ = 0;
  std::string unavailable_;  // why NCCL cannot serve, when comm_ is null
  ncclComm_t comm_ = nullptr;
  bool owned_ = false;
  bool abort_ = false;
};

}  // namespace customar::detail
