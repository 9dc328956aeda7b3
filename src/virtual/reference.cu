#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_fp8.h>

#include <cstring>

#include "common/check.h"
#include "common/log.h"
#include "group/agree.h"
#include "kernels/device/common.cuh"
#include "kernels/device_types.h"
#include "kernels/handle.h"
#include "kernels/kernels.h"
#include "virtual/reference.h"

namespace customar::detail {

namespace {

// Seen by every rank (rank 0 allocates it): the arrival flags of the three phases and the pointers of the call, kept
// for two calls by parity: a rank can publish call k+1's pointers only after every rank finished call k (its last
// phase waits for all), so no rank still reads the slot it overwrites.
struct RefShared {
  uint64_t arrive[3][kMaxRanks];
  const void* in[2][kMaxRanks];
  void* out[2][kMaxRanks];
};

// This rank's call counter and failure flag, on the device so that replayed graphs keep counting.
struct RefRank {
  uint64_t calls;
  uint64_t failed;
};

struct RefHandle {
  RefShared* shared;
  RefRank* mine;
  int* error;  // host-mapped: 1 + the rank that did not arrive
  int rank, world;
  uint64_t timeout_ns;
};

// One block; thread t < world waits for rank t. Phase 0 starts the call (counter, pointers), phase 1 ends its
// reduce-scatter, phase 2 its all-gather: as with NCCL, a call ends only once no peer reads this rank's buffers, so
// the caller may overwrite its input and output at once (the unfused norm writes its output over the input). A wait
// past the timeout names the rank and fails every later call of this rank at once.
__global__ void arrive_kernel(RefHandle h, int phase, const void* in, void* out) {
  __shared__ uint64_t epoch;
  if (threadIdx.x == 0) {
    epoch = h.mine->failed != 0 ? 0 : h.mine->calls + (phase == 0 ? 1 : 0);
    if (epoch != 0 && phase == 0) {
      h.mine->calls = epoch;
      h.shared->in[epoch & 1][h.rank] = in;
      h.shared->out[epoch & 1][h.rank] = out;
    }
    if (epoch != 0) st_release_sys(&h.shared->arrive[phase][h.rank], epoch);
  }
  __syncthreads();
  const uint64_t e = epoch;
  const int t = threadIdx.x;
  if (e == 0 || t >= h.world) return;
  const uint64_t start = global_timer_ns();
  for (uint32_t spins = 0; ld_acquire_sys(&h.shared->arrive[phase][t]) < e; ++spins) {
    if ((spins & 1023u) != 1023u) continue;
    if (ld_volatile_u64(&h.mine->failed) != 0) return;
    if (global_timer_ns() - start > h.timeout_ns) {
      *reinterpret_cast<volatile int*>(h.error) = t + 1;
      __threadfence_system();
      h.mine->failed = 1;
      return;
    }
  }
}

// Slice q of `count` elements: [q * per, min((q + 1) * per, count)).
__device__ __forceinline__ void slice(size_t count, int world, int q, size_t* beg, size_t* end) {
  const size_t per = (count + world - 1) / world;
  *beg = per * q < count ? per * q : count;
  *end = *beg + per < count ? *beg + per : count;
}

template <typename T>
struct Acc {  // floating types other than fp64: float accumulation
  using type = float;
  __device__ static float load(T x) { return static_cast<float>(x); }
  __device__ static T store(float x) { return T(x); }
};
template <>
struct Acc<double> {
  using type = double;
  __device__ static double load(double x) { return x; }
  __device__ static double store(double x) { return x; }
};
template <typename T>
struct IntAcc {  // integers wrap at their width, as NCCL's sums do: unsigned arithmetic, then truncated
  using type = unsigned long long;
  __device__ static unsigned long long load(T x) { return static_cast<unsigned long long>(x); }
  __device__ static T store(unsigned long long x) { return static_cast<T>(x); }
};
#define CUSTOMAR_INT_ACC(T) \
  template <>               \
  struct Acc<T> : IntAcc<T> {}
CUSTOMAR_INT_ACC(int8_t);
CUSTOMAR_INT_ACC(uint8_t);
CUSTOMAR_INT_ACC(int32_t);
CUSTOMAR_INT_ACC(uint32_t);
CUSTOMAR_INT_ACC(int64_t);
CUSTOMAR_INT_ACC(uint64_t);
#undef CUSTOMAR_INT_ACC

// This rank's slice, from every rank's input in rank order 0..world-1.
template <typename T>
__global__ void reduce_kernel(RefHandle h, size_t count) {
  if (h.mine->failed != 0) return;
  const uint64_t e = h.mine->calls & 1;
  size_t beg, end;
  slice(count, h.world, h.rank, &beg, &end);
  T* out = static_cast<T*>(h.shared->out[e][h.rank]);
  for (size_t i = beg + blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < end; i += size_t(gridDim.x) * blockDim.x) {
    typename Acc<T>::type acc = 0;
    for (int r = 0; r < h.world; ++r) acc += Acc<T>::load(static_cast<const T*>(h.shared->in[e][r])[i]);
    out[i] = Acc<T>::store(acc);
  }
}

// Every other slice, from the rank that reduced it.
__global__ void gather_kernel(RefHandle h, size_t count, size_t esize) {
  if (h.mine->failed != 0) return;
  const uint64_t e = h.mine->calls & 1;
  auto* out = static_cast<unsigned char*>(h.shared->out[e][h.rank]);
  for (int q = 0; q < h.world; ++q) {
    if (q == h.rank) continue;
    size_t beg, end;
    slice(count, h.world, q, &beg, &end);
    const auto* from = static_cast<const unsigned char*>(h.shared->out[e][q]);
    for (size_t b = beg * esize + blockIdx.x * size_t(blockDim.x) + threadIdx.x; b < end * esize;
         b += size_t(gridDim.x) * blockDim.x)
      out[b] = from[b];
  }
}

class ReferenceAllReduce final : public Fallback {
 public:
  ReferenceAllReduce(Group& group, int device, uint64_t timeout_ns) {
    h_.rank = group.rank();
    h_.world = group.size();
    h_.timeout_ns = timeout_ns;
    try {
      run_step(group, "allocating the reference all-reduce", [&] { allocate(); });
      const uint64_t shared = all_gather_value(group, reinterpret_cast<uint64_t>(shared_))[0];
      h_.shared = reinterpret_cast<RefShared*>(shared);
    } catch (...) {
      release();
      throw;
    }
    // Loaded now: a lazy load at a first launch can wait for a peer's spinning kernel in this shared context.
    load_into_context(reinterpret_cast<const void*>(&arrive_kernel));
    load_into_context(reinterpret_cast<const void*>(&gather_kernel));
    for (int t = 0; t < kDataTypeCount; ++t)
      with_device_type(static_cast<DataType>(t),
                       [](auto x) { load_into_context(reinterpret_cast<const void*>(&reduce_kernel<decltype(x)>)); });
    CUSTOMAR_INFO("INIT", "virtual ranks: the reference all-reduce serves what NCCL would on device %d", device);
  }
  ~ReferenceAllReduce() override { release(); }
  ReferenceAllReduce(const ReferenceAllReduce&) = delete;
  ReferenceAllReduce& operator=(const ReferenceAllReduce&) = delete;

  void all_reduce(const void* in, void* out, size_t count, DataType dtype, cudaStream_t stream) override {
    const size_t esize = dtype_size(dtype);
    const size_t per = (count + h_.world - 1) / h_.world;
    const unsigned blocks = static_cast<unsigned>(per / 256 + 1 < 64 ? per / 256 + 1 : 64);
    arrive_kernel<<<1, 32, 0, stream>>>(h_, 0, in, out);
    with_device_type(dtype, [&](auto t) { reduce_kernel<decltype(t)><<<blocks, 256, 0, stream>>>(h_, count); });
    arrive_kernel<<<1, 32, 0, stream>>>(h_, 1, in, out);
    gather_kernel<<<blocks, 256, 0, stream>>>(h_, count, esize);
    arrive_kernel<<<1, 32, 0, stream>>>(h_, 2, in, out);
    CUSTOMAR_CUDA_CHECK(cudaGetLastError());
  }
  void require(const std::string&) const override {}
  void abort_on_destroy() override {}
  int error() const override { return *static_cast<volatile int*>(error_host_); }

 private:
  void allocate() {
    CUSTOMAR_CUDA_CHECK(cudaMalloc(&h_.mine, sizeof(RefRank)));
    CUSTOMAR_CUDA_CHECK(cudaMemset(h_.mine, 0, sizeof(RefRank)));
    CUSTOMAR_CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&error_host_), sizeof(int), cudaHostAllocMapped));
    *error_host_ = 0;
    CUSTOMAR_CUDA_CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&h_.error), error_host_, 0));
    if (h_.rank == 0) {
      CUSTOMAR_CUDA_CHECK(cudaMalloc(&shared_, sizeof(RefShared)));
      CUSTOMAR_CUDA_CHECK(cudaMemset(shared_, 0, sizeof(RefShared)));
    }
    CUSTOMAR_CUDA_CHECK(cudaDeviceSynchronize());
  }
  void release() {
    if (h_.mine != nullptr) (void)cudaFree(h_.mine);
    if (shared_ != nullptr) (void)cudaFree(shared_);
    if (error_host_ != nullptr) (void)cudaFreeHost(error_host_);
    h_.mine = nullptr;
    shared_ = nullptr;
    error_host_ = nullptr;
  }

  RefHandle h_{};
  RefShared* shared_ = nullptr;  // owned by rank 0
  int* error_host_ = nullptr;
};

}  // namespace

std::unique_ptr<Fallback> make_reference_all_reduce(Group& group, int device, uint64_t timeout_ns) {
  return std::make_unique<ReferenceAllReduce>(group, device, timeout_ns);
}

}  // namespace customar::detail
