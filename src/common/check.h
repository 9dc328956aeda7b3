// Error-raising checks for CUDA, NCCL and system calls. Each throws the matching customar exception with the call's
// text, file:line and the library's error name, e.g.
//   "cudaIpcOpenMemHandle(&ptr, h, flags) failed: cudaErrorInvalidValue (invalid argument) at src/memory/ipc.cpp:42"
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

#include "customar/error.h"

namespace customar::detail {

[[noreturn]] void throw_cuda(int code, const char* call, const char* file, int line);
[[noreturn]] void throw_nccl(int code, const char* call, const char* file, int line);
[[noreturn]] void throw_system(int err, const char* call, const char* file, int line);
std::string where(const char* file, int line);

}  // namespace customar::detail

#define CUSTOMAR_CUDA_CHECK(call)                                                                 \
  do {                                                                                            \
    auto customar_err_ = (call);                                                                  \
    if (customar_err_ != 0)                                                                       \
      ::customar::detail::throw_cuda(static_cast<int>(customar_err_), #call, __FILE__, __LINE__); \
  } while (0)

#define CUSTOMAR_NCCL_CHECK(call)                                                                 \
  do {                                                                                            \
    auto customar_err_ = (call);                                                                  \
    if (customar_err_ != 0)                                                                       \
      ::customar::detail::throw_nccl(static_cast<int>(customar_err_), #call, __FILE__, __LINE__); \
  } while (0)

#define CUSTOMAR_SYS_CHECK(cond, call)                                              \
  do {                                                                              \
    if (!(cond)) ::customar::detail::throw_system(errno, call, __FILE__, __LINE__); \
  } while (0)

/// Throws InvalidArgument with the message and where.
#define CUSTOMAR_ARG_CHECK(cond, msg)                                                                             \
  do {                                                                                                            \
    if (!(cond))                                                                                                  \
      throw ::customar::InvalidArgument(std::string(msg) + " (" + ::customar::detail::where(__FILE__, __LINE__) + \
                                        ")");                                                                     \
  } while (0)
