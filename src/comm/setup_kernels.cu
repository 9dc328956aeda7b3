// Set-up kernels of the custom backend: the peer-access probe and arming the push buffers.
#include "comm/custom_backend.h"
#include "common/check.h"

namespace customar::detail {

namespace {
__global__ void probe_kernel(DeviceHandle h, uint64_t nonce) {
  int dst = threadIdx.x;
  if (dst >= h.world || dst == h.rank) return;
  auto* slot = reinterpret_cast<volatile uint64_t*>(h.regions[dst] + kProbeOffset) + h.rank;
  *slot = probe_token(nonce, h.rank, dst);
  __threadfence_system();
}

__global__ void fill_words_kernel(uint32_t* p, size_t words, uint32_t value) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < words; i += size_t(gridDim.x) * blockDim.x)
    p[i] = value;
}
}  // namespace

void launch_probe(const DeviceHandle& h, uint64_t nonce, cudaStream_t stream) {
  probe_kernel<<<1, kMaxRanks, 0, stream>>>(h, nonce);
  CUSTOMAR_CUDA_CHECK(cudaGetLastError());
}

void launch_fill_words(void* p, size_t bytes, uint32_t value, cudaStream_t stream) {
  fill_words_kernel<<<256, 256, 0, stream>>>(static_cast<uint32_t*>(p), bytes / 4, value);
  CUSTOMAR_CUDA_CHECK(cudaGetLastError());
}

}  // namespace customar::detail
