#include "dispatch/plan.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "customar/error.h"

namespace customar {

CallPlan plan_call(const PlanFacts& f, size_t count, DataType dtype) {
  if (f.backend != Backend::kV1 && f.backend != Backend::kV2)
    return {Algo::kNccl, "the communicator's backend is NCCL"};
  if (!custom_dtype(dtype)) return {Algo::kNccl, "a dtype only NCCL reduces"};
  const size_t bytes = count * dtype_size(dtype);
  if (bytes % 16 != 0) return {Algo::kNccl, "byte count not a multiple of 16"};
  if (bytes > f.capacity) return {Algo::kNccl, "message larger than the custom buffers"};
  const Thresholds& t = f.thresholds;
  CallPlan p{};
  const bool forced = f.force_algo.has_value() && (*f.force_algo != Algo::kOneshotPush || f.backend == Backend::kV2);
  if (forced) {
    p = {*f.force_algo, *f.force_algo == Algo::kNccl ? "CUSTOMAR_ALGO=nccl" : "forced by CUSTOMAR_ALGO"};
  } else if (bytes > t.custom_max) {
    p = {Algo::kNccl, "above the config's crossover to NCCL"};
  } else if (f.backend == Backend::kV2) {
    p = bytes <= t.oneshot_push_max   ? CallPlan{Algo::kOneshotPush, "at or below the one-shot push threshold"}
        : bytes <= t.oneshot_pull_max ? CallPlan{Algo::kOneshotPull, "at or below the one-shot pull threshold"}
                                      : CallPlan{Algo::kTwoshot, "above the one-shot thresholds"};
  } else {
    p = bytes <= t.v1_oneshot_max ? CallPlan{Algo::kOneshotPull, "at or below V1's one-shot threshold"}
                                  : CallPlan{Algo::kTwoshot, "above V1's one-shot threshold"};
  }
  if (p.algo == Algo::kOneshotPush && bytes > f.push_capacity) p = {Algo::kOneshotPull, "larger than the push buffers"};
  return p;
}

const char* norm_path_name(NormPath path) {
  switch (path) {
    case NormPath::kFusedPush:
      return "fused_push";
    case NormPath::kFusedTwoshot:
      return "fused_twoshot";
    case NormPath::kUnfused:
      return "unfused";
  }
  return "unknown";
}

NormCallPlan plan_norm_call(const PlanFacts& f, size_t tokens, size_t hidden, DataType dtype, bool fp8_out) {
  const CallPlan ar = plan_call(f, tokens * hidden, dtype);
  const auto unfused = [&](const char* why) { return NormCallPlan{NormPath::kUnfused, ar.algo, why}; };
  if (f.backend == Backend::kV1) return unfused("V1 has no fused kernels: the all-reduce, then the norm kernel");
  if (f.backend != Backend::kV2) return unfused("the NCCL path: the all-reduce, then the norm kernel");
  NormPath want = NormPath::kUnfused;
  const char* why = "forced by set_norm_path";
  if (f.force_norm_path.has_value()) {
    want = *f.force_norm_path;
  } else if (ar.algo == Algo::kOneshotPush) {
    want = NormPath::kFusedPush;
    why = "a one-shot push: every rank normalises every row in the push's epilogue";
  } else if (ar.algo == Algo::kTwoshot) {
    want = NormPath::kFusedTwoshot;
    why = "a two-shot: each rank normalises its rows, the all-gather carries them";
  } else {
    return unfused(ar.algo == Algo::kOneshotPull ? "the one-shot pull band: the all-reduce, then the norm kernel"
                                                 : ar.reason);
  }
  if (want == NormPath::kUnfused) return unfused(why);
  if (want == NormPath::kFusedPush)
    return tokens * hidden * 2 <= f.push_capacity ? NormCallPlan{NormPath::kFusedPush, Algo::kOneshotPush, why}
                                                  : unfused(
                                                        "larger than the push buffers: the all-reduce, then the "
                                                        "norm kernel");
  return detail::fused_twoshot_staging_bytes(tokens, hidden, fp8_out ? 1 : 2) <= f.capacity
             ? NormCallPlan{NormPath::kFusedTwoshot, Algo::kTwoshot, why}
             : unfused(
                   "the input and the normalised rows do not both fit a staging buffer: the all-reduce, then the "
                   "norm kernel");
}

namespace {

// Symmetric calls go to NCCL above this many bytes. At 2 ranks never: PyTorch's SymmetricMemory two-shot, the
// algorithm of symmetric_twoshot_push, runs at 0.90-0.92 x NCCL at 64 and 256 MiB on 2x H200 (bench/RESULTS.md). Above
// 2 ranks at twice the config's crossover: there the staged two-shot ties NCCL at the crossover (16 MiB on 4x H200)
// with the copy 8 % of its time, and PyTorch's two-shot loses to NCCL by 6 % at 64 MiB; in between is unmeasured.
size_t symmetric_crossover(const PlanFacts& f) {
  const size_t t = f.thresholds.custom_max;
  return f.world == 2 || t > kUnlimited / 2 ? kUnlimited : 2 * t;
}

// The two-shot of a symmetric input, by where its output lies.
CallPlan symmetric_twoshot(const PlanFacts& f, size_t count, DataType dtype, const CallBuffers& b) {
  const size_t bytes = count * dtype_size(dtype);
  if (b.out_symmetric || b.in_place)
    return {Algo::kTwoshot, "symmetric buffers: two-shot pushing into every rank's output", true};
  if (bytes <= f.capacity)
    return {Algo::kTwoshot, "symmetric input, ordinary output: two-shot gathering through the staging buffers", true};
  if (f.world == 2)
    return {Algo::kOneshotPull,
            "symmetric input, ordinary output larger than the staging buffers: one-shot pull (at 2 ranks it moves as "
            "much as a two-shot)",
            true};
  return plan_call(f, count, dtype);
}

CallPlan symmetric_pull_or_twoshot(const PlanFacts& f, size_t count, DataType dtype, const CallBuffers& b,
                                   const char* why) {
  if (b.in_place) return symmetric_twoshot(f, count, dtype, b);
  return {Algo::kOneshotPull, why, true};
}

CallPlan symmetric_forced(const PlanFacts& f, size_t count, DataType dtype, const CallBuffers& b) {
  const size_t bytes = count * dtype_size(dtype);
  switch (*f.force_algo) {
    case Algo::kNccl:
      return {Algo::kNccl, "CUSTOMAR_ALGO=nccl"};
    case Algo::kOneshotPush:
      if (bytes <= f.push_capacity) return {Algo::kOneshotPush, "forced by CUSTOMAR_ALGO"};
      return symmetric_pull_or_twoshot(f, count, dtype, b, "forced push larger than the push buffers: pull in place");
    case Algo::kOneshotPull:
      return symmetric_pull_or_twoshot(f, count, dtype, b, "forced by CUSTOMAR_ALGO: pull reading the inputs in place");
    case Algo::kTwoshot:
      return symmetric_twoshot(f, count, dtype, b);
  }
  return plan_call(f, count, dtype);
}

}  // namespace

CallPlan plan_call(const PlanFacts& f, size_t count, DataType dtype, const CallBuffers& b) {
  if (!b.in_symmetric || f.backend != Backend::kV2) return plan_call(f, count, dtype);
  if (!custom_dtype(dtype)) return {Algo::kNccl, "a dtype only NCCL reduces"};
  const size_t bytes = count * dtype_size(dtype);
  if (bytes % 16 != 0) return {Algo::kNccl, "byte count not a multiple of 16"};
  if (f.force_algo.has_value()) return symmetric_forced(f, count, dtype, b);
  const Thresholds& t = f.thresholds;
  if (bytes > symmetric_crossover(f)) return {Algo::kNccl, "symmetric input above the symmetric crossover to NCCL"};
  if (bytes <= t.oneshot_push_max && bytes <= f.push_capacity)
    return {Algo::kOneshotPush,
            "symmetric input at or below the one-shot push threshold (the push has no staging copy)"};
  if (bytes <= t.oneshot_pull_max && bytes < kSymmetricTwoshotMin)
    return symmetric_pull_or_twoshot(f, count, dtype, b,
                                     "symmetric input at or below the one-shot pull threshold: pull reading in place");
  return symmetric_twoshot(f, count, dtype, b);
}

namespace detail {

namespace {

void check_resident(const Plan& p, const LaunchLimits& limits) {
  if (limits.max_grid_threads != 0 && size_t(p.grid) * p.block > limits.max_grid_threads)
    throw InvalidArgument(std::string("a grid of ") + std::to_string(p.grid) + " x " + std::to_string(p.block) +
                          " threads (" + kernel_variant(p.kernel).name + ") cannot be resident beside the other " +
                          "ranks' kernels: the limit is " + std::to_string(limits.max_grid_threads) +
                          " threads per kernel");
}

// The pull or two-shot kernel of a call's plan.
Kernel barrier_kernel(const CallPlan& c, const CallBuffers& b) {
  const bool twoshot = c.algo == Algo::kTwoshot;
  if (!c.symmetric) return twoshot ? Kernel::kTwoshot : Kernel::kOneshotPull;
  if (!twoshot) return Kernel::kSymmetricPull;
  return b.out_symmetric || b.in_place ? Kernel::kSymmetricTwoshotPush : Kernel::kSymmetricTwoshot;
}

}  // namespace

Plan plan_launch(const PlanFacts& facts, const LaunchLimits& limits, size_t count, DataType dtype) {
  return plan_launch(facts, limits, count, dtype, CallBuffers{});
}

Plan plan_launch(const PlanFacts& facts, const LaunchLimits& limits, size_t count, DataType dtype,
                 const CallBuffers& buffers) {
  const CallPlan c = plan_call(facts, count, dtype, buffers);
  Plan p;
  p.algo = c.algo;
  p.reason = c.reason;
  if (c.algo == Algo::kNccl) return p;
  p.nvec = count * dtype_size(dtype) / 16;
  p.pdl = limits.pdl;
  if (c.algo == Algo::kOneshotPush) {
    const bool wide = p.nvec >= kWidePushVecs;
    const PushShape s = push_shape(p.nvec, limits.max_blocks, limits.push_sm_threads[static_cast<int>(dtype)][wide]);
    p.kernel = s.blocks == 1 ? Kernel::kPushOneBlock : wide ? Kernel::kPushWide : Kernel::kPushMultiBlock;
    p.grid = s.blocks;
    p.block = s.threads;
  } else {
    const bool twoshot = c.algo == Algo::kTwoshot;
    p.kernel = barrier_kernel(c, buffers);
    p.grid = barrier_grid(twoshot, p.nvec, facts.world, limits.max_blocks);
    p.block = kThreads;
  }
  check_resident(p, limits);
  return p;
}

namespace {

// One block per row, as many as max_grid_threads lets be resident (the norm kernel waits for nothing, so a capped
// grid only loops more rows per block).
unsigned norm_grid(const LaunchLimits& limits, size_t tokens, unsigned block) {
  size_t grid = tokens;
  if (limits.max_grid_threads != 0) grid = std::min(grid, limits.max_grid_threads / block);
  return static_cast<unsigned>(std::max<size_t>(grid, 1));
}

}  // namespace

NormPlan plan_norm_launch(const PlanFacts& facts, const LaunchLimits& limits, size_t tokens, size_t hidden,
                          DataType dtype, bool fp8_out) {
  NormPlan p;
  p.call = plan_norm_call(facts, tokens, hidden, dtype, fp8_out);
  const unsigned block = row_threads(row_vecs(static_cast<unsigned>(hidden)));
  if (p.call.path == NormPath::kUnfused) {
    p.kernel = plan_launch(facts, limits, tokens * hidden, dtype);
    p.norm_block = block;
    p.norm_grid = norm_grid(limits, tokens, block);
    p.norm_pdl = limits.pdl && p.kernel.kernel != Kernel::kNone;
    return p;
  }
  Plan& k = p.kernel;
  k.algo = p.call.algo;
  k.reason = p.call.reason;
  k.nvec = tokens * hidden * 2 / 16;
  k.pdl = limits.pdl;
  k.block = block;
  const size_t max_blocks = static_cast<size_t>(std::max(limits.max_blocks, 1));
  if (p.call.path == NormPath::kFusedPush) {
    k.kernel = Kernel::kPushAddRmsNorm;
    k.grid = static_cast<unsigned>(std::min(tokens, max_blocks));
  } else {
    const size_t part_rows = (tokens + static_cast<size_t>(facts.world) - 1) / static_cast<size_t>(facts.world);
    k.kernel = Kernel::kTwoshotAddRmsNorm;
    k.grid = static_cast<unsigned>(std::clamp<size_t>(part_rows, 1, max_blocks));
  }
  check_resident(k, limits);
  return p;
}

NormPlan norm_only_plan(const LaunchLimits& limits, size_t tokens, size_t hidden) {
  NormPlan p;
  p.call = {NormPath::kUnfused, Algo::kNccl, "world size 1: nothing to all-reduce, the norm kernel alone"};
  p.norm_block = row_threads(row_vecs(static_cast<unsigned>(hidden)));
  p.norm_grid = norm_grid(limits, tokens, p.norm_block);
  return p;
}

namespace {

// The limits of all_reduce_add_rmsnorm (documented at AddRmsNormArgs).
constexpr size_t kMaxTokens = 8192;
constexpr size_t kMinHidden = 1024;
constexpr size_t kMaxHidden = 16384;

[[noreturn]] void bad_norm_arg(const std::string& what) { throw InvalidArgument("all_reduce_add_rmsnorm: " + what); }

// A tensor's bytes, for the overlap rules.
struct Span {
  const char* name;
  uintptr_t beg;
  size_t bytes;
  bool overlaps(const Span& o) const { return beg < o.beg + o.bytes && o.beg < beg + bytes; }
};

void check_pointer(const char* name, const void* p, size_t align) {
  if (p == nullptr) bad_norm_arg(std::string(name) + " is null; every tensor must be device memory");
  if (reinterpret_cast<uintptr_t>(p) % align != 0)
    bad_norm_arg(std::string(name) + " is not " + std::to_string(align) + "-byte aligned (" +
                 std::to_string(reinterpret_cast<uintptr_t>(p) % align) + " bytes off)");
}

// residual_out may be residual_in and norm_out may be in (not for an e4m3 output: its rows land elsewhere); any
// other overlap of an output with a tensor is refused.
void check_overlaps(const AddRmsNormArgs& a) {
  const size_t bytes = a.tokens * a.hidden * 2;
  const Span in{"in", reinterpret_cast<uintptr_t>(a.in), bytes};
  const Span res_in{"residual_in", reinterpret_cast<uintptr_t>(a.residual_in), bytes};
  const Span gamma{"gamma", reinterpret_cast<uintptr_t>(a.gamma), a.hidden * 2};
  const Span scale{"scale", reinterpret_cast<uintptr_t>(a.scale), a.scale != nullptr ? sizeof(float) : 0};
  const Span res_out{"residual_out", reinterpret_cast<uintptr_t>(a.residual_out), bytes};
  const Span norm_out{"norm_out", reinterpret_cast<uintptr_t>(a.norm_out), a.tokens * a.hidden * (a.fp8_out ? 1 : 2)};
  const auto refuse = [](const Span& out, const Span& t, const char* allowed) {
    if (out.overlaps(t)) bad_norm_arg(std::string(out.name) + " overlaps " + t.name + "; " + allowed);
  };
  const char* res_rule = "residual_out may be residual_in itself (in place) and must overlap nothing else";
  const char* norm_rule = a.fp8_out ? "an e4m3 norm_out must overlap no other tensor"
                                    : "norm_out may be in itself (in place) and must overlap nothing else";
  refuse(res_out, norm_out, "the two outputs must not overlap");
  if (res_out.beg != res_in.beg) refuse(res_out, res_in, res_rule);
  for (const Span* t : {&in, &gamma, &scale}) refuse(res_out, *t, res_rule);
  if (a.fp8_out || norm_out.beg != in.beg) refuse(norm_out, in, norm_rule);
  for (const Span* t : {&res_in, &gamma, &scale}) refuse(norm_out, *t, norm_rule);
}

}  // namespace

void check_norm_args(const AddRmsNormArgs& a) {
  if (a.dtype != DataType::kFloat16 && a.dtype != DataType::kBFloat16) {
    const bool known = static_cast<int>(a.dtype) >= 0 && static_cast<int>(a.dtype) < kDataTypeCount;
    bad_norm_arg("dtype " + (known ? std::string(dtype_name(a.dtype)) : std::to_string(static_cast<int>(a.dtype))) +
                 " is not supported; fp16 or bf16 (accumulated in fp32)");
  }
  if (a.hidden < kMinHidden || a.hidden > kMaxHidden || a.hidden % 8 != 0)
    bad_norm_arg("hidden " + std::to_string(a.hidden) + " is not supported; " + std::to_string(kMinHidden) + ".." +
                 std::to_string(kMaxHidden) + " elements, a multiple of 8");
  if (a.tokens > kMaxTokens)
    bad_norm_arg("tokens " + std::to_string(a.tokens) + " is more than " + std::to_string(kMaxTokens) +
                 "; call once per chunk of at most " + std::to_string(kMaxTokens) + " rows");
  if (!std::isfinite(a.eps) || a.eps < 0.0f)
    bad_norm_arg("eps " + std::to_string(a.eps) + " is not a finite number >= 0");
  if (a.fp8_out && a.scale == nullptr)
    bad_norm_arg("fp8_out needs scale, a device pointer to the fp32 dequantisation scale");
  if (!a.fp8_out && a.scale != nullptr)
    bad_norm_arg("scale is given but fp8_out is off; set fp8_out for an e4m3 norm_out, or pass no scale");
  if (a.tokens == 0) return;
  check_pointer("in", a.in, 16);
  check_pointer("residual_in", a.residual_in, 16);
  check_pointer("gamma", a.gamma, 16);
  check_pointer("residual_out", a.residual_out, 16);
  check_pointer("norm_out", a.norm_out, 16);
  if (a.fp8_out) check_pointer("scale", a.scale, alignof(float));
  check_overlaps(a);
}

NormCall norm_call(const AddRmsNormArgs& a) {
  NormCall c{};
  c.in = a.in;
  c.residual_in = a.residual_in;
  c.gamma = a.gamma;
  c.residual_out = a.residual_out;
  c.norm_out = a.norm_out;
  c.scale = a.scale;
  c.tokens = static_cast<uint32_t>(a.tokens);
  c.hidden = static_cast<uint32_t>(a.hidden);
  c.eps = a.eps;
  c.fp8 = a.fp8_out ? 1 : 0;
  return c;
}

}  // namespace detail
}  // namespace customar
