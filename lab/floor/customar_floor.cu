// customar-floor: the latency floors a small all-reduce cannot go under on this machine, measured the way
// customar-perf times (CUDA graphs, median of replays, worst rank), so the two tables can be read side by side.
//
//   customar-floor [-g GPUS | --virtual RANKS] [-n ITERS] [-r REPLAYS] [-p ROUNDTRIPS]
//
// -g: one process per GPU, 2 to 8 (default: every visible GPU). --virtual: 2 to 8 ranks as threads on GPU 0
// (include/customar/virtual.h), a smoke check that every row runs and every checked row is right on a one-GPU machine.
// Its numbers are not floors of a multi-GPU machine (no link between the ranks, one GPU's SMs shared), and its output
// says so. Every wait of every kernel gives up after 2 s, so a broken row fails instead of hanging.
//
// Rows (µs per call):
//   graph-empty        one empty kernel per graph node: the launch gap every graph-replayed call pays.
//   graph-empty-pdl    the same with programmatic dependent launch (what V2 launches with).
//   graph-2blocks-pdl  the same with two blocks.
//   graph-atomic-pdl   two blocks that meet on one device-memory counter (an atomic with return from each), the way
//                      the barrier kernels elect a last block.
//   graph-state-pdl    one block that reads its call state from device memory after the PDL wait and writes the next
//                      one at its end, as every customar kernel keeps its state (graphs replay fixed arguments, so the
//                      state that picks buffers and flag values must live in device memory).
//   nvlink-oneway-*    half of a one-flag round trip between rank 0 and each other rank, one thread each side:
//                      "vol" with volatile stores and polls (what the push's data and polls are), "rel" with
//                      release stores and acquire polls (what the barrier flags of pull and two-shot are).
//   push-floor         graph-state-pdl + the slowest volatile one-way: a one-shot push that keeps its state on the
//                      device (as any graph-safe one must) cannot be faster.
//   mini-push-N        the smallest complete graph-safe one-shot push we can write, every rank taking part: the Lamport
//                      kernel (floor_kernels.cuh) as one block of N threads, one 16-byte bf16 vector each (N = 64 is
//                      1 KiB), one state word, three rotating buffers, compile-time world, no timeout bookkeeping on
//                      the fast path; as in customar's push, a rank's own share never leaves its registers.
//                      customar's push at the same size minus this row is what customar's own structure costs (handle,
//                      counters, abort checks, dtype and alignment paths); this row minus push-floor is what the sum of
//                      the separately measured parts leaves out.
//   store-stream-N     every rank stores N bytes (1 to 16 MiB) into each peer's memory in 16-byte volatile stores, as
//                      the push's send does, on the push's grid at that size, and does nothing else (no poll,
//                      re-arm, reduction or flag): the NVLink part of a one-shot push, both directions at once.
//   read-stream-N      the same with volatile 16-byte loads from each peer: the NVLink part of a one-shot pull.
//   lamport-N          the same Lamport kernel at N bytes (16 KiB to 16 MiB) on the push's grid: the input read, the
//                      sends, the re-arm of the previous call's buffer, the polls, the sum and the output store, with
//                      one state word per block and nothing else (no sizes that change between calls, no timeout
//                      reporting beyond a rare timer, no dtype or alignment paths). The smallest one-shot Lamport push
//                      at that size: customar's push minus this row is its own cost, this row minus store-stream what
//                      the Lamport design adds to the links.
// mini-push and lamport rows are checked (exact sums, -0.0 inputs included): a wrong lane or a poll that gave up
// fails the tool. The stream and lamport rows run the push's built-in grid for 128 SMs with up to 1024 threads per
// SM. Where the library's push kernel fits fewer (it asks the occupancy calculator; at 8 ranks its registers allow 512
// from 1 MiB), its grid is narrower than these rows' and the two are not the same shape. With --virtual they run on
// the rank's share of the SMs instead, so that every rank's kernels are resident at once.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>
#include <utility>
#include <vector>

#include "check_kernels.h"
#include "comm/custom_backend.h"  // launch_fill_words: arms the Lamport buffers as customar arms its own
#include "customar/group.h"
#include "customar/launcher.h"
#include "customar/virtual.h"
#include "floor_kernels.cuh"
#include "floor_rank.h"
#include "memory/peer_memory.h"

using namespace customar;
using namespace customar::lab;
using namespace customar::test;

namespace {

using Rows = std::vector<std::pair<std::string, double>>;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

Rows launch_gap_rows(Rank& rk) {
  DeviceBuffer word(sizeof(unsigned long long));
  auto* done = word.as<unsigned long long>();
  TEST_CUDA(cudaMemsetAsync(done, 0, sizeof(*done), rk.s));
  cudaStream_t s = rk.s;
  return {{"graph-empty", rk.time([&] { empty_kernel<<<1, 32, 0, s>>>(); })},
          {"graph-empty-pdl", rk.time([&] { launch_pdl(s, 1, 32, empty_kernel_pdl); })},
          {"graph-2blocks-pdl", rk.time([&] { launch_pdl(s, 2, 32, empty_kernel_pdl); })},
          {"graph-atomic-pdl", rk.time([&] { launch_pdl(s, 2, 32, atomic_kernel_pdl, done); })},
          {"graph-state-pdl", rk.time([&] { launch_pdl(s, 1, 32, state_kernel_pdl, done); })}};
}

// One ping-pong run between rank 0 and rank `peer` (the other ranks only meet the barrier): the one-way µs on rank 0.
// flags[src] of every rank's flag memory is written by rank src.
double pingpong_run(Rank& rk, PeerMemory& flags, bool vol, int peer, uint64_t base) {
  const auto kernel = vol ? pingpong<true> : pingpong<false>;
  auto* mine = static_cast<uint64_t*>(flags.local());
  auto flag_of = [&](int r, int src) { return static_cast<uint64_t*>(flags.peer(r)) + src; };
  unsigned long long* ns = &rk.host->pingpong_ns;
  rk.g.barrier();
  if (rk.rank == 0) kernel<<<1, 1, 0, rk.s>>>(flag_of(peer, 0), mine + peer, base, rk.o.roundtrips, true, ns);
  if (rk.rank == peer) kernel<<<1, 1, 0, rk.s>>>(flag_of(0, peer), mine + 0, base, rk.o.roundtrips, false, ns);
  TEST_CUDA(cudaGetLastError());
  TEST_CUDA(cudaStreamSynchronize(rk.s));
  if (rk.rank != 0) return 0;
  if (*ns == ~0ull) throw std::runtime_error("ping-pong with rank " + std::to_string(peer) + " timed out");
  return double(*ns) / 1000.0 / rk.o.roundtrips / 2;
}

// nvlink-oneway-{vol,rel}-0-p for every peer p (the median of 5 runs; meaningful on rank 0, which prints them), and
// push-floor from graph-state-pdl. Flag values only grow (`base`), so no reset is needed between runs.
Rows oneway_rows(Rank& rk, double state_pdl) {
  PeerBuffers flags{rk.peer_memory(kMaxRanks * sizeof(uint64_t))};
  Rows rows;
  uint64_t base = 0;
  double worst_vol = 0;
  for (bool vol : {true, false})
    for (int p = 1; p < rk.world; ++p) {
      std::vector<double> runs;
      for (int run = 0; run < 5; ++run, base += rk.o.roundtrips)
        runs.push_back(pingpong_run(rk, *flags.mem, vol, p, base));
      rows.push_back({std::string("nvlink-oneway-") + (vol ? "vol" : "rel") + "-0-" + std::to_string(p), median(runs)});
      if (vol) worst_vol = std::max(worst_vol, rows.back().second);
    }
  flags.close(rk.g);
  rows.push_back({"push-floor", state_pdl + worst_vol});
  return rows;
}

// store-stream-N and read-stream-N for N = 1 to 16 MiB per peer, every rank at once.
Rows stream_rows(Rank& rk) {
  constexpr size_t kMaxBytes = size_t(16) << 20;
  // Rank src's share lands at src x 16 MiB in every peer, as each sender has its own slot in a push buffer.
  PeerBuffers bufs{rk.peer_memory(kMaxBytes * rk.world)};
  DeviceBuffer sink(sizeof(uint4));
  Stream p{};
  p.sink = sink.as<uint4>();
  for (int r = 0; r < rk.world; ++r)
    if (r != rk.rank) p.peer[p.npeers++] = static_cast<uint4*>(bufs.mem->peer(r)) + size_t(rk.rank) * kMaxBytes / 16;
  Rows rows;
  for (bool store : {true, false})
    for (size_t mib : {1, 2, 4, 8, 16}) {
      p.nvec = (mib << 20) / 16;
      const PushShape sh = rk.shape(p.nvec);
      const double us =
          rk.time([&] { launch_pdl(rk.s, sh.blocks, sh.threads, store ? store_stream : read_stream, p); });
      rows.push_back({(store ? "store-stream-" : "read-stream-") + std::to_string(mib) + "M", us});
    }
  bufs.close(rk.g);
  return rows;
}

// bf16 bits of a small whole number (exact).
uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return static_cast<uint16_t>(u >> 16);
}

// Lane j of rank r's input: -0.0 (the sentinel's lane, which the push sends as +0.0) where j % 6 == 5, else
// (r + 1) * (j % 6 + 1), so that every sum is a whole number under 256, exact in bf16.
uint16_t input_lane(int rank, size_t j) { return j % 6 == 5 ? 0x8000 : bf16_bits(float((rank + 1) * (j % 6 + 1))); }

// The sum of lane j over `world` ranks.
uint16_t sum_lane(int world, size_t j) {
  return j % 6 == 5 ? 0 : bf16_bits(float(world * (world + 1) / 2 * (j % 6 + 1)));
}

// Lanes of the first `nvec` vectors of `out` (device memory) that are not the exact sum.
int wrong_lanes(Rank& rk, const void* out, size_t nvec) {
  std::vector<uint16_t> lanes(nvec * 8);
  TEST_CUDA(cudaMemcpyAsync(lanes.data(), out, lanes.size() * 2, cudaMemcpyDeviceToHost, rk.s));
  TEST_CUDA(cudaStreamSynchronize(rk.s));
  int wrong = 0;
  for (size_t j = 0; j < lanes.size(); ++j) wrong += lanes[j] != sum_lane(rk.world, j);
  return wrong;
}

struct LamportRun {
  std::string name;
  size_t nvec;
  PushShape shape;
};

std::vector<LamportRun> mini_push_runs() { return {{"mini-push-1", 1, {1, 1}}, {"mini-push-64", 64, {1, 64}}}; }

std::vector<LamportRun> lamport_runs(const Rank& rk) {
  std::vector<LamportRun> runs;
  for (size_t kib : {16, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384}) {
    const size_t nvec = (kib << 10) / 16;
    runs.push_back({"lamport-" + (kib < 1024 ? std::to_string(kib) + "K" : std::to_string(kib >> 10) + "M"), nvec,
                    rk.shape(nvec)});
  }
  return runs;
}

// A fresh start for one run: every block's range of vectors changes with the grid, so the rotation restarts from
// armed buffers, epoch 0 and a poisoned output on every rank. The first barrier: no peer still writes into this
// rank's buffer; the second: no peer sends before it is armed.
void arm_lamport(Rank& rk, const Lamport& p, size_t buf_bytes) {
  rk.g.barrier();
  launch_fill_words(p.mine, buf_bytes, kSentinelWord, rk.s);
  TEST_CUDA(cudaMemsetAsync(p.state, 0, kMaxPushBlocks * sizeof(*p.state), rk.s));
  TEST_CUDA(cudaMemsetAsync(p.out, 0xff, p.slot_vecs * sizeof(uint4), rk.s));
  TEST_CUDA(cudaStreamSynchronize(rk.s));
  rk.g.barrier();
}

// The arguments of the Lamport kernel over this row's memory; its input uploaded.
Lamport lamport_args(Rank& rk, PeerMemory& bufs, size_t slot_vecs, DeviceBuffer& in, DeviceBuffer& out,
                     DeviceBuffer& state) {
  std::vector<uint16_t> lanes(slot_vecs * 8);
  for (size_t j = 0; j < lanes.size(); ++j) lanes[j] = input_lane(rk.rank, j);
  TEST_CUDA(cudaMemcpyAsync(in.p, lanes.data(), lanes.size() * 2, cudaMemcpyHostToDevice, rk.s));
  TEST_CUDA(cudaStreamSynchronize(rk.s));
  Lamport p{};
  for (int r = 0; r < rk.world; ++r) p.buf[r] = static_cast<uint4*>(bufs.peer(r));
  p.mine = p.buf[rk.rank];
  p.state = state.as<unsigned long long>();
  p.in = in.as<const uint4>();
  p.out = out.as<uint4>();
  p.gave_up = &rk.host->gave_up;
  p.slot_vecs = slot_vecs;
  p.rank = rk.rank;
  return p;
}

// The rows of `runs`, timed and checked; throws on every rank if any rank counted a wrong lane or a poll gave up, so
// that a row is never a number from a broken exchange.
Rows lamport_rows(Rank& rk, const std::vector<LamportRun>& runs) {
  size_t slot_vecs = 0;
  for (const LamportRun& run : runs) slot_vecs = std::max(slot_vecs, run.nvec);
  const size_t buf_bytes = 3 * size_t(rk.world) * slot_vecs * sizeof(uint4);
  PeerBuffers bufs{rk.peer_memory(buf_bytes)};
  DeviceBuffer in(slot_vecs * sizeof(uint4)), out(slot_vecs * sizeof(uint4));
  DeviceBuffer state(kMaxPushBlocks * sizeof(unsigned long long));
  Lamport p = lamport_args(rk, *bufs.mem, slot_vecs, in, out, state);
  rk.host->gave_up = 0;
  Rows rows;
  int wrong = 0;
  for (const LamportRun& run : runs) {
    p.nvec = run.nvec;
    arm_lamport(rk, p, buf_bytes);
    const LamportKernel kernel = lamport_kernel_for(rk.world, run.nvec <= size_t(run.shape.blocks) * run.shape.threads);
    rows.push_back({run.name, rk.time([&] { launch_pdl(rk.s, run.shape.blocks, run.shape.threads, kernel, p); })});
    wrong += wrong_lanes(rk, p.out, run.nvec);
  }
  wrong += rk.host->gave_up;
  bufs.close(rk.g);
  int total = 0;
  for (int w : all_gather_value(rk.g, wrong)) total += w;
  if (total != 0)
    throw std::runtime_error(runs.front().name + " to " + runs.back().name + ": " + std::to_string(total) +
                             " wrong lanes or polls that gave up");
  return rows;
}

void print_table(const Rank& rk, const Rows& rows) {
  cudaDeviceProp prop{};
  TEST_CUDA(cudaGetDeviceProperties(&prop, rk.device));
  const Options& o = rk.o;
  if (rk.virt != nullptr) {
    std::printf("# customar-floor: %d virtual ranks on one %s (%s), %d kernels per graph, %d replays, %d round trips\n",
                rk.world, prop.name, virtual_partition(rk.g).c_str(), o.iters, o.replays, o.roundtrips);
    std::printf("# a smoke check: the ranks share one GPU, so these are not the floors of a multi-GPU machine\n");
  } else {
    std::printf("# customar-floor: %d x %s, %d kernels per graph, %d replays, %d round trips\n", rk.world, prop.name,
                o.iters, o.replays, o.roundtrips);
  }
  std::printf("%-22s %8s\n", "# floor", "us");
  for (const auto& [name, us] : rows) std::printf("%-22s %8.2f\n", name.c_str(), us);
}

int run_rank(Group& g, const Options& o) {
  Rank rk(g, o);
  Rows rows = launch_gap_rows(rk);
  const double state_pdl = rows.back().second;  // graph-state-pdl, the last launch-gap row
  auto append = [&](const Rows& more) { rows.insert(rows.end(), more.begin(), more.end()); };
  append(oneway_rows(rk, state_pdl));
  append(lamport_rows(rk, mini_push_runs()));
  append(stream_rows(rk));
  append(lamport_rows(rk, lamport_runs(rk)));
  if (rk.rank == 0) print_table(rk, rows);
  rk.finish();
  return 0;
}

int parse_int(const std::string& flag, const char* v, int lo, int hi, const char* what) {
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || x < lo || x > hi)
    throw std::runtime_error(flag + " " + v + ": expected " + what + " from " + std::to_string(lo) + " to " +
                             std::to_string(hi));
  return static_cast<int>(x);
}

// Throws std::runtime_error naming the flag and what it allows. Touches no GPU.
Options parse_args(int argc, char** argv) {
  const std::string flags = " (flags: -g GPUS | --virtual RANKS, -n ITERS, -r REPLAYS, -p ROUNDTRIPS)";
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (i + 1 >= argc) throw std::runtime_error(a + ": expected a value" + flags);
    const char* v = argv[++i];
    if (a == "-g")
      o.gpus = parse_int(a, v, 1, 10000000, "a whole number");
    else if (a == "--virtual")
      o.virtual_ranks = parse_int(a, v, 2, kMaxRanks, "a number of ranks");
    else if (a == "-n")
      o.iters = parse_int(a, v, 1, 10000000, "a whole number");
    else if (a == "-r")
      o.replays = parse_int(a, v, 1, 10000000, "a whole number");
    else if (a == "-p")
      o.roundtrips = parse_int(a, v, 1, 10000000, "a whole number");
    else
      throw std::runtime_error("unknown flag " + a + flags);
  }
  if (o.gpus != 0 && o.virtual_ranks != 0)
    throw std::runtime_error(
        "-g and --virtual exclude each other: -g runs a process per GPU, --virtual threads on one");
  return o;
}

// Checks the world against the machine: 2 to 8 GPUs, or one GPU for virtual ranks. Forks to count GPUs (launcher.h).
void check_machine(Options& o) {
  if (o.virtual_ranks != 0) {
    if (visible_gpu_count() < 1) throw std::runtime_error("--virtual needs a GPU, found none");
    return;
  }
  if (o.gpus == 0) o.gpus = visible_gpu_count();
  if (o.gpus < 2 || o.gpus > kMaxRanks)
    throw std::runtime_error("customar-floor needs 2 to 8 GPUs, found " + std::to_string(o.gpus));
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse_args(argc, argv);
    check_machine(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "customar-floor: %s\n", e.what());
    return 2;
  }
  const auto body = [&](Group& g) { return run_rank(g, o); };
  std::vector<RankExit> exits;
  try {
    // A process world is killed after 300 s; a virtual one ends by itself: every kernel wait gives up after 2 s and
    // every group wait after CUSTOMAR_INIT_TIMEOUT_MS.
    exits = o.virtual_ranks != 0 ? launch_virtual(o.virtual_ranks, body) : launch(o.gpus, body, LaunchOptions{300});
  } catch (const std::exception& e) {
    std::fprintf(stderr, "customar-floor: %s\n", e.what());
    return 1;
  }
  int rc = 0;
  for (const RankExit& e : exits)
    if (!e.ok()) {
      std::fprintf(stderr, "customar-floor: rank %d exited with %d\n", e.rank, e.exit_code);
      rc = 1;
    }
  return rc;
}
