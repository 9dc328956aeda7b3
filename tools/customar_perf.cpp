// customar-perf: an nccl-tests-style benchmark of customar's backends beside NCCL (ordinary buffers, and NCCL's
// symmetric-memory kernels), in one run on one machine, plus the per-machine tuner.
//
//   customar-perf [-g N] [-b MIN] [-e MAX] [-f FACTOR] [-n ITERS] [-w WARMUP] [-r REPLAYS] [-c 0|1] [-G 0|1]
//                 [-d bf16|fp16|fp32] [-k auto|v2|v1|nccl|nccl-symm|symm|all] [-J FILE] [--tune [FILE]]
//                 [--fused [--fp8] | --norm-only [--fp8]]
//
// Backends: auto (what customar picks), v2 / v1 (that backend forced; v1 by CommOptions::max_backend), nccl (its own
// communicator, ordinary buffers), nccl-symm (NCCL's symmetric-memory kernels on ncclMemAlloc'ed, window-registered
// buffers), symm (auto's communicator with input and output in its symmetric memory, Communicator::alloc_symmetric:
// the kernels read the inputs in place; -k symm runs nccl and auto beside it). An algorithm marked * reads its inputs
// in place.
//
// Each row: size count type redop backend algo | out-of-place time algbw busbw #wrong | in-place ... | vs nccl.
// busbw = algbw * 2(n-1)/n. Times are microseconds per call: with -G 1 (default) the median over REPLAYS replays of a
// CUDA graph of ITERS back-to-back calls, else the median over REPLAYS rounds of ITERS eager calls; worst rank.
// Results are checked against a float64 reference (-c 1) before timing. --tune measures every algorithm at every
// size and writes the thresholds that lose least to the best one (config/tune.h) into FILE (default: the tuned
// config that global_config() loads, <cache dir>/tuned-config.json).
//
// --fused: all-reduce + residual add + RMSNorm (Communicator::all_reduce_add_rmsnorm) for tokens {1, 8, 32, 128, 512,
// 2048} x hidden {4096, 8192} (-d bf16 or fp16; --fp8: e4m3 norm output): customar's call as planned (op "fused"),
// customar's all-reduce then its norm kernel (op "unfused", backend auto) and NCCL's all-reduce then the same kernel
// (op "unfused", backend nccl), each checked first, timed the same way; bytes = tokens x hidden x 2, the all-reduce's
// message. --norm-only: the norm kernel alone on one GPU (a world of one rank), its time and the memory bandwidth it
// reaches (bytes read and written / time), for the same shapes.
#include <cuda_runtime_api.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "check_kernels.h"
#include "config/tune.h"
#include "customar/communicator.h"
#include "customar/config.h"
#include "customar/launcher.h"
#include "graph_timing.h"
#include "nccl/nccl_loader.h"
#include "norm_check.h"

using namespace customar;
using namespace customar::test;

namespace {

// NCCL is the process's (nccl/nccl_loader.h): the same library customar's own NCCL path drives.
#define PERF_NCCL(call)                                                                                \
  do {                                                                                                 \
    detail::NcclResult r_ = (call);                                                                    \
    if (r_ != detail::kNcclSuccess)                                                                    \
      throw std::runtime_error(std::string(#call) + ": " + detail::nccl_api().ncclGetErrorString(r_)); \
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
  bool fused = false;      // --fused
  bool norm_only = false;  // --norm-only
  bool fp8 = false;        // --fp8: e4m3 norm output
};

// The shapes of --fused and --norm-only: decode to prefill token counts at two common hidden sizes.
const size_t kNormTokens[] = {1, 8, 32, 128, 512, 2048};
const size_t kNormHidden[] = {4096, 8192};

// Enqueues one all-reduce of the current size on a stream.
using Issue = std::function<void(const void* in, void* out, cudaStream_t)>;

// A backend under test: its communicator (nullptr: NCCL) and its buffers (NCCL's symmetric memory needs its own).
struct Candidate {
  std::string name;
  Communicator* comm;
  void* in;
  void* out;
};

// Out-of-place and in-place results of one candidate at one size.
struct Row {
  double us[2] = {0, 0};
  unsigned long long wrong[2] = {0, 0};
};

class PerfRank {
 public:
  PerfRank(Group& g, const Options& o) : g_(g), o_(o), rank_(g.rank()), world_(g.size()) {}
  ~PerfRank();
  int run();

 private:
  void set_up();
  void add_candidates();
  void print_header() const;
  Issue issue_for(const Candidate& c, size_t count) const;
  double time_call(const Issue& issue, const void* in, void* out);
  double time_issue(const std::function<void()>& issue);
  int run_fused();
  NormCase norm_case(const Communicator& c, size_t tokens, size_t hidden) const;
  Row measure_norm(Communicator& c, const NormCase& nc);
  void report_norm(const Communicator& c, const char* op, const NormCase& nc, const Row& row, double nccl_us);
  Row measure(const Candidate& c, size_t bytes);
  void report(const Candidate& c, size_t bytes, const Row& row, double nccl_us);
  void write_json(const std::string& backend, const std::string& algo, size_t bytes, const Row& row,
                  const std::string& extra) const;
  SizeTiming tune_at(size_t bytes);
  void finish(const std::vector<SizeTiming>& tune) const;

  Group& g_;
  const Options& o_;
  const int rank_, world_;
  cudaDeviceProp prop_{};
  const detail::NcclApi& nc_ = detail::nccl_api();
  ncclComm_t nccl_ = nullptr;
  detail::NcclType nccl_type_ = detail::NcclType::kBfloat16;
  cudaStream_t s_ = nullptr;
  void *in_ = nullptr, *out_ = nullptr;
  CheckResult* res_ = nullptr;
  std::unique_ptr<Communicator> comm_, comm_v1_, comm_nccl_;
  std::unique_ptr<NormBuffers> norm_bufs_;
  NormCheckResult* norm_res_ = nullptr;
  std::vector<Candidate> candidates_;
  void *sin_ = nullptr, *sout_ = nullptr;
  detail::NcclWindow win_in_{}, win_out_{};
  void *symm_in_ = nullptr, *symm_out_ = nullptr;  // freed with comm_
  FILE* json_ = nullptr;
  long total_wrong_ = 0;
  std::map<std::string, std::pair<double, int>> bw_sum_;
};

void PerfRank::set_up() {
  TEST_CUDA(cudaSetDevice(rank_));
  TEST_CUDA(cudaGetDeviceProperties(&prop_, rank_));
  if (rank_ == 0) std::printf("# %s\n", detail::nccl_library().describe().c_str());
  detail::NcclUniqueId id{};
  if (rank_ == 0) PERF_NCCL(nc_.ncclGetUniqueId(&id));
  id = all_gather_value(g_, id)[0];
  PERF_NCCL(nc_.ncclCommInitRank(&nccl_, world_, id, rank_));
  nccl_type_ = o_.dtype == DataType::kBFloat16  ? detail::NcclType::kBfloat16
               : o_.dtype == DataType::kFloat16 ? detail::NcclType::kFloat16
                                                : detail::NcclType::kFloat32;
  TEST_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
  TEST_CUDA(cudaMalloc(&in_, o_.max_bytes));
  TEST_CUDA(cudaMalloc(&out_, o_.max_bytes));
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&res_), sizeof(CheckResult)));
  CommOptions copt;
  copt.nccl_comm = nccl_;
  // The tuner forces each algorithm at each size, so its buffers must hold every size, not only those the current
  // thresholds send there (else a push limit could never move up).
  copt.max_buffers = o_.tune;
  comm_ = std::make_unique<Communicator>(g_, rank_, copt);
  if (rank_ == 0 && !o_.json.empty()) json_ = std::fopen(o_.json.c_str(), "w");
}

void PerfRank::add_candidates() {
  for (const std::string& b : o_.backends) {
    if (b == "auto") {
      candidates_.push_back({"auto", comm_.get(), in_, out_});
    } else if (b == "v2") {
      if (comm_->backend() == Backend::kV2)
        candidates_.push_back({"v2", comm_.get(), in_, out_});
      else if (rank_ == 0)
        std::printf("# v2 skipped: %s\n", comm_->reason().c_str());
    } else if (b == "v1") {
      CommOptions v1opt;
      v1opt.nccl_comm = nccl_;
      v1opt.max_buffers = o_.tune;
      v1opt.max_backend = Backend::kV1;
      comm_v1_ = std::make_unique<Communicator>(g_, rank_, v1opt);
      if (comm_v1_->backend() == Backend::kV1)
        candidates_.push_back({"v1", comm_v1_.get(), in_, out_});
      else if (rank_ == 0)
        std::printf("# v1 skipped: %s\n", comm_v1_->reason().c_str());
    } else if (b == "nccl") {
      candidates_.push_back({"nccl", nullptr, in_, out_});
    } else if (b == "nccl-symm" && (nc_.ncclMemAlloc == nullptr || nc_.ncclMemFree == nullptr ||
                                    nc_.ncclCommWindowRegister == nullptr || nc_.ncclCommWindowDeregister == nullptr)) {
      if (rank_ == 0)
        std::printf("# nccl-symm skipped: NCCL %s has no ncclMemAlloc / ncclCommWindowRegister (2.27 or newer has)\n",
                    detail::nccl_version_text(nc_.version).c_str());
    } else if (b == "nccl-symm") {
      // NCCL's symmetric-memory kernels: buffers from ncclMemAlloc, registered once as symmetric windows.
      PERF_NCCL(nc_.ncclMemAlloc(&sin_, o_.max_bytes));
      PERF_NCCL(nc_.ncclMemAlloc(&sout_, o_.max_bytes));
      PERF_NCCL(nc_.ncclCommWindowRegister(nccl_, sin_, o_.max_bytes, &win_in_, detail::kNcclWinCollSymmetric));
      PERF_NCCL(nc_.ncclCommWindowRegister(nccl_, sout_, o_.max_bytes, &win_out_, detail::kNcclWinCollSymmetric));
      candidates_.push_back({"nccl-symm", nullptr, sin_, sout_});
    } else if (b == "symm") {
      symm_in_ = comm_->alloc_symmetric(o_.max_bytes);
      symm_out_ = comm_->alloc_symmetric(o_.max_bytes);
      candidates_.push_back({"symm", comm_.get(), symm_in_, symm_out_});
    }
  }
}

void PerfRank::print_header() const {
  if (rank_ != 0) return;
  std::printf("# customar-perf: %d x %s, %s sum, %s, %d iters x %d replays, worst rank\n", world_, prop_.name,
              std::string(dtype_name(o_.dtype)).c_str(), o_.graph ? "CUDA graph" : "eager", o_.iters, o_.replays);
  std::printf("# customar: %s (%s)\n", std::string(backend_name(comm_->backend())).c_str(), comm_->reason().c_str());
  std::printf("#%11s %11s %5s %5s %-10s %-13s %9s %7s %7s %6s %9s %7s %7s %6s %8s\n", "size", "count", "type", "redop",
              "backend", "algo", "oop(us)", "algbw", "busbw", "#wrong", "ip(us)", "algbw", "busbw", "#wrong",
              "vs nccl");
}

Issue PerfRank::issue_for(const Candidate& c, size_t count) const {
  if (c.comm == nullptr)
    return [this, count](const void* i, void* x, cudaStream_t st) {
      PERF_NCCL(nc_.ncclAllReduce(i, x, count, nccl_type_, detail::NcclRedOp::kSum, nccl_, st));
    };
  return [&c, this, count](const void* i, void* x, cudaStream_t st) { c.comm->all_reduce(i, x, count, o_.dtype, st); };
}

double PerfRank::time_call(const Issue& issue, const void* in, void* out) {
  return time_issue([&] { issue(in, out, s_); });
}

double PerfRank::time_issue(const std::function<void()>& issue) {
  if (o_.graph) return time_graph(g_, issue, o_.iters, o_.warmup, o_.replays, s_);
  for (int w = 0; w < o_.warmup * o_.iters; ++w) issue();
  TEST_CUDA(cudaStreamSynchronize(s_));
  auto round = [&] {
    for (int i = 0; i < o_.iters; ++i) issue();
  };
  return time_rounds(g_, round, o_.iters, o_.replays, s_);
}

// Checks the candidate once against the float64 reference (output poisoned first), then times it; out of place, then
// in place.
Row PerfRank::measure(const Candidate& c, size_t bytes) {
  const size_t count = bytes / dtype_size(o_.dtype);
  const Issue call = issue_for(c, count);
  Row row;
  for (int inplace = 0; inplace < 2; ++inplace) {
    void* dst = inplace ? c.in : c.out;
    if (o_.check) {
      const uint64_t seed = mix(bytes * 4 + inplace);
      fill(c.in, count, o_.dtype, seed, rank_, Values::kUniform, s_);
      TEST_CUDA(cudaMemsetAsync(dst, 0xff, inplace ? 0 : bytes, s_));
      call(c.in, dst, s_);
      const CheckResult cr = check(dst, count, o_.dtype, seed, world_, Values::kUniform, s_, res_);
      for (auto w : all_gather_value(g_, cr.wrong)) row.wrong[inplace] += w;
      total_wrong_ += static_cast<long>(row.wrong[inplace]);
    }
    row.us[inplace] = time_call(call, c.in, dst);
  }
  return row;
}

void PerfRank::report(const Candidate& c, size_t bytes, const Row& row, double nccl_us) {
  const size_t count = bytes / dtype_size(o_.dtype);
  std::string algo = c.comm == nullptr ? (c.name == "nccl" ? "ring/tree" : "symmetric") : "";
  if (c.comm != nullptr) {
    const CallPlan plan = c.comm->plan_for(c.in, c.out, count, o_.dtype);
    algo = std::string(algo_name(plan.algo)) + (plan.symmetric ? "*" : "");
  }
  auto algbw = [&](double us) { return double(bytes) / (us * 1e-6) / 1e9; };
  const double bus = 2.0 * (world_ - 1) / world_;
  bw_sum_[c.name].first += algbw(row.us[0]) * bus;
  bw_sum_[c.name].second += 1;
  if (rank_ != 0) return;
  char ratio[16] = "-";
  if (nccl_us > 0 && c.name != "nccl") std::snprintf(ratio, sizeof(ratio), "%.2f", row.us[0] / nccl_us);
  const std::string type(dtype_name(o_.dtype));
  std::printf("%12zu %11zu %5s %5s %-10s %-13s %9.2f %7.2f %7.2f %6llu %9.2f %7.2f %7.2f %6llu %8s\n", bytes, count,
              type.c_str(), "sum", c.name.c_str(), algo.c_str(), row.us[0], algbw(row.us[0]), algbw(row.us[0]) * bus,
              row.wrong[0], row.us[1], algbw(row.us[1]), algbw(row.us[1]) * bus, row.wrong[1], ratio);
  std::fflush(stdout);
  write_json(c.name, algo, bytes, row, "");
}

// One JSON line of a row: the keys every row has, then `extra` (", \"key\": value" pairs).
void PerfRank::write_json(const std::string& backend, const std::string& algo, size_t bytes, const Row& row,
                          const std::string& extra) const {
  if (json_ == nullptr) return;
  const double busbw = double(bytes) / (row.us[0] * 1e-6) / 1e9 * 2.0 * (world_ - 1) / world_;
  std::fprintf(json_,
               "{\"world\": %d, \"gpu\": \"%s\", \"dtype\": \"%s\", \"backend\": \"%s\", \"algo\": \"%s\", "
               "\"bytes\": %zu, \"graph\": %s, \"oop_us\": %.3f, \"ip_us\": %.3f, \"busbw_gbs\": %.3f, "
               "\"wrong\": %llu%s}\n",
               world_, prop_.name, std::string(dtype_name(o_.dtype)).c_str(), backend.c_str(), algo.c_str(), bytes,
               o_.graph ? "true" : "false", row.us[0], row.us[1], busbw, row.wrong[0] + row.wrong[1], extra.c_str());
}

// Every algorithm the communicator can run at this size, forced, out of place, and NCCL.
SizeTiming PerfRank::tune_at(size_t bytes) {
  const size_t count = bytes / dtype_size(o_.dtype);
  SizeTiming st;
  st.bytes = bytes;
  const Issue forced = [&](const void* i, void* x, cudaStream_t stm) { comm_->all_reduce(i, x, count, o_.dtype, stm); };
  auto measure_algo = [&](Algo a) {
    comm_->set_algo(a);
    const double us = comm_->algo_for(count, o_.dtype) == a ? time_call(forced, in_, out_) : -1;
    comm_->set_algo(std::nullopt);
    return us;
  };
  if (comm_->backend() == Backend::kV2) st.push_us = measure_algo(Algo::kOneshotPush);
  st.pull_us = measure_algo(Algo::kOneshotPull);
  st.twoshot_us = measure_algo(Algo::kTwoshot);
  st.nccl_us = time_call(issue_for({"nccl", nullptr, in_, out_}, count), in_, out_);
  return st;
}

void PerfRank::finish(const std::vector<SizeTiming>& tune) const {
  if (rank_ != 0) return;
  for (const auto& [name, v] : bw_sum_)
    std::printf("# Avg bus bandwidth (%s, out-of-place): %.2f GB/s\n", name.c_str(), v.first / v.second);
  std::printf("# Out of bounds values : %ld %s\n", total_wrong_, total_wrong_ == 0 ? "OK" : "FAILED");
  if (!o_.tune || comm_->backend() == Backend::kNone || comm_->backend() == Backend::kNccl) return;
  const ArchFamily fam = arch_family(prop_.major * 10 + prop_.minor);
  const Thresholds base = *global_config().find(fam, world_);
  const Thresholds t = tune_thresholds(tune, base);
  auto sz = [](size_t b) { return b == kUnlimited ? std::string("unlimited") : std::to_string(b); };
  std::printf("# tune: %s world %d: push <= %s, pull <= %s, two-shot <= %s, then NCCL; loss vs best %.3f (was %.3f)\n",
              arch_family_name(fam), world_, sz(t.oneshot_push_max).c_str(), sz(t.oneshot_pull_max).c_str(),
              sz(t.custom_max).c_str(), threshold_loss(tune, t), threshold_loss(tune, base));
  try {  // merged with the file's other entries, written atomically (config/tune.h)
    const std::string path = save_tuned_thresholds(o_.tune_file, fam, world_, t);
    std::printf("# tune: written to %s\n", path.c_str());
  } catch (const Error& e) {
    std::printf("# tune: not written: %s\n", e.what());
  }
}

// ---- --fused ------------------------------------------------------------------------------------------------------

// The reference of one call as `c` runs it: the sum is rounded once more before the residual on the unfused path
// (customar's all-reduce), once per hop after NCCL's.
NormCase PerfRank::norm_case(const Communicator& c, size_t tokens, size_t hidden) const {
  NormCase nc;
  nc.dtype = o_.dtype;
  nc.tokens = tokens;
  nc.hidden = hidden;
  nc.world = world_;
  nc.fp8 = o_.fp8;
  nc.scale = 1.0f / 64;
  nc.seed = mix(tokens * 131 + hidden);
  if (c.norm_path_for(tokens, hidden, o_.dtype, o_.fp8) == NormPath::kUnfused)
    nc.sum_roundings = c.algo_for(tokens * hidden, o_.dtype) == Algo::kNccl ? world_ : 1;
  return nc;
}

// Checks the call once against the float64 reference (outputs poisoned first), then times it; out of place, then in
// place (residual_out = residual_in, norm_out = in unless e4m3).
Row PerfRank::measure_norm(Communicator& c, const NormCase& nc) {
  Row row;
  for (int inplace = 0; inplace < 2; ++inplace) {
    const AddRmsNormArgs args = norm_bufs_->args(nc, inplace != 0);
    if (o_.check) {
      norm_bufs_->prepare(nc, inplace != 0, rank_, s_);
      c.all_reduce_add_rmsnorm(args, s_);
      reset_norm_result(norm_res_, s_);
      check_norm_async(nc, args.residual_out, args.norm_out, s_, norm_res_);
      const NormCheckResult r = read_norm_result(norm_res_, s_);
      for (auto w : all_gather_value(g_, r.wrong_residual + r.wrong_norm)) row.wrong[inplace] += w;
      total_wrong_ += static_cast<long>(row.wrong[inplace]);
    }
    row.us[inplace] = time_issue([&] { c.all_reduce_add_rmsnorm(args, s_); });
  }
  return row;
}

void PerfRank::report_norm(const Communicator& c, const char* op, const NormCase& nc, const Row& row, double nccl_us) {
  const size_t bytes = nc.tokens * nc.hidden * 2;
  const NormPath path = c.norm_path_for(nc.tokens, nc.hidden, o_.dtype, o_.fp8);
  const std::string algo = path == NormPath::kUnfused
                               ? "unfused:" + std::string(algo_name(c.algo_for(nc.tokens * nc.hidden, o_.dtype)))
                               : norm_path_name(path);
  const std::string backend = c.backend() == Backend::kNccl ? "nccl" : "auto";
  auto algbw = [&](double us) { return double(bytes) / (us * 1e-6) / 1e9; };
  const double bus = 2.0 * (world_ - 1) / world_;
  if (rank_ != 0) return;
  char ratio[16] = "-";
  if (nccl_us > 0 && backend != "nccl") std::snprintf(ratio, sizeof(ratio), "%.2f", row.us[0] / nccl_us);
  const std::string type(dtype_name(o_.dtype));
  std::printf("%6zu %6zu %10zu %5s %-7s %-8s %-22s %9.2f %7.2f %7.2f %6llu %9.2f %7.2f %7.2f %6llu %8s\n", nc.tokens,
              nc.hidden, bytes, type.c_str(), backend.c_str(), op, algo.c_str(), row.us[0], algbw(row.us[0]),
              algbw(row.us[0]) * bus, row.wrong[0], row.us[1], algbw(row.us[1]), algbw(row.us[1]) * bus, row.wrong[1],
              ratio);
  std::fflush(stdout);
  write_json(backend, algo, bytes, row,
             ", \"tokens\": " + std::to_string(nc.tokens) + ", \"hidden\": " + std::to_string(nc.hidden) +
                 ", \"op\": \"" + op + "\", \"fp8\": " + (o_.fp8 ? "true" : "false"));
}

// Per shape: NCCL's all-reduce then customar's norm kernel (a communicator capped at NCCL, on the same NCCL
// communicator), customar's all-reduce then the norm kernel (the path forced unfused), and customar's call as planned.
int PerfRank::run_fused() {
  CommOptions nopt;
  nopt.nccl_comm = nccl_;
  nopt.max_backend = Backend::kNccl;
  comm_nccl_ = std::make_unique<Communicator>(g_, rank_, nopt);
  norm_bufs_ =
      std::make_unique<NormBuffers>(kNormTokens[std::size(kNormTokens) - 1] * kNormHidden[std::size(kNormHidden) - 1]);
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&norm_res_), sizeof(NormCheckResult)));
  if (rank_ == 0) {
    std::printf("# customar-perf --fused: %d x %s, %s in, %s norm out, %s, %d iters x %d replays, worst rank\n", world_,
                prop_.name, std::string(dtype_name(o_.dtype)).c_str(),
                o_.fp8 ? "e4m3" : std::string(dtype_name(o_.dtype)).c_str(), o_.graph ? "CUDA graph" : "eager",
                o_.iters, o_.replays);
    std::printf("# customar: %s (%s)\n", std::string(backend_name(comm_->backend())).c_str(), comm_->reason().c_str());
    std::printf("#%5s %6s %10s %5s %-7s %-8s %-22s %9s %7s %7s %6s %9s %7s %7s %6s %8s\n", "tokens", "hidden", "bytes",
                "type", "backend", "op", "path", "oop(us)", "algbw", "busbw", "#wrong", "ip(us)", "algbw", "busbw",
                "#wrong", "vs nccl");
  }
  for (size_t hidden : kNormHidden)
    for (size_t tokens : kNormTokens) {
      const NormCase nccl_case = norm_case(*comm_nccl_, tokens, hidden);
      const Row nccl = measure_norm(*comm_nccl_, nccl_case);
      report_norm(*comm_nccl_, "unfused", nccl_case, nccl, -1);
      comm_->set_norm_path(NormPath::kUnfused);
      const NormCase unfused_case = norm_case(*comm_, tokens, hidden);
      report_norm(*comm_, "unfused", unfused_case, measure_norm(*comm_, unfused_case), nccl.us[0]);
      comm_->set_norm_path(std::nullopt);
      const NormCase fused_case = norm_case(*comm_, tokens, hidden);
      report_norm(*comm_, "fused", fused_case, measure_norm(*comm_, fused_case), nccl.us[0]);
    }
  finish({});
  return total_wrong_ == 0 ? 0 : 1;
}

int PerfRank::run() {
  set_up();
  if (o_.fused) return run_fused();
  add_candidates();
  print_header();
  std::vector<SizeTiming> tune;
  const size_t es = dtype_size(o_.dtype);
  for (double fb = double(o_.min_bytes); fb <= double(o_.max_bytes) + 0.5; fb *= o_.factor) {
    const size_t bytes = size_t(fb) / es * es;
    double nccl_us = -1;
    for (const Candidate& c : candidates_) {
      const Row row = measure(c, bytes);
      if (c.name == "nccl") nccl_us = row.us[0];
      report(c, bytes, row, nccl_us);
    }
    if (o_.tune) tune.push_back(tune_at(bytes));
  }
  finish(tune);
  return total_wrong_ == 0 ? 0 : 1;
}

PerfRank::~PerfRank() {
  if (json_ != nullptr) std::fclose(json_);
  comm_v1_.reset();
  comm_nccl_.reset();
  comm_.reset();
  norm_bufs_.reset();
  (void)cudaFree(norm_res_);
  if (sin_ != nullptr) {
    (void)nc_.ncclCommWindowDeregister(nccl_, win_in_);
    (void)nc_.ncclCommWindowDeregister(nccl_, win_out_);
    (void)nc_.ncclMemFree(sin_);
    (void)nc_.ncclMemFree(sout_);
  }
  if (nccl_ != nullptr) (void)nc_.ncclCommDestroy(nccl_);
  (void)cudaFree(in_);
  (void)cudaFree(out_);
  (void)cudaFree(res_);
  if (s_ != nullptr) (void)cudaStreamDestroy(s_);
}

// --norm-only: the norm kernel alone, on one GPU (a world of one rank has nothing to all-reduce), against the memory
// bandwidth it reaches: bytes read (in, residual_in, gamma) and written (residual_out, norm_out) per microsecond.
int run_norm_only(Group& g, const Options& o) {
  TEST_CUDA(cudaSetDevice(0));
  cudaDeviceProp prop{};
  TEST_CUDA(cudaGetDeviceProperties(&prop, 0));
  cudaStream_t s = nullptr;
  TEST_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  Communicator comm(g, 0);
  NormBuffers bufs(kNormTokens[std::size(kNormTokens) - 1] * kNormHidden[std::size(kNormHidden) - 1]);
  NormCheckResult* res = nullptr;
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&res), sizeof(NormCheckResult)));
  FILE* json = o.json.empty() ? nullptr : std::fopen(o.json.c_str(), "w");
  const std::string type(dtype_name(o.dtype));
  std::printf("# customar-perf --norm-only: %s, %s in, %s out, %s, %d iters x %d replays\n", prop.name, type.c_str(),
              o.fp8 ? "e4m3" : type.c_str(), o.graph ? "CUDA graph" : "eager", o.iters, o.replays);
  std::printf("#%5s %6s %12s %9s %8s %6s\n", "tokens", "hidden", "bytes moved", "time(us)", "GB/s", "#wrong");
  long total_wrong = 0;
  for (size_t hidden : kNormHidden)
    for (size_t tokens : kNormTokens) {
      NormCase nc;
      nc.dtype = o.dtype;
      nc.tokens = tokens;
      nc.hidden = hidden;
      nc.fp8 = o.fp8;
      nc.scale = 1.0f / 64;
      nc.seed = mix(tokens * 131 + hidden);
      const AddRmsNormArgs a = bufs.args(nc, false);
      unsigned long long wrong = 0;
      if (o.check) {
        bufs.prepare(nc, false, 0, s);
        comm.all_reduce_add_rmsnorm(a, s);
        reset_norm_result(res, s);
        check_norm_async(nc, a.residual_out, a.norm_out, s, res);
        const NormCheckResult r = read_norm_result(res, s);
        wrong = r.wrong_residual + r.wrong_norm;
        total_wrong += static_cast<long>(wrong);
      }
      const auto issue = [&] { comm.all_reduce_add_rmsnorm(a, s); };
      double us = 0;
      if (o.graph) {
        us = time_graph(g, issue, o.iters, o.warmup, o.replays, s);
      } else {
        us = time_rounds(
            g,
            [&] {
              for (int i = 0; i < o.iters; ++i) issue();
            },
            o.iters, o.replays, s);
      }
      const size_t moved = tokens * hidden * (2 + 2 + 2 + (o.fp8 ? 1 : 2)) + hidden * 2;
      const double gbs = double(moved) / (us * 1e3);
      std::printf("%6zu %6zu %12zu %9.2f %8.1f %6llu\n", tokens, hidden, moved, us, gbs, wrong);
      std::fflush(stdout);
      if (json != nullptr)
        std::fprintf(json,
                     "{\"world\": 1, \"gpu\": \"%s\", \"dtype\": \"%s\", \"op\": \"add_rmsnorm\", \"fp8\": %s, "
                     "\"tokens\": %zu, \"hidden\": %zu, \"bytes_moved\": %zu, \"graph\": %s, \"us\": %.3f, "
                     "\"gbs\": %.1f, \"wrong\": %llu}\n",
                     prop.name, type.c_str(), o.fp8 ? "true" : "false", tokens, hidden, moved,
                     o.graph ? "true" : "false", us, gbs, wrong);
    }
  std::printf("# Out of bounds values : %ld %s\n", total_wrong, total_wrong == 0 ? "OK" : "FAILED");
  if (json != nullptr) std::fclose(json);
  (void)cudaFree(res);
  (void)cudaStreamDestroy(s);
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
      "                     [-G 0|1] [-d bf16|fp16|fp32] [-k auto|v2|v1|nccl|nccl-symm|symm|all] [-J FILE]\n"
      "                     [--tune [FILE]] [--fused [--fp8] | --norm-only [--fp8]]\n");
}

DataType parse_dtype(const std::string& d) {
  if (d == "bf16") return DataType::kBFloat16;
  if (d == "fp16") return DataType::kFloat16;
  if (d == "fp32") return DataType::kFloat32;
  throw std::runtime_error("-d " + d + ": expected bf16, fp16 or fp32");
}

std::vector<std::string> parse_backends(const std::string& k) {
  if (k == "all") return {"nccl", "nccl-symm", "v1", "auto"};
  if (k == "nccl") return {"nccl"};
  if (k == "auto" || k == "v2" || k == "v1" || k == "nccl-symm") return {"nccl", k};
  if (k == "symm") return {"nccl", "auto", "symm"};
  throw std::runtime_error("-k " + k + ": expected auto, v2, v1, nccl, nccl-symm, symm or all");
}

// Returns false after printing usage for -h.
bool parse_args(int argc, char** argv, Options& o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
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
    else if (a == "-d")
      o.dtype = parse_dtype(next());
    else if (a == "-k")
      o.backends = parse_backends(next());
    else if (a == "--tune") {
      o.tune = true;
      if (i + 1 < argc && argv[i + 1][0] != '-') o.tune_file = argv[++i];
    } else if (a == "--fused") {
      o.fused = true;
    } else if (a == "--norm-only") {
      o.norm_only = true;
    } else if (a == "--fp8") {
      o.fp8 = true;
    } else if (a == "-h" || a == "--help") {
      usage();
      return false;
    } else {
      throw std::runtime_error("unknown argument " + a);
    }
  }
  if (o.factor <= 1 || o.iters < 1 || o.replays < 1 || o.min_bytes < 16 || o.max_bytes < o.min_bytes)
    throw std::runtime_error("need -f > 1, -n >= 1, -r >= 1, 16 <= -b <= -e");
  if (o.fused && o.norm_only) throw std::runtime_error("--fused and --norm-only: one at a time");
  if ((o.fused || o.norm_only) && o.tune) throw std::runtime_error("--tune tunes the all-reduce, not --fused");
  if ((o.fused || o.norm_only) && o.dtype == DataType::kFloat32)
    throw std::runtime_error("--fused and --norm-only take -d bf16 or fp16");
  if (o.fp8 && !o.fused && !o.norm_only) throw std::runtime_error("--fp8 goes with --fused or --norm-only");
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    if (!parse_args(argc, argv, o)) return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "customar-perf: %s\n", e.what());
    usage();
    return 2;
  }
  const int gpus = visible_gpu_count();
  if (o.norm_only) {
    if (gpus < 1) {
      std::fprintf(stderr, "customar-perf: --norm-only needs a GPU\n");
      return 2;
    }
    for (const auto& e : launch(
             1, [&](Group& g) { return run_norm_only(g, o); }, LaunchOptions{580}))
      if (!e.ok()) return 1;
    return 0;
  }
  if (o.gpus == 0) o.gpus = gpus;
  if (o.gpus < 2 || o.gpus > gpus) {
    std::fprintf(stderr, "customar-perf: -g %d needs 2..%d GPUs\n", o.gpus, gpus);
    return 2;
  }
  auto exits = launch(
      o.gpus, [&](Group& g) { return PerfRank(g, o).run(); }, LaunchOptions{580});
  for (const auto& e : exits)
    if (!e.ok()) return 1;
  return 0;
}
