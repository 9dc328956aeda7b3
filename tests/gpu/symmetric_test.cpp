// Symmetric memory on GPUs (Communicator::alloc_symmetric): a process per GPU (-n N) or N virtual ranks on one GPU
// (--virtual N). Named cases, on a communicator of the auto backend:
//   matrix          every symmetric path (auto, and the pull and the two-shot forced) x fp16/bf16/fp32 x 16 B .. 33 MiB
//                   (the two-shot of 32 MiB and up), odd counts, in place / symmetric output / ordinary output, offsets
//                   into an allocation (16-byte aligned, and element-aligned only); small integers, so every sum is
//                   exact; custom algorithms bitwise identical on every rank; on V2 the plan reads in place where it
//                   must.
//   uniform_values  random values in [-1, 1), within the dtype's rounding of the float64 reference.
//   graph_replay    symmetric and ordinary calls captured in one CUDA graph, replayed three times with new inputs.
//   interleaved     symmetric and ordinary calls one after another, eagerly, alternating between two streams.
//   bad_use         a claimed input outside symmetric memory, a freed one, a range past an allocation's end, frees and
//                   allocations the ranks disagree on: clear errors, the same on every rank; the communicator still
//                   works.
//   check_mode      (CUSTOMAR_CHECK=1) ranks that pass different offsets, or symmetric and ordinary buffers, get
//                   InvalidArgument on every rank.
//   cleanup         allocation/free cycles, and a communicator destroyed with live allocations, give back every
//                   descriptor (/proc/self/fd), mapping (/proc/self/maps) and byte of device memory.
//   freed_in_graph  a graph replayed after its symmetric buffer was freed drops the call; later calls throw StateError.
// Modes instead of the cases:
//   --same-gpu      two processes on device 0 share memory through VMM file descriptors and through CUDA IPC: export,
//                   import, then each reads the other's memory and writes into it; nothing left behind afterwards.
//   --bench         graph-timed staged calls (ordinary buffers) beside copy-free ones (symmetric buffers). On virtual
//                   ranks, which share one GPU, a sanity check only, not a measurement of NVLink.
//
//   symmetric_test [-n N | --virtual N [--partition auto|green|capped]] [--quick] [--same-gpu | --bench]
#include <cuda_runtime_api.h>
#include <dirent.h>

#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "check_kernels.h"
#include "customar/communicator.h"
#include "customar/env.h"
#include "graph_timing.h"
#include "memory/peer_memory.h"
#include "verdict.h"
#include "world.h"

using namespace customar;
using namespace customar::test;

namespace {

constexpr size_t M = 1024 * 1024;

struct Options {
  World world;
  bool quick = false;
  bool same_gpu = false;
  bool bench = false;
};

const DataType kCustomTypes[] = {DataType::kFloat16, DataType::kBFloat16, DataType::kFloat32};

struct Ctx {
  Group& g;
  const Options& opt;
  int rank, world, device;
  cudaStream_t s;
  size_t max_bytes = 0;  // the largest message of a case
  CheckResult* res = nullptr;
  int passed = 0, failed = 0;
  uint64_t seed = 4321;

  void record(bool ok, const std::string& what) { count_check(ok, what, world, rank, passed, failed); }
};

// One call: fills `in`, poisons `out`, checks the plan where `reads_in_place` says what it must be, runs, and checks
// the result on every rank.
void check_call(Ctx& x, Communicator& comm, void* in, void* out, DataType d, size_t count, const std::string& label,
                std::optional<bool> reads_in_place = std::nullopt, Values values = Values::kSmallInt) {
  x.seed = mix(x.seed + 1);
  const size_t bytes = count * dtype_size(d);
  fill(in, count, d, x.seed, x.rank, values, x.s);
  if (out != in) TEST_CUDA(cudaMemsetAsync(out, 0xff, bytes, x.s));  // NaN in every float dtype
  const CallPlan plan = comm.plan_for(in, out, count, d);
  const std::string what = label + " " + std::string(dtype_name(d)) + " " + std::to_string(bytes) +
                           " B: " + std::string(algo_name(plan.algo)) + (plan.symmetric ? " reading in place" : "") +
                           " (" + plan.reason + ")";
  if (reads_in_place && plan.symmetric != *reads_in_place)
    x.record(false, what + ": the plan should " + (*reads_in_place ? "" : "not ") + "read the inputs in place");
  try {
    comm.all_reduce(in, out, count, d, x.s);
    TEST_CUDA(cudaStreamSynchronize(x.s));
    comm.check();
  } catch (const std::exception& e) {
    x.record(false, what + ": " + e.what());
    return;
  }
  reset_result(x.res, x.s);
  const double tol = values == Values::kSmallInt ? 0.0 : tolerance(d, x.world);
  check_async(out, count, d, x.seed, x.world, values, tol, x.s, x.res);
  std::string why;
  const bool ok = agree(x.g, read_result(x.res, x.s), plan.algo != Algo::kNccl, &why);
  x.record(ok, what + (ok ? "" : ": " + why));
}

// The buffers of one case: two symmetric allocations and an ordinary one, each of `n` bytes and room for offsets.
struct Buffers {
  Communicator& comm;
  uint8_t* a = nullptr;  // symmetric
  uint8_t* b = nullptr;  // symmetric
  uint8_t* plain = nullptr;
  size_t bytes;
  Buffers(Communicator& c, size_t n) : comm(c), bytes(n + 8192) {
    a = static_cast<uint8_t*>(comm.alloc_symmetric(bytes));
    b = static_cast<uint8_t*>(comm.alloc_symmetric(bytes));
    TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&plain), bytes));
  }
  ~Buffers() {
    (void)cudaFree(plain);
    try {
      comm.free_symmetric(b);
      comm.free_symmetric(a);
    } catch (const std::exception& e) {
      std::printf("freeing the case's symmetric buffers: %s\n", e.what());
    }
  }
};

std::string algo_label(std::optional<Algo> a) { return a ? std::string(algo_name(*a)) : "auto"; }

// Where the matrix puts a call's input and output.
struct Layout {
  const char* name;
  size_t in_offset;     // into a
  int out;              // 0: in place, 1: into b (symmetric), 2: into plain
  bool aligned = true;  // offsets off 16 bytes are element-aligned only
};

void matrix(Ctx& x, Communicator& comm) {
  Buffers buf(comm, x.max_bytes);
  const bool v2 = comm.backend() == Backend::kV2;
  std::vector<size_t> sizes = {16, 4096, 65552, 1 * M, 4 * M + 16, 8 * M};
  if (!x.opt.quick && x.max_bytes >= 33 * M) sizes.push_back(33 * M);
  for (std::optional<Algo> algo :
       {std::optional<Algo>(), std::optional<Algo>(Algo::kOneshotPull), std::optional<Algo>(Algo::kTwoshot)}) {
    comm.set_algo(algo);
    for (DataType d : kCustomTypes) {
      const size_t es = dtype_size(d);
      for (const Layout& l :
           {Layout{"in place", 0, 0}, Layout{"symmetric output", 0, 1}, Layout{"ordinary output", 0, 2},
            Layout{"at an offset", 4096, 1}, Layout{"element-aligned only", 4096 + es, 1, false}}) {
        std::vector<size_t> counts;
        for (size_t b : sizes) counts.push_back(b / es);
        for (size_t odd : {size_t(3), size_t(1027)}) counts.push_back(odd);
        for (size_t count : counts) {
          uint8_t* in = buf.a + l.in_offset;
          uint8_t* out = l.out == 0 ? in : (l.out == 1 ? buf.b : buf.plain) + l.in_offset;
          // Where a pull or a two-shot is forced on V2, an aligned symmetric input is read in place, in place and
          // into an ordinary output too, except the one two-shot the staging buffers cannot gather.
          std::optional<bool> expect;
          const bool forced = algo.has_value() && (count * es) % 16 == 0;
          if (v2 && forced && l.aligned && (*algo == Algo::kOneshotPull || l.out != 2)) expect = true;
          if (!l.aligned) expect = false;
          check_call(x, comm, in, out, d, count, "matrix " + algo_label(algo) + ", " + l.name, expect);
        }
      }
    }
  }
  comm.set_algo(std::nullopt);
}

void uniform_values(Ctx& x, Communicator& comm) {
  Buffers buf(comm, 8 * M);
  for (DataType d : kCustomTypes)
    for (size_t bytes : {size_t(64 * 1024), 1 * M, 8 * M}) {
      check_call(x, comm, buf.a, buf.b, d, bytes / dtype_size(d), "uniform", std::nullopt, Values::kUniform);
      check_call(x, comm, buf.a, buf.a, d, bytes / dtype_size(d), "uniform in place", std::nullopt, Values::kUniform);
    }
}

// One captured call and its buffers.
struct Captured {
  void* in;
  void* out;
  DataType d;
  size_t count;
  bool symmetric;
};

void graph_replay(Ctx& x, Communicator& comm) {
  const size_t slot = 8 * M;  // each call has a slot of its own in the symmetric buffers
  const size_t sizes[] = {64 * 1024, 1 * M, 8 * M, 2 * M + 16, 4096, 3 * M};
  Buffers buf(comm, slot * 6);
  std::vector<Captured> calls;
  std::vector<void*> plain;
  for (int k = 0; k < 12; ++k) {
    const DataType d = kCustomTypes[k % 3];
    const size_t count = sizes[k % 6] / dtype_size(d);
    if (k % 2 == 0) {
      uint8_t* in = buf.a + (k / 2) * slot;
      calls.push_back({in, k % 4 == 0 ? in : buf.b + (k / 2) * slot, d, count, true});
    } else {
      void *in = nullptr, *out = nullptr;
      TEST_CUDA(cudaMalloc(&in, sizes[k % 6]));
      TEST_CUDA(cudaMalloc(&out, sizes[k % 6]));
      plain.push_back(in);
      plain.push_back(out);
      calls.push_back({in, k % 3 == 0 ? in : out, d, count, false});
    }
  }
  CapturedGraph graph = capture_graph(x.s, [&] {
    for (const Captured& c : calls) comm.all_reduce(c.in, c.out, c.count, c.d, x.s);
  });
  if (!graph.error.empty()) x.record(false, "graph capture: " + graph.error);
  for (int replay = 0; graph.exec != nullptr && replay < 3; ++replay) {
    const uint64_t gseed = mix(999 + replay);
    for (size_t k = 0; k < calls.size(); ++k) {
      const Captured& c = calls[k];
      fill(c.in, c.count, c.d, gseed + k, x.rank, Values::kSmallInt, x.s);
      if (c.out != c.in) TEST_CUDA(cudaMemsetAsync(c.out, 0xff, c.count * dtype_size(c.d), x.s));
    }
    TEST_CUDA(cudaGraphLaunch(graph.exec, x.s));
    TEST_CUDA(cudaStreamSynchronize(x.s));
    bool ok = true;
    std::string why;
    for (size_t k = 0; k < calls.size() && ok; ++k) {
      const Captured& c = calls[k];
      reset_result(x.res, x.s);
      check_async(c.out, c.count, c.d, gseed + k, x.world, Values::kSmallInt, 0, x.s, x.res);
      ok = agree(x.g, read_result(x.res, x.s), comm.plan_for(c.in, c.out, c.count, c.d).algo != Algo::kNccl, &why);
      if (!ok) why = "call " + std::to_string(k) + (c.symmetric ? " (symmetric)" : " (ordinary)") + ": " + why;
    }
    try {
      comm.check();
    } catch (const std::exception& e) {
      ok = false;
      why = e.what();
    }
    x.record(ok,
             "graph replay " + std::to_string(replay) + " of symmetric and ordinary calls" + (ok ? "" : ": " + why));
  }
  graph.release();
  free_then_meet(x.g, plain);
}

void interleaved(Ctx& x, Communicator& comm) {
  Buffers buf(comm, 8 * M);
  const cudaStream_t other = second_stream(x.g, buf.plain);
  const cudaStream_t main_stream = x.s;
  for (int k = 0; k < 16; ++k) {
    x.s = k % 2 == 0 ? main_stream : other;
    const DataType d = kCustomTypes[k % 3];
    const size_t count = (size_t(16) << (k % 10 * 2 % 20)) / dtype_size(d);
    const bool symmetric = k % 4 < 2;
    uint8_t* in = symmetric ? buf.a : buf.plain;
    uint8_t* out = k % 3 == 0 ? in : symmetric ? buf.b : buf.plain + 8 * M / 2;
    if (!symmetric && out != in && count * dtype_size(d) > 8 * M / 2) out = in;
    check_call(x, comm, in, out, d, count, std::string(symmetric ? "symmetric" : "ordinary") + " call, interleaved");
  }
  x.s = main_stream;
  TEST_CUDA(cudaStreamSynchronize(other));
  TEST_CUDA(cudaStreamDestroy(other));
}

// Runs `fn`, which must throw InvalidArgument whose message contains `needle`.
template <typename F>
void expect_invalid(Ctx& x, const std::string& what, const std::string& needle, F&& fn) {
  std::string got = "no error";
  try {
    fn();
  } catch (const InvalidArgument& e) {
    got = e.what();
  } catch (const std::exception& e) {
    got = std::string("another error: ") + e.what();
  }
  x.record(got.find(needle) != std::string::npos, "bad use rejected: " + what + " (got: " + got + ")");
}

void bad_use(Ctx& x, Communicator& comm) {
  Buffers buf(comm, 1 * M);
  const size_t n = 1024;
  // The ordinary buffer may sit where a freed symmetric allocation was (virtual ranks' symmetric memory is plain
  // device memory): the message then names that allocation too.
  expect_invalid(x, "an ordinary input claimed symmetric", "is not symmetric: it lies in no",
                 [&] { comm.all_reduce_symmetric(buf.plain, buf.b, n, DataType::kBFloat16, x.s); });
  expect_invalid(x, "a range past the allocation's end", "past the allocation's end",
                 [&] { comm.all_reduce(buf.a + buf.bytes - 1024, buf.b, n, DataType::kBFloat16, x.s); });
  expect_invalid(x, "an output past its allocation's end", "all_reduce: the output",
                 [&] { comm.all_reduce(buf.a, buf.b + buf.bytes - 16, n, DataType::kBFloat16, x.s); });
  void* t = comm.alloc_symmetric(1 * M);
  comm.free_symmetric(t);
  expect_invalid(x, "a freed input claimed symmetric", "freed since",
                 [&] { comm.all_reduce_symmetric(t, buf.b, n, DataType::kBFloat16, x.s); });
  expect_invalid(x, "freeing an ordinary pointer", "free_symmetric: rank 0 freed a pointer that starts no live",
                 [&] { comm.free_symmetric(buf.plain); });
  expect_invalid(x, "freeing the middle of an allocation", "starts no live symmetric allocation",
                 [&] { comm.free_symmetric(buf.a + 16); });
  if (x.world > 1)
    expect_invalid(x, "ranks asking for different sizes", "every rank must allocate the same sizes in the same order",
                   [&] { comm.alloc_symmetric(x.rank == x.world - 1 ? 2 * M : 1 * M); });
  expect_invalid(x, "0 bytes", "0 bytes asked for", [&] { comm.alloc_symmetric(0); });
  check_call(x, comm, buf.a, buf.b, DataType::kBFloat16, 64 * 1024, "after bad use");
}

void check_mode(Ctx& x, Communicator& comm) {
  if (x.world < 2) return;
  Buffers buf(comm, 1 * M);
  const size_t off = x.rank == 0 ? 0 : 256;
  expect_invalid(x, "CUSTOMAR_CHECK: different offsets", "CUSTOMAR_CHECK: rank 1 passed its input at offset 256",
                 [&] { comm.all_reduce(buf.a + off, buf.b + off, 4096, DataType::kBFloat16, x.s); });
  uint8_t* in = x.rank == 0 ? buf.a : buf.plain;
  expect_invalid(x, "CUSTOMAR_CHECK: symmetric on one rank, ordinary on another", "outside symmetric memory",
                 [&] { comm.all_reduce(in, buf.b, 4096, DataType::kBFloat16, x.s); });
  check_call(x, comm, buf.a, buf.b, DataType::kBFloat16, 4096, "check mode, afterwards");
}

// What the process holds: descriptors, mappings, free device memory.
struct Holdings {
  int fds = 0, maps = 0;
  size_t free_bytes = 0;
};

Holdings holdings() {
  Holdings h;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) h.fds += e->d_name[0] != '.';
    closedir(d);
  }
  std::ifstream maps("/proc/self/maps");
  for (std::string line; std::getline(maps, line);) ++h.maps;
  size_t total = 0;
  TEST_CUDA(cudaDeviceSynchronize());
  TEST_CUDA(cudaMemGetInfo(&h.free_bytes, &total));
  return h;
}

// What the process holds once every rank has stopped (every rank of a virtual world shares one process, whose rank 0
// alone looks), and every rank waits until it has been looked at.
Holdings snapshot(Ctx& x) {
  x.g.barrier();
  Holdings h;
  if (!x.opt.world.virtual_ranks || x.rank == 0) h = holdings();
  x.g.barrier();
  return h;
}

// `slack` descriptors and mappings may come and go with what is not customar's (NCCL's own, in a communicator that is
// built and destroyed); a leak of ours is at least one descriptor per rank and allocation, and 2 MiB of device memory.
void expect_same_holdings(Ctx& x, const Holdings& before, const std::string& what, int slack = 0) {
  const Holdings now = snapshot(x);
  if (x.opt.world.virtual_ranks && x.rank != 0) return;
  const bool memory = now.free_bytes + 2 * M > before.free_bytes;  // the driver's own bookkeeping moves it a little
  x.record(now.fds <= before.fds + slack && now.maps <= before.maps + slack && memory,
           what + ": descriptors " + std::to_string(before.fds) + " -> " + std::to_string(now.fds) + ", mappings " +
               std::to_string(before.maps) + " -> " + std::to_string(now.maps) + ", free device memory " +
               std::to_string(before.free_bytes >> 20) + " -> " + std::to_string(now.free_bytes >> 20) + " MiB");
}

void cleanup(Ctx& x, Communicator& comm) {
  auto cycle = [&] {
    uint8_t* p = static_cast<uint8_t*>(comm.alloc_symmetric(8 * M + 1));
    check_call(x, comm, p, p, DataType::kBFloat16, 1 * M / 2, "cleanup cycle");
    comm.free_symmetric(p);
  };
  cycle();  // whatever the first allocation sets up for good
  const Holdings before = snapshot(x);
  for (int i = 0; i < 8; ++i) cycle();
  expect_same_holdings(x, before, "8 allocation/free cycles");
  x.record(comm.symmetric_bytes() == 0, "no symmetric memory held after every free");

  auto destroyed = [&] {
    Communicator c(x.g, x.device);
    void* p = c.alloc_symmetric(4 * M);
    c.alloc_symmetric(4 * M);
    check_call(x, c, p, p, DataType::kFloat32, 1 * M / 4, "cleanup, communicator destroyed with live allocations");
  };
  destroyed();  // warm-up: what building a communicator sets up for good
  const Holdings before_destroy = snapshot(x);
  destroyed();
  expect_same_holdings(x, before_destroy, "a communicator destroyed with two live allocations", 1);
}

void footprint(Ctx& x, Communicator& comm) {
  const size_t before = comm.symmetric_bytes();
  void* p = comm.alloc_symmetric(1);
  void* q = comm.alloc_symmetric(3 * M);
  const size_t held = comm.symmetric_bytes() - before;
  // At least what was asked for, at most one 2 MiB granule more each.
  x.record(held >= 3 * M + 1 && held <= 3 * M + 1 + 4 * M,
           "symmetric_bytes() counts what the allocations take: " + std::to_string(held));
  comm.free_symmetric(q);
  comm.free_symmetric(p);
  x.record(comm.symmetric_bytes() == before, "symmetric_bytes() drops back after the frees");
}

void freed_in_graph(Ctx& x) {
  Communicator c(x.g, x.device);
  if (c.backend() != Backend::kV2) return;
  uint8_t* p = static_cast<uint8_t*>(c.alloc_symmetric(1 * M));
  uint8_t* q = static_cast<uint8_t*>(c.alloc_symmetric(1 * M));
  c.set_algo(Algo::kOneshotPull);
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  TEST_CUDA(cudaStreamBeginCapture(x.s, cudaStreamCaptureModeThreadLocal));
  c.all_reduce(p, q, 1 * M / 2, DataType::kBFloat16, x.s);
  TEST_CUDA(cudaStreamEndCapture(x.s, &graph));
  TEST_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  c.free_symmetric(p);
  TEST_CUDA(cudaGraphLaunch(exec, x.s));
  const cudaError_t err = cudaStreamSynchronize(x.s);
  x.record(err == cudaSuccess,
           std::string("a replay on a freed buffer runs without a fault: ") + cudaGetErrorName(err));
  std::string got = "no error";
  try {
    c.check();
  } catch (const StateError& e) {
    got = e.what();
  } catch (const std::exception& e) {
    got = std::string("another error: ") + e.what();
  }
  x.record(got.find("symmetric buffer freed") != std::string::npos, "the replay broke the communicator: " + got);
  TEST_CUDA(cudaGraphExecDestroy(exec));
  TEST_CUDA(cudaGraphDestroy(graph));
}

void run_cases(Ctx& x) {
  Communicator comm(x.g, x.device);
  if (x.rank == 0)
    std::printf("[world %d] backend %s: %s\n", x.world, std::string(backend_name(comm.backend())).c_str(),
                comm.reason().c_str());
  matrix(x, comm);
  uniform_values(x, comm);
  graph_replay(x, comm);
  interleaved(x, comm);
  bad_use(x, comm);
  if (env().check) check_mode(x, comm);
  footprint(x, comm);
  cleanup(x, comm);
  freed_in_graph(x);
}

// ---- --same-gpu: two processes on one GPU --------------------------------------------------------------------------

std::unique_ptr<detail::PeerMemory> open_shared(Group& g, bool vmm, size_t bytes, uint64_t tag) {
  if (vmm) return detail::open_vmm_peer_memory(g, 0, bytes, tag, std::chrono::milliseconds(20000));
  return detail::open_ipc_peer_memory(g, 0, bytes);
}

// Each rank fills its own memory with its byte, checks the peer's, writes the peer's second half, checks its own.
bool share_once(Group& g, bool vmm, uint64_t tag, std::string* why) {
  const size_t bytes = 4 * M + 4096;
  std::unique_ptr<detail::PeerMemory> m = open_shared(g, vmm, bytes, tag);
  const int peer = 1 - g.rank();
  auto* mine = static_cast<uint8_t*>(m->local());
  auto* theirs = static_cast<uint8_t*>(m->peer(peer));
  TEST_CUDA(cudaMemset(mine, 0x10 + g.rank(), bytes));
  TEST_CUDA(cudaDeviceSynchronize());
  g.barrier();
  std::vector<uint8_t> host(bytes);
  TEST_CUDA(cudaMemcpy(host.data(), theirs, bytes, cudaMemcpyDeviceToHost));
  for (size_t i = 0; i < bytes; i += 4093)
    if (host[i] != 0x10 + peer) {
      *why = "byte " + std::to_string(i) + " of rank " + std::to_string(peer) + "'s memory reads " +
             std::to_string(host[i]);
      return false;
    }
  g.barrier();
  TEST_CUDA(cudaMemset(theirs + bytes / 2, 0x50 + g.rank(), bytes / 2));
  TEST_CUDA(cudaDeviceSynchronize());
  g.barrier();
  TEST_CUDA(cudaMemcpy(host.data(), mine, bytes, cudaMemcpyDeviceToHost));
  if (host[0] != 0x10 + g.rank() || host[bytes / 2] != 0x50 + peer || host[bytes - 1] != 0x50 + peer) {
    *why = "rank " + std::to_string(peer) + "'s write into this rank's memory did not land";
    return false;
  }
  g.barrier();  // no peer reads before the memory goes
  return true;
}

int same_gpu_rank(Group& g) {
  TEST_CUDA(cudaSetDevice(0));
  install_crash_printer();
  int failed = 0;
  for (bool vmm : {true, false}) {
    const char* name = vmm ? "VMM file descriptors" : "CUDA IPC";
    std::string why;
    if (vmm && !detail::vmm_fd_supported(0, &why)) {
      if (g.rank() == 0) std::printf("same GPU, %s: skipped (%s)\n", name, why.c_str());
      continue;
    }
    bool ok = share_once(g, vmm, 1, &why);  // the first share sets up what stays
    g.barrier();
    const Holdings before = holdings();
    for (uint64_t tag = 2; ok && tag < 6; ++tag) ok = share_once(g, vmm, tag, &why);
    g.barrier();
    const Holdings after = holdings();
    if (ok && (after.fds != before.fds || after.maps != before.maps || after.free_bytes + 2 * M < before.free_bytes)) {
      ok = false;
      why = "left behind: descriptors " + std::to_string(before.fds) + " -> " + std::to_string(after.fds) +
            ", mappings " + std::to_string(before.maps) + " -> " + std::to_string(after.maps) + ", free MiB " +
            std::to_string(before.free_bytes >> 20) + " -> " + std::to_string(after.free_bytes >> 20);
    }
    std::printf("[rank %d] same GPU, %s: %s%s\n", g.rank(), name, ok ? "pass" : "FAIL: ", ok ? "" : why.c_str());
    failed += ok ? 0 : 1;
  }
  return failed == 0 ? 0 : 1;
}

// ---- --bench --------------------------------------------------------------------------------------------------------

int bench_rank(Group& g, const Options& opt) {
  const int device = start_rank(opt.world, g);
  RankStream stream(opt.world, g);
  const cudaStream_t s = stream.get();
  Communicator comm(g, device);
  const size_t max_bytes = 64 * M;
  void* a = comm.alloc_symmetric(max_bytes);
  void* b = comm.alloc_symmetric(max_bytes);
  void *in = nullptr, *out = nullptr;
  TEST_CUDA(cudaMalloc(&in, max_bytes));
  TEST_CUDA(cudaMalloc(&out, max_bytes));
  if (g.rank() == 0)
    std::printf(
        "# %d %s ranks, backend %s, bf16, graph of 10 calls, median of 5 replays, worst rank\n"
        "# %10s %12s %-28s %12s %-28s %7s\n",
        g.size(), opt.world.virtual_ranks ? "virtual" : "GPU", std::string(backend_name(comm.backend())).c_str(),
        "bytes", "staged(us)", "staged runs", "symm(us)", "symmetric runs", "ratio");
  for (size_t bytes = 1 * M; bytes <= max_bytes; bytes *= 2) {
    const size_t count = bytes / 2;
    const double staged = time_graph(
        g, [&] { comm.all_reduce(in, out, count, DataType::kBFloat16, s); }, 10, 2, 5, s);
    const double symm = time_graph(
        g, [&] { comm.all_reduce(a, b, count, DataType::kBFloat16, s); }, 10, 2, 5, s);
    const CallPlan ps = comm.plan_for(in, out, count, DataType::kBFloat16);
    const CallPlan pm = comm.plan_for(a, b, count, DataType::kBFloat16);
    if (g.rank() == 0)
      std::printf("  %10zu %12.2f %-28s %12.2f %-28s %7.2f\n", bytes, staged, std::string(algo_name(ps.algo)).c_str(),
                  symm, (std::string(algo_name(pm.algo)) + (pm.symmetric ? " in place" : "")).c_str(), symm / staged);
  }
  TEST_CUDA(cudaFree(in));
  TEST_CUDA(cudaFree(out));
  comm.free_symmetric(b);
  comm.free_symmetric(a);
  return 0;
}

int run_rank(Group& g, const Options& opt) {
  const int device = start_rank(opt.world, g);
  RankStream stream(opt.world, g);
  Ctx x{g, opt, g.rank(), g.size(), device, stream.get()};
  x.max_bytes = (opt.quick ? size_t(8) : size_t(33)) * M;
  TEST_CUDA(cudaMalloc(reinterpret_cast<void**>(&x.res), sizeof(CheckResult)));
  run_cases(x);
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
      if (a == "--quick")
        opt.quick = true;
      else if (a == "--same-gpu")
        opt.same_gpu = true;
      else if (a == "--bench")
        opt.bench = true;
      else
        throw std::runtime_error("unknown argument " + a);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr,
                 "symmetric_test: %s\nusage: symmetric_test [-n N | --virtual N [--partition auto|green|capped]] "
                 "[--quick] [--same-gpu | --bench]\n",
                 e.what());
    return 2;
  }
  if (opt.same_gpu) {
    if (visible_gpu_count() < 1) {
      std::fprintf(stderr, "symmetric_test --same-gpu: needs a GPU\n");
      return 2;
    }
    int bad = 0;
    for (const RankExit& e : launch(2, same_gpu_rank, LaunchOptions{300})) bad += e.ok() ? 0 : 1;
    std::printf("same GPU, two processes: %s\n", bad == 0 ? "all pass" : "FAILURES");
    return bad == 0 ? 0 : 1;
  }
  const int bad = run_world(
      opt.world, [&](Group& g) { return opt.bench ? bench_rank(g, opt) : run_rank(g, opt); }, 540, "symmetric_test");
  return bad == 0 ? 0 : bad < 0 ? 2 : 1;
}
