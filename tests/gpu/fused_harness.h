// The harness of fused_test.cpp (the cases live there): one rank's buffers, one all_reduce_add_rmsnorm call filled,
// poisoned, run and checked against the float64 reference (tools/harness/norm_check.h), and the verdict of every
// rank, including that their outputs are bitwise identical.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <optional>
#include <string>

#include "customar/communicator.h"
#include "norm_check.h"
#include "verdict.h"
#include "world.h"

namespace customar::test {

struct FusedOptions {
  World world;
  bool quick = false;  // shapes up to 8M elements
  bool smoke = false;  // a handful of cases
};

/// One call of a case. In place: residual_out = residual_in, and norm_out = in unless fp8 (an e4m3 norm_out may not
/// alias the input).
struct FusedCall {
  DataType dtype = DataType::kBFloat16;
  size_t tokens = 1, hidden = 4096;
  bool fp8 = false;
  bool inplace = false;
};

inline std::string describe(const FusedCall& c) {
  char buf[128];
  std::snprintf(buf, sizeof(buf), "%s %zu x %zu%s %s", std::string(dtype_name(c.dtype)).c_str(), c.tokens, c.hidden,
                c.fp8 ? " -> e4m3" : "", c.inplace ? "in-place" : "out-of-place");
  return buf;
}

/// One rank's view of a run: group, stream, the default buffers and the tally.
struct FusedCtx {
  Group& g;
  const FusedOptions& opt;
  int rank, world, device;
  cudaStream_t s;
  NormBuffers& bufs;
  NormCheckResult* res = nullptr;
  CheckResult* plain_res = nullptr;
  int passed = 0, failed = 0;
  uint64_t seed = 4321;
  // This rank's largest residual_out error on the one-rounding paths (fused, or world size 1), in units of 2^-p |ref|.
  double worst_residual_ulps = 0;

  void record(bool ok, const std::string& what) { count_check(ok, what, world, rank, passed, failed); }

  /// The reference of `c` as `comm` runs it, with a fresh seed or `same_seed` (and a scale that saturates some e4m3
  /// outputs).
  NormCase next_case(const Communicator& comm, const FusedCall& c, std::optional<uint64_t> same_seed = std::nullopt) {
    seed = mix(seed + 1);
    if (same_seed) seed = *same_seed;
    NormCase nc;
    nc.dtype = c.dtype;
    nc.tokens = c.tokens;
    nc.hidden = c.hidden;
    nc.world = world;
    nc.eps = 1e-5f;
    nc.fp8 = c.fp8;
    nc.scale = 1.0f / 256 + float(seed % 7) / 2048;  // |y| above 1.75 to 3 saturates
    nc.seed = seed;
    nc.sum_roundings = sum_roundings(comm, c);
    return nc;
  }

  /// 0 on the fused paths and for world size 1, 1 after customar's all-reduce (and a virtual world's reference),
  /// `world` after NCCL.
  int sum_roundings(const Communicator& comm, const FusedCall& c) const {
    if (comm.backend() == Backend::kNone ||
        comm.norm_path_for(c.tokens, c.hidden, c.dtype, c.fp8) != NormPath::kUnfused)
      return 0;
    return comm.algo_for(c.tokens * c.hidden, c.dtype) == Algo::kNccl ? world : 1;
  }

  /// Bitwise identity is demanded of every path but a real NCCL all-reduce.
  bool want_identical(const Communicator& comm, const FusedCall& c) const {
    return opt.world.virtual_ranks || comm.norm_path_for(c.tokens, c.hidden, c.dtype, c.fp8) != NormPath::kUnfused ||
           comm.algo_for(c.tokens * c.hidden, c.dtype) != Algo::kNccl;
  }

  /// Every rank's verdict on its outputs of `nc` (already computed into `r`); false with `why` when any rank is wrong
  /// or, where demanded, the ranks' outputs differ.
  bool agree(const NormCheckResult& r, bool identical, std::string* why) {
    struct V {
      unsigned long long wrong_residual, wrong_norm, first_bad, checksum;
    } mine{r.wrong_residual, r.wrong_norm, r.first_bad, r.checksum};
    const auto all = all_gather_value(g, mine);
    for (int k = 0; k < world; ++k)
      if (all[k].wrong_residual || all[k].wrong_norm) {
        *why = "rank " + std::to_string(k) + ": " + std::to_string(all[k].wrong_residual) + " wrong residual_out and " +
               std::to_string(all[k].wrong_norm) + " wrong norm_out elements, first at " +
               std::to_string(all[k].first_bad);
        return false;
      }
    for (int k = 1; identical && k < world; ++k)
      if (all[k].checksum != all[0].checksum) {
        *why = "rank " + std::to_string(k) + "'s outputs differ bitwise from rank 0's";
        return false;
      }
    return true;
  }

  /// Checks `c`'s outputs on `b` for `nc` on every rank, demanding bitwise-identical outputs where `identical`;
  /// returns this rank's checksum of them through `checksum` when given.
  bool verify(const FusedCall& c, const NormCase& nc, const NormBuffers& b, bool identical, std::string* why,
              unsigned long long* checksum = nullptr) {
    const AddRmsNormArgs a = b.args(nc, c.inplace);
    reset_norm_result(res, s);
    check_norm_async(nc, a.residual_out, a.norm_out, s, res);
    const NormCheckResult r = read_norm_result(res, s);
    if (checksum != nullptr) *checksum = r.checksum;
    if (nc.sum_roundings == 0) worst_residual_ulps = std::max(worst_residual_ulps, r.max_residual_ulps);
    return agree(r, identical, why);
  }

  /// Fills, poisons, runs and checks one call on the default buffers; records it under `label`. `seed` replaces the
  /// next fresh seed (to run the same inputs twice); `checksum` receives this rank's checksum of the outputs.
  void check_call(Communicator& comm, const FusedCall& c, const std::string& label,
                  std::optional<uint64_t> same_seed = std::nullopt, unsigned long long* checksum = nullptr) {
    const NormCase nc = next_case(comm, c, same_seed);
    const std::string what = label + " " + describe(c) + " " +
                             norm_path_name(comm.norm_path_for(c.tokens, c.hidden, c.dtype, c.fp8)) + " (" +
                             std::string(algo_name(comm.algo_for(c.tokens * c.hidden, c.dtype))) + ")";
    bufs.prepare(nc, c.inplace, rank, s);
    try {
      comm.all_reduce_add_rmsnorm(bufs.args(nc, c.inplace), s);
      TEST_CUDA(cudaStreamSynchronize(s));
      comm.check();
    } catch (const std::exception& e) {
      record(false, what + ": " + e.what());
      return;
    }
    std::string why;
    const bool ok = verify(c, nc, bufs, want_identical(comm, c), &why, checksum);
    record(ok, what + (ok ? "" : ": " + why));
  }
};

}  // namespace customar::test
