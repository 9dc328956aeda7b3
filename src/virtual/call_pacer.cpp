#include "virtual/call_pacer.h"

#include "common/check.h"

namespace customar::detail {

CallPacer::CallPacer() {
  try {
    // Blocking sync: up to 8 rank threads wait at once, and a spinning wait would take a core from a peer's launch.
    for (cudaEvent_t& e : ends_)
      CUSTOMAR_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming | cudaEventBlockingSync));
  } catch (...) {
    for (cudaEvent_t e : ends_)
      if (e != nullptr) (void)cudaEventDestroy(e);
    throw;
  }
}

CallPacer::~CallPacer() {
  for (cudaEvent_t e : ends_) (void)cudaEventDestroy(e);
}

void CallPacer::wait_turn() {
  if (calls_ >= kCallsInFlight) CUSTOMAR_CUDA_CHECK(cudaEventSynchronize(ends_[calls_ % kCallsInFlight]));
}

void CallPacer::record(cudaStream_t stream) {
  CUSTOMAR_CUDA_CHECK(cudaEventRecord(ends_[calls_ % kCallsInFlight], stream));
  ++calls_;
}

}  // namespace customar::detail
