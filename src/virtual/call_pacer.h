// How far a virtual rank's eager calls may run ahead of the GPU. The ranks are threads of one process on one device,
// and a rank whose stream holds about a thousand queued operations blocks inside its next launch until the GPU drains
// some. Seen on an H200 (driver 580): ranks that ran ahead stopped there, at their 236th call of a mixed-size stress,
// while a late rank stood still in its first calls until every kernel timed out; it never launched the call its
// peers' kernels waited for. With each rank's calls kept at most kCallsInFlight ahead of its GPU, the same runs pass.
#pragma once

#include <cuda_runtime_api.h>

#include <array>

namespace customar::detail {

class CallPacer {
 public:
  /// Calls of one rank that may be queued and not finished: a call launches at most 5 kernels (the reference
  /// all-reduce), so 8 calls and the caller's own kernels between them stay far below a thousand operations.
  static constexpr int kCallsInFlight = 8;

  /// Creates the events on the current device; throws CudaError.
  CallPacer();
  ~CallPacer();
  CallPacer(const CallPacer&) = delete;
  CallPacer& operator=(const CallPacer&) = delete;

  /// Before an eager call: waits on the host until the call kCallsInFlight before this one has finished on the GPU.
  /// Bounded: that call's kernels end by CUSTOMAR_TIMEOUT_MS even if a peer never arrives.
  void wait_turn();
  /// After an eager call's launches on `stream`: marks its end.
  void record(cudaStream_t stream);

 private:
  std::array<cudaEvent_t, kCallsInFlight> ends_{};
  unsigned long long calls_ = 0;  // calls recorded
};

}  // namespace customar::detail
