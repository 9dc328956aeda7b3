#include "comm/custom_backend.h"
#include "common/check.h"

namespace customar::detail {

namespace {
__global__ void probe_kernel(DeviceHandle h, uint64_t nonce) {
  int dst = threadIdx.x;
  if (dst >= h.world || dst == h.rank) return;
  uint64_t token = probe_token(nonce, h.rank, dst);
  auto* slot = reinterpret_cast<volatile uint64_t*>(h.regions[dst] + kProbeOffset) + h.rank;
  *slot = token;
  __threadfence_system();
}
}  // namespace

void launch_probe(const DeviceHandle& h, uint64_t nonce, cudaStream_t stream) {
  probe_kernel<<<1, kMaxRanks, 0, stream>>>(h, nonce);
  CUSTOMAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace customar::detail
