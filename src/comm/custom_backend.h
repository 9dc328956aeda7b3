// The host object behind the custom kernels: peer-shared regions, the device counters (barrier epoch, push state
// slots), the host-mapped error word. It exists only once every rank has built it and proved, by a probe through the
// mapped memory, that peer writes land; it hands the kernels a plain DeviceHandle.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>

#include "customar/group.h"
#include "customar/topology.h"
#include "kernels/handle.h"
#include "memory/peer_memory.h"

namespace customar::detail {

class CustomBackend {
 public:
  /// Collective. Builds everything or throws the same Error on every rank (see group/agree.h). `push_capacity`
  /// (bytes per push slot, 0 for none) sizes the Lamport buffers of V2's one-shot push; they are armed with the
  /// sentinel here.
  CustomBackend(Group& group, int device, const Topology& topo, size_t capacity, size_t push_capacity,
                uint64_t timeout_ns);
  ~CustomBackend();
  CustomBackend(const CustomBackend&) = delete;
  CustomBackend& operator=(const CustomBackend&) = delete;

  const DeviceHandle& handle() const { return handle_; }
  DeviceHandle& mutable_handle() { return handle_; }
  size_t capacity() const { return handle_.capacity; }
  size_t push_capacity() const { return handle_.push_capacity; }
  /// 0, or 1 + the rank a kernel gave up waiting for. Reads host memory the kernels write; never synchronises.
  int error() const { return *static_cast<volatile int*>(error_host_); }
  /// 0, or the word a peer wrote when its wait timed out (kPoisonOffset, kernels/handle.h). Reads device memory:
  /// synchronous, for the destructor only.
  int peer_gave_up() const;

 private:
  void release();
  std::unique_ptr<PeerMemory> memory_;
  void* counters_ = nullptr;  // device: kCounterCount u64 (kernels/handle.h)
  int* error_host_ = nullptr;
  DeviceHandle handle_{};
};

/// The value rank `src` writes into `dst`'s probe slot: differs per pair and per run, so a stale or misrouted write
/// cannot pass for a real one.
constexpr uint64_t probe_token(uint64_t nonce, int src, int dst) {
  return nonce ^ (uint64_t(src + 1) << 40) ^ (uint64_t(dst + 1) << 20);
}

/// Fills `bytes` (a multiple of 4) at `p` with the 32-bit `value`.
void launch_fill_words(void* p, size_t bytes, uint32_t value, cudaStream_t stream);

/// The probe: rank r writes a token into slot r of every peer's region from a kernel (the same path as the data).
void launch_probe(const DeviceHandle& h, uint64_t nonce, cudaStream_t stream);

}  // namespace customar::detail
