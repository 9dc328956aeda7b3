#include "customar/dispatch.h"

#include <string>

#include "common/log.h"
#include "common/serialize.h"
#include "common/text.h"
#include "customar/env.h"
#include "customar/group.h"
#include "dispatch/setup.h"
#include "group/agree.h"
#include "topology/detect.h"

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

// One rank's vote on the wire. Thresholds and switches travel with the backend so that disagreement is caught here,
// at creation, rather than as a hang or an out-of-bounds read in the first call.
Bytes encode_vote(const detail::LocalChoice& c) {
  detail::Writer w;
  w.put_string(c.error).put<int32_t>(static_cast<int32_t>(c.decision.backend)).put_string(c.decision.reason);
  w.put<uint64_t>(c.thresholds.oneshot_push_max).put<uint64_t>(c.thresholds.oneshot_pull_max);
  w.put<uint64_t>(c.thresholds.custom_max).put<uint64_t>(c.thresholds.v1_oneshot_max);
  w.put<int32_t>(c.force_algo.has_value() ? static_cast<int32_t>(*c.force_algo) : -1).put<uint8_t>(c.check ? 1 : 0);
  return std::move(w.bytes());
}

std::string algo_text(std::optional<Algo> a) { return a.has_value() ? std::string(algo_name(*a)) : "unset"; }

std::string thresholds_text(const Thresholds& t) {
  return "push<=" + std::to_string(t.oneshot_push_max) + " pull<=" + std::to_string(t.oneshot_pull_max) +
         " custom<=" + std::to_string(t.custom_max) + " v1-oneshot<=" + std::to_string(t.v1_oneshot_max);
}

// A peer's vote that is cut short, longer than its fields, or holds a value no build of customar writes is rejected
// whole, naming the rank and the field, rather than read as something it does not say.
[[noreturn]] void bad_vote(size_t rank, const std::string& what) {
  throw ConfigError("rank " + std::to_string(rank) + " sent a malformed set-up vote: " + what);
}

detail::LocalChoice read_vote(detail::Reader& rd, size_t rank) {
  detail::LocalChoice c;
  c.error = rd.get_string();
  auto backend = rd.get<int32_t>();
  if (backend < static_cast<int32_t>(Backend::kNone) || backend > static_cast<int32_t>(Backend::kV2))
    bad_vote(rank, "backend value " + std::to_string(backend) + " is not one of 0 (none), 1 (nccl), 2 (v1), 3 (v2)");
  c.decision.backend = static_cast<Backend>(backend);
  c.decision.reason = rd.get_string();
  c.thresholds.oneshot_push_max = rd.get<uint64_t>();
  c.thresholds.oneshot_pull_max = rd.get<uint64_t>();
  c.thresholds.custom_max = rd.get<uint64_t>();
  c.thresholds.v1_oneshot_max = rd.get<uint64_t>();
  auto algo = rd.get<int32_t>();
  if (algo < -1 || algo > static_cast<int32_t>(Algo::kTwoshot))
    bad_vote(rank, "forced algorithm value " + std::to_string(algo) + " is not one of -1 (unset), 0 to 3");
  if (algo >= 0) c.force_algo = static_cast<Algo>(algo);
  auto check = rd.get<uint8_t>();
  if (check > 1) bad_vote(rank, "check flag " + std::to_string(check) + " is neither 0 nor 1");
  c.check = check != 0;
  return c;
}

detail::LocalChoice decode_vote(const Bytes& bytes, size_t rank) {
  detail::Reader rd(bytes);
  try {
    detail::LocalChoice c = read_vote(rd, rank);
    rd.expect_end();
    return c;
  } catch (const ConfigError&) {
    throw;
  } catch (const Error& e) {  // the Reader's: truncated, or trailing bytes
    bad_vote(rank, e.what());
  }
}

detail::AgreedChoice decode_votes(const std::vector<Bytes>& votes, int my_rank) {
  std::vector<detail::LocalChoice> all(votes.size());
  for (size_t r = 0; r < votes.size(); ++r) all[r] = decode_vote(votes[r], r);
  for (size_t r = 0; r < all.size(); ++r) {
    if (!all[r].error.empty())
      throw ConfigError("rank " + std::to_string(r) + " could not choose a backend: " + all[r].error);
  }
  detail::AgreedChoice out{all[my_rank].decision, all[0].thresholds, all[0].force_algo, all[0].check};
  int decider = my_rank;
  for (size_t r = 0; r < all.size(); ++r) {
    Backend b = all[r].decision.backend;
    if (b != out.decision.backend && lower_backend(b, out.decision.backend) == b) {
      out.decision = all[r].decision;
      decider = static_cast<int>(r);
    }
  }
  const bool custom = out.decision.backend == Backend::kV1 || out.decision.backend == Backend::kV2;
  for (size_t r = 1; r < all.size(); ++r) {
    const std::string who = "rank " + std::to_string(r);
    if (all[r].check != out.check)
      throw ConfigError("CUSTOMAR_CHECK differs between ranks (rank 0: " + std::to_string(out.check) + ", " + who +
                        ": " + std::to_string(all[r].check) + "); set it on every rank or on none");
    if (custom && all[r].force_algo != out.force_algo)
      throw ConfigError("CUSTOMAR_ALGO differs between ranks (rank 0: " + algo_text(out.force_algo) + ", " + who +
                        ": " + algo_text(all[r].force_algo) + "); every rank must force the same algorithm");
    if (custom && !(all[r].thresholds == out.thresholds))
      throw ConfigError("the config's thresholds differ between ranks (rank 0: " + thresholds_text(out.thresholds) +
                        "; " + who + ": " + thresholds_text(all[r].thresholds) +
                        "); give every rank the same CUSTOMAR_CONFIG_FILE / tuned config");
  }
  if (decider != my_rank) out.decision.reason = "rank " + std::to_string(decider) + ": " + out.decision.reason;
  return out;
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

Decision dispatch_custom_allreduce(Group& group, int device, Topology* topology_out) {
  if (group.size() == 1) return {Backend::kNone, "world size 1: nothing to reduce"};
  return detail::agree_setup(group, device, std::nullopt, topology_out).decision;
}

Decision agree_on_backend(Group& group, const Decision& mine) {
  detail::LocalChoice c;
  c.decision = mine;
  std::vector<Bytes> votes = group.all_gather(encode_vote(c));
  return decode_votes(votes, group.rank()).decision;
}

namespace detail {

LocalChoice local_choice(const Topology& topo, std::optional<Backend> max_backend) {
  LocalChoice c;
  c.error = local_error([&] {
    const Config& config = global_config();
    const DispatchOptions o = DispatchOptions::from_env();
    c.decision = decide_backend(topo, config, o);
    if (max_backend.has_value() && c.decision.backend != Backend::kNone &&
        lower_backend(*max_backend, c.decision.backend) != c.decision.backend) {
      c.decision = {*max_backend, "capped at " + std::string(backend_name(*max_backend)) +
                                      " by CommOptions::max_backend (" + c.decision.reason + ")"};
    }
    if (!topo.gpus.empty()) {
      if (const Thresholds* t = config.find(arch_family(topo.gpus[0].sm), topo.world_size())) c.thresholds = *t;
    }
    c.force_algo = o.force_algo;
    c.check = env().check;
  });
  return c;
}

AgreedChoice agree_choice(Group& group, const LocalChoice& mine) {
  std::vector<Bytes> votes = group.all_gather(encode_vote(mine));
  return decode_votes(votes, group.rank());
}

AgreedChoice agree_setup(Group& group, int device, std::optional<Backend> max_backend, Topology* topology_out,
                         const std::string& local_error) {
  const Env& e = env();
  Topology topo = detect_group_topology_from(group, device, e.topo_file);
  LocalChoice mine = local_choice(topo, max_backend);
  if (!local_error.empty()) mine.error = local_error;
  // The dump is a diagnostic: one that cannot be written is a warning (write_file_atomic leaves no temporary file),
  // never a reason to change or fail the backend choice.
  if (mine.error.empty() && !e.topo_dump_file.empty() && group.rank() == 0) {
    try {
      save_topology_file(topo, e.topo_dump_file);
      CUSTOMAR_INFO("TOPO", "topology written to %s", text::printable(e.topo_dump_file).c_str());
    } catch (const Error& err) {
      CUSTOMAR_WARN("TOPO", "CUSTOMAR_TOPO_DUMP_FILE not written: %s", err.what());
    }
  }
  AgreedChoice out = agree_choice(group, mine);
  if (topology_out != nullptr) *topology_out = std::move(topo);
  CUSTOMAR_INFO("INIT", "backend %s: %s", std::string(backend_name(out.decision.backend)).c_str(),
                out.decision.reason.c_str());
  return out;
}

}  // namespace detail

bool can_use_custom_all_reduce_v2(Group& group, int device) {
  return dispatch_custom_allreduce(group, device).backend == Backend::kV2;
}

}  // namespace customar
