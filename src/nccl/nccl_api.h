// The part of NCCL's C interface that customar calls, declared here so that building customar needs no nccl.h and
// loading it needs no libnccl: the library is found at run time (nccl/nccl_loader.h) and called through NcclApi.
//
// Every type below has the layout and every constant the value that nccl.h gives it; both have been stable across
// NCCL 2.x (new types and error codes were only ever appended). The enums are int-sized, as nccl.h's C enums are, so
// a function pointer declared with them has the C function's calling convention.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <string>

#include "customar/group.h"  // ncclComm_t, the one NCCL type of the public interface

namespace customar::detail {

/// ncclResult_t.
enum NcclResult : int {
  kNcclSuccess = 0,
  kNcclUnhandledCudaError = 1,
  kNcclSystemError = 2,
  kNcclInternalError = 3,
  kNcclInvalidArgument = 4,
  kNcclInvalidUsage = 5,
  kNcclRemoteError = 6,
  kNcclInProgress = 7,
  kNcclTimeout = 8,
};

/// ncclDataType_t. bf16 exists from NCCL 2.10, the two fp8 types from 2.24.
enum class NcclType : int {
  kInt8 = 0,
  kUint8 = 1,
  kInt32 = 2,
  kUint32 = 3,
  kInt64 = 4,
  kUint64 = 5,
  kFloat16 = 6,
  kFloat32 = 7,
  kFloat64 = 8,
  kBfloat16 = 9,
  kFloat8e4m3 = 10,
  kFloat8e5m2 = 11,
};

/// ncclRedOp_t (customar only sums).
enum class NcclRedOp : int { kSum = 0 };

/// ncclUniqueId: NCCL_UNIQUE_ID_BYTES opaque bytes, passed by value to ncclCommInitRank.
struct NcclUniqueId {
  char internal[128];
};

/// ncclWindow_t, an opaque handle; NCCL_WIN_COLL_SYMMETRIC.
using NcclWindow = struct ncclWindow_vidmem*;
constexpr int kNcclWinCollSymmetric = 0x01;

/// NCCL_VERSION(major, minor, patch): the number ncclGetVersion reports (NCCL changed the encoding after 2.8).
constexpr int nccl_version_code(int major, int minor, int patch) {
  return (major <= 2 && minor <= 8) ? major * 1000 + minor * 100 + patch : major * 10000 + minor * 100 + patch;
}
/// "2.28.9" for a code of ncclGetVersion.
std::string nccl_version_text(int code);

/// The oldest NCCL customar drives: bf16 (ncclBfloat16) appeared in 2.10.3; every other call customar needs
/// (ncclCommAbort, ncclGetVersion, ncclAllGather...) is older.
constexpr int kMinNcclVersion = nccl_version_code(2, 10, 3);
/// The fp8 types (ncclFloat8e4m3, ncclFloat8e5m2) exist from NCCL 2.24.
constexpr int kMinNcclFp8Version = nccl_version_code(2, 24, 0);

/// One loaded NCCL library's entry points. Members carry NCCL's own names so that a failed call reads as the NCCL
/// call it is. The required ones are never null in an NcclApi the loader hands out; the optional ones are null when
/// the library predates them (ncclMemAlloc / ncclMemFree: 2.19; ncclCommWindowRegister / Deregister: 2.27).
/// A plain table of function pointers: copyable, immutable once loaded, safe to call from any thread (as NCCL is).
struct NcclApi {
  int version = 0;   ///< ncclGetVersion's code
  std::string path;  ///< the file the functions live in

  NcclResult (*ncclGetVersion)(int* version) = nullptr;
  NcclResult (*ncclGetUniqueId)(NcclUniqueId* id) = nullptr;
  NcclResult (*ncclCommInitRank)(ncclComm_t* comm, int nranks, NcclUniqueId id, int rank) = nullptr;
  NcclResult (*ncclCommDestroy)(ncclComm_t comm) = nullptr;
  NcclResult (*ncclCommAbort)(ncclComm_t comm) = nullptr;
  NcclResult (*ncclCommCount)(ncclComm_t comm, int* count) = nullptr;
  NcclResult (*ncclCommUserRank)(ncclComm_t comm, int* rank) = nullptr;
  NcclResult (*ncclAllReduce)(const void* in, void* out, size_t count, NcclType type, NcclRedOp op, ncclComm_t comm,
                              cudaStream_t stream) = nullptr;
  NcclResult (*ncclAllGather)(const void* in, void* out, size_t count, NcclType type, ncclComm_t comm,
                              cudaStream_t stream) = nullptr;
  const char* (*ncclGetErrorString)(NcclResult result) = nullptr;

  NcclResult (*ncclMemAlloc)(void** ptr, size_t bytes) = nullptr;
  NcclResult (*ncclMemFree)(void* ptr) = nullptr;
  NcclResult (*ncclCommWindowRegister)(ncclComm_t comm, void* buf, size_t bytes, NcclWindow* win, int flags) = nullptr;
  NcclResult (*ncclCommWindowDeregister)(ncclComm_t comm, NcclWindow win) = nullptr;
};

}  // namespace customar::detail
