// The order of a communicator's eager calls, and how far they may run ahead of the GPU.
#pragma once

#include <cuda_runtime_api.h>

#include <vector>

namespace customar::detail {

/// Calls a rank of a virtual world may have queued and not finished. Its peers are threads of the same process on
/// the same device, and a thread whose stream holds about a thousand queued operations blocks inside its next launch
/// until the GPU drains some; a peer that has not yet launched the call this rank's kernels wait for must still get
/// to launch it. A call launches at most 5 kernels (the reference all-reduce), so 8 calls and the caller's own
/// kernels between them stay far below that.
inline constexpr int kVirtualCallsInFlight = 8;

/// Orders a communicator's eager calls whatever streams they are issued on: each call records its end on its own
/// stream and the next call's stream waits for that record. No stream handle is kept past its call (the caller may
/// destroy a stream once its calls are issued, and a new stream that reuses its handle still waits). On the stream of
/// the previous call the wait costs nothing. Graph-captured calls do not go through it: the graph orders them.
class CallOrder {
 public:
  /// `max_in_flight` = 0: calls run ahead of the GPU without bound. N > 0: before a call the host also waits until
  /// the call N before it has finished (virtual ranks: kVirtualCallsInFlight). Creates its events on the current
  /// device; throws CudaError.
  explicit CallOrder(int max_in_flight);
  ~CallOrder();
  CallOrder(const CallOrder&) = delete;
  CallOrder& operator=(const CallOrder&) = delete;

  /// Before a call's launches on `stream`. The host wait, where there is one, ends by CUSTOMAR_TIMEOUT_MS: the
  /// kernels of the call it waits for end then even if a peer never arrives.
  void before(cudaStream_t stream);
  /// After the call's launches on `stream`: marks its end.
  void after(cudaStream_t stream);

 private:
  std::vector<cudaEvent_t> ends_;  // a ring: call k's end is ends_[k % size]
  bool bounded_;                   // the host waits for the call ends_.size() before
  unsigned long long calls_ = 0;   // calls whose end is recorded
};

}  // namespace customar::detail
