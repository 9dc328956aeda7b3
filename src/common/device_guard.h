// Scoped current-device switch. customar never leaves the caller's current device changed: every entry point that
// touches a device other than the current one sets it for its own work and restores the old one on the way out,
// exceptions included.
#pragma once

#include <cuda_runtime_api.h>

#include <new>

#include "common/check.h"

namespace customar::detail {

class DeviceGuard {
 public:
  /// Makes `device` current; throws CudaError (naming the call) if it cannot.
  explicit DeviceGuard(int device) {
    CUSTOMAR_CUDA_CHECK(cudaGetDevice(&saved_));
    if (saved_ != device) {
      CUSTOMAR_CUDA_CHECK(cudaSetDevice(device));
      changed_ = true;
    }
    ok_ = true;
  }
  /// Best effort, for clean-up paths that must not throw: ok() says whether `device` became current (if not, the
  /// current device is left as it was, and the failed call's error is taken with cudaGetLastError so that, unless it
  /// is sticky, it does not surface as a later call's).
  DeviceGuard(int device, std::nothrow_t) noexcept {
    if (cudaGetDevice(&saved_) != cudaSuccess) {
      (void)cudaGetLastError();
      return;
    }
    if (saved_ != device) {
      if (cudaSetDevice(device) != cudaSuccess) {
        (void)cudaGetLastError();
        return;
      }
      changed_ = true;
    }
    ok_ = true;
  }
  /// Restores the device that was current at construction (only if it was changed, so a guard costs one query on the
  /// common path where the caller already set the right device).
  ~DeviceGuard() {
    if (changed_) (void)cudaSetDevice(saved_);
  }
  /// Whether the requested device is current (always true after the throwing constructor).
  bool ok() const { return ok_; }
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int saved_ = 0;
  bool changed_ = false;
  bool ok_ = false;
};

}  // namespace customar::detail
