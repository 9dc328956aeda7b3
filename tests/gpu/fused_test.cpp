// Correctness of Communicator::all_reduce_add_rmsnorm on GPUs: a process per GPU (-n N) or N virtual ranks on one GPU
// (--virtual N). For each backend the world can run (V2, V1, and the NCCL path: NCCL, or the reference all-reduce of a
// virtual world), named cases:
//   shape_matrix     tokens {1, 3, 8, 32, 128, 512, 2048, 8192} x hidden {1024, 1032, 4096, 8192, 16384}, fp16 and
//                    bf16, e4m3 output on and off, in and out of place; on V2 under each path (auto, then forced:
//                    fused push, fused two-shot, unfused; a forced path that does not fit runs unfused).
//   paths_agree      the fused push and the fused two-shot give the same bits for the same inputs (V2).
//   mixed_sequence   fused calls between plain all-reduces of every algorithm, each checked, three rounds: the push's
//                    rotating buffers, state slots and re-arm, and the barrier kernels' epochs, shared by both.
//   graph_replay     fused and plain calls captured in one CUDA graph, replayed with new inputs and a new scale.
//   bad_input        clear InvalidArgument errors, and the communicator still works.
//   check_mode       (CUSTOMAR_CHECK=1) ranks that pass different shapes get InvalidArgument on every rank.
// Every output is poisoned (NaN) first and checked against a float64 reference; every rank's outputs must be bitwise
// identical (but after a real NCCL all-reduce).
//
//   fused_test [-n N | --virtual N [--partition auto|green|capped]] [--quick|--smoke]
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "check_kernels.h"
#include "customar/communicator.h"
#include "customar/env.h"
#include "fused_harness.h"
#include "verdict.h"
#include "world.h"

using namespace customar;
using namespace customar::test;

namespace {

const size_t kTokens[] = {1, 3, 8, 32, 128, 512, 2048, 8192};
const size_t kHidden[] = {1024, 1032, 4096, 8192, 16384};

// The four variants of a shape: a small shape runs all of them, a large one one of them in turn.
FusedCall variant(int v, size_t tokens, size_t hidden) {
  FusedCall c;
  c.dtype = v % 2 == 0 ? DataType::kBFloat16 : DataType::kFloat16;
  c.tokens = tokens;
  c.hidden = hidden;
  c.fp8 = v >= 2;
  c.inplace = v % 2 == 1;
  return c;
}

std::vector<std::optional<NormPath>> paths_of(const Communicator& comm) {
  if (comm.backend() == Backend::kV2)
    return {std::nullopt, NormPath::kFusedPush, NormPath::kFusedTwoshot, NormPath::kUnfused};
  return {std::nullopt};
}

std::string path_label(std::optional<NormPath> p) { return p ? std::string("forced ") + norm_path_name(*p) : "auto"; }

void shape_matrix(FusedCtx& x, Communicator& comm) {
  for (std::optional<NormPath> path : paths_of(comm)) {
    comm.set_norm_path(path);
    int turn = 0;
    for (size_t tokens : kTokens)
      for (size_t hidden : kHidden) {
        const size_t n = tokens * hidden;
        if (n > x.bufs.elems()) continue;
        if (x.opt.smoke && (tokens > 128 || (hidden != 4096 && hidden != 1032))) continue;
        // Forcing a path changes nothing above 8M elements: no fused path fits there.
        if (path && n > (size_t(8) << 20)) continue;
        const bool small = n <= (size_t(1) << 20);
        for (int v = 0; v < 4; ++v)
          if (small || v == turn % 4)
            x.check_call(comm, variant(v, tokens, hidden), "shape_matrix " + path_label(path));
        ++turn;
      }
  }
  comm.set_norm_path(std::nullopt);
}

// Same inputs, fused push then fused two-shot: the same definition of every rounding, the same row shape, so the same
// bits (where both fit).
void paths_agree(FusedCtx& x, Communicator& comm) {
  if (comm.backend() != Backend::kV2) return;
  const std::pair<size_t, size_t> shapes[] = {{1, 4096}, {3, 1032}, {16, 8192}, {2, 16384}};
  for (auto [tokens, hidden] : shapes)
    for (int v = 0; v < 4; ++v) {
      const FusedCall c = variant(v, tokens, hidden);
      const uint64_t seed = mix(x.seed + 17);
      unsigned long long sums[2] = {0, 1};
      bool ran = true;
      for (int k = 0; k < 2; ++k) {
        const NormPath p = k == 0 ? NormPath::kFusedPush : NormPath::kFusedTwoshot;
        comm.set_norm_path(p);
        ran = ran && comm.norm_path_for(c.tokens, c.hidden, c.dtype, c.fp8) == p;
        x.check_call(comm, c, "paths_agree", seed, &sums[k]);
      }
      if (ran)
        x.record(sums[0] == sums[1],
                 "paths_agree: fused push and fused two-shot give the same bits for " + describe(c));
    }
  comm.set_norm_path(std::nullopt);
}

// A plain all-reduce in the sequences: small integers, so the sum is exact.
struct PlainCall {
  Algo algo;
  size_t bytes;
};

void check_plain(FusedCtx& x, Communicator& comm, const PlainCall& p, void* in, void* out, const std::string& label) {
  const size_t count = p.bytes / 2;
  x.seed = mix(x.seed + 1);
  comm.set_algo(p.algo);
  fill(in, count, DataType::kBFloat16, x.seed, x.rank, Values::kSmallInt, x.s);
  TEST_CUDA(cudaMemsetAsync(out, 0xff, p.bytes, x.s));
  const std::string what = label + " all_reduce " + std::to_string(p.bytes) + " B " +
                           std::string(algo_name(comm.algo_for(count, DataType::kBFloat16)));
  try {
    comm.all_reduce(in, out, count, DataType::kBFloat16, x.s);
    TEST_CUDA(cudaStreamSynchronize(x.s));
    comm.check();
  } catch (const std::exception& e) {
    comm.set_algo(std::nullopt);
    x.record(false, what + ": " + e.what());
    return;
  }
  comm.set_algo(std::nullopt);
  reset_result(x.plain_res, x.s);
  check_async(out, count, DataType::kBFloat16, x.seed, x.world, Values::kSmallInt, 0, x.s, x.plain_res);
  const CheckResult r = read_result(x.plain_res, x.s);
  unsigned long long wrong = 0;
  for (auto w : all_gather_value(x.g, r.wrong)) wrong += w;
  x.record(wrong == 0, what + (wrong == 0 ? "" : ": " + std::to_string(wrong) + " wrong elements"));
}

// Fused calls of every path and plain all-reduces of every algorithm, alternating, so that each kind of push call
// follows the other with more and with fewer vectors (the re-arm sizes) and the rotation passes every buffer.
void mixed_sequence(FusedCtx& x, Communicator& comm) {
  struct Step {
    std::optional<PlainCall> plain;
    std::optional<NormPath> path;
    FusedCall fused;
  };
  auto fused = [](NormPath p, size_t tokens, size_t hidden, bool fp8 = false) {
    return Step{std::nullopt, p, variant(fp8 ? 2 : 0, tokens, hidden)};
  };
  auto plain = [](Algo a, size_t bytes) { return Step{PlainCall{a, bytes}, std::nullopt, {}}; };
  const Step steps[] = {
      plain(Algo::kOneshotPush, 4096),
      fused(NormPath::kFusedPush, 1, 4096),
      plain(Algo::kOneshotPush, 65536),
      fused(NormPath::kFusedPush, 32, 4096),
      plain(Algo::kOneshotPush, 4096),
      fused(NormPath::kFusedTwoshot, 64, 4096),
      plain(Algo::kOneshotPull, 65536),
      fused(NormPath::kFusedPush, 3, 1032, true),
      plain(Algo::kTwoshot, size_t(1) << 20),
      fused(NormPath::kUnfused, 8, 4096),
      fused(NormPath::kFusedPush, 16, 8192),
      plain(Algo::kOneshotPush, 262144),
      fused(NormPath::kFusedPush, 1, 16384, true),
      plain(Algo::kOneshotPull, 4096),
  };
  void *in = nullptr, *out = nullptr;
  TEST_CUDA(cudaMalloc(&in, size_t(1) << 20));
  TEST_CUDA(cudaMalloc(&out, size_t(1) << 20));
  for (int round = 0; round < (x.opt.smoke ? 1 : 3); ++round)
    for (const Step& st : steps) {
      const std::string label = "mixed_sequence round " + std::to_string(round);
      if (st.plain) {
        check_plain(x, comm, *st.plain, in, out, label);
        continue;
      }
      comm.set_norm_path(st.path);
      x.check_call(comm, st.fused, label);
      comm.set_norm_path(std::nullopt);
    }
  free_then_meet(x.g, {in, out});
}

// One captured call of graph_replay: a fused call on buffers of its own (its path fixed at capture), or a plain one.
struct Captured {
  FusedCall call;
  std::optional<NormPath> path;
  std::unique_ptr<NormBuffers> bufs;
  int roundings = 0;
  bool identical = true;
  NormCase nc;
  std::optional<PlainCall> plain;
};

void graph_replay(FusedCtx& x, Communicator& comm) {
  std::vector<Captured> calls;
  auto add_fused = [&](std::optional<NormPath> p, FusedCall c) {
    Captured k;
    k.call = c;
    k.path = p;
    k.bufs = std::make_unique<NormBuffers>(c.tokens * c.hidden);
    calls.push_back(std::move(k));
  };
  add_fused(std::nullopt, variant(0, 1, 4096));
  add_fused(NormPath::kFusedPush, variant(3, 8, 4096));
  calls.push_back({{}, std::nullopt, nullptr, 0, true, {}, PlainCall{Algo::kOneshotPush, 16384}});
  add_fused(NormPath::kFusedTwoshot, variant(1, 64, 4096));
  add_fused(NormPath::kUnfused, variant(2, 4, 8192));
  calls.push_back({{}, std::nullopt, nullptr, 0, true, {}, PlainCall{Algo::kTwoshot, size_t(1) << 20}});
  add_fused(std::nullopt, variant(0, 512, 4096));
  void *in = nullptr, *out = nullptr;
  TEST_CUDA(cudaMalloc(&in, size_t(1) << 20));
  TEST_CUDA(cudaMalloc(&out, size_t(1) << 20));
  CapturedGraph graph = capture_graph(x.s, [&] {
    for (Captured& k : calls) {
      if (k.plain) {
        comm.set_algo(k.plain->algo);
        comm.all_reduce(in, out, k.plain->bytes / 2, DataType::kBFloat16, x.s);
        comm.set_algo(std::nullopt);
        continue;
      }
      comm.set_norm_path(k.path);
      k.roundings = x.sum_roundings(comm, k.call);
      k.identical = x.want_identical(comm, k.call);
      comm.all_reduce_add_rmsnorm(k.bufs->args(x.next_case(comm, k.call), k.call.inplace), x.s);
      comm.set_norm_path(std::nullopt);
    }
  });
  if (!graph.error.empty()) x.record(false, "graph capture: " + graph.error);
  for (int replay = 0; graph.exec != nullptr && replay < (x.opt.smoke ? 1 : 3); ++replay) {
    const uint64_t plain_seed = mix(991 + replay);
    for (Captured& k : calls) {
      if (k.plain) continue;
      k.nc = x.next_case(comm, k.call);  // a new seed and a new scale each replay
      k.nc.sum_roundings = k.roundings;
      k.bufs->prepare(k.nc, k.call.inplace, x.rank, x.s);
    }
    // Every plain call reads the same input; the last one's output is checked.
    fill(in, (size_t(1) << 20) / 2, DataType::kBFloat16, plain_seed, x.rank, Values::kSmallInt, x.s);
    TEST_CUDA(cudaGraphLaunch(graph.exec, x.s));
    TEST_CUDA(cudaStreamSynchronize(x.s));
    bool ok = true;
    std::string why;
    for (size_t i = 0; i < calls.size() && ok; ++i) {
      const Captured& k = calls[i];
      if (k.plain) continue;
      ok = x.verify(k.call, k.nc, *k.bufs, k.identical, &why);
      if (!ok) why = "call " + std::to_string(i) + " (" + describe(k.call) + "): " + why;
    }
    reset_result(x.plain_res, x.s);
    check_async(out, (size_t(1) << 20) / 2, DataType::kBFloat16, plain_seed, x.world, Values::kSmallInt, 0, x.s,
                x.plain_res);
    unsigned long long wrong = 0;
    for (auto w : all_gather_value(x.g, read_result(x.plain_res, x.s).wrong)) wrong += w;
    if (ok && wrong != 0) {
      ok = false;
      why = "the last plain all-reduce: " + std::to_string(wrong) + " wrong elements";
    }
    try {
      comm.check();
    } catch (const std::exception& e) {
      ok = false;
      why = e.what();
    }
    x.record(ok, "graph_replay " + std::to_string(replay) + " of " + std::to_string(calls.size()) + " calls" +
                     (ok ? "" : ": " + why));
  }
  graph.release();
  calls.clear();  // their buffers' cudaFree, before the meeting: a free after it can wait for a peer's next kernel
  free_then_meet(x.g, {in, out});
}

void bad_input(FusedCtx& x, Communicator& comm) {
  const FusedCall good = variant(0, 8, 4096);
  const NormCase nc = x.next_case(comm, good);
  auto expect_throw = [&](const char* what, auto&& mutate) {
    AddRmsNormArgs a = x.bufs.args(nc, good.inplace);
    mutate(a);
    bool threw = false;
    try {
      comm.all_reduce_add_rmsnorm(a, x.s);
    } catch (const InvalidArgument&) {
      threw = true;
    }
    x.record(threw, std::string("bad_input rejected: ") + what);
  };
  expect_throw("fp32", [](AddRmsNormArgs& a) { a.dtype = DataType::kFloat32; });
  expect_throw("hidden 1000", [](AddRmsNormArgs& a) { a.hidden = 1000; });
  expect_throw("tokens 8193", [](AddRmsNormArgs& a) { a.tokens = 8193; });
  expect_throw("null gamma", [](AddRmsNormArgs& a) { a.gamma = nullptr; });
  expect_throw("misaligned in", [](AddRmsNormArgs& a) { a.in = static_cast<char*>(a.in) + 2; });
  expect_throw("fp8 without scale", [](AddRmsNormArgs& a) { a.fp8_out = true; });
  expect_throw("residual_out overlapping in", [](AddRmsNormArgs& a) { a.residual_out = a.in; });
  AddRmsNormArgs none = x.bufs.args(nc, good.inplace);
  none.tokens = 0;
  comm.all_reduce_add_rmsnorm(none, x.s);  // nothing, no error
  x.check_call(comm, good, "after bad_input");
}

// With CUSTOMAR_CHECK=1 a shape that differs on one rank is caught on every rank before anything runs.
void check_mode(FusedCtx& x, Communicator& comm) {
  const FusedCall c = variant(0, x.rank == 0 ? 8 : 16, 4096);
  bool threw = false;
  try {
    comm.all_reduce_add_rmsnorm(x.bufs.args(x.next_case(comm, c), false), x.s);
  } catch (const InvalidArgument& e) {
    threw = std::string(e.what()).find("CUSTOMAR_CHECK") != std::string::npos;
  }
  x.record(threw, "check_mode: different shapes rejected on every rank");
  x.check_call(comm, variant(0, 8, 4096), "check_mode, afterwards");
}

// Every case on one communicator of the given backend cap.
void run_cases(FusedCtx& x, std::optional<Backend> cap, const char* label) {
  CommOptions o;
  o.max_backend = cap;
  Communicator comm(x.g, x.device, o);
  if (cap && comm.backend() != *cap) return;  // the machine cannot run that backend: nothing to test
  if (x.rank == 0)
    std::printf("[world %d] %s: backend %s: %s\n", x.world, label, std::string(backend_name(comm.backend())).c_str(),
                comm.reason().c_str());
  const int failed_before = x.failed;
  shape_matrix(x, comm);
  paths_agree(x, comm);
  if (x.world > 1) {
    mixed_sequence(x, comm);
    graph_replay(x, comm);
  }
  if (!x.opt.smoke) bad_input(x, comm);
  if (env().check && x.world > 1) check_mode(x, comm);
  double worst = 0;
  for (double w : all_gather_value(x.g, x.worst_residual_ulps)) worst = std::max(worst, w);
  x.worst_residual_ulps = 0;
  if (x.rank == 0)
    std::printf(
        "[world %d] %s: %s; largest residual_out error of the one-rounding paths %.3f x 2^-p |ref| (1: a rounding)\n",
        x.world, label, x.failed == failed_before ? "all cases pass" : "FAILURES", worst);
  std::fflush(stdout);
}

int run_rank(Group& g, const FusedOptions& opt) {
  const int device = start_rank(opt.world, g);
  RankStream stream(opt.world, g);
  // Room for the largest shape: 8192 x 16384 (8M elements with --quick, 1M with --smoke).
  const size_t elems = opt.smoke ? size_t(1) << 20 : opt.quick ? size_t(8) << 20 : size_t(8192) * 16384;
  NormBuffers bufs(elems);
  FusedCtx x{g, opt, g.rank(), g.size(), device, stream.get(), bufs};
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&x.res), sizeof(NormCheckResult)));
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&x.plain_res), sizeof(CheckResult)));
  run_cases(x, std::nullopt, "auto");
  if (!opt.smoke && g.size() > 1) {
    run_cases(x, Backend::kV1, "V1");
    run_cases(x, Backend::kNccl, "NCCL path");
  }
  TEST_CUDA(cudaFree(x.res));
  TEST_CUDA(cudaFree(x.plain_res));
  return tally(g, x.passed, x.failed);
}

}  // namespace

int main(int argc, char** argv) {
  FusedOptions opt;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (parse_world_arg(argc, argv, i, opt.world)) continue;
      if (a == "--quick")
        opt.quick = true;
      else if (a == "--smoke")
        opt.smoke = true;
      else
        throw std::runtime_error("unknown argument " + a);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "fused_test: %s\nusage: fused_test [-n N | --virtual N [--partition auto|green|capped]] "
                 "[--quick|--smoke]\n",
                 e.what());
    return 2;
  }
  const int bad = run_world(
      opt.world, [&](Group& g) { return run_rank(g, opt); }, 1800, "fused_test");
  return bad == 0 ? 0 : bad < 0 ? 2 : 1;
}
