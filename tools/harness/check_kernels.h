// Test data and the float64 reference, computed on the GPU: every rank can regenerate every other rank's input from
// (seed, rank, index), so no rank needs the others' data to check its own output. Host API; kernels in
// check_kernels.cu.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "customar/types.h"

namespace customar::test {

#define TEST_CUDA(call)                                                                                     \
  do {                                                                                                      \
    cudaError_t e_ = (call);                                                                                \
    if (e_ != cudaSuccess)                                                                                  \
      throw std::runtime_error(std::string(#call) + ": " + cudaGetErrorName(e_) + " at " + __FILE__ + ":" + \
                               std::to_string(__LINE__));                                                   \
  } while (0)

#ifdef __CUDACC__
#define CUSTOMAR_TEST_HD __host__ __device__
#else
#define CUSTOMAR_TEST_HD
#endif

/// A 64-bit mixing function (splitmix64's finaliser), used for seeds on the host and data on the device.
CUSTOMAR_TEST_HD inline uint64_t mix(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ULL;
  x ^= x >> 33;
  return x;
}

/// Uniform in [-1, 1) (never all zeros); small integers in [-8, 8) whose sums are exact in every dtype (fp8 only up
/// to 2 ranks: e4m3 holds integers to 16); or small integers with every fourth element -0.0 and the next the
/// one-shot push's fp32 sentinel word 0x80008000 (-2^-134; -0.0 in fp16/bf16), which must sum as zeros.
enum class Values { kUniform, kSmallInt, kSentinels };

struct CheckResult {
  unsigned long long wrong;      ///< elements outside tolerance (NaN = poison left = wrong)
  double err2, ref2;             ///< for the relative L2 error
  unsigned long long checksum;   ///< order-dependent hash of the output bits, to compare across ranks
  unsigned long long first_bad;  ///< index of one wrong element (~0 if none)
};

/// Tolerance relative to sum |x_r|: one rounding of the result to T per hop, world hops at most (NCCL's ring rounds
/// at each step; customar rounds once, after fp32 accumulation). 0 for the integer types. Every DataType works.
double tolerance(DataType d, int world);

/// Fills p[0..n) with rank `rank`'s data for `seed`.
void fill(void* p, size_t n, DataType d, uint64_t seed, int rank, Values kind, cudaStream_t s);

/// Checks `out` against the float64 reference; `res` is device memory. Synchronises `s`.
CheckResult check(const void* out, size_t n, DataType d, uint64_t seed, int world, Values kind, cudaStream_t s,
                  CheckResult* res);

/// Launches the check without resetting or reading `res`: results accumulate across calls (wrong counts add up), so a
/// stress loop checks every call and synchronises only now and then. `tol` = 0 demands exact sums (small integers).
void check_async(const void* out, size_t n, DataType d, uint64_t seed, int world, Values kind, double tol,
                 cudaStream_t s, CheckResult* res);
/// Loads every fill and check kernel (the norm checks' too) into the current context now. Ranks that share a context
/// (virtual ranks) call it before their first collective: a kernel loaded lazily at its first launch can wait for
/// another rank's spinning all-reduce kernel, which waits for this rank.
void load_kernels();
/// Loads one kernel into the current context now (load_kernels() says why).
void load_kernel(const void* kernel);

/// Writes `init` (static storage) into the device result `res`, asynchronously on `s`.
template <typename R>
void write_device_result(R* res, const R& init, cudaStream_t s) {
  TEST_CUDA(cudaMemcpyAsync(res, &init, sizeof(R), cudaMemcpyHostToDevice, s));
}
/// Copies the device result `res` to the host; synchronises `s`.
template <typename R>
R read_device_result(const R* res, cudaStream_t s) {
  R h{};
  TEST_CUDA(cudaMemcpyAsync(&h, res, sizeof(R), cudaMemcpyDeviceToHost, s));
  TEST_CUDA(cudaStreamSynchronize(s));
  return h;
}

/// Zeroes `res` (asynchronously).
void reset_result(CheckResult* res, cudaStream_t s);
/// Copies `res` to the host; synchronises `s`.
CheckResult read_result(const CheckResult* res, cudaStream_t s);

}  // namespace customar::test
