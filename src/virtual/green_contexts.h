// Green contexts (CUDA driver, 12.4+): the device's SMs split into equal, disjoint partitions, one context and one
// stream per partition. Loaded through the runtime's driver entry points, so customar links no libcuda.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>
#include <vector>

namespace customar::detail {

class GreenPartition {
 public:
  /// Splits `device`'s SMs into `n` partitions of equal size (the driver's granularity: a multiple of 8 SMs on
  /// Hopper). Returns nullptr and the reason in `why` when the driver has no green contexts or cannot split that
  /// finely.
  static std::unique_ptr<GreenPartition> create(int device, int n, std::string* why);
  ~GreenPartition();
  GreenPartition(const GreenPartition&) = delete;
  GreenPartition& operator=(const GreenPartition&) = delete;

  /// Makes partition r's context current on the calling thread. Throws CudaError.
  void make_current(int r) const;
  cudaStream_t stream(int r) const { return streams_[r]; }
  int sms_each() const { return sms_each_; }

 private:
  GreenPartition() = default;
  std::vector<void*> green_;     // CUgreenCtx
  std::vector<void*> contexts_;  // CUcontext of each
  std::vector<cudaStream_t> streams_;
  int sms_each_ = 0;
};

}  // namespace customar::detail
