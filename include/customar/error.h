// Typed exceptions thrown by every customar call. Messages name the failing call, file:line and, where one exists,
// the CUDA / NCCL / NVML error name, so that a log line alone tells what broke.
#pragma once

#include <stdexcept>
#include <string>

namespace customar {

/// Base of every exception customar throws.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

/// A caller passed something customar does not accept (null pointer, unknown dtype, size out of range...).
/// The message says what was wrong and what is allowed.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};

/// A topology or config file, or an environment variable, could not be parsed or is out of range.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// A CUDA runtime or driver call failed.
class CudaError : public Error {
 public:
  using Error::Error;
};

/// An NCCL call failed.
class NcclError : public Error {
 public:
  using Error::Error;
};

/// An operating-system call (shm_open, mmap, fork, dlopen...) failed.
class SystemError : public Error {
 public:
  using Error::Error;
};

/// A peer did not arrive within the configured timeout. `missing_rank()` is the first rank found missing (-1 if
/// unknown).
class TimeoutError : public Error {
 public:
  TimeoutError(const std::string& what, int missing_rank) : Error(what), missing_rank_(missing_rank) {}
  int missing_rank() const noexcept { return missing_rank_; }

 private:
  int missing_rank_;
};

/// The object was used after an earlier fatal error (a peer timed out, a launch failed) left it unusable.
class StateError : public Error {
 public:
  using Error::Error;
};

}  // namespace customar
