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
};

/// What a communicator's calls are planned from besides the call itself: fixed at creation and identical on every
/// rank (the backend and thresholds come out of the set-up vote, the capacities from the agreed buffer sizes).
struct PlanFacts {
  Backend backend = Backend::kNccl;
  int world = 0;
  Thresholds thresholds;
  size_t capacity = 0;             ///< bytes a staging buffer holds (0: no custom buffers)
  size_t push_capacity = 0;        ///< bytes a push slot holds (0: no one-shot push)
  std::optional<Algo> force_algo;  ///< CUSTOMAR_ALGO or Communicator::set_algo(); nullopt: the thresholds decide
};

/// Picks the algorithm for one call of `count` elements of `dtype`. In order: a backend other than V1/V2, a dtype
/// only NCCL reduces, a byte count that is not a multiple of 16 and a message larger than the staging buffers go to
/// NCCL; a forced algorithm is honoured where the backend can run it (V1 has no push); then the thresholds, with the
/// crossover to NCCL first; a push larger than the push buffers becomes a pull. Pointer alignment does not enter:
/// the kernels take element-aligned pointers. A pure function of its arguments, so every rank plans the same call
/// alike.
CallPlan plan_call(const PlanFacts& facts, size_t count, DataType dtype);

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
