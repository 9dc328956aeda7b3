// The decision: which backend serves a group, and which algorithm serves one call. Pure functions of (topology,
// config, options, call) that return the choice and a human-readable reason; logging and side effects live in
// the callers.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

#include "customar/config.h"
#include "customar/topology.h"
#include "customar/types.h"

namespace customar {

class Group;

/// Switches read from the environment (CUSTOMAR_DISABLE, CUSTOMAR_DISABLE_V2, CUSTOMAR_ALGO).
struct DispatchOptions {
  bool disable = false;            ///< CUSTOMAR_DISABLE=1: NCCL for everything.
  bool disable_v2 = false;         ///< CUSTOMAR_DISABLE_V2=1: the best of V1 / NCCL.
  std::optional<Algo> force_algo;  ///< CUSTOMAR_ALGO: run this algorithm for every call it can serve.
  /// The options this process's environment asks for (read once, cached).
  static DispatchOptions from_env();
};

/// A backend and why.
struct Decision {
  Backend backend = Backend::kNccl;
  std::string reason;
};

/// Which backend serves `topo` (all ranks' facts already combined). One screen of rules, in order:
///   world size 1 -> none; disabled -> nccl; several hosts, compute capability < 8.0, mixed architectures, or a world
///   size the config does not list for this architecture -> nccl; NVLink and peer access between every pair -> v2
///   (v1 if NVRTC is unavailable or V2 is disabled); exactly two GPUs with peer access -> v1; else nccl.
/// Reads only its arguments.
Decision decide_backend(const Topology& topo, const Config& config, const DispatchOptions& options);

/// The lower of two backends (kNone is treated as the highest: it only arises for world size 1 on every rank).
Backend lower_backend(Backend a, Backend b);

/// What one call runs.
struct CallPlan {
  Algo algo = Algo::kNccl;
  const char* reason = "";  ///< static text, so planning a call allocates nothing.
  /// The kernel reads every rank's input where it lies, in symmetric memory (Communicator::alloc_symmetric()), instead
  /// of staging a copy of it: no staging copy, and no limit from the staging buffers' size.
  bool symmetric = false;
};

/// How one all-reduce + residual add + RMSNorm call (Communicator::all_reduce_add_rmsnorm) runs.
enum class NormPath : int {
  kFusedPush = 0,     ///< V2: the one-shot push, every rank normalising every row in the push's epilogue.
  kFusedTwoshot = 1,  ///< V2: the two-shot, rows split by token; the all-gather carries the finished rows.
  kUnfused = 2,       ///< the all-reduce (any backend and algorithm), then customar's add + RMSNorm kernel.
};

/// "fused_push", "fused_twoshot", "unfused".
const char* norm_path_name(NormPath path);

/// What a communicator's calls are planned from besides the call itself: fixed at creation and identical on every
/// rank (the backend and thresholds come out of the set-up vote, the capacities from the agreed buffer sizes).
struct PlanFacts {
  Backend backend = Backend::kNccl;
  int world = 0;
  Thresholds thresholds;
  size_t capacity = 0;             ///< bytes a staging buffer holds (0: no custom buffers)
  size_t push_capacity = 0;        ///< bytes a push slot holds (0: no one-shot push)
  std::optional<Algo> force_algo;  ///< CUSTOMAR_ALGO or Communicator::set_algo(); nullopt: the thresholds decide
  /// Communicator::set_norm_path(); nullopt: the all-reduce's algorithm decides (plan_norm_call()).
  std::optional<NormPath> force_norm_path;
};

/// Picks the algorithm for one call of `count` elements of `dtype`. In order: a backend other than V1/V2, a dtype
/// only NCCL reduces, a byte count that is not a multiple of 16 and a message larger than the staging buffers go to
/// NCCL; a forced algorithm is honoured where the backend can run it (V1 has no push); then the thresholds, with the
/// crossover to NCCL first; a push larger than the push buffers becomes a pull. Pointer alignment does not enter:
/// the kernels take element-aligned pointers. A pure function of its arguments, so every rank plans the same call
/// alike.
CallPlan plan_call(const PlanFacts& facts, size_t count, DataType dtype);

/// What one all-reduce + residual add + RMSNorm call runs.
struct NormCallPlan {
  NormPath path = NormPath::kUnfused;
  /// The all-reduce algorithm of the path: kOneshotPush / kTwoshot for the fused paths; for kUnfused the algorithm of
  /// the all-reduce before the norm kernel (plan_call() of the same bytes).
  Algo algo = Algo::kNccl;
  const char* reason = "";  ///< static text
};

/// Picks the path of one all_reduce_add_rmsnorm call of `tokens` x `hidden` elements of `dtype` (fp16 / bf16), with
/// an e4m3 norm output where `fp8_out`. The all-reduce of the same bytes (tokens x hidden x 2) is planned first
/// (plan_call(), so the same thresholds, capacities, crossover and CUSTOMAR_ALGO / set_algo() apply); then, on V2
/// only: a one-shot push becomes the fused push and a two-shot the fused two-shot (facts.force_norm_path overrides
/// that choice); everything else, and V1 and NCCL always, runs unfused: the all-reduce, then the norm kernel. A fused
/// push needs the message in the push buffers; a fused two-shot needs the input and the normalised rows in one
/// staging buffer (fused_twoshot_staging_bytes()); a fused path that does not fit runs unfused. A pure function of
/// its arguments, so every rank plans the same call alike.
NormCallPlan plan_norm_call(const PlanFacts& facts, size_t tokens, size_t hidden, DataType dtype, bool fp8_out);
/// Where a call's buffers lie, as every rank knows it alike: every rank passes symmetric buffers at the same offset of
/// the same allocation (Communicator::alloc_symmetric()), so what one rank finds, every rank finds.
struct CallBuffers {
  bool in_symmetric = false;   ///< the input lies in one symmetric allocation and is 16-byte aligned
  bool out_symmetric = false;  ///< the same for the output
  bool in_place = false;       ///< the output is the input
};

/// Smallest message, in bytes, that a symmetric call runs as a two-shot whatever the one-shot pull threshold says: the
/// large-message path (reduce-scatter, then all-gather by pushing into every rank's symmetric output).
inline constexpr size_t kSymmetricTwoshotMin = size_t(32) << 20;

/// Picks the algorithm for one call whose buffers lie as `buffers` says. A call whose input is not symmetric, or whose
/// backend is not V2 (the symmetric kernels are run-time compiled only), is plan_call(facts, count, dtype). Otherwise,
/// after the dtype and multiple-of-16 rules: a forced algorithm where it can run (see below); else NCCL above the
/// symmetric crossover (none at 2 ranks, twice the config's crossover above 2); the one-shot push where the
/// thresholds pick it (it has no staging copy); the one-shot pull reading the inputs in place where they pick the pull,
/// out of place and below kSymmetricTwoshotMin; else the two-shot: pushing into every rank's output where the output is
/// symmetric too or the call is in place; else gathering through the staging buffers where they hold the message; else,
/// at 2 ranks, the pull (which moves as much as a two-shot there); else plan_call(facts, count, dtype). A forced pull
/// in place runs the two-shot (a pull would overwrite its input while peers still read it). The staging buffers' size
/// limits only the gathering two-shot. Pure, so every rank plans the same call alike.
CallPlan plan_call(const PlanFacts& facts, size_t count, DataType dtype, const CallBuffers& buffers);

/// Combines per-rank decisions (collective): every rank votes its own decision and all ranks return the lowest
/// backend, with the reason of the first rank that voted for it ("rank r: ..."). dispatch_custom_allreduce() ends
/// with it; it is public so that callers with their own decision logic keep the same all-ranks-agree guarantee.
Decision agree_on_backend(Group& group, const Decision& mine);

/// The capability check of SGLang's custom all-reduce V2, under its name: detects the group's topology (collective),
/// fills the config if not yet filled, and returns true when V2 would be chosen. Every rank returns the same answer.
bool can_use_custom_all_reduce_v2(Group& group, int device);

/// The dispatch of SGLang's custom all-reduce V2, under its name: detects the group's topology (collective), fills the
/// config, decides, and combines the decision across ranks (each votes, the lowest backend wins) so all ranks take the
/// same path. `topology_out`, when given, receives the combined topology the decision was made on.
Decision dispatch_custom_allreduce(Group& group, int device, Topology* topology_out = nullptr);

}  // namespace customar
