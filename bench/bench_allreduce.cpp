// customar-bench: customar's backends and NCCL side by side, in one run on one machine. For each message size:
// NCCL (its own communicator, ordinary buffers), customar auto, each V1 algorithm forced, and auto without the fused
// staging copy (wrong sums on purpose: it prices the copy). Graph-replayed back-to-back calls (median of replays,
// worst rank) and eager calls. Results are checked against a float64 reference before timing.
//
//   customar-bench -n WORLD [--min BYTES] [--max BYTES] [--iters N] [--replays N] [--dtype bf16|fp16|fp32]
//                  [--json FILE]
#include <cuda_runtime_api.h>
#include <nccl.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "check_kernels.h"
#include "comm/bench_access.h"
#include "customar/communicator.h"
#include "customar/launcher.h"

using namespace customar;
using namespace customar::test;

namespace {

struct Options {
  int world = 0;
  size_t min_bytes = 1024, max_bytes = size_t(64) << 20;
  int iters = 20, replays = 7;
  DataType dtype = DataType::kBFloat16;
  std::string json;
};

#define BENCH_NCCL(call)                                                                                 \
  do {                                                                                                   \
    ncclResult_t r_ = (call);                                                                            \
    if (r_ != ncclSuccess) throw std::runtime_error(std::string(#call) + ": " + ncclGetErrorString(r_)); \
  } while (0)

using Issue = std::function<void(cudaStream_t)>;

// Median per-call time (us) over `replays` rounds of `round` (each issuing `iters` calls), worst rank. One host
// barrier, then every round queued back to back: the kernels keep the ranks in step on the GPU, and a rank's late
// start (host wake-up) lands only in the first round, which the median discards.
double time_rounds(Group& g, const std::function<void()>& round, int iters, int replays, cudaStream_t s) {
  std::vector<cudaEvent_t> ev(replays + 1);
  for (auto& e : ev) TEST_CUDA(cudaEventCreate(&e));
  g.barrier();
  TEST_CUDA(cudaEventRecord(ev[0], s));
  for (int r = 0; r < replays; ++r) {
    round();
    TEST_CUDA(cudaEventRecord(ev[r + 1], s));
  }
  TEST_CUDA(cudaEventSynchronize(ev[replays]));
  std::vector<double> t;
  for (int r = 0; r < replays; ++r) {
    float ms = 0;
    TEST_CUDA(cudaEventElapsedTime(&ms, ev[r], ev[r + 1]));
    t.push_back(ms * 1000.0 / iters);
  }
  for (auto& e : ev) TEST_CUDA(cudaEventDestroy(e));
  std::sort(t.begin(), t.end());
  double worst = 0;
  for (double v : all_gather_value(g, t[t.size() / 2])) worst = std::max(worst, v);
  return worst;
}

// `iters` calls captured in one graph, replayed.
double time_graph(Group& g, const Issue& issue, int iters, int replays, cudaStream_t s) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  TEST_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < iters; ++i) issue(s);
  TEST_CUDA(cudaStreamEndCapture(s, &graph));
  TEST_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (int w = 0; w < 2; ++w) TEST_CUDA(cudaGraphLaunch(exec, s));
  TEST_CUDA(cudaStreamSynchronize(s));
  double us = time_rounds(
      g, [&] { TEST_CUDA(cudaGraphLaunch(exec, s)); }, iters, replays, s);
  TEST_CUDA(cudaGraphExecDestroy(exec));
  TEST_CUDA(cudaGraphDestroy(graph));
  return us;
}

// `iters` eager calls issued back to back.
double time_eager(Group& g, const Issue& issue, int iters, int replays, cudaStream_t s) {
  for (int w = 0; w < iters; ++w) issue(s);
  TEST_CUDA(cudaStreamSynchronize(s));
  return time_rounds(
      g,
      [&] {
        for (int i = 0; i < iters; ++i) issue(s);
      },
      iters, replays, s);
}

int run_rank(Group& g, const Options& o) {
  const int rank = g.rank(), world = g.size();
  TEST_CUDA(cudaSetDevice(rank));
  ncclUniqueId id{};
  if (rank == 0) BENCH_NCCL(ncclGetUniqueId(&id));
  id = all_gather_value(g, id)[0];
  ncclComm_t nccl;
  BENCH_NCCL(ncclCommInitRank(&nccl, world, id, rank));
  CommOptions copt;
  copt.nccl_comm = nccl;
  Communicator comm(g, rank, copt);
  cudaStream_t s;
  TEST_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  void *in = nullptr, *out = nullptr;
  TEST_CUDA(cudaMalloc(&in, o.max_bytes));
  TEST_CUDA(cudaMalloc(&out, o.max_bytes));
  CheckResult* res = nullptr;
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&res), sizeof(CheckResult)));
  const size_t es = dtype_size(o.dtype);
  const ncclDataType_t nt = o.dtype == DataType::kBFloat16  ? ncclBfloat16
                            : o.dtype == DataType::kFloat16 ? ncclFloat16
                                                            : ncclFloat32;
  FILE* json = (rank == 0 && !o.json.empty()) ? std::fopen(o.json.c_str(), "w") : nullptr;
  cudaDeviceProp prop{};
  TEST_CUDA(cudaGetDeviceProperties(&prop, rank));
  if (rank == 0) {
    std::printf("# customar-bench: %d x %s, %s, sum, graph of %d calls, median of %d replays, worst rank (us/call)\n",
                world, prop.name, std::string(dtype_name(o.dtype)).c_str(), o.iters, o.replays);
    std::printf("# customar backend: %s (%s)\n", std::string(backend_name(comm.backend())).c_str(),
                comm.reason().c_str());
    std::printf("%10s %-12s %8s %8s %7s %8s %8s %8s %8s %8s %9s %7s\n", "bytes", "auto algo", "nccl", "auto", "ratio",
                "1shot", "2shot", "nostage", "e-nccl", "e-auto", "busbw", "#wrong");
  }
  long total_wrong = 0;
  for (size_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 2) {
    const size_t count = bytes / es;
    // Correctness of what auto runs, before timing it.
    uint64_t seed = mix(bytes);
    fill(in, count, o.dtype, seed, rank, Values::kUniform, s);
    TEST_CUDA(cudaMemsetAsync(out, 0xff, bytes, s));
    comm.set_algo(std::nullopt);
    comm.all_reduce(in, out, count, o.dtype, s);
    CheckResult cr = check(out, count, o.dtype, seed, world, Values::kUniform, s, res);
    unsigned long long wrong = 0;
    for (auto w : all_gather_value(g, cr.wrong)) wrong += w;
    total_wrong += static_cast<long>(wrong);

    Issue nccl_call = [&](cudaStream_t st) { BENCH_NCCL(ncclAllReduce(in, out, count, nt, ncclSum, nccl, st)); };
    Issue comm_call = [&](cudaStream_t st) { comm.all_reduce(in, out, count, o.dtype, st); };
    const Algo auto_algo = comm.algo_for(count, o.dtype);
    double t_nccl = time_graph(g, nccl_call, o.iters, o.replays, s);
    double t_auto = time_graph(g, comm_call, o.iters, o.replays, s);
    double t_one = -1, t_two = -1, t_nostage = -1;
    if (comm.capacity() >= bytes) {
      comm.set_algo(Algo::kOneshotPull);
      t_one = time_graph(g, comm_call, o.iters, o.replays, s);
      comm.set_algo(Algo::kTwoshot);
      t_two = time_graph(g, comm_call, o.iters, o.replays, s);
      comm.set_algo(std::nullopt);
      if (auto_algo != Algo::kNccl) {
        detail::BenchAccess::set_skip_copy_in(comm, true);
        t_nostage = time_graph(g, comm_call, o.iters, o.replays, s);
        detail::BenchAccess::set_skip_copy_in(comm, false);
      }
    }
    double e_nccl = time_eager(g, nccl_call, o.iters, o.replays, s);
    double e_auto = time_eager(g, comm_call, o.iters, o.replays, s);
    double busbw = double(bytes) / (t_auto * 1e-6) * 2.0 * (world - 1) / world / 1e9;
    if (rank == 0) {
      auto cell = [](double v) {
        static char b[8][16];
        static int k = 0;
        k = (k + 1) % 8;
        if (v < 0)
          snprintf(b[k], 16, "-");
        else
          snprintf(b[k], 16, "%.2f", v);
        return b[k];
      };
      std::printf("%10zu %-12s %8s %8s %7.2f %8s %8s %8s %8s %8s %9.1f %7llu\n", bytes,
                  std::string(algo_name(auto_algo)).c_str(), cell(t_nccl), cell(t_auto), t_auto / t_nccl, cell(t_one),
                  cell(t_two), cell(t_nostage), cell(e_nccl), cell(e_auto), busbw, wrong);
      std::fflush(stdout);
      if (json)
        std::fprintf(json,
                     "{\"world\": %d, \"gpu\": \"%s\", \"dtype\": \"%s\", \"bytes\": %zu, \"auto_algo\": \"%s\", "
                     "\"nccl_us\": %.3f, \"auto_us\": %.3f, \"oneshot_us\": %.3f, \"twoshot_us\": %.3f, "
                     "\"nostage_us\": %.3f, \"eager_nccl_us\": %.3f, \"eager_auto_us\": %.3f, \"busbw_gbs\": %.2f, "
                     "\"wrong\": %llu}\n",
                     world, prop.name, std::string(dtype_name(o.dtype)).c_str(), bytes,
                     std::string(algo_name(auto_algo)).c_str(), t_nccl, t_auto, t_one, t_two, t_nostage, e_nccl, e_auto,
                     busbw, wrong);
    }
  }
  if (json) std::fclose(json);
  if (rank == 0) std::printf("# wrong results: %ld\n", total_wrong);
  TEST_CUDA(cudaFree(in));
  TEST_CUDA(cudaFree(out));
  TEST_CUDA(cudaFree(res));
  BENCH_NCCL(ncclCommDestroy(nccl));
  return total_wrong == 0 ? 0 : 1;
}

size_t parse_size(const char* s) {
  char* end = nullptr;
  double v = std::strtod(s, &end);
  if (*end == 'K' || *end == 'k')
    v *= 1024;
  else if (*end == 'M' || *end == 'm')
    v *= 1024 * 1024;
  else if (*end == 'G' || *end == 'g')
    v *= 1024.0 * 1024 * 1024;
  return static_cast<size_t>(v);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "-n")
      o.world = std::atoi(next());
    else if (a == "--min")
      o.min_bytes = parse_size(next());
    else if (a == "--max")
      o.max_bytes = parse_size(next());
    else if (a == "--iters")
      o.iters = std::atoi(next());
    else if (a == "--replays")
      o.replays = std::atoi(next());
    else if (a == "--json")
      o.json = next();
    else if (a == "--dtype") {
      std::string d = next();
      o.dtype = d == "fp16" ? DataType::kFloat16 : d == "fp32" ? DataType::kFloat32 : DataType::kBFloat16;
    } else {
      std::fprintf(stderr,
                   "usage: customar-bench -n WORLD [--min B] [--max B] [--iters N] [--replays N] [--dtype "
                   "bf16|fp16|fp32] [--json FILE]\n");
      return 2;
    }
  }
  int gpus = visible_gpu_count();
  if (o.world == 0) o.world = gpus;
  if (o.world < 2 || o.world > gpus) {
    std::fprintf(stderr, "customar-bench: world size %d needs 2..%d GPUs\n", o.world, gpus);
    return 2;
  }
  auto exits = launch(
      o.world, [&](Group& g) { return run_rank(g, o); }, LaunchOptions{580});
  for (const auto& e : exits)
    if (!e.ok()) return 1;
  return 0;
}
