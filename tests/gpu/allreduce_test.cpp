// Correctness of Communicator::all_reduce on GPUs: a process per GPU (-n N) or N virtual ranks on one GPU
// (--virtual N). For each backend the world can run (V2, V1, and the NCCL path: NCCL, or the reference all-reduce of a
// virtual world), named cases:
//   algorithm_matrix   every algorithm (auto and each forced) x fp16/bf16/fp32 x 16 B .. the largest custom size, odd
//                      tails, in and out of place, misaligned pointers; small integers, so every sum is exact.
//   uniform_values     random values in [-1, 1), within the dtype's rounding of the float64 reference.
//   special_values     inputs full of -0.0 and of the one-shot push's sentinel bit patterns.
//   nccl_dtypes        fp64, the integer types and fp8 (the NCCL path), exact where the type allows.
//   graph_replay       4 layers x 16 calls captured in one CUDA graph, replayed with new inputs.
//   two_streams        one communicator used from two streams in turn, ordered by events.
//   max_buffers        CommOptions::max_buffers: every algorithm forced up to the library's limits.
//   bad_input          clear errors, and the communicator still works.
//   check_mode         (CUSTOMAR_CHECK=1) ranks that pass different counts get InvalidArgument on every rank.
// Every output is poisoned (NaN) first; custom algorithms must give bitwise-identical results on every rank.
//
//   allreduce_test [-n N | --virtual N [--partition auto|green|capped]] [--expect none|nccl|v1|v2] [--quick|--smoke]
//                  [--v2-source FILE]
// --v2-source runs every V2 communicator with kernels compiled from FILE instead of the built-in device source (the
// lab's seam, comm/lab_access.h): how scripts/gpu-check.sh shows that the matrix catches bugs planted into a copy.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "check_kernels.h"
#include "customar/communicator.h"
#include "customar/env.h"
#include "v2_source.h"
#include "verdict.h"
#include "world.h"

using namespace customar;
using namespace customar::test;

namespace {

struct Options {
  World world;
  std::string expect;
  bool quick = false;
  bool smoke = false;     // a handful of cases, for runs under compute-sanitizer
  std::string v2_source;  // the text of --v2-source FILE
};

const DataType kCustomTypes[] = {DataType::kFloat16, DataType::kBFloat16, DataType::kFloat32};

// One rank's view of a run: its group, stream, buffers and tally.
struct Ctx {
  Group& g;
  const Options& opt;
  int rank, world, device;
  cudaStream_t s;
  void* in = nullptr;
  void* out = nullptr;
  size_t max_bytes = 0;
  CheckResult* res = nullptr;
  int passed = 0, failed = 0;
  uint64_t seed = 1234;

  void record(bool ok, const std::string& what) { count_check(ok, what, world, rank, passed, failed); }
};

// One call of a case.
struct Call {
  DataType dtype;
  size_t count;
  bool inplace;
  size_t offset_elems = 0;  // shifts both pointers off 16-byte alignment
  Values values = Values::kSmallInt;
};

std::string describe(const Call& c) {
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%s count=%zu (%zu B) %s%s", std::string(dtype_name(c.dtype)).c_str(), c.count,
                c.count * dtype_size(c.dtype), c.inplace ? "in-place" : "out-of-place",
                c.offset_elems ? " misaligned" : "");
  return buf;
}

// Exact sums for small integers (fp8 aside), the dtype's rounding otherwise.
double tolerance_for(const Call& c, int world) {
  const bool exact =
      c.values != Values::kUniform && c.dtype != DataType::kFloat8E4M3 && c.dtype != DataType::kFloat8E5M2;
  return exact ? 0.0 : tolerance(c.dtype, world);
}

// Fills, poisons, runs and checks one call on `comm`; records the outcome under `label`.
void check_call(Ctx& x, Communicator& comm, const Call& c, const std::string& label) {
  x.seed = mix(x.seed + 1);
  const size_t es = dtype_size(c.dtype);
  char* ip = static_cast<char*>(x.in) + c.offset_elems * es;
  char* op = c.inplace ? ip : static_cast<char*>(x.out) + c.offset_elems * es;
  fill(ip, c.count, c.dtype, x.seed, x.rank, c.values, x.s);
  if (!c.inplace) TEST_CUDA(cudaMemsetAsync(op, 0xff, c.count * es, x.s));  // NaN in every float dtype
  const Algo algo = comm.algo_for(c.count, c.dtype);
  const std::string what = label + " " + describe(c) + " algo " + std::string(algo_name(algo));
  try {
    comm.all_reduce(ip, op, c.count, c.dtype, x.s);
    TEST_CUDA(cudaStreamSynchronize(x.s));
    comm.check();
  } catch (const std::exception& e) {
    x.record(false, what + ": " + e.what());
    return;
  }
  reset_result(x.res, x.s);
  check_async(op, c.count, c.dtype, x.seed, x.world, c.values, tolerance_for(c, x.world), x.s, x.res);
  const CheckResult r = read_result(x.res, x.s);
  std::string why;
  const bool ok = agree(x.g, r, algo != Algo::kNccl, &why);
  x.record(ok, what + (ok ? "" : ": " + why));
}

std::vector<size_t> matrix_bytes(const Ctx& x, size_t capacity) {
  std::vector<size_t> b = {16, 1024, 4096, 16400, 65536, 262144, 1 << 20};
  if (x.opt.smoke) return {1024, 65536, 1 << 20};
  if (!x.opt.quick) b.push_back(4 << 20);
  if (!x.opt.quick && capacity > (size_t(4) << 20)) b.push_back(std::min(capacity, x.max_bytes / 2));
  return b;
}

// The algorithms `comm` can be forced to: auto (nullopt) first.
std::vector<std::optional<Algo>> algorithms(const Communicator& comm) {
  if (comm.backend() == Backend::kV2)
    return {std::nullopt, Algo::kOneshotPush, Algo::kOneshotPull, Algo::kTwoshot, Algo::kNccl};
  if (comm.backend() == Backend::kV1) return {std::nullopt, Algo::kOneshotPull, Algo::kTwoshot, Algo::kNccl};
  return {std::nullopt};
}

std::string algo_label(std::optional<Algo> a) { return a ? std::string(algo_name(*a)) : "auto"; }

void algorithm_matrix(Ctx& x, Communicator& comm) {
  for (std::optional<Algo> a : algorithms(comm)) {
    comm.set_algo(a);
    for (DataType d : kCustomTypes) {
      if (x.opt.smoke && d != DataType::kBFloat16) continue;
      const size_t es = dtype_size(d);
      std::vector<size_t> counts;
      for (size_t b : matrix_bytes(x, comm.capacity())) counts.push_back(b / es);
      for (size_t odd : {size_t(3), size_t(1027), size_t((1 << 20) + 8) / es}) counts.push_back(odd);
      for (size_t c : counts)
        for (bool ip : {false, true}) check_call(x, comm, {d, c, ip}, "matrix " + algo_label(a));
      check_call(x, comm, {d, 4096 / es, false, 1}, "matrix " + algo_label(a));
      check_call(x, comm, {d, (1 << 20) / es, true, 3}, "matrix " + algo_label(a));
      // 3 MiB: a push with more vectors than threads (its loop path) reads its own share again from the input,
      // which in place is also the output.
      if (!x.opt.smoke) check_call(x, comm, {d, (size_t(3) << 20) / es, true, 3}, "matrix " + algo_label(a));
    }
  }
  comm.set_algo(std::nullopt);
}

void uniform_values(Ctx& x, Communicator& comm) {
  for (DataType d : kCustomTypes)
    for (size_t b : {size_t(1024), size_t(65536), size_t(1) << 20})
      check_call(x, comm, {d, b / dtype_size(d), false, 0, Values::kUniform}, "uniform");
}

void special_values(Ctx& x, Communicator& comm) {
  for (std::optional<Algo> a : algorithms(comm)) {
    comm.set_algo(a);
    for (DataType d : kCustomTypes)
      for (size_t b : {size_t(1024), size_t(65536), size_t(1) << 20})
        for (bool ip : {false, true})
          check_call(x, comm, {d, b / dtype_size(d), ip, 0, Values::kSentinels}, "special " + algo_label(a));
  }
  comm.set_algo(std::nullopt);
}

void nccl_dtypes(Ctx& x, Communicator& comm) {
  for (DataType d : {DataType::kFloat64, DataType::kInt8, DataType::kUInt8, DataType::kInt32, DataType::kUInt32,
                     DataType::kInt64, DataType::kUInt64, DataType::kFloat8E4M3, DataType::kFloat8E5M2})
    for (size_t count : {size_t(1), size_t(1027), size_t(65536)})
      for (bool ip : {false, true}) check_call(x, comm, {d, count, ip}, "nccl dtype");
}

// 4 layers x 16 calls, as a model's forward pass would capture them (mixed dtypes, sizes that take every algorithm
// including the NCCL path, in and out of place), replayed with fresh data.
void graph_replay(Ctx& x, Communicator& comm) {
  const size_t sizes[] = {1024, 2064, 16384, 65536, 196608, 262160, 1 << 20, 3 << 20, 1042};
  std::vector<Call> calls;
  std::vector<std::pair<void*, void*>> bufs;
  for (int k = 0; k < 64; ++k) {
    const DataType d = kCustomTypes[k % 3];
    const size_t bytes = sizes[k % 9] / dtype_size(d) * dtype_size(d);
    calls.push_back({d, bytes / dtype_size(d), k % 2 == 1});
    void *i = nullptr, *o = nullptr;
    TEST_CUDA(cudaMalloc(&i, bytes));
    o = i;
    if (!calls.back().inplace) TEST_CUDA(cudaMalloc(&o, bytes));
    bufs.push_back({i, o});
  }
  CapturedGraph graph = capture_graph(x.s, [&] {
    for (size_t k = 0; k < calls.size(); ++k)
      comm.all_reduce(bufs[k].first, bufs[k].second, calls[k].count, calls[k].dtype, x.s);
  });
  if (!graph.error.empty()) x.record(false, "graph capture: " + graph.error);
  for (int replay = 0; graph.exec != nullptr && replay < (x.opt.smoke ? 1 : 3); ++replay) {
    const uint64_t gseed = mix(777 + replay);
    for (size_t k = 0; k < calls.size(); ++k) {
      fill(bufs[k].first, calls[k].count, calls[k].dtype, gseed + k, x.rank, Values::kSmallInt, x.s);
      if (!calls[k].inplace)
        TEST_CUDA(cudaMemsetAsync(bufs[k].second, 0xff, calls[k].count * dtype_size(calls[k].dtype), x.s));
    }
    TEST_CUDA(cudaGraphLaunch(graph.exec, x.s));
    TEST_CUDA(cudaStreamSynchronize(x.s));
    bool ok = true;
    std::string why;
    for (size_t k = 0; k < calls.size() && ok; ++k) {
      reset_result(x.res, x.s);
      check_async(bufs[k].second, calls[k].count, calls[k].dtype, gseed + k, x.world, Values::kSmallInt, 0, x.s, x.res);
      ok = agree(x.g, read_result(x.res, x.s), comm.algo_for(calls[k].count, calls[k].dtype) != Algo::kNccl, &why);
      if (!ok) why = "call " + std::to_string(k) + " (" + describe(calls[k]) + "): " + why;
    }
    try {
      comm.check();
    } catch (const std::exception& e) {
      ok = false;
      why = e.what();
    }
    x.record(ok, "graph replay " + std::to_string(replay) + " of 64 calls" + (ok ? "" : ": " + why));
  }
  graph.release();
  std::vector<void*> to_free;
  for (size_t k = 0; k < bufs.size(); ++k) {
    to_free.push_back(bufs[k].first);
    if (!calls[k].inplace) to_free.push_back(bufs[k].second);
  }
  free_then_meet(x.g, to_free);
}

// Calls alternate between the rank's stream and a second one; each input is filled on the stream of its call, and
// the communicator orders each call after the previous one itself.
void two_streams(Ctx& x, Communicator& comm) {
  const cudaStream_t other = second_stream(x.g, x.out);
  const cudaStream_t main_stream = x.s;
  for (int k = 0; k < 12; ++k) {
    x.s = k % 2 == 0 ? main_stream : other;
    const DataType d = kCustomTypes[k % 3];
    const size_t bytes = size_t(1024) << (k % 6 * 2);
    check_call(x, comm, {d, bytes / dtype_size(d), k % 4 < 2},
               std::string("two streams, call on ") + (k % 2 == 0 ? "the first" : "the second"));
  }
  x.s = main_stream;
  TEST_CUDA(cudaStreamSynchronize(other));
  TEST_CUDA(cudaStreamDestroy(other));
}

// The tuner's communicator: buffers at the library's limits, so the push forced at 4 MiB and the pull forced at the
// largest staging size run as forced and sum right.
void max_buffers(Ctx& x) {
  CommOptions mo;
  mo.max_buffers = true;
  Communicator big(x.g, x.device, mo);
  if (big.backend() != Backend::kV2) return;
  x.record(big.capacity() >= (size_t(64) << 20), "max_buffers: 64 MiB staging buffers");
  for (auto [algo, bytes] : {std::pair{Algo::kOneshotPush, size_t(4) << 20},
                             std::pair{Algo::kOneshotPull, std::min(x.max_bytes, big.capacity())}}) {
    big.set_algo(algo);
    const size_t count = bytes / 2;
    x.record(big.algo_for(count, DataType::kBFloat16) == algo,
             "max_buffers: " + std::string(algo_name(algo)) + " runs as forced at " + std::to_string(bytes));
    check_call(x, big, {DataType::kBFloat16, count, false}, "max_buffers " + std::string(algo_name(algo)));
  }
}

void bad_input(Ctx& x, Communicator& comm) {
  auto expect_throw = [&](const char* what, auto&& fn) {
    bool threw = false;
    try {
      fn();
    } catch (const InvalidArgument&) {
      threw = true;
    }
    x.record(threw, std::string("bad input rejected: ") + what);
  };
  expect_throw("null input", [&] { comm.all_reduce(nullptr, x.out, 16, DataType::kFloat32, x.s); });
  expect_throw("unknown dtype", [&] { comm.all_reduce(x.in, x.out, 16, static_cast<DataType>(99), x.s); });
  expect_throw("pointer not element-aligned",
               [&] { comm.all_reduce(static_cast<char*>(x.in) + 1, x.out, 16, DataType::kFloat16, x.s); });
  expect_throw("byte size overflow", [&] { comm.all_reduce(x.in, x.out, SIZE_MAX / 2, DataType::kFloat32, x.s); });
  comm.all_reduce(x.in, x.out, 0, DataType::kFloat32, x.s);  // count 0: nothing, no error
  check_call(x, comm, {DataType::kBFloat16, 4096, false}, "after bad input");
}

// With CUSTOMAR_CHECK=1 a count that differs on one rank is caught on every rank before anything runs.
void check_mode(Ctx& x, Communicator& comm) {
  bool threw = false;
  try {
    comm.all_reduce(x.in, x.out, x.rank == 0 ? 4096 : 4112, DataType::kBFloat16, x.s);
  } catch (const InvalidArgument& e) {
    threw = std::string(e.what()).find("CUSTOMAR_CHECK") != std::string::npos;
  }
  x.record(threw, "check mode: different counts rejected on every rank");
  check_call(x, comm, {DataType::kBFloat16, 4096, false}, "check mode, afterwards");
}

// Every case on one communicator of the given backend cap.
void run_cases(Ctx& x, std::optional<Backend> cap, const char* label) {
  CommOptions o;
  o.max_backend = cap;
  Communicator comm(x.g, x.device, o);
  if (cap && comm.backend() != *cap) return;  // the machine cannot run that backend: nothing to test
  use_v2_source(x.g, comm, x.device, x.opt.v2_source);
  if (x.rank == 0)
    std::printf("[world %d] %s: backend %s: %s\n", x.world, label, std::string(backend_name(comm.backend())).c_str(),
                comm.reason().c_str());
  if (!cap && !x.opt.expect.empty())
    x.record(backend_name(comm.backend()) == x.opt.expect, "expected backend " + x.opt.expect);
  const int failed_before = x.failed;
  algorithm_matrix(x, comm);
  if (!x.opt.smoke) {
    uniform_values(x, comm);
    special_values(x, comm);
    nccl_dtypes(x, comm);
    two_streams(x, comm);
    bad_input(x, comm);
    if (env().check) check_mode(x, comm);
  }
  graph_replay(x, comm);
  if (x.rank == 0)
    std::printf("[world %d] %s: %s\n", x.world, label, x.failed == failed_before ? "all cases pass" : "FAILURES");
}

int run_rank(Group& g, const Options& opt) {
  const int device = start_rank(opt.world, g);
  RankStream stream(opt.world, g);
  Ctx x{g, opt, g.rank(), g.size(), device, stream.get()};
  // Room for the largest case: 32 MiB (the largest default staging size), and the odd counts with their offsets.
  x.max_bytes = (x.opt.quick || x.opt.smoke ? size_t(8) : size_t(32)) << 20;
  TEST_CUDA(cudaMalloc(&x.in, x.max_bytes + 64));
  TEST_CUDA(cudaMalloc(&x.out, x.max_bytes + 64));
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&x.res), sizeof(CheckResult)));
  run_cases(x, std::nullopt, "auto");
  if (!opt.smoke && g.size() > 1) {
    run_cases(x, Backend::kV1, "V1");
    run_cases(x, Backend::kNccl, "NCCL path");
    max_buffers(x);
  }
  TEST_CUDA(cudaFree(x.in));
  TEST_CUDA(cudaFree(x.out));
  TEST_CUDA(cudaFree(x.res));
  return tally(g, x.passed, x.failed);
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  try {
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (parse_world_arg(argc, argv, i, opt.world)) continue;
      if (a == "--expect" && i + 1 < argc)
        opt.expect = argv[++i];
      else if (a == "--quick")
        opt.quick = true;
      else if (a == "--smoke")
        opt.smoke = true;
      else if (a == "--v2-source" && i + 1 < argc)
        opt.v2_source = read_v2_source(argv[++i]);
      else
        throw std::runtime_error("unknown argument " + a);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "allreduce_test: %s\nusage: allreduce_test [-n N | --virtual N [--partition auto|green|capped]] "
                 "[--expect none|nccl|v1|v2] [--quick|--smoke] [--v2-source FILE]\n",
                 e.what());
    return 2;
  }
  const int bad = run_world(
      opt.world, [&](Group& g) { return run_rank(g, opt); }, 540, "allreduce_test");
  return bad == 0 ? 0 : bad < 0 ? 2 : 1;
}
