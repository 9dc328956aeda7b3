#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "check_kernels.h"

namespace customar::test {

namespace {
__device__ inline double value_of(uint64_t seed, int rank, size_t i, Values kind) {
  uint64_t h = mix(seed * 0x9e3779b97f4a7c15ULL + uint64_t(rank) * 0x632be59bd9b4e019ULL + i);
  if (kind == Values::kSmallInt) return double(int64_t(h % 16) - 8);
  return double(h >> 11) * (2.0 / 9007199254740992.0) - 1.0;
}

template <typename T>
__device__ inline T to_t(double v) {
  if constexpr (std::is_same_v<T, float>)
    return float(v);
  else if constexpr (std::is_same_v<T, __half>)
    return __double2half(v);
  else
    return __double2bfloat16(v);
}
__device__ inline double to_d(float v) { return v; }
__device__ inline double to_d(__half v) { return __half2float(v); }
__device__ inline double to_d(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__global__ void fill_kernel(T* p, size_t n, uint64_t seed, int rank, Values kind) {
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    p[i] = to_t<T>(value_of(seed, rank, i, kind));
}

template <typename T>
__global__ void check_kernel(const T* out, size_t n, uint64_t seed, int world, Values kind, double tol,
                             CheckResult* res) {
  unsigned long long wrong = 0, first_bad = ~0ull, sum = 0;
  double err2 = 0, ref2 = 0;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
    double ref = 0, mag = 0;
    for (int r = 0; r < world; ++r) {
      double x = to_d(to_t<T>(value_of(seed, r, i, kind)));  // the value the rank really held, in float64
      ref += x;
      mag += fabs(x);
    }
    double got = to_d(out[i]);
    double err = fabs(got - ref);
    if (!(err <= tol * mag + 1e-30)) {  // written so that NaN (poison left in place) fails
      ++wrong;
      if (i < first_bad) first_bad = i;
    } else {
      err2 += err * err;
    }
    ref2 += ref * ref;
    uint64_t bits = 0;
    memcpy(&bits, &out[i], sizeof(T));
    sum += mix(bits + 0x100000001b3ULL * (i + 1));
  }
  // One atomic per thread, not per element: 64 MiB checks stay in milliseconds.
  if (wrong) atomicAdd(&res->wrong, wrong);
  if (first_bad != ~0ull) atomicMin(&res->first_bad, first_bad);
  atomicAdd(&res->err2, err2);
  atomicAdd(&res->ref2, ref2);
  atomicAdd(&res->checksum, sum);
}

}  // namespace

double tolerance(DataType d, int world) {
  double eps = d == DataType::kFloat32 ? 1.0 / (1 << 23) : d == DataType::kFloat16 ? 1.0 / (1 << 10) : 1.0 / (1 << 7);
  return eps * world;
}

namespace {
template <typename F>
void with_type(DataType d, F&& f) {
  if (d == DataType::kFloat16)
    f(__half{});
  else if (d == DataType::kBFloat16)
    f(__nv_bfloat16{});
  else
    f(float{});
}
}  // namespace

void fill(void* p, size_t n, DataType d, uint64_t seed, int rank, Values kind, cudaStream_t s) {
  with_type(d, [&](auto t) {
    using T = decltype(t);
    fill_kernel<T><<<static_cast<unsigned>(n / 256 + 1 < 1024 ? n / 256 + 1 : 1024), 256, 0, s>>>(static_cast<T*>(p), n,
                                                                                                  seed, rank, kind);
  });
  TEST_CUDA(cudaGetLastError());
}

void reset_result(CheckResult* res, cudaStream_t s) {
  static const CheckResult init{0, 0, 0, 0, ~0ull};
  TEST_CUDA(cudaMemcpyAsync(res, &init, sizeof(init), cudaMemcpyHostToDevice, s));
}

CheckResult read_result(const CheckResult* res, cudaStream_t s) {
  CheckResult h{};
  TEST_CUDA(cudaMemcpyAsync(&h, res, sizeof(h), cudaMemcpyDeviceToHost, s));
  TEST_CUDA(cudaStreamSynchronize(s));
  return h;
}

void check_async(const void* out, size_t n, DataType d, uint64_t seed, int world, Values kind, double tol,
                 cudaStream_t s, CheckResult* res) {
  unsigned blocks = static_cast<unsigned>(n / 256 + 1 < 1024 ? n / 256 + 1 : 1024);
  with_type(d, [&](auto t) {
    using T = decltype(t);
    check_kernel<T><<<blocks, 256, 0, s>>>(static_cast<const T*>(out), n, seed, world, kind, tol, res);
  });
  TEST_CUDA(cudaGetLastError());
}

CheckResult check(const void* out, size_t n, DataType d, uint64_t seed, int world, Values kind, cudaStream_t s,
                  CheckResult* res) {
  reset_result(res, s);
  check_async(out, n, d, seed, world, kind, tolerance(d, world), s, res);
  return read_result(res, s);
}

}  // namespace customar::test
