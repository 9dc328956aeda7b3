#include "comm/call_order.h"

#include "common/check.h"

namespace customar::detail {

CallOrder::CallOrder(int max_in_flight)
    : ends_(max_in_flight > 0 ? max_in_flight : 1, nullptr), bounded_(max_in_flight > 0) {
  // Blocking sync where the host waits: up to 8 rank threads wait at once, and a spinning wait would take a core
  // from a peer's launch.
  const unsigned flags = cudaEventDisableTiming | (bounded_ ? cudaEventBlockingSync : 0u);
  try {
    for (cudaEvent_t& e : ends_) CUSTOMAR_CUDA_CHECK(cudaEventCreateWithFlags(&e, flags));
  } catch (...) {
    for (cudaEvent_t e : ends_)
      if (e != nullptr) (void)cudaEventDestroy(e);
    throw;
  }
}

CallOrder::~CallOrder() {
  for (cudaEvent_t e : ends_) (void)cudaEventDestroy(e);
}

void CallOrder::before(cudaStream_t stream) {
  const size_t n = ends_.size();
  if (bounded_ && calls_ >= n) CUSTOMAR_CUDA_CHECK(cudaEventSynchronize(ends_[calls_ % n]));
  if (calls_ > 0) CUSTOMAR_CUDA_CHECK(cudaStreamWaitEvent(stream, ends_[(calls_ - 1) % n], 0));
}

void CallOrder::after(cudaStream_t stream) {
  CUSTOMAR_CUDA_CHECK(cudaEventRecord(ends_[calls_ % ends_.size()], stream));
  ++calls_;
}

}  // namespace customar::detail
