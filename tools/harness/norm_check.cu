#include <cmath>

#include "check_values.cuh"
#include "norm_check.h"

namespace customar::test {

namespace {

// residual_in and gamma are the same on every rank: rank 0's data of seeds derived from the case's.
constexpr uint64_t kResidualSeed = 0x5e51d0a1ULL;
constexpr uint64_t kGammaSeed = 0x6a77a000ULL;
constexpr int kCheckThreads = 256;

// The unit roundoff of T (half its machine epsilon), and the absolute rounding error of its subnormals.
template <typename T>
__device__ double unit_roundoff() {
  return std::is_same_v<T, __half> ? ldexp(1.0, -11) : ldexp(1.0, -8);
}
template <typename T>
__device__ double subnormal_error() {
  return std::is_same_v<T, __half> ? ldexp(1.0, -25) : 1e-38;
}

__device__ double block_sum(double v, double* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = v;
  __syncthreads();
  double s = 0;
  for (int w = 0; w < kCheckThreads / 32; ++w) s += red[w];
  __syncthreads();
  return s;
}

// Per-thread tallies, added to the result once at the end.
struct Tally {
  unsigned long long wrong_residual = 0, wrong_norm = 0, first_bad = ~0ull, checksum = 0;
  double max_ulps = 0;
  __device__ void bad(unsigned long long* counter, size_t i) {
    ++*counter;
    if (i < first_bad) first_bad = i;
  }
};

// Checks residual_out[row] and returns the sum of its squares (over the block).
template <typename T>
__device__ double check_residual_row(const NormCase& c, const T* res_out, size_t row, Tally& t, double* red) {
  const double u = unit_roundoff<T>();
  double ss = 0;
  for (size_t j = threadIdx.x; j < c.hidden; j += kCheckThreads) {
    const size_t i = row * c.hidden + j;
    double sum = 0, mag = 0;
    for (int r = 0; r < c.world; ++r) {
      const double x = to_d(to_t<T>(value_of(c.seed, r, i, Values::kUniform)));  // what rank r really held
      sum += x;
      mag += fabs(x);
    }
    const double rin = to_d(to_t<T>(value_of(c.seed ^ kResidualSeed, 0, i, Values::kUniform)));
    const double ref = sum + rin;
    const double got = to_d(res_out[i]);
    const double err = fabs(got - ref);
    // One rounding of the result, each rounding of the sum (which the result's rounding then sees once more: 1 + u),
    // and the fp32 additions.
    const double tol = u * fabs(ref) + c.sum_roundings * u * (1 + u) * mag +
                       (c.world + 2) * ldexp(1.0, -24) * (mag + fabs(rin)) +
                       (1 + c.sum_roundings) * subnormal_error<T>();
    if (!(err <= tol)) t.bad(&t.wrong_residual, i);  // written so that NaN (poison left in place) fails
    if (fabs(ref) > 1e-3) t.max_ulps = fmax(t.max_ulps, err / (u * fabs(ref)));
    ss += got * got;
    unsigned short bits;
    memcpy(&bits, &res_out[i], 2);
    t.checksum += mix(bits + 0x100000001b3ULL * (i + 1));
  }
  return block_sum(ss, red);
}

// Checks norm_out[row] against the norm of the residual_out row the kernel wrote.
template <typename T>
__device__ void check_norm_row(const NormCase& c, const T* res_out, const void* norm_out, size_t row, double ss,
                               Tally& t) {
  const double u = unit_roundoff<T>();
  const double rms_inv = 1.0 / sqrt(ss / double(c.hidden) + double(c.eps));
  for (size_t j = threadIdx.x; j < c.hidden; j += kCheckThreads) {
    const size_t i = row * c.hidden + j;
    const double gamma = to_d(to_t<T>(value_of(c.seed ^ kGammaSeed, 0, j, Values::kUniform)));
    const double ref = to_d(res_out[i]) * rms_inv * gamma;
    double got, tol;
    unsigned long long bits = 0;
    if (c.fp8) {
      const double q = ref / double(c.scale);
      const double want = fmin(fmax(q, -448.0), 448.0);
      __nv_fp8_e4m3 v;
      v.__x = static_cast<const unsigned char*>(norm_out)[i];
      bits = v.__x;
      got = to_d(v);
      tol = ldexp(1.0, -4) * fabs(want) + ldexp(1.0, -10) + ldexp(1.0, -16) * fabs(q);
      if (!(fabs(got - want) <= tol)) t.bad(&t.wrong_norm, i);
    } else {
      const T v = static_cast<const T*>(norm_out)[i];
      memcpy(&bits, &v, 2);
      got = to_d(v);
      tol = u * fabs(ref) + ldexp(1.0, -16) * fabs(ref) + subnormal_error<T>();
      if (!(fabs(got - ref) <= tol)) t.bad(&t.wrong_norm, i);
    }
    t.checksum += mix((bits ^ 0x9e3779b97f4a7c15ULL) + 0x100000001b3ULL * (i + 1));
  }
}

template <typename T>
__global__ void check_norm_kernel(NormCase c, const T* res_out, const void* norm_out, NormCheckResult* res) {
  __shared__ double red[kCheckThreads / 32];
  Tally t;
  for (size_t row = blockIdx.x; row < c.tokens; row += gridDim.x) {
    const double ss = check_residual_row<T>(c, res_out, row, t, red);
    check_norm_row<T>(c, res_out, norm_out, row, ss, t);
  }
  if (t.wrong_residual) atomicAdd(&res->wrong_residual, t.wrong_residual);
  if (t.wrong_norm) atomicAdd(&res->wrong_norm, t.wrong_norm);
  if (t.first_bad != ~0ull) atomicMin(&res->first_bad, t.first_bad);
  atomicAdd(&res->checksum, t.checksum);
  // Non-negative doubles order as their bits do.
  atomicMax(reinterpret_cast<unsigned long long*>(&res->max_residual_ulps), __double_as_longlong(t.max_ulps));
}

template <typename F>
void with_norm_type(DataType d, F&& f) {
  if (d != DataType::kFloat16 && d != DataType::kBFloat16) throw std::runtime_error("norm check: fp16 or bf16 only");
  with_device_type(d, f);
}

}  // namespace

void fill_norm_inputs(const NormCase& c, int rank, void* in, void* residual_in, void* gamma, cudaStream_t s) {
  fill(in, c.tokens * c.hidden, c.dtype, c.seed, rank, Values::kUniform, s);
  fill(residual_in, c.tokens * c.hidden, c.dtype, c.seed ^ kResidualSeed, 0, Values::kUniform, s);
  fill(gamma, c.hidden, c.dtype, c.seed ^ kGammaSeed, 0, Values::kUniform, s);
}

void load_norm_check_kernels() {
  for (DataType d : {DataType::kFloat16, DataType::kBFloat16})
    with_norm_type(d, [](auto t) { load_kernel(reinterpret_cast<const void*>(&check_norm_kernel<decltype(t)>)); });
}

void check_norm_async(const NormCase& c, const void* residual_out, const void* norm_out, cudaStream_t s,
                      NormCheckResult* res) {
  const unsigned blocks = static_cast<unsigned>(c.tokens < 1024 ? c.tokens : 1024);
  with_norm_type(c.dtype, [&](auto t) {
    using T = decltype(t);
    if constexpr (std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>)
      check_norm_kernel<T><<<blocks, kCheckThreads, 0, s>>>(c, static_cast<const T*>(residual_out), norm_out, res);
  });
  TEST_CUDA(cudaGetLastError());
}

void reset_norm_result(NormCheckResult* res, cudaStream_t s) {
  static const NormCheckResult init{0, 0, ~0ull, 0, 0.0};
  write_device_result(res, init, s);
}

NormCheckResult read_norm_result(const NormCheckResult* res, cudaStream_t s) { return read_device_result(res, s); }

NormBuffers::NormBuffers(size_t elems) : elems_(elems) {
  for (void** p : {&in_, &res_in_, &res_out_, &norm_out_}) TEST_CUDA(cudaMalloc(p, elems * 2));
  TEST_CUDA(cudaMalloc(&gamma_, 16384 * 2));
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&scale_), sizeof(float)));
}

NormBuffers::~NormBuffers() {
  for (void* p : {in_, res_in_, res_out_, norm_out_, gamma_, static_cast<void*>(scale_)}) (void)cudaFree(p);
}

AddRmsNormArgs NormBuffers::args(const NormCase& c, bool inplace) const {
  AddRmsNormArgs a;
  a.in = in_;
  a.residual_in = res_in_;
  a.gamma = gamma_;
  a.residual_out = inplace ? res_in_ : res_out_;
  a.norm_out = inplace && !c.fp8 ? in_ : norm_out_;
  a.tokens = c.tokens;
  a.hidden = c.hidden;
  a.dtype = c.dtype;
  a.eps = c.eps;
  a.fp8_out = c.fp8;
  a.scale = c.fp8 ? scale_ : nullptr;
  return a;
}

void NormBuffers::prepare(const NormCase& c, bool inplace, int rank, cudaStream_t s) const {
  fill_norm_inputs(c, rank, in_, res_in_, gamma_, s);
  TEST_CUDA(cudaMemcpyAsync(scale_, &c.scale, sizeof(float), cudaMemcpyHostToDevice, s));
  const AddRmsNormArgs a = args(c, inplace);
  const size_t n = c.tokens * c.hidden;
  if (a.residual_out != a.residual_in) TEST_CUDA(cudaMemsetAsync(a.residual_out, 0xff, n * 2, s));
  if (a.norm_out != a.in) TEST_CUDA(cudaMemsetAsync(a.norm_out, 0xff, n * (c.fp8 ? 1 : 2), s));
}

}  // namespace customar::test
