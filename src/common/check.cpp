#include "common/check.h"

#include <cuda_runtime_api.h>

#include "nccl/nccl_loader.h"

namespace customar::detail {

std::string where(const char* file, int line) {
  // Trim the build machine's absolute path so messages read the same everywhere.
  const char* rel = std::strstr(file, "/src/");
  if (rel == nullptr) rel = std::strstr(file, "/tools/");
  return std::string(rel != nullptr ? rel + 1 : file) + ":" + std::to_string(line);
}

void throw_cuda(int code, const char* call, const char* file, int line) {
  auto err = static_cast<cudaError_t>(code);
  throw CudaError(std::string(call) + " failed: " + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) + ") at " +
                  where(file, line));
}

void throw_nccl(int code, const char* call, const char* file, int line) {
  static const char* const names[] = {"ncclSuccess",       "ncclUnhandledCudaError", "ncclSystemError",
                                      "ncclInternalError", "ncclInvalidArgument",    "ncclInvalidUsage",
                                      "ncclRemoteError",   "ncclInProgress",         "ncclTimeout"};
  constexpr int kNames = static_cast<int>(sizeof(names) / sizeof(names[0]));
  const char* name = (code >= 0 && code < kNames) ? names[code] : "ncclUnknownError";
  // A code comes from a call into the process's NCCL, so it has been resolved; its own text adds NCCL's detail.
  const NcclApi* api = resolved_nccl_api();
  const char* text = api != nullptr ? api->ncclGetErrorString(static_cast<NcclResult>(code)) : nullptr;
  throw NcclError(std::string(call) + " failed: " + name + " (" + (text != nullptr ? text : "no description") +
                  ") at " + where(file, line));
}

void throw_system(int err, const char* call, const char* file, int line) {
  throw SystemError(std::string(call) + " failed: " + strerrorname_np(err) + " (" + std::strerror(err) + ") at " +
                    where(file, line));
}

}  // namespace customar::detail
