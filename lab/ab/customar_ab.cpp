// customar-ab: A/B of V2 kernel variants on one build and one machine. Every variant runs behind the product's own
// Communicator (its buffers, plans and checks): the lab swaps the kernels behind the seam (comm/lab_access.h) and
// nothing in the product reads a switch for it. Rounds interleave the variants, so drift hits each alike; every
// result is checked against the float64 reference first, so a variant that breaks the protocol shows as wrong, not
// as fast.
//
//   customar-ab [-g N | --virtual N] [-b MIN] [-e MAX] [-r ROUNDS] [-n ITERS] [--algo A] [--push-block T] VARIANT...
//   customar-ab --dump-source FILE
//   customar-ab --write-cubins DIR SM     (the V2 modules of world sizes 2..8 for sm_SM, for a SASS diff; no GPU)
//
// VARIANT: `builtin`, or a file holding a whole V2 device source (start from --dump-source: the built-in text of
// src/kernels/handle.h, shape.h and device/*.cuh; keep DeviceHandle's layout and the body names of
// kernels/variants.h). --algo forces an algorithm (oneshot_push, oneshot_pull, twoshot); --push-block runs every
// multi-block push in blocks of T threads (a multiple of 32 up to 512) instead of the built-in shape.
// --virtual N runs N virtual ranks on one GPU (include/customar/virtual.h): a same-run comparison of variants on a
// one-GPU machine, not a multi-GPU timing (the ranks share one GPU's SMs and memory).
// Output: one line per (variant, round, size): "variant round bytes algo us wrong".
#include <cuda_runtime_api.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "check_kernels.h"
#include "comm/lab_access.h"
#include "customar/communicator.h"
#include "customar/launcher.h"
#include "customar/virtual.h"
#include "graph_timing.h"
#include "jit/compiler.h"
#include "kernels/v2/v2_kernels.h"

using namespace customar;
using namespace customar::test;
using namespace customar::detail;

namespace {

struct Options {
  int gpus = 2;
  bool virtual_ranks = false;
  size_t min_bytes = 1024, max_bytes = size_t(64) << 10;
  int rounds = 2, iters = 20, replays = 7;
  std::optional<Algo> algo;
  unsigned push_block = 0;
  std::vector<std::string> variants;
};

// Runs the wrapped kernels with every multi-block push re-shaped to `block` threads per block (the grid keeps one
// vector per thread up to what __launch_bounds__(512) guarantees resident: one 512-thread block per agreed SM).
class PushBlockOverride final : public Kernels {
 public:
  PushBlockOverride(std::unique_ptr<Kernels> inner, unsigned block, int max_blocks)
      : inner_(std::move(inner)), block_(block), max_blocks_(max_blocks) {}
  void launch(const Plan& plan, const DeviceHandle& h, const void* in, void* out, DataType dtype,
              cudaStream_t stream) const override {
    Plan p = plan;
    if (p.kernel == Kernel::kPushMultiBlock || p.kernel == Kernel::kPushWide) {
      const size_t cap = size_t(max_blocks_) * kSafePushThreadsPerSm / block_;
      const size_t blocks = (p.nvec + block_ - 1) / block_;
      p.block = block_;
      p.grid = static_cast<unsigned>(std::min({blocks, cap, size_t(kMaxPushBlocks)}));
    }
    inner_->launch(p, h, in, out, dtype, stream);
  }
  int push_sm_threads(Kernel k, DataType d) const override { return inner_->push_sm_threads(k, d); }
  std::string describe() const override { return inner_->describe() + ", push blocks of " + std::to_string(block_); }

 private:
  std::unique_ptr<Kernels> inner_;
  unsigned block_;
  int max_blocks_;
};

std::string read_variant(const std::string& name) {
  if (name == "builtin") return v2_device_source();
  std::ifstream f(name, std::ios::binary);
  if (!f) throw std::runtime_error("cannot read variant " + name);
  std::ostringstream text;
  text << f.rdbuf();
  if (text.str().empty()) throw std::runtime_error("variant " + name + " is empty");
  return text.str();
}

// Times every size on `comm` after checking it: one line per size.
void measure(Group& g, const Options& o, Communicator& comm, const std::string& variant, int round, void* in, void* out,
             CheckResult* res, cudaStream_t s) {
  for (size_t bytes = o.min_bytes; bytes <= o.max_bytes; bytes *= 2) {
    const size_t count = bytes / 2;
    const uint64_t seed = mix(bytes * 31 + round);
    fill(in, count, DataType::kBFloat16, seed, g.rank(), Values::kUniform, s);
    TEST_CUDA(cudaMemsetAsync(out, 0xff, bytes, s));
    comm.all_reduce(in, out, count, DataType::kBFloat16, s);
    const CheckResult cr = check(out, count, DataType::kBFloat16, seed, g.size(), Values::kUniform, s, res);
    unsigned long long wrong = 0;
    for (auto w : all_gather_value(g, cr.wrong)) wrong += w;
    comm.check();
    const double us = time_graph(
        g, [&] { comm.all_reduce(in, out, count, DataType::kBFloat16, s); }, o.iters, 2, o.replays, s);
    if (g.rank() == 0)
      std::printf("%s %d %zu %s %.3f %llu\n", variant.c_str(), round, bytes,
                  std::string(algo_name(comm.algo_for(count, DataType::kBFloat16))).c_str(), us, wrong);
    std::fflush(stdout);
  }
}

int run_rank(Group& g, const Options& o) {
  const int device = o.virtual_ranks ? 0 : g.rank();
  TEST_CUDA(cudaSetDevice(device));
  load_kernels();
  cudaDeviceProp prop{};
  TEST_CUDA(cudaGetDeviceProperties(&prop, device));
  cudaStream_t s = nullptr;
  if (o.virtual_ranks)
    s = virtual_stream(g);
  else
    TEST_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  void *in = nullptr, *out = nullptr;
  CheckResult* res = nullptr;
  TEST_CUDA(cudaMalloc(&in, o.max_bytes));
  TEST_CUDA(cudaMalloc(&out, o.max_bytes));
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&res), sizeof(CheckResult)));
  CommOptions copt;
  copt.max_buffers = true;
  Communicator comm(g, device, copt);
  if (comm.backend() != Backend::kV2) throw std::runtime_error("V2 does not serve here: " + comm.reason());
  comm.set_algo(o.algo);
  const int sm = prop.major * 10 + prop.minor;
  for (int round = 0; round < o.rounds; ++round)
    for (const std::string& v : o.variants) {
      std::unique_ptr<Kernels> k = make_v2_kernels_from_source(g.size(), sm, read_variant(v));
      if (o.push_block != 0)
        k = std::make_unique<PushBlockOverride>(std::move(k), o.push_block, LabAccess::handle(comm).max_blocks);
      LabAccess::replace_kernels(comm, std::move(k));
      // Every rank has its kernels loaded before any runs one: a load while a peer's kernel spins can wait for it.
      g.barrier();
      measure(g, o, comm, v, round, in, out, res, s);
    }
  TEST_CUDA(cudaStreamSynchronize(s));
  TEST_CUDA(cudaFree(in));
  TEST_CUDA(cudaFree(out));
  TEST_CUDA(cudaFree(res));
  return 0;
}

size_t parse_size(const std::string& s) {
  size_t pos = 0;
  const double v = std::stod(s, &pos);
  const char u = pos < s.size() ? s[pos] : '\0';
  return static_cast<size_t>(v * (u == 'K' || u == 'k' ? 1024.0 : u == 'M' || u == 'm' ? 1048576.0 : 1.0));
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) throw std::runtime_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "-g") {
      o.gpus = std::stoi(next());
    } else if (a == "--virtual") {
      o.gpus = std::stoi(next());
      o.virtual_ranks = true;
    } else if (a == "-b")
      o.min_bytes = parse_size(next());
    else if (a == "-e")
      o.max_bytes = parse_size(next());
    else if (a == "-r")
      o.rounds = std::stoi(next());
    else if (a == "-n")
      o.iters = std::stoi(next());
    else if (a == "--algo") {
      Algo x{};
      if (!parse_algo(next(), &x)) throw std::runtime_error("--algo: expected oneshot_push, oneshot_pull or twoshot");
      o.algo = x;
    } else if (a == "--push-block") {
      o.push_block = static_cast<unsigned>(std::stoul(next()));
      if (o.push_block < 32 || o.push_block > 512 || o.push_block % 32 != 0)
        throw std::runtime_error("--push-block: expected a multiple of 32 from 32 to 512");
    } else if (a[0] == '-') {
      throw std::runtime_error("unknown flag " + a);
    } else {
      o.variants.push_back(a);
    }
  }
  if (o.variants.empty()) throw std::runtime_error("no variant given (builtin or a device-source file)");
  if (o.min_bytes < 16 || o.max_bytes < o.min_bytes || o.rounds < 1 || o.iters < 1)
    throw std::runtime_error("need 16 <= -b <= -e, -r >= 1, -n >= 1");
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 3 && std::string(argv[1]) == "--dump-source") {
      std::ofstream f(argv[2], std::ios::binary);
      f << v2_device_source();
      if (!f) throw std::runtime_error(std::string("cannot write ") + argv[2]);
      return 0;
    }
    if (argc == 4 && std::string(argv[1]) == "--write-cubins") {
      for (int w = 2; w <= 8; ++w) {
        const JitResult r = jit_compile(v2_module_name(w), v2_source(w), std::stoi(argv[3]));
        std::ofstream f(std::string(argv[2]) + "/" + v2_module_name(w) + ".cubin", std::ios::binary);
        f.write(r.cubin.data(), static_cast<std::streamsize>(r.cubin.size()));
        if (!f) throw std::runtime_error(std::string("cannot write into ") + argv[2]);
      }
      return 0;
    }
    const Options o = parse_args(argc, argv);
    for (const std::string& v : o.variants) (void)read_variant(v);  // a bad file fails before any GPU work
    const int gpus = visible_gpu_count();
    const int most = o.virtual_ranks ? 8 : gpus;
    if (o.gpus < 2 || o.gpus > most)
      throw std::runtime_error(std::to_string(o.gpus) + " ranks: needs 2 to " + std::to_string(most) +
                               (o.virtual_ranks ? " virtual ranks" : " GPUs"));
    std::printf("# variant round bytes algo us wrong%s\n", o.virtual_ranks ? "  (virtual ranks on one GPU)" : "");
    std::fflush(stdout);
    int bad = 0;
    auto body = [&](Group& g) { return run_rank(g, o); };
    for (const auto& e : o.virtual_ranks ? launch_virtual(o.gpus, body) : launch(o.gpus, body, LaunchOptions{580}))
      bad += !e.ok();
    return bad == 0 ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "customar-ab: %s\n", e.what());
    return 2;
  }
}
