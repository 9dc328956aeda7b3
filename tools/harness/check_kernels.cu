#include <type_traits>

#include "check_kernels.h"
#include "check_values.cuh"
#include "norm_check.h"

namespace customar::test {

namespace {

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
    unsigned long long bits_sum = 0;  // integers: the sum wraps at the type's width, exactly as unsigned arithmetic
    for (int r = 0; r < world; ++r) {
      const T held = to_t<T>(value_of(seed, r, i, kind));  // the value the rank really held
      if constexpr (std::is_integral_v<T>) bits_sum += static_cast<unsigned long long>(held);
      const double x = to_d(held);
      ref += x;
      mag += fabs(x);
    }
    double got = to_d(out[i]);
    if constexpr (std::is_integral_v<T>) {  // compared exactly, in the type itself
      got = out[i] == static_cast<T>(bits_sum) ? 0.0 : 1.0;
      ref = 0.0;
    }
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
  double eps = 0;  // integers are exact
  switch (d) {
    case DataType::kFloat64:
      eps = 1.0 / (1ull << 52);
      break;
    case DataType::kFloat32:
      eps = 1.0 / (1 << 23);
      break;
    case DataType::kFloat16:
      eps = 1.0 / (1 << 10);
      break;
    case DataType::kBFloat16:
      eps = 1.0 / (1 << 7);
      break;
    case DataType::kFloat8E4M3:
      eps = 1.0 / (1 << 3);
      break;
    case DataType::kFloat8E5M2:
      eps = 1.0 / (1 << 2);
      break;
    default:
      break;
  }
  return eps * world;
}

void fill(void* p, size_t n, DataType d, uint64_t seed, int rank, Values kind, cudaStream_t s) {
  with_device_type(d, [&](auto t) {
    using T = decltype(t);
    fill_kernel<T><<<static_cast<unsigned>(n / 256 + 1 < 1024 ? n / 256 + 1 : 1024), 256, 0, s>>>(static_cast<T*>(p), n,
                                                                                                  seed, rank, kind);
  });
  TEST_CUDA(cudaGetLastError());
}

void load_kernels() {
  for (int d = 0; d < kDataTypeCount; ++d)
    with_device_type(static_cast<DataType>(d), [](auto t) {
      using T = decltype(t);
      load_kernel(reinterpret_cast<const void*>(&fill_kernel<T>));
      load_kernel(reinterpret_cast<const void*>(&check_kernel<T>));
    });
  load_norm_check_kernels();
}

void load_kernel(const void* kernel) {
  cudaFuncAttributes attr{};
  TEST_CUDA(cudaFuncGetAttributes(&attr, kernel));
}

void reset_result(CheckResult* res, cudaStream_t s) {
  static const CheckResult init{0, 0, 0, 0, ~0ull};
  write_device_result(res, init, s);
}

CheckResult read_result(const CheckResult* res, cudaStream_t s) { return read_device_result(res, s); }

void check_async(const void* out, size_t n, DataType d, uint64_t seed, int world, Values kind, double tol,
                 cudaStream_t s, CheckResult* res) {
  unsigned blocks = static_cast<unsigned>(n / 256 + 1 < 1024 ? n / 256 + 1 : 1024);
  with_device_type(d, [&](auto t) {
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
