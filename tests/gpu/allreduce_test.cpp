// Multi-process correctness test of Communicator::all_reduce on real GPUs (one process per GPU, through the
// launcher): fp16 / bf16 / fp32, 16 B to 64 MiB including odd element counts, in-place and out-of-place, aligned and
// misaligned pointers, eager and CUDA-graph (4 layers x 16 calls, replayed with fresh data), every result against a
// float64 reference on random data with the output poisoned first, and bitwise identical across ranks.
//
//   allreduce_test [-n WORLD] [--expect none|nccl|v1|v2] [--quick]
// Environment variables (CUSTOMAR_TOPO_FILE, CUSTOMAR_ALGO, CUSTOMAR_DISABLE_V2...) steer the communicator.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "check_kernels.h"
#include "customar/communicator.h"
#include "customar/launcher.h"

using namespace customar;
using namespace customar::test;

namespace {

struct Options {
  int world = 0;
  std::string expect;
  bool quick = false;
  bool smoke = false;  // a handful of cases, for runs under compute-sanitizer
};

struct Tally {
  int passed = 0, failed = 0;
};

struct Case {
  DataType dtype;
  size_t count;
  bool inplace;
  size_t offset_elems;  // shifts both pointers off 16-byte alignment
};

std::string describe(const Case& c) {
  char buf[160];
  snprintf(buf, sizeof(buf), "%s count=%zu (%zu B) %s%s", std::string(dtype_name(c.dtype)).c_str(), c.count,
           c.count * dtype_size(c.dtype), c.inplace ? "in-place" : "out-of-place", c.offset_elems ? " misaligned" : "");
  return buf;
}

// Gathers every rank's verdict and checksum; true when all ranks are right and (for custom algorithms) identical.
bool agree(Group& g, const CheckResult& r, bool want_identical, std::string* why) {
  struct V {
    unsigned long long wrong, checksum, first_bad;
  } mine{r.wrong, r.checksum, r.first_bad};
  auto all = all_gather_value(g, mine);
  for (int k = 0; k < g.size(); ++k) {
    if (all[k].wrong) {
      *why = "rank " + std::to_string(k) + ": " + std::to_string(all[k].wrong) + " wrong elements, first at " +
             std::to_string(all[k].first_bad);
      return false;
    }
  }
  if (want_identical)
    for (int k = 1; k < g.size(); ++k)
      if (all[k].checksum != all[0].checksum) {
        *why = "rank " + std::to_string(k) + "'s result differs bitwise from rank 0's";
        return false;
      }
  return true;
}

int run_rank(Group& g, const Options& opt) {
  const int rank = g.rank(), world = g.size();
  TEST_CUDA(cudaSetDevice(rank));
  Communicator comm(g, rank);
  if (rank == 0)
    std::printf("[world %d] backend %s: %s\n", world, std::string(backend_name(comm.backend())).c_str(),
                comm.reason().c_str());
  Tally t;
  auto record = [&](bool ok, const std::string& what) {
    ok ? ++t.passed : ++t.failed;
    if (rank == 0 && !ok) std::printf("FAIL [world %d] %s\n", world, what.c_str());
  };
  if (!opt.expect.empty()) record(backend_name(comm.backend()) == opt.expect, "expected backend " + opt.expect);

  cudaStream_t s;
  TEST_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  CheckResult* res = nullptr;
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&res), sizeof(CheckResult)));

  std::vector<size_t> byte_sizes = {16, 1024, 4096, 16384, 65536, 262144, 1 << 20, 4 << 20};
  if (opt.smoke) byte_sizes = {1024, 65536, 1 << 20};
  if (!opt.quick && !opt.smoke) {
    byte_sizes.push_back(16 << 20);
    byte_sizes.push_back(64 << 20);
  }
  // Room for the largest case: the byte sizes, and the odd count (1 << 20) + 8 of fp32 below.
  const size_t max_bytes = std::max<size_t>(byte_sizes.back(), ((1 << 20) + 8) * 4) + 64;
  void *in = nullptr, *out = nullptr;
  TEST_CUDA(cudaMalloc(&in, max_bytes));
  TEST_CUDA(cudaMalloc(&out, max_bytes));

  std::vector<Case> cases;
  for (DataType d : {DataType::kFloat16, DataType::kBFloat16, DataType::kFloat32}) {
    if (opt.smoke && d != DataType::kBFloat16) continue;
    size_t es = dtype_size(d);
    std::vector<size_t> counts;
    for (size_t b : byte_sizes) counts.push_back(b / es);
    for (size_t odd : {size_t(3), size_t(1040), size_t((1 << 20) + 8)}) counts.push_back(odd);
    for (size_t c : counts)
      for (bool ip : {false, true}) cases.push_back({d, c, ip, 0});
    cases.push_back({d, 4096 / es, false, 1});
    cases.push_back({d, (1 << 20) / es, true, 3});
    // 3 MiB: a push with more vectors than threads (its loop path) reads its own share again from the input, which
    // in place is also the output.
    if (!opt.smoke) cases.push_back({d, (size_t(3) << 20) / es, true, 3});
  }

  uint64_t seed = 1234;
  int idx = 0;
  for (const Case& c : cases) {
    ++idx;
    seed = mix(seed + idx);
    const size_t es = dtype_size(c.dtype);
    char* ip = static_cast<char*>(in) + c.offset_elems * es;
    char* op = c.inplace ? ip : static_cast<char*>(out) + c.offset_elems * es;
    fill(ip, c.count, c.dtype, seed, rank, Values::kUniform, s);
    if (!c.inplace) TEST_CUDA(cudaMemsetAsync(op, 0xff, c.count * es, s));  // NaN in every dtype
    std::string what = describe(c) + " algo " + std::string(algo_name(comm.algo_for(c.count, c.dtype)));
    try {
      comm.all_reduce(ip, op, c.count, c.dtype, s);
      TEST_CUDA(cudaStreamSynchronize(s));
      comm.check();
    } catch (const std::exception& e) {
      record(false, what + ": " + e.what());
      continue;
    }
    CheckResult r = check(op, c.count, c.dtype, seed, world, Values::kUniform, s, res);
    std::string why;
    bool ok = agree(g, r, comm.algo_for(c.count, c.dtype) != Algo::kNccl, &why);
    record(ok, what + (ok ? "" : ": " + why));
    if (rank == 0 && ok && (c.count * es >= (1 << 20) || c.count < 8))
      std::printf("ok   [world %d] %s  rel_l2=%.2e\n", world, what.c_str(),
                  r.ref2 > 0 ? std::sqrt(r.err2 / r.ref2) : 0.0);
  }

  // CUDA graph: 4 layers x 16 calls, as a model's forward pass would capture them, replayed with fresh data.
  {
    const int kLayers = 4, kCalls = 16;
    const size_t sizes[] = {1024, 2064, 16384, 65536, 196608, 262160, 1 << 20, 3 << 20};
    struct Call {
      DataType d;
      size_t count;
      bool inplace;
      void* in;
      void* out;
    };
    std::vector<Call> calls;
    for (int l = 0; l < kLayers; ++l)
      for (int k = 0; k < kCalls; ++k) {
        DataType d = k % 3 == 0 ? DataType::kFloat16 : (k % 3 == 1 ? DataType::kBFloat16 : DataType::kFloat32);
        size_t bytes = sizes[(l * kCalls + k) % 8];
        Call c{d, bytes / dtype_size(d), k % 2 == 1, nullptr, nullptr};
        TEST_CUDA(cudaMalloc(&c.in, bytes));
        c.out = c.in;
        if (!c.inplace) TEST_CUDA(cudaMalloc(&c.out, bytes));
        calls.push_back(c);
      }
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    bool captured = true;
    try {
      TEST_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
      for (const Call& c : calls) comm.all_reduce(c.in, c.out, c.count, c.d, s);
      TEST_CUDA(cudaStreamEndCapture(s, &graph));
      TEST_CUDA(cudaGraphInstantiate(&exec, graph, 0));
    } catch (const std::exception& e) {
      record(false, std::string("graph capture: ") + e.what());
      captured = false;
    }
    for (int replay = 0; captured && replay < (opt.smoke ? 1 : 3); ++replay) {
      uint64_t gseed = mix(777 + replay);
      for (size_t k = 0; k < calls.size(); ++k) {
        fill(calls[k].in, calls[k].count, calls[k].d, gseed + k, rank, Values::kUniform, s);
        if (!calls[k].inplace)
          TEST_CUDA(cudaMemsetAsync(calls[k].out, 0xff, calls[k].count * dtype_size(calls[k].d), s));
      }
      TEST_CUDA(cudaGraphLaunch(exec, s));
      TEST_CUDA(cudaStreamSynchronize(s));
      bool ok = true;
      std::string why;
      for (size_t k = 0; k < calls.size() && ok; ++k) {
        CheckResult r = check(calls[k].out, calls[k].count, calls[k].d, gseed + k, world, Values::kUniform, s, res);
        ok = agree(g, r, comm.algo_for(calls[k].count, calls[k].d) != Algo::kNccl, &why);
        if (!ok) why = "call " + std::to_string(k) + ": " + why;
      }
      try {
        comm.check();
      } catch (const std::exception& e) {
        ok = false;
        why = e.what();
      }
      record(ok, "graph replay " + std::to_string(replay) + " (4 layers x 16 calls)" + (ok ? "" : ": " + why));
      if (rank == 0 && ok) std::printf("ok   [world %d] graph replay %d: 64 calls correct\n", world, replay);
    }
    if (captured) {
      TEST_CUDA(cudaGraphExecDestroy(exec));
      TEST_CUDA(cudaGraphDestroy(graph));
    }
    for (const Call& c : calls) {
      TEST_CUDA(cudaFree(c.in));
      if (!c.inplace) TEST_CUDA(cudaFree(c.out));
    }
  }

  // CommOptions::max_buffers, the tuner's communicator: buffers at the library's limits, so the push forced at 4 MiB
  // (past the built-in push limit at 3+ GPUs; at 2 GPUs the limit is 4 MiB already) and the pull forced at 64 MiB
  // (past every built-in staging size, 32 MiB at most) must run as forced and sum right.
  if (comm.backend() == Backend::kV2 && !opt.smoke) {
    CommOptions mo;
    mo.max_buffers = true;
    Communicator big(g, rank, mo);
    record(big.capacity() >= (size_t(64) << 20), "max_buffers: 64 MiB staging buffers");
    const size_t big_bytes = size_t(64) << 20;
    void *big_in = nullptr, *big_out = nullptr;
    TEST_CUDA(cudaMalloc(&big_in, big_bytes));
    TEST_CUDA(cudaMalloc(&big_out, big_bytes));
    for (auto [algo, bytes] :
         {std::pair{Algo::kOneshotPush, size_t(4) << 20}, std::pair{Algo::kOneshotPull, big_bytes}}) {
      big.set_algo(algo);
      const size_t count = bytes / 2;
      seed = mix(seed + 77);
      fill(big_in, count, DataType::kBFloat16, seed, rank, Values::kUniform, s);
      TEST_CUDA(cudaMemsetAsync(big_out, 0xff, bytes, s));
      const bool as_forced = big.algo_for(count, DataType::kBFloat16) == algo;
      big.all_reduce(big_in, big_out, count, DataType::kBFloat16, s);
      TEST_CUDA(cudaStreamSynchronize(s));
      big.check();
      CheckResult r = check(big_out, count, DataType::kBFloat16, seed, world, Values::kUniform, s, res);
      std::string why =
          as_forced ? "" : "algo_for is " + std::string(algo_name(big.algo_for(count, DataType::kBFloat16)));
      bool ok = agree(g, r, true, &why) && as_forced;
      record(ok, "max_buffers: bf16 " + std::to_string(bytes >> 20) + " MiB " + std::string(algo_name(algo)) +
                     " forced" + (ok ? std::string() : ": " + why));
    }
    TEST_CUDA(cudaFree(big_in));
    TEST_CUDA(cudaFree(big_out));
  }

  // Bad input: clear errors, and the communicator still works afterwards.
  {
    auto expect_throw = [&](const char* what, auto&& fn) {
      bool threw = false;
      try {
        fn();
      } catch (const InvalidArgument&) {
        threw = true;
      }
      record(threw, std::string("bad input rejected: ") + what);
    };
    expect_throw("null input", [&] { comm.all_reduce(nullptr, out, 16, DataType::kFloat32, s); });
    expect_throw("unknown dtype", [&] { comm.all_reduce(in, out, 16, static_cast<DataType>(9), s); });
    expect_throw("pointer not element-aligned",
                 [&] { comm.all_reduce(static_cast<char*>(in) + 1, out, 16, DataType::kFloat16, s); });
    expect_throw("byte size overflow", [&] { comm.all_reduce(in, out, SIZE_MAX / 2, DataType::kFloat32, s); });
    comm.all_reduce(in, out, 0, DataType::kFloat32, s);  // count 0: nothing, no error
  }

  TEST_CUDA(cudaFree(in));
  TEST_CUDA(cudaFree(out));
  TEST_CUDA(cudaFree(res));
  TEST_CUDA(cudaStreamDestroy(s));
  if (rank == 0) std::printf("[world %d] %d passed, %d failed\n", world, t.passed, t.failed);
  return t.failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-n" && i + 1 < argc)
      opt.world = std::atoi(argv[++i]);
    else if (a == "--expect" && i + 1 < argc)
      opt.expect = argv[++i];
    else if (a == "--quick")
      opt.quick = true;
    else if (a == "--smoke")
      opt.smoke = true;
    else {
      std::fprintf(stderr, "usage: allreduce_test [-n WORLD] [--expect none|nccl|v1|v2] [--quick] [--smoke]\n");
      return 2;
    }
  }
  int gpus = visible_gpu_count();
  if (opt.world == 0) opt.world = gpus;
  if (opt.world < 1 || opt.world > gpus) {
    std::fprintf(stderr, "allreduce_test: world size %d needs that many GPUs; %d visible\n", opt.world, gpus);
    return 2;
  }
  auto exits = launch(
      opt.world, [&](Group& g) { return run_rank(g, opt); }, LaunchOptions{540});
  int bad = 0;
  for (const auto& e : exits)
    if (!e.ok()) {
      std::fprintf(stderr, "rank %d exited with %d\n", e.rank, e.exit_code);
      ++bad;
    }
  return bad == 0 ? 0 : 1;
}
