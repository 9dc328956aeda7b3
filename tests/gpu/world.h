// How the GPU tests start their ranks: one process per GPU (customar::launch), or N threads of one process on one GPU
// (customar::launch_virtual), with the same rank body. Both binaries take `-n N` or `--virtual N`, and
// `--partition auto|green|capped` for virtual ranks.
#pragma once

#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "check_kernels.h"
#include "customar/launcher.h"
#include "customar/virtual.h"

namespace customar::test {

struct World {
  int size = 0;                ///< 0: every visible GPU
  bool virtual_ranks = false;  ///< threads on GPU 0 instead of a process per GPU
  SmPartition partition = SmPartition::kAuto;
};

/// Consumes -n N, --virtual N and --partition X at argv[i] (advancing i); false when argv[i] is none of them.
inline bool parse_world_arg(int argc, char** argv, int& i, World& w) {
  const std::string a = argv[i];
  if ((a == "-n" || a == "--virtual") && i + 1 < argc) {
    w.size = std::atoi(argv[++i]);
    w.virtual_ranks = a == "--virtual";
    return true;
  }
  if (a == "--partition" && i + 1 < argc) {
    const std::string p = argv[++i];
    if (p != "auto" && p != "green" && p != "capped") throw std::runtime_error("--partition: auto, green or capped");
    w.partition = p == "green"    ? SmPartition::kGreenContexts
                  : p == "capped" ? SmPartition::kCappedGrids
                                  : SmPartition::kAuto;
    return true;
  }
  return false;
}

/// The device a rank drives: its own GPU, or the one GPU of a virtual world.
inline int rank_device(const World& w, const Group& g) { return w.virtual_ranks ? 0 : g.rank(); }

/// Frees a case's buffers (cudaMalloc'ed; nullptr skipped), then waits for every rank. cudaFree can synchronise the
/// device: between virtual ranks (one device) a rank still freeing would wait for a peer's next kernel, which already
/// waits for that rank, until the kernel's timeout.
inline void free_then_meet(Group& g, const std::vector<void*>& ptrs) {
  for (void* p : ptrs)
    if (p != nullptr) TEST_CUDA(cudaFree(p));
  g.barrier();
}

/// A second stream for a rank, used once before any rank's call on it depends on its peers: its first work (and
/// whatever the driver sets up for a new stream) then runs while no peer's kernel waits for this rank. The caller
/// destroys it.
inline cudaStream_t second_stream(Group& g, void* scratch) {
  cudaStream_t s = nullptr;
  TEST_CUDA(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
  TEST_CUDA(cudaMemsetAsync(scratch, 0, 16, s));
  TEST_CUDA(cudaStreamSynchronize(s));
  g.barrier();
  return s;
}

/// Makes the rank's device current and loads the harness's kernels into its context (see load_kernels()); returns
/// the device.
inline int start_rank(const World& w, const Group& g) {
  const int device = rank_device(w, g);
  TEST_CUDA(cudaSetDevice(device));
  load_kernels();
  return device;
}

// A crash prints where it happened (module and offset, for addr2line) before the process dies, so that a crash on a
// remote GPU machine can be located from its log alone.
inline void print_crash_site(int sig) {
  void* frames[48];
  const int n = backtrace(frames, 48);
  char line[512];
  int len = std::snprintf(line, sizeof(line), "crash: signal %d, %d frames (module +offset)\n", sig, n);
  (void)!write(2, line, static_cast<size_t>(len));
  for (int i = 0; i < n; ++i) {
    Dl_info info{};
    if (dladdr(frames[i], &info) != 0 && info.dli_fname != nullptr) {
      len = std::snprintf(line, sizeof(line), "  #%d %s +0x%zx %s\n", i, info.dli_fname,
                          static_cast<size_t>(static_cast<char*>(frames[i]) - static_cast<char*>(info.dli_fbase)),
                          info.dli_sname != nullptr ? info.dli_sname : "");
      (void)!write(2, line, static_cast<size_t>(len));
    }
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

/// Line-buffered output (a crash keeps what was printed) and the crash printer above.
inline void install_crash_printer() {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  signal(SIGSEGV, print_crash_site);
  signal(SIGBUS, print_crash_site);
  signal(SIGFPE, print_crash_site);
}

/// A rank's stream, owned by the caller's scope: the virtual world's stream of the rank, or a new non-blocking one.
class RankStream {
 public:
  RankStream(const World& w, const Group& g) {
    if (w.virtual_ranks) {
      s_ = virtual_stream(g);
    } else {
      TEST_CUDA(cudaStreamCreateWithFlags(&s_, cudaStreamNonBlocking));
      owned_ = true;
    }
  }
  ~RankStream() {
    if (owned_) (void)cudaStreamDestroy(s_);
  }
  RankStream(const RankStream&) = delete;
  RankStream& operator=(const RankStream&) = delete;
  cudaStream_t get() const { return s_; }

 private:
  cudaStream_t s_ = nullptr;
  bool owned_ = false;
};

/// Runs `fn` on every rank of `w` (a process per GPU, or threads on one GPU) and returns the number of ranks that
/// failed. Checks the rank count against the GPUs first. `deadline_s` bounds a process world.
inline int run_world(World& w, const std::function<int(Group&)>& fn, double deadline_s, const char* tool) {
  install_crash_printer();
  const int gpus = visible_gpu_count();
  if (w.size == 0) w.size = w.virtual_ranks ? 2 : gpus;
  if (w.virtual_ranks ? (w.size < 1 || w.size > 8 || gpus < 1) : (w.size < 1 || w.size > gpus)) {
    std::fprintf(stderr, "%s: %s %d needs %s; %d GPU(s) visible\n", tool, w.virtual_ranks ? "--virtual" : "-n", w.size,
                 w.virtual_ranks ? "1 to 8 ranks and a GPU" : "that many GPUs", gpus);
    return -1;
  }
  VirtualOptions vo;
  vo.partition = w.partition;
  const std::vector<RankExit> exits =
      w.virtual_ranks ? launch_virtual(w.size, fn, vo) : launch(w.size, fn, LaunchOptions{deadline_s});
  int bad = 0;
  for (const RankExit& e : exits) {
    if (e.ok()) continue;
    std::fprintf(stderr, "rank %d exited with %d\n", e.rank, e.exit_code);
    ++bad;
  }
  return bad;
}

}  // namespace customar::test
