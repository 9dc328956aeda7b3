#include "customar/dispatch.h"

#include <string>

#include "common/log.h"
#include "common/serialize.h"
#include "customar/env.h"
#include "customar/group.h"

namespace customar {

DispatchOptions DispatchOptions::from_env() {
  const Env& e = env();
  DispatchOptions o;
  o.disable = e.disable;
  o.disable_v2 = e.disable_v2;
  Algo a{};
  if (!e.algo.empty() && parse_algo(e.algo, &a)) o.force_algo = a;
  return o;
}

namespace {
std::string pair_text(int i, int j) { return "ranks " + std::to_string(i) + " and " + std::to_string(j); }

// The first pair (i < j) missing from a link matrix, or "" when every pair is linked.
std::string missing_pair(const std::vector<std::vector<bool>>& m, int n) {
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j)
      if (!m[i][j]) return pair_text(i, j);
  return "";
}
}  // namespace

Decision decide_backend(const Topology& topo, const Config& config, const DispatchOptions& options) {
  const int n = topo.world_size();
  if (n <= 1) return {Backend::kNone, "world size " + std::to_string(n) + ": nothing to reduce"};
  if (options.disable) return {Backend::kNccl, "CUSTOMAR_DISABLE=1"};
  if (!topo.single_host()) return {Backend::kNccl, "ranks span more than one host"};
  for (const GpuInfo& g : topo.gpus) {
    if (g.sm < 80) return {Backend::kNccl, "compute capability " + std::to_string(g.sm) + " < 8.0 (" + g.name + ")"};
    if (arch_family(g.sm) != arch_family(topo.gpus[0].sm)) return {Backend::kNccl, "GPUs of different architectures"};
  }
  ArchFamily family = arch_family(topo.gpus[0].sm);
  if (config.find(family, n) == nullptr)
    return {Backend::kNccl, "world size " + std::to_string(n) + " not in the " + arch_family_name(family) +
                                " config (supported: 2..8)"};
  if (topo.all_nvlink() && topo.all_p2p()) {
    if (options.disable_v2) return {Backend::kV1, "NVLink between every pair; V2 disabled by CUSTOMAR_DISABLE_V2=1"};
    if (!topo.nvrtc.value_or(false)) return {Backend::kV1, "NVLink between every pair; NVRTC unavailable for V2"};
    return {Backend::kV2, "NVLink and peer access between every pair of " + std::to_string(n) + " GPUs"};
  }
  if (n == 2 && topo.all_p2p()) return {Backend::kV1, "two GPUs with peer access over PCIe (no NVLink)"};
  if (!topo.all_p2p()) return {Backend::kNccl, "no peer access between " + missing_pair(topo.p2p, n)};
  return {Backend::kNccl, "no NVLink between " + missing_pair(topo.nvlink, n) + " and more than two GPUs"};
}

Backend lower_backend(Backend a, Backend b) {
  auto rank_of = [](Backend x) { return x == Backend::kNone ? 100 : static_cast<int>(x); };
  return rank_of(a) <= rank_of(b) ? a : b;
}

CallPlan plan_call(Backend backend, const Thresholds& t, size_t bytes, bool aligned16, size_t capacity,
                   std::optional<Algo> force_algo) {
  if (backend != Backend::kV1 && backend != Backend::kV2) return {Algo::kNccl, "the communicator's backend is NCCL"};
  if (!aligned16) return {Algo::kNccl, "pointer or byte count not a multiple of 16"};
  if (bytes > capacity) return {Algo::kNccl, "message larger than the custom buffers"};
  if (force_algo.has_value()) {
    Algo f = *force_algo;
    if (f == Algo::kNccl) return {Algo::kNccl, "CUSTOMAR_ALGO=nccl"};
    if (f != Algo::kOneshotPush || backend == Backend::kV2) return {f, "forced by CUSTOMAR_ALGO"};
    // V1 has no push kernel: fall through to the table.
  }
  if (bytes > t.custom_max) return {Algo::kNccl, "above the config's crossover to NCCL"};
  if (backend == Backend::kV2) {
    if (bytes <= t.oneshot_push_max) return {Algo::kOneshotPush, "at or below the one-shot push threshold"};
    if (bytes <= t.oneshot_pull_max) return {Algo::kOneshotPull, "at or below the one-shot pull threshold"};
    return {Algo::kTwoshot, "above the one-shot thresholds"};
  }
  if (bytes <= t.v1_oneshot_max) return {Algo::kOneshotPull, "at or below V1's one-shot threshold"};
  return {Algo::kTwoshot, "above V1's one-shot threshold"};
}

Decision dispatch_custom_allreduce(Group& group, int device, Topology* topology_out) {
  if (group.size() == 1) return {Backend::kNone, "world size 1: nothing to reduce"};
  Topology topo = detect_group_topology(group, device);
  if (topology_out != nullptr) *topology_out = topo;
  const Config& config = global_config();
  Decision mine = decide_backend(topo, config, DispatchOptions::from_env());
  // Per-rank inputs (environment, a rank's own topology file) can still differ: every rank votes and the lowest
  // backend wins, so that all ranks build the same backend. Different paths on different ranks hang.
  Decision out = agree_on_backend(group, mine);
  CUSTOMAR_INFO("INIT", "backend %s: %s", std::string(backend_name(out.backend)).c_str(), out.reason.c_str());
  return out;
}

Decision agree_on_backend(Group& group, const Decision& mine) {
  detail::Writer w;
  w.put<int32_t>(static_cast<int32_t>(mine.backend)).put_string(mine.reason);
  std::vector<Bytes> votes = group.all_gather(w.bytes());
  Decision out = mine;
  int decider = group.rank();
  for (int r = 0; r < group.size(); ++r) {
    detail::Reader rd(votes[r]);
    auto b = static_cast<Backend>(rd.get<int32_t>());
    std::string reason = rd.get_string();
    if (b != out.backend && lower_backend(b, out.backend) == b) {
      out = {b, reason};
      decider = r;
    }
  }
  if (decider != group.rank()) out.reason = "rank " + std::to_string(decider) + ": " + out.reason;
  return out;
}

bool can_use_custom_all_reduce_v2(Group& group, int device) {
  return dispatch_custom_allreduce(group, device).backend == Backend::kV2;
}

}  // namespace customar
