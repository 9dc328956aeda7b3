// Reliability on GPUs: a process per GPU (-n N) or N virtual ranks on one GPU (--virtual N; every mode but
// dead-peer, which kills a process). Modes:
//   dead-peer   one rank is SIGKILLed in the middle of a stream of all-reduces (--graph: of graph replays); every
//               other rank must get a TimeoutError naming it within CUSTOMAR_TIMEOUT_MS, and then StateError.
//   no-call     one rank never calls; the same is required of the others.
//   late-peer   one rank is late by more than the timeout: the others time out naming it; the late rank's next call
//               must then fail at once (a timed-out peer announced that it left), naming a rank that left, and every
//               process must end (no destructor barrier waiting for a peer that skipped it).
//   check-mode  with CUSTOMAR_CHECK=1, ranks pass different counts / dtypes: a clear error on every rank, and the
//               communicator still works afterwards.
//   stress      --calls N all-reduces of random sizes, dtypes, in/out-of-place, algorithms (every backend and
//               auto), small-integer data so every sum is exact, every result checked. Bounded by --seconds.
//               --v2-source FILE: the V2 kernels compiled from FILE (a planted bug that only back-to-back calls
//               of mixed sizes expose).
//   lifecycle   --iters N communicators created, used and destroyed: no device memory, host memory or mapping
//               growth.
// dead-peer, no-call and late-peer send --count bf16 elements per call (default 8192).
// Each mode prints "metric: name=value" lines and ends with "N passed, M failed".
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>

#include "check_kernels.h"
#include "customar/communicator.h"
#include "customar/env.h"
#include "customar/launcher.h"
#include "v2_source.h"
#include "world.h"

using namespace customar;
using namespace customar::test;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::string mode;
  World world;
  bool graph = false;
  long calls = 1000000;
  double seconds = 240;
  int iters = 100;
  // bf16 elements per call of dead-peer, no-call and late-peer. 8192 (16 KiB) runs a multi-block push on V2 and the
  // pull on V1; 512 (1 KiB) the push's one-block kernel; 1048576 (2 MiB) with CUSTOMAR_ALGO=oneshot_push its wide one.
  size_t count = 8192;
  std::string v2_source;  // stress: the text of --v2-source FILE (tests/gpu/v2_source.h)
};

double ms_since(Clock::time_point t) { return std::chrono::duration<double, std::milli>(Clock::now() - t).count(); }

int finish(Group& g, int passed, int failed) {
  auto all = all_gather_value(g, failed);
  int total_failed = 0;
  for (int f : all) total_failed += f;
  if (g.rank() == 0) std::printf("%d passed, %d failed\n", passed, total_failed);
  return total_failed == 0 ? 0 : 1;
}

// Dead peer / no call. The victim is the last rank. Survivors return 0 only if they saw the right errors in time.
int dead_peer(Group& g, const Options& o, bool kill) {
  const int rank = g.rank(), victim = g.size() - 1;
  const int device = start_rank(o.world, g);
  Communicator comm(g, device);
  RankStream stream(o.world, g);
  cudaStream_t s = stream.get();
  const size_t count = o.count;
  void* buf = nullptr;
  TEST_CUDA(cudaMalloc(&buf, count * 2));
  fill(buf, count, DataType::kBFloat16, 1, rank, Values::kSmallInt, s);
  cudaGraphExec_t exec = nullptr;
  if (o.graph) {
    cudaGraph_t graph;
    TEST_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < 16; ++i) comm.all_reduce(buf, buf, count, DataType::kBFloat16, s);
    TEST_CUDA(cudaStreamEndCapture(s, &graph));
    TEST_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  }
  const int kill_at = 200;
  const int64_t timeout_ms = env().timeout_ms;
  g.barrier();
  if (rank == victim && !kill) {
    // Never calls: waits long enough for everyone else to time out, then leaves.
    std::this_thread::sleep_for(std::chrono::milliseconds(3 * timeout_ms + 2000));
    return 0;
  }
  Clock::time_point last_ok = Clock::now();
  for (int it = 0; it < kill_at + 100000; ++it) {
    if (rank == victim && it == kill_at) raise(SIGKILL);
    try {
      if (o.graph)
        TEST_CUDA(cudaGraphLaunch(exec, s));
      else
        comm.all_reduce(buf, buf, count, DataType::kBFloat16, s);
      TEST_CUDA(cudaStreamSynchronize(s));
      comm.check();
      last_ok = Clock::now();
    } catch (const TimeoutError& e) {
      double detect_ms = ms_since(last_ok);
      bool named = e.missing_rank() == victim;
      bool in_time = detect_ms < timeout_ms + 5000;
      bool refused = false;
      try {
        comm.all_reduce(buf, buf, count, DataType::kBFloat16, s);
      } catch (const StateError&) {
        refused = true;
      }
      std::printf("metric: mode=%s graph=%d rank=%d missing_rank=%d detect_ms=%.0f timeout_ms=%lld refused_after=%d\n",
                  kill ? "dead-peer" : "no-call", o.graph ? 1 : 0, rank, e.missing_rank(), detect_ms,
                  static_cast<long long>(timeout_ms), refused ? 1 : 0);
      std::printf("  error: %s\n", e.what());
      std::fflush(stdout);
      return named && in_time && refused ? 0 : 3;
    }
  }
  std::printf("rank %d: no error although rank %d is gone\n", rank, victim);
  return 4;
}

// Late peer: the victim sleeps past the others' timeout before call `late_at`, then carries on calling.
int late_peer(Group& g, const Options& o) {
  const int rank = g.rank(), victim = g.size() - 1;
  const int device = start_rank(o.world, g);
  Communicator comm(g, device);
  RankStream stream(o.world, g);
  cudaStream_t s = stream.get();
  const size_t count = o.count;
  void* buf = nullptr;
  TEST_CUDA(cudaMalloc(&buf, count * 2));
  fill(buf, count, DataType::kBFloat16, 1, rank, Values::kSmallInt, s);
  const int late_at = 100;
  const int64_t timeout_ms = env().timeout_ms;
  g.barrier();
  for (int it = 0; it < late_at + 1000; ++it) {
    if (rank == victim && it == late_at) std::this_thread::sleep_for(std::chrono::milliseconds(timeout_ms + 1000));
    Clock::time_point t0 = Clock::now();
    try {
      comm.all_reduce(buf, buf, count, DataType::kBFloat16, s);
      TEST_CUDA(cudaStreamSynchronize(s));
      comm.check();
    } catch (const TimeoutError& e) {
      double detect_ms = ms_since(t0);
      bool refused = false;
      try {
        comm.all_reduce(buf, buf, count, DataType::kBFloat16, s);
      } catch (const StateError&) {
        refused = true;
      }
      // Survivors name the victim after their timeout; the victim names a survivor well before its own timeout.
      bool ok = rank == victim ? (e.missing_rank() != victim && e.missing_rank() >= 0 && detect_ms < timeout_ms / 2)
                               : (e.missing_rank() == victim && detect_ms < timeout_ms + 5000);
      std::printf(
          "metric: mode=late-peer rank=%d call=%d missing_rank=%d detect_ms=%.0f timeout_ms=%lld "
          "refused_after=%d\n",
          rank, it, e.missing_rank(), detect_ms, static_cast<long long>(timeout_ms), refused ? 1 : 0);
      std::printf("  error: %s\n", e.what());
      std::fflush(stdout);
      return ok && refused ? 0 : 3;
    }
  }
  std::printf("rank %d: no error although rank %d was late by more than the timeout\n", rank, victim);
  return 4;
}

int check_mode(Group& g, const Options& o) {
  const int rank = g.rank();
  const int device = start_rank(o.world, g);
  Communicator comm(g, device);
  RankStream stream(o.world, g);
  cudaStream_t s = stream.get();
  void* buf = nullptr;
  TEST_CUDA(cudaMalloc(&buf, 1 << 20));
  CheckResult* res = nullptr;
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&res), sizeof(CheckResult)));
  int passed = 0, failed = 0;
  auto expect_invalid = [&](const char* what, size_t count, DataType d) {
    try {
      comm.all_reduce(buf, buf, count, d, s);
      ++failed;
      std::printf("FAIL rank %d: %s accepted\n", rank, what);
    } catch (const InvalidArgument& e) {
      ++passed;
      if (rank == 0) std::printf("ok   %s: %s\n", what, e.what());
    }
  };
  expect_invalid("ranks pass different counts", rank == 0 ? 1024 : 2048, DataType::kBFloat16);
  expect_invalid("ranks pass different dtypes", 1024, rank == 0 ? DataType::kFloat32 : DataType::kBFloat16);
  // Still usable, and right.
  fill(buf, 4096, DataType::kFloat16, 9, rank, Values::kUniform, s);
  comm.all_reduce(buf, buf, 4096, DataType::kFloat16, s);
  CheckResult r = check(buf, 4096, DataType::kFloat16, 9, g.size(), Values::kUniform, s, res);
  (r.wrong == 0 ? passed : failed)++;
  if (rank == 0) std::printf("%s  correct call after the rejected ones\n", r.wrong == 0 ? "ok  " : "FAIL");
  return finish(g, passed, failed);
}

// One call of stress(), drawn from one random word (every rank draws the same sequence).
struct StressCall {
  int algo;  // index into stress()'s algorithms
  DataType dtype;
  bool inplace;
  int band;  // 0: up to 64 KiB, 1: up to 2 MiB, 2: up to max_bytes
  size_t count;
};

StressCall draw_call(uint64_t r, size_t max_bytes) {
  StressCall c;
  c.algo = static_cast<int>(r % 5);
  c.dtype = static_cast<DataType>((r >> 8) % 3);
  c.inplace = (r >> 12) & 1;
  // Mostly decode-sized messages, some prefill-sized: 16 B .. 64 KiB (90 %), .. 2 MiB (9.5 %), .. max (0.5 %).
  const uint64_t band = (r >> 16) % 1000;
  c.band = band < 900 ? 0 : band < 995 ? 1 : 2;
  const size_t max_b = c.band == 0 ? (64 << 10) : c.band == 1 ? (2 << 20) : max_bytes;
  c.count = 1 + (r >> 24) % (max_b / dtype_size(c.dtype));
  if ((r >> 40) % 4 != 0) c.count = (c.count + 7) / 8 * 8;  // 3 in 4 calls 16-byte sized, the rest odd
  return c;
}

// The calls of stress() since its last check: a failure surfaces only at the next check, so its report names the
// window and the (algorithm as planned, dtype, size band, in place) combinations that ran there for the first time,
// where a kernel's first launch or a rare shape would show.
class StressWindow {
 public:
  void call(long n, std::string_view algo, DataType d, size_t count, int band, bool inplace) {
    if (seen_.emplace(std::string(algo), static_cast<int>(d), band, inplace).second)
      firsts_.push_back("call " + std::to_string(n) + ": " + std::string(algo) + " " + std::string(dtype_name(d)) +
                        " x " + std::to_string(count) + (inplace ? " in place" : ""));
  }
  void checked(long next) {
    start_ = next;
    firsts_.clear();
  }
  std::string report(long done) const {
    std::string r = "calls " + std::to_string(start_) + ".." + std::to_string(done) + "; first run there:";
    for (const std::string& f : firsts_) r += "\n    " + f;
    return firsts_.empty() ? r + " none" : r;
  }

 private:
  std::set<std::tuple<std::string, int, int, bool>> seen_;
  std::vector<std::string> firsts_;
  long start_ = 0;
};

int stress(Group& g, const Options& o) {
  const int rank = g.rank(), world = g.size();
  const int device = start_rank(o.world, g);
  Communicator comm(g, device);
  use_v2_source(g, comm, device, o.v2_source);
  RankStream stream(o.world, g);
  cudaStream_t s = stream.get();
  const size_t max_bytes = size_t(16) << 20;
  void *in = nullptr, *out = nullptr;
  TEST_CUDA(cudaMalloc(&in, max_bytes + 64));
  TEST_CUDA(cudaMalloc(&out, max_bytes + 64));
  CheckResult* res = nullptr;
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&res), sizeof(CheckResult)));
  reset_result(res, s);
  // Every rank draws the same sequence: sizes, dtypes and algorithms must agree across ranks.
  std::mt19937_64 rng(12345);
  const std::optional<Algo> algos[] = {std::nullopt, Algo::kOneshotPush, Algo::kOneshotPull, Algo::kTwoshot,
                                       Algo::kNccl};
  const char* algo_names[] = {"auto", "oneshot_push", "oneshot_pull", "twoshot", "nccl"};
  long per_algo[5] = {0, 0, 0, 0, 0};
  unsigned long long wrong_total = 0;
  long done = 0;
  StressWindow window;
  auto t0 = Clock::now();
  try {
    for (; done < o.calls; ++done) {
      const StressCall c = draw_call(rng(), max_bytes);
      const int a = c.algo;
      const DataType d = c.dtype;
      const size_t count = c.count;
      const bool inplace = c.inplace;
      comm.set_algo(algos[a]);
      window.call(done, algo_name(comm.algo_for(count, d)), d, count, c.band, inplace);
      fill(in, count, d, done, rank, Values::kSmallInt, s);
      void* dst = inplace ? in : out;
      comm.all_reduce(in, dst, count, d, s);
      check_async(dst, count, d, done, world, Values::kSmallInt, 0.0, s, res);
      ++per_algo[a];
      if ((done & 4095) == 4095 || done + 1 == o.calls) {
        CheckResult cr = read_result(res, s);
        comm.check();
        wrong_total = cr.wrong;
        window.checked(done + 1);
        if (ms_since(t0) > o.seconds * 1000) {
          ++done;
          break;
        }
      }
    }
    CheckResult cr = read_result(res, s);
    comm.check();
    wrong_total = cr.wrong;
  } catch (const std::exception& e) {
    std::printf("stress: rank %d failed in %s: %s\n", rank, window.report(done).c_str(), e.what());
    throw;
  }
  double secs = ms_since(t0) / 1000;
  auto wrongs = all_gather_value(g, wrong_total);
  unsigned long long all_wrong = 0;
  for (auto w : wrongs) all_wrong += w;
  if (rank == 0) {
    std::printf("metric: mode=stress world=%d backend=%s calls=%ld seconds=%.1f wrong=%llu\n", world,
                std::string(backend_name(comm.backend())).c_str(), done, secs, all_wrong);
    for (int a = 0; a < 5; ++a) std::printf("metric:   algo=%s calls=%ld\n", algo_names[a], per_algo[a]);
  }
  return finish(g, all_wrong == 0 && done > 0 ? 1 : 0, all_wrong == 0 ? 0 : 1);
}

long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

// Bytes malloc holds for live allocations (arena and mmapped chunks): unlike RSS, it does not count pages that freed
// memory left mapped, nor memory the CUDA driver or NCCL map outside malloc.
double heap_in_use_mib() {
  struct mallinfo2 mi = mallinfo2();
  return double(mi.uordblks + mi.hblkhd) / (1 << 20);
}

// RSS after handing freed heap pages back to the kernel, so that allocator caching does not read as growth.
long trimmed_rss_kib() {
  malloc_trim(0);
  return rss_kib();
}

long map_count() {
  std::ifstream f("/proc/self/maps");
  long n = 0;
  std::string line;
  while (std::getline(f, line)) ++n;
  return n;
}

int lifecycle(Group& g, const Options& o) {
  const int rank = g.rank();
  const int device = start_rank(o.world, g);
  RankStream stream(o.world, g);
  cudaStream_t s = stream.get();
  void* buf = nullptr;
  TEST_CUDA(cudaMalloc(&buf, 1 << 16));
  size_t free0 = 0, free1 = 0, total = 0;
  long rss0 = 0, rss_mid = 0, maps0 = 0;
  double heap0 = 0;
  auto t0 = Clock::now();
  for (int it = 0; it <= o.iters; ++it) {
    {
      Communicator comm(g, device);
      fill(buf, 4096, DataType::kBFloat16, it, rank, Values::kSmallInt, s);
      comm.all_reduce(buf, buf, 4096, DataType::kBFloat16, s);
      TEST_CUDA(cudaStreamSynchronize(s));
    }
    // Every rank has released this communicator before anyone measures: memory a peer imported (NCCL's and ours)
    // is only freed when the importer lets go too, so an unsynchronised reading counts a live peer's mapping as a leak
    // (seen: 288 MiB on one rank of an NCCL-only run).
    g.barrier();
    if (it == 0) {  // after one warm-up round: lazily created CUDA / NCCL state is not a leak
      TEST_CUDA(cudaMemGetInfo(&free0, &total));
      rss0 = trimmed_rss_kib();
      heap0 = heap_in_use_mib();
      maps0 = map_count();
    }
    if (it == o.iters / 2) rss_mid = trimmed_rss_kib();
  }
  TEST_CUDA(cudaMemGetInfo(&free1, &total));
  long rss1 = trimmed_rss_kib(), maps1 = map_count();
  double dev_growth_mib = (double(free0) - double(free1)) / (1 << 20);
  double rss_growth_mib = (rss1 - rss0) / 1024.0;
  // Per communicator, first and second half: a leak grows at the same rate in both, a cache levels off.
  const int half = o.iters / 2 > 0 ? o.iters / 2 : 1;
  double kib_first = double(rss_mid - rss0) / half,
         kib_second = double(rss1 - rss_mid) / (o.iters - half > 0 ? o.iters - half : 1);
  std::printf(
      "metric: mode=lifecycle rank=%d iters=%d seconds=%.1f device_growth_mib=%.1f rss_growth_mib=%.1f "
      "rss_kib_per_comm_first_half=%.0f rss_kib_per_comm_second_half=%.0f heap_growth_mib=%.2f maps_growth=%ld\n",
      rank, o.iters, ms_since(t0) / 1000, dev_growth_mib, rss_growth_mib, kib_first, kib_second,
      heap_in_use_mib() - heap0, maps1 - maps0);
  // One communicator holds ~70 MiB of device memory: a leak of one per iteration would show as gigabytes.
  bool ok = dev_growth_mib < 8 && rss_growth_mib < 64 && (maps1 - maps0) < 64;
  return finish(g, ok ? 1 : 0, ok ? 0 : 1);
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (argc < 2) {
    std::fprintf(stderr,
                 "usage: reliability_test dead-peer|no-call|late-peer|check-mode|stress|lifecycle [-n W | --virtual W] "
                 "[--graph] "
                 "[--calls N] [--seconds S] [--iters N] [--count N] [--v2-source FILE (stress)]\n");
    return 2;
  }
  o.mode = argv[1];
  try {
    for (int i = 2; i < argc; ++i) {
      const std::string a = argv[i];
      if (parse_world_arg(argc, argv, i, o.world)) continue;
      if (a == "--graph")
        o.graph = true;
      else if (a == "--calls" && i + 1 < argc)
        o.calls = std::atol(argv[++i]);
      else if (a == "--seconds" && i + 1 < argc)
        o.seconds = std::atof(argv[++i]);
      else if (a == "--iters" && i + 1 < argc)
        o.iters = std::atoi(argv[++i]);
      else if (a == "--count" && i + 1 < argc)
        o.count = std::strtoul(argv[++i], nullptr, 10);
      else if (a == "--v2-source" && i + 1 < argc && o.mode == "stress")
        o.v2_source = read_v2_source(argv[++i]);
      else
        throw std::runtime_error("unknown argument " + a);
    }
    if (o.count == 0 || o.count > (size_t(64) << 20))
      throw std::runtime_error("--count must be 1.." + std::to_string(size_t(64) << 20) + " bf16 elements");
    if (o.world.virtual_ranks && o.mode == "dead-peer")
      throw std::runtime_error("dead-peer kills a process: it needs -n, not --virtual");
    if (o.world.size == 0) o.world.size = 2;
    if (o.world.size < 2) throw std::runtime_error("the modes need 2 ranks or more");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "reliability_test: %s\n", e.what());
    return 2;
  }
  auto t0 = Clock::now();
  const bool dead = o.mode == "dead-peer";
  int bad = 0;
  auto body = [&](Group& g) {
    if (o.mode == "dead-peer") return dead_peer(g, o, true);
    if (o.mode == "no-call") return dead_peer(g, o, false);
    if (o.mode == "late-peer") return late_peer(g, o);
    if (o.mode == "check-mode") return check_mode(g, o);
    if (o.mode == "stress") return stress(g, o);
    if (o.mode == "lifecycle") return lifecycle(g, o);
    std::fprintf(stderr, "unknown mode %s\n", o.mode.c_str());
    return 2;
  };
  if (dead) {
    // The killed rank's exit code is the expected one: counted here, not by run_world().
    if (o.world.size > visible_gpu_count()) {
      std::fprintf(stderr, "reliability_test: -n %d needs that many GPUs\n", o.world.size);
      return 2;
    }
    for (const auto& e : launch(o.world.size, body, LaunchOptions{580})) {
      const bool victim = e.rank == o.world.size - 1;
      if (victim ? e.exit_code != 128 + SIGKILL : e.exit_code != 0) {
        std::fprintf(stderr, "rank %d exited with %d\n", e.rank, e.exit_code);
        ++bad;
      }
    }
  } else {
    bad = run_world(o.world, body, 580, "reliability_test");
    if (bad < 0) return 2;
  }
  if (o.mode == "dead-peer" || o.mode == "no-call")
    std::printf("%s: %d passed, %d failed (all ranks ended after %.1f s)\n", o.mode.c_str(),
                bad == 0 ? o.world.size - 1 : 0, bad, ms_since(t0) / 1000);
  return bad == 0 ? 0 : 1;
}
