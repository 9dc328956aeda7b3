// Test data and the float64 reference of all-reduce + residual add + RMSNorm (Communicator::all_reduce_add_rmsnorm),
// computed on the GPU, so that every rank checks its own outputs without the others' data: rank r's `in` is
// fill(seed, r), and residual_in and gamma are the same on every rank (as a model's are). Host API; kernels in
// norm_check.cu.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "check_kernels.h"
#include "customar/communicator.h"
#include "customar/types.h"

namespace customar::test {

/// One call's shape and data.
struct NormCase {
  DataType dtype = DataType::kBFloat16;  ///< fp16 or bf16
  size_t tokens = 0, hidden = 0;
  int world = 1;
  float eps = 1e-6f;
  bool fp8 = false;    ///< norm_out is e4m3, divided by `scale`
  float scale = 1.0f;  ///< the dequantisation scale the call reads from device memory
  uint64_t seed = 1;
  /// Roundings of the all-reduced sum to the dtype before the residual is added: 0 on the fused paths (the fp32 sum
  /// meets the residual unrounded), 1 after customar's all-reduce (one rounding of the fp32 sum), up to `world` after
  /// NCCL's ring (a rounding per hop).
  int sum_roundings = 0;
};

struct NormCheckResult {
  unsigned long long wrong_residual;  ///< residual_out elements outside tolerance (NaN = poison left = wrong)
  unsigned long long wrong_norm;      ///< norm_out elements outside tolerance
  unsigned long long first_bad;       ///< index of one wrong element (~0 if none)
  unsigned long long checksum;        ///< order-dependent hash of both outputs' bits, to compare across ranks
  double max_residual_ulps;           ///< largest residual_out error in units of the dtype's rounding (2^-p |ref|)
};

/// Fills rank `rank`'s `in`, and residual_in and gamma, for `c`.
void fill_norm_inputs(const NormCase& c, int rank, void* in, void* residual_in, void* gamma, cudaStream_t s);

/// Checks residual_out and norm_out against the float64 reference of `c`, accumulating into `res` (device memory,
/// zeroed by reset_norm_result()). residual_out: within one rounding of the exact sum + residual, plus the sum's
/// roundings and the fp32 accumulation. norm_out: the reference norm of the residual_out the kernel wrote (so a
/// residual rounding is not counted twice), within one rounding to the output type plus fp32 arithmetic; e4m3 after
/// division by the scale and saturation to +-448.
void check_norm_async(const NormCase& c, const void* residual_out, const void* norm_out, cudaStream_t s,
                      NormCheckResult* res);
void reset_norm_result(NormCheckResult* res, cudaStream_t s);
/// Loads the norm check kernels into the current context now (load_kernels() calls it; see there why).
void load_norm_check_kernels();
/// Copies `res` to the host; synchronises `s`.
NormCheckResult read_norm_result(const NormCheckResult* res, cudaStream_t s);

/// Device tensors for calls of up to `elems` elements: in, residual_in, residual_out, norm_out, gamma (of the largest
/// hidden size) and the scale. Throws std::runtime_error when an allocation fails.
class NormBuffers {
 public:
  explicit NormBuffers(size_t elems);
  ~NormBuffers();
  NormBuffers(const NormBuffers&) = delete;
  NormBuffers& operator=(const NormBuffers&) = delete;

  size_t elems() const { return elems_; }
  /// The arguments of `c` on these buffers. In place: residual_out = residual_in, and norm_out = in unless c.fp8 (an
  /// e4m3 norm_out may not alias the input).
  AddRmsNormArgs args(const NormCase& c, bool inplace) const;
  /// Rank `rank`'s inputs of `c`, the scale, and NaN in every output that is not also an input.
  void prepare(const NormCase& c, bool inplace, int rank, cudaStream_t s) const;

 private:
  size_t elems_;
  void *in_ = nullptr, *res_in_ = nullptr, *res_out_ = nullptr, *norm_out_ = nullptr, *gamma_ = nullptr;
  float* scale_ = nullptr;
};

}  // namespace customar::test
