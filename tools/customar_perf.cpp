// customar-perf: an nccl-tests-style benchmark of customar's backends beside NCCL (ordinary buffers, and NCCL's
// symmetric-memory kernels), in one run on one machine, plus the per-machine tuner.
//
//   customar-perf [-g N] [-b MIN] [-e MAX] [-f FACTOR] [-n ITERS] [-w WARMUP] [-r REPLAYS] [-c 0|1] [-G 0|1]
//                 [-d bf16|fp16|fp32] [-k auto|v2|v1|nccl|nccl-symm|nostage|all] [-J FILE] [--tune [FILE]]
//
// Backends: auto (what customar picks), v2 / v1 (that backend forced; v1 by CommOptions::max_backend), nccl (its own
// communicator, ordinary buffers), nccl-symm (NCCL's symmetric-memory kernels on ncclMemAlloc'ed, window-registered
// buffers), nostage (auto without its fused staging copy: prices the copy, sums wrong on purpose, not checked).
//
// Each row: size count type redop backend algo | out-of-place time algbw busbw #wrong | in-place ... | vs nccl.
// busbw = algbw * 2(n-1)/n. Times are microseconds per call: with -G 1 (default) the median over REPLAYS replays of a
// CUDA graph of ITERS back-to-back calls, else the median over REPLAYS rounds of ITERS eager calls; worst rank.
// Results are checked against a float64 reference (-c 1) before timing. --tune measures every algorithm at every
// size and writes the thresholds that lose least to the best one (config/tune.h) into FILE (default: the tuned
// config that global_config() loads, <cache dir>/tuned-config.json).
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "check_kernels.h"
#include "comm/bench_access.h"
#include "config/tune.h"
#include "customar/communicator.h"
#include "customar/config.h"
#include "customar/launcher.h"
#include "graph_timing.h"
#include "nccl/nccl_loader.h"

using namespace customar;
using namespace customar::test;

namespace {

// NCCL is the process's (nccl/nccl_loader.h): the same library customar's own NCCL path drives.
#define PERF_NCCL(call)                                                                                              \
  do {                                                                                                               \
    detail::NcclResult r_ = (call);                                                                                  \
    if (r_ != detail::kNcclSuccess) throw std::runtime_error(std::string(#call) + ": " + nc.ncclGetErrorString(r_)); \
  } while (0)

struct Options {
  int gpus = 0;
  size_t min_bytes = 1024, max_bytes = size_t(64) << 20;
  double factor = 2;
  int iters = 20, warmup = 2, replays = 7;
  bool check = true, graph = true;
  DataType dtype = DataType::kBFloat16;
  std::vector<std::string> backends = {"auto"};
  std::string json;
  bool tune = false;
  std::string tune_file;
};

using Issue = std::function<void(const void* in, void* out, cudaStream_t)>;

double time_call(Group& g, const Options& o, const Issue& issue, const void* in, void* out, cudaStream_t s) {
  if (!o.graph) {
    for (int w = 0; w < o.warmup * o.iters; ++w) issue(in, out, s);
    TEST_CUDA(cudaStreamSynchronize(s));
    return time_rounds(
        g,
        [&] {
          for (int i = 0; i < o.iters; ++i) issue(in, out, s);
        },
        o.iters, o.replays, s);
  }
  return time_graph(
      g, [&] { issue(in, out, s); }, o.iters, o.warmup, o.replays, s);
}

// A backend under test: its communicator (nullptr: NCCL), what it runs for a size, and its buffers (NCCL's
// symmetric memory needs its own).
struct Backend_ {
  std::string name;
  Communicator* comm;
  void* in;
  void* out;
  bool nostage;  // customar without the fused staging copy: prices the copy, sums are wrong on purpose
};

int run_rank(Group& g, const Options& o) {
  const int rank = g.rank(), world = g.size();
  TEST_CUDA(cudaSetDevice(rank));
  cudaDeviceProp prop{};
  TEST_CUDA(cudaGetDeviceProperties(&prop, rank));
  const detail::NcclApi& nc = detail::nccl_api();
  if (rank == 0) std::printf("# %s\n", detail::nccl_library().describe().c_str());
  detail::NcclUniqueId id{};
  if (rank == 0) PERF_NCCL(nc.ncclGetUniqueId(&id));
  id = all_gather_value(g, id)[0];
  ncclComm_t nccl;
  PERF_NCCL(nc.ncclCommInitRank(&nccl, world, id, rank));
  const detail::NcclType nt = o.dtype == DataType::kBFloat16  ? detail::NcclType::kBfloat16
                              : o.dtype == DataType::kFloat16 ? detail::NcclType::kFloat16
                                                              : detail::NcclType::kFloat32;
  const size_t es = dtype_size(o.dtype);
  cudaStream_t s;
  TEST_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  void *in = nullptr, *out = nullptr;
  TEST_CUDA(cudaMalloc(&in, o.max_bytes));
  TEST_CUDA(cudaMalloc(&out, o.max_bytes));
  CheckResult* res = nullptr;
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&res), sizeof(CheckResult)));

  CommOptions copt;
  copt.nccl_comm = nccl;
  // The tuner forces each algorithm at each size, so its buffers must hold every size, not only those the current
  // thresholds send there (else a push limit could never move up).
  copt.max_buffers = o.tune;
  auto comm = std::make_unique<Communicator>(g, rank, copt);
  std::unique_ptr<Communicator> comm_v1;
  std::vector<Backend_> backends;
  auto comm_backend = [&](const std::string& name, Communicator* c) { backends.push_back({name, c, in, out, false}); };
  void *sin = nullptr, *sout = nullptr;
  detail::NcclWindow win_in{}, win_out{};
  for (const std::string& b : o.backends) {
    if (b == "auto") {
      comm_backend("auto", comm.get());
    } else if (b == "v2") {
      if (comm->backend() == Backend::kV2)
        comm_backend("v2", comm.get());
      else if (rank == 0)
        std::printf("# v2 skipped: %s\n", comm->reason().c_str());
    } else if (b == "v1") {
      CommOptions v1opt = copt;
      v1opt.max_backend = Backend::kV1;
      comm_v1 = std::make_unique<Communicator>(g, rank, v1opt);
      if (comm_v1->backend() == Backend::kV1)
        comm_backend("v1", comm_v1.get());
      else if (rank == 0)
        std::printf("# v1 skipped: %s\n", comm_v1->reason().c_str());
    } else if (b == "nostage") {
      if (comm->backend() == Backend::kV2 || comm->backend() == Backend::kV1)
        backends.push_back({"nostage", comm.get(), in, out, true});
    } else if (b == "nccl") {
      backends.push_back({"nccl", nullptr, in, out, false});
    } else if (b == "nccl-symm" && (nc.ncclMemAlloc == nullptr || nc.ncclMemFree == nullptr ||
                                    nc.ncclCommWindowRegister == nullptr || nc.ncclCommWindowDeregister == nullptr)) {
      if (rank == 0)
        std::printf("# nccl-symm skipped: NCCL %s has no ncclMemAlloc / ncclCommWindowRegister (2.27 or newer has)\n",
                    detail::nccl_version_text(nc.version).c_str());
    } else if (b == "nccl-symm") {
      // NCCL's symmetric-memory kernels: buffers from ncclMemAlloc, registered once as symmetric windows.
      PERF_NCCL(nc.ncclMemAlloc(&sin, o.max_bytes));
      PERF_NCCL(nc.ncclMemAlloc(&sout, o.max_bytes));
      PERF_NCCL(nc.ncclCommWindowRegister(nccl, sin, o.max_bytes, &win_in, detail::kNcclWinCollSymmetric));
      PERF_NCCL(nc.ncclCommWindowRegister(nccl, sout, o.max_bytes, &win_out, detail::kNcclWinCollSymmetric));
      backends.push_back({"nccl-symm", nullptr, sin, sout, false});
    }
  }
  FILE* json = (rank == 0 && !o.json.empty()) ? std::fopen(o.json.c_str(), "w") : nullptr;
  if (rank == 0) {
    std::printf("# customar-perf: %d x %s, %s sum, %s, %d iters x %d replays, worst rank\n", world, prop.name,
                std::string(dtype_name(o.dtype)).c_str(), o.graph ? "CUDA graph" : "eager", o.iters, o.replays);
    std::printf("# customar: %s (%s)\n", std::string(backend_name(comm->backend())).c_str(), comm->reason().c_str());
    std::printf("#%11s %11s %5s %5s %-10s %-13s %9s %7s %7s %6s %9s %7s %7s %6s %8s\n", "size", "count", "type",
                "redop", "backend", "algo", "oop(us)", "algbw", "busbw", "#wrong", "ip(us)", "algbw", "busbw", "#wrong",
                "vs nccl");
  }
  long total_wrong = 0;
  std::map<std::string, std::pair<double, int>> bw_sum;
  std::vector<SizeTiming> tune;
  for (double fb = double(o.min_bytes); fb <= double(o.max_bytes) + 0.5; fb *= o.factor) {
    const size_t bytes = size_t(fb) / es * es;
    const size_t count = bytes / es;
    double nccl_us = -1;
    for (Backend_& b : backends) {
      Issue call = [&](const void* i, void* x, cudaStream_t st) {
        if (b.comm == nullptr)
          PERF_NCCL(nc.ncclAllReduce(i, x, count, nt, detail::NcclRedOp::kSum, nccl, st));
        else
          b.comm->all_reduce(i, x, count, o.dtype, st);
      };
      const std::string algo = b.comm == nullptr ? (b.name == "nccl" ? "ring/tree" : "symmetric")
                                                 : std::string(algo_name(b.comm->algo_for(count, o.dtype)));
      if (b.nostage && algo == "nccl") continue;
      if (b.nostage) detail::BenchAccess::set_skip_copy_in(*b.comm, true);
      double t[2];
      unsigned long long wrong[2] = {0, 0};
      for (int inplace = 0; inplace < 2; ++inplace) {
        void* dst = inplace ? b.in : b.out;
        if (o.check && !b.nostage) {
          uint64_t seed = mix(bytes * 4 + inplace);
          fill(b.in, count, o.dtype, seed, rank, Values::kUniform, s);
          TEST_CUDA(cudaMemsetAsync(dst, 0xff, inplace ? 0 : bytes, s));
          call(b.in, dst, s);
          CheckResult cr = check(dst, count, o.dtype, seed, world, Values::kUniform, s, res);
          for (auto w : all_gather_value(g, cr.wrong)) wrong[inplace] += w;
          total_wrong += static_cast<long>(wrong[inplace]);
        }
        t[inplace] = time_call(g, o, call, b.in, dst, s);
      }
      if (b.nostage) detail::BenchAccess::set_skip_copy_in(*b.comm, false);
      if (b.name == "nccl") nccl_us = t[0];
      auto algbw = [&](double us) { return double(bytes) / (us * 1e-6) / 1e9; };
      double bus = 2.0 * (world - 1) / world;
      bw_sum[b.name].first += algbw(t[0]) * bus;
      bw_sum[b.name].second += 1;
      if (rank == 0) {
        char ratio[16] = "-";
        if (nccl_us > 0 && b.name != "nccl") snprintf(ratio, sizeof(ratio), "%.2f", t[0] / nccl_us);
        std::printf("%12zu %11zu %5s %5s %-10s %-13s %9.2f %7.2f %7.2f %6llu %9.2f %7.2f %7.2f %6llu %8s\n", bytes,
                    count, std::string(dtype_name(o.dtype)).c_str(), "sum", b.name.c_str(), algo.c_str(), t[0],
                    algbw(t[0]), algbw(t[0]) * bus, wrong[0], t[1], algbw(t[1]), algbw(t[1]) * bus, wrong[1], ratio);
        std::fflush(stdout);
        if (json)
          std::fprintf(json,
                       "{\"world\": %d, \"gpu\": \"%s\", \"dtype\": \"%s\", \"backend\": \"%s\", \"algo\": \"%s\", "
                       "\"bytes\": %zu, \"graph\": %s, \"oop_us\": %.3f, \"ip_us\": %.3f, \"busbw_gbs\": %.3f, "
                       "\"wrong\": %llu}\n",
                       world, prop.name, std::string(dtype_name(o.dtype)).c_str(), b.name.c_str(), algo.c_str(), bytes,
                       o.graph ? "true" : "false", t[0], t[1], algbw(t[0]) * bus, wrong[0] + wrong[1]);
      }
    }
    if (o.tune) {
      // Every algorithm the communicator can run at this size, forced, out of place.
      SizeTiming st;
      st.bytes = bytes;
      Issue forced = [&](const void* i, void* x, cudaStream_t stm) { comm->all_reduce(i, x, count, o.dtype, stm); };
      auto measure = [&](std::optional<Algo> a) {
        comm->set_algo(a);
        double us =
            comm->algo_for(count, o.dtype) == a.value_or(Algo::kNccl) ? time_call(g, o, forced, in, out, s) : -1;
        comm->set_algo(std::nullopt);
        return us;
      };
      if (comm->backend() == Backend::kV2) st.push_us = measure(Algo::kOneshotPush);
      st.pull_us = measure(Algo::kOneshotPull);
      st.twoshot_us = measure(Algo::kTwoshot);
      st.nccl_us = time_call(
          g, o,
          [&](const void* i, void* x, cudaStream_t stm) {
            PERF_NCCL(nc.ncclAllReduce(i, x, count, nt, detail::NcclRedOp::kSum, nccl, stm));
          },
          in, out, s);
      tune.push_back(st);
    }
  }
  if (rank == 0) {
    for (const auto& [name, v] : bw_sum)
      std::printf("# Avg bus bandwidth (%s, out-of-place): %.2f GB/s\n", name.c_str(), v.first / v.second);
    std::printf("# Out of bounds values : %ld %s\n", total_wrong, total_wrong == 0 ? "OK" : "FAILED");
  }
  if (o.tune && comm->backend() != Backend::kNone && comm->backend() != Backend::kNccl && rank == 0) {
    ArchFamily fam = arch_family(prop.major * 10 + prop.minor);
    Thresholds base = *global_config().find(fam, world);
    Thresholds t = tune_thresholds(tune, base);
    std::string path = o.tune_file.empty() ? tuned_config_path() : o.tune_file;
    Config file;  // keep what the file already says for other (arch, world size) entries
    if (std::ifstream f(path); f) {
      std::stringstream ss;
      ss << f.rdbuf();
      file = merge_config_json(Config{}, ss.str(), path);
    }
    file.table[{fam, world}] = t;
    std::string tmp = path + ".tmp." + std::to_string(getpid());
    {
      std::ofstream f(tmp);
      f << config_to_json(file);
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) std::printf("# tune: cannot write %s\n", path.c_str());
    auto sz = [](size_t b) { return b == kUnlimited ? std::string("unlimited") : std::to_string(b); };
    std::printf(
        "# tune: %s world %d: push <= %s, pull <= %s, two-shot <= %s, then NCCL; loss vs best %.3f (was %.3f)\n",
        arch_family_name(fam), world, sz(t.oneshot_push_max).c_str(), sz(t.oneshot_pull_max).c_str(),
        sz(t.custom_max).c_str(), threshold_loss(tune, t), threshold_loss(tune, base));
    std::printf("# tune: written to %s\n", path.c_str());
  }
  if (json) std::fclose(json);
  comm_v1.reset();
  comm.reset();
  if (sin != nullptr) {
    PERF_NCCL(nc.ncclCommWindowDeregister(nccl, win_in));
    PERF_NCCL(nc.ncclCommWindowDeregister(nccl, win_out));
    PERF_NCCL(nc.ncclMemFree(sin));
    PERF_NCCL(nc.ncclMemFree(sout));
  }
  PERF_NCCL(nc.ncclCommDestroy(nccl));
  return total_wrong == 0 ? 0 : 1;
}

size_t parse_size(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (*end == 'K' || *end == 'k')
    v *= 1024;
  else if (*end == 'M' || *end == 'm')
    v *= 1024 * 1024;
  else if (*end == 'G' || *end == 'g')
    v *= 1024.0 * 1024 * 1024;
  return static_cast<size_t>(v);
}

void usage() {
  std::fprintf(
      stderr,
      "usage: customar-perf [-g N] [-b MIN] [-e MAX] [-f FACTOR] [-n ITERS] [-w WARMUP] [-r REPLAYS] [-c 0|1]\n"
      "                     [-G 0|1] [-d bf16|fp16|fp32] [-k auto|v2|v1|nccl|nccl-symm|nostage|all] [-J FILE]\n"
      "                     [--tune [FILE]]\n");
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    for (int i = 1; i < argc; ++i) {
      std::string a = argv[i];
      auto next = [&]() -> std::string {
        if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
        return argv[++i];
      };
      if (a == "-g")
        o.gpus = std::stoi(next());
      else if (a == "-b")
        o.min_bytes = parse_size(next());
      else if (a == "-e")
        o.max_bytes = parse_size(next());
      else if (a == "-f")
        o.factor = std::stod(next());
      else if (a == "-n")
        o.iters = std::stoi(next());
      else if (a == "-w")
        o.warmup = std::stoi(next());
      else if (a == "-r")
        o.replays = std::stoi(next());
      else if (a == "-c")
        o.check = next() != "0";
      else if (a == "-G")
        o.graph = next() != "0";
      else if (a == "-J")
        o.json = next();
      else if (a == "-d") {
        std::string d = next();
        if (d == "bf16")
          o.dtype = DataType::kBFloat16;
        else if (d == "fp16")
          o.dtype = DataType::kFloat16;
        else if (d == "fp32")
          o.dtype = DataType::kFloat32;
        else
          throw std::runtime_error("-d " + d + ": expected bf16, fp16 or fp32");
      } else if (a == "-k") {
        std::string k = next();
        if (k == "all")
          o.backends = {"nccl", "nccl-symm", "v1", "auto", "nostage"};
        else if (k == "auto" || k == "v2" || k == "v1" || k == "nccl" || k == "nccl-symm" || k == "nostage")
          o.backends = {"nccl", k};
        else
          throw std::runtime_error("-k " + k + ": expected auto, v2, v1, nccl, nccl-symm, nostage or all");
        if (k == "nccl") o.backends = {"nccl"};
      } else if (a == "--tune") {
        o.tune = true;
        if (i + 1 < argc && argv[i + 1][0] != '-') o.tune_file = argv[++i];
      } else if (a == "-h" || a == "--help") {
        usage();
        return 0;
      } else {
        throw std::runtime_error("unknown argument " + a);
      }
    }
    if (o.factor <= 1 || o.iters < 1 || o.replays < 1 || o.min_bytes < 16 || o.max_bytes < o.min_bytes)
      throw std::runtime_error("need -f > 1, -n >= 1, -r >= 1, 16 <= -b <= -e");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "customar-perf: %s\n", e.what());
    usage();
    return 2;
  }
  int gpus = visible_gpu_count();
  if (o.gpus == 0) o.gpus = gpus;
  if (o.gpus < 2 || o.gpus > gpus) {
    std::fprintf(stderr, "customar-perf: -g %d needs 2..%d GPUs\n", o.gpus, gpus);
    return 2;
  }
  auto exits = launch(
      o.gpus, [&](Group& g) { return run_rank(g, o); }, LaunchOptions{580});
  for (const auto& e : exits)
    if (!e.ok()) return 1;
  return 0;
}
