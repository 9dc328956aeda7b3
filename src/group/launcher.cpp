// The fork + shared-memory launcher and its Group.
#include "customar/launcher.h"

#include <cuda_runtime_api.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>

#include "common/check.h"
#include "common/log.h"
#include "customar/env.h"
#include "customar/error.h"

namespace customar {

namespace {

// Processes one launch() may start: the exchange area has a slot per process. Larger than the ranks a communicator
// serves (kMaxRanks in kernels/handle.h): tools and tests launch groups that only exchange bytes.
constexpr int kMaxProcs = 64;
// Bytes each rank can publish per exchange round; longer messages take several rounds. Set-up messages (IPC
// handles, topology rows) are a few hundred bytes, so one round is the common case.
constexpr size_t kSlotBytes = 64 * 1024;

// Lives in an anonymous MAP_SHARED mapping inherited across fork(). The atomics are lock-free and hence
// address-free, which is what makes them valid between processes.
struct Shared {
  std::atomic<uint32_t> arrived;
  std::atomic<uint32_t> generation;
  std::atomic<uint64_t> exited;  // bit r: rank r's process has ended (set by the parent)
  std::atomic<int32_t> exit_code[kMaxProcs];
  std::atomic<uint64_t> entered[kMaxProcs];  // barriers each rank has entered, to name who is missing
  uint64_t length[kMaxProcs];
  alignas(64) uint8_t slots[1];  // nprocs * kSlotBytes follow
};

size_t shared_bytes(int nprocs) { return offsetof(Shared, slots) + static_cast<size_t>(nprocs) * kSlotBytes; }

class ShmGroup final : public Group {
 public:
  ShmGroup(Shared* s, int rank, int size) : s_(s), rank_(rank), size_(size) {}
  int rank() const override { return rank_; }
  int size() const override { return size_; }

  void barrier() override {
    // After a failed barrier this rank's count of arrivals no longer matches its peers': a later exchange would pair
    // messages of different rounds. The group refuses instead.
    if (broken_)
      throw StateError("launcher group of rank " + std::to_string(rank_) +
                       " is unusable: an earlier exchange failed (" + broken_why_ + ")");
    try {
      wait_for_all();
    } catch (const std::exception& e) {
      broken_ = true;
      broken_why_ = e.what();
      throw;
    }
  }

  std::vector<Bytes> all_gather(std::span<const uint8_t> in) override {
    std::vector<Bytes> out(size_);
    s_->length[rank_] = in.size();
    size_t sent = 0;
    size_t longest = 0;
    for (int round = 0;; ++round) {
      size_t n = std::min(kSlotBytes, in.size() - sent);
      if (n) std::memcpy(slot(rank_), in.data() + sent, n);
      sent += n;
      barrier();
      if (round == 0) {
        for (int r = 0; r < size_; ++r) {
          out[r].reserve(s_->length[r]);
          longest = std::max<size_t>(longest, s_->length[r]);
        }
      }
      for (int r = 0; r < size_; ++r) {
        size_t have = out[r].size();
        size_t take = std::min(kSlotBytes, s_->length[r] - have);
        out[r].insert(out[r].end(), slot(r), slot(r) + take);
      }
      barrier();  // every rank has read the slots before anyone overwrites them
      if (static_cast<size_t>(round + 1) * kSlotBytes >= longest) break;
    }
    return out;
  }

 private:
  void wait_for_all() {
    uint64_t mine = s_->entered[rank_].fetch_add(1, std::memory_order_acq_rel) + 1;
    uint32_t gen = s_->generation.load(std::memory_order_acquire);
    if (s_->arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == static_cast<uint32_t>(size_)) {
      s_->arrived.store(0, std::memory_order_relaxed);
      s_->generation.fetch_add(1, std::memory_order_release);  // releases every rank's slot writes
      return;
    }
    auto start = std::chrono::steady_clock::now();
    const int64_t timeout_ms = env().init_timeout_ms;
    for (uint32_t spins = 0; s_->generation.load(std::memory_order_acquire) == gen; ++spins) {
      // A rank whose process has ended and that has not entered this barrier never will: fail now, naming it,
      // instead of waiting out the timeout. (One that ended after entering it is not missing.)
      uint64_t exited = s_->exited.load(std::memory_order_acquire);
      for (int r = 0; exited != 0 && r < size_; ++r) {
        if ((exited >> r & 1) && s_->entered[r].load(std::memory_order_acquire) < mine)
          throw TimeoutError("launcher: rank " + std::to_string(r) + " exited (code " +
                                 std::to_string(s_->exit_code[r].load()) + ") while rank " + std::to_string(rank_) +
                                 " waited for it",
                             r);
      }
      auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start);
      // Spin (yielding) for the first 2 ms so that ranks leave a barrier together, which benchmarks rely on; then
      // sleep, so that a rank waiting on a compiling peer does not take its core.
      if (waited.count() < 2) {
        if ((spins & 63) == 0) std::this_thread::yield();
        continue;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(50));
      if (waited.count() > timeout_ms) {
        int missing = -1;
        for (int r = 0; r < size_ && missing < 0; ++r)
          if (s_->entered[r].load(std::memory_order_acquire) < mine) missing = r;
        throw TimeoutError("launcher: rank " + std::to_string(missing) + " did not reach the exchange within " +
                               std::to_string(timeout_ms) + " ms (CUSTOMAR_INIT_TIMEOUT_MS)",
                           missing);
      }
    }
  }

  uint8_t* slot(int r) { return s_->slots + static_cast<size_t>(r) * kSlotBytes; }
  Shared* s_;
  int rank_;
  int size_;
  bool broken_ = false;
  std::string broken_why_;
};

class SingleGroup final : public Group {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  std::vector<Bytes> all_gather(std::span<const uint8_t> in) override { return {Bytes(in.begin(), in.end())}; }
  void barrier() override {}
};

// In a forked child: the kernel kills it when the parent ends, so no rank outlives a parent killed with SIGKILL
// (which runs no handler that could kill them). The parent may already have ended between fork() and prctl(); then
// getppid() is no longer its pid and the child leaves at once.
void die_with_parent(pid_t parent, int rank) {
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
    std::fprintf(stderr, "customar launcher: rank %d: prctl(PR_SET_PDEATHSIG) failed: %s\n", rank,
                 std::strerror(errno));
    _exit(1);
  }
  if (getppid() != parent) _exit(128 + SIGKILL);
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace

std::unique_ptr<Group> make_single_group() { return std::make_unique<SingleGroup>(); }

int visible_gpu_count() {
  std::vector<RankExit> r = launch(1, [](Group&) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
    return n < 200 ? n : 200;  // an exit code carries 0..255
  });
  return r[0].exit_code >= 128 ? 0 : r[0].exit_code;
}

std::vector<RankExit> launch(int nprocs, const std::function<int(Group&)>& fn, const LaunchOptions& options) {
  if (nprocs < 1 || nprocs > kMaxProcs)
    throw InvalidArgument("launch: nprocs=" + std::to_string(nprocs) + "; allowed: 1.." + std::to_string(kMaxProcs));
  if (!(options.deadline_s > 0))  // NaN too
    throw InvalidArgument("launch: deadline_s=" + std::to_string(options.deadline_s) +
                          "; allowed: a number of seconds > 0, or kNoDeadline to wait as long as the ranks run");
  size_t bytes = shared_bytes(nprocs);
  void* mem = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  CUSTOMAR_SYS_CHECK(mem != MAP_FAILED, "mmap(MAP_SHARED | MAP_ANONYMOUS)");
  auto* s = new (mem) Shared;  // zero-filled by the kernel; placement-new starts the atomics' lifetimes
  s->arrived.store(0);
  s->generation.store(0);
  s->exited.store(0);
  for (auto& c : s->exit_code) c.store(0);
  for (auto& e : s->entered) e.store(0);

  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t parent = getpid();
  std::vector<pid_t> pids(nprocs, -1);
  for (int r = 0; r < nprocs; ++r) {
    pid_t pid = fork();
    if (pid < 0) {
      int saved = errno;
      for (int k = 0; k < r; ++k) kill(pids[k], SIGKILL);
      for (int k = 0; k < r; ++k) waitpid(pids[k], nullptr, 0);
      munmap(mem, bytes);
      errno = saved;
      CUSTOMAR_SYS_CHECK(false, "fork");
    }
    if (pid == 0) {
      die_with_parent(parent, r);
      log::set_rank(r);
      int code = 1;
      try {
        ShmGroup group(s, r, nprocs);
        code = fn(group);
      } catch (const std::exception& e) {
        std::fprintf(stderr, "customar launcher: rank %d failed: %s\n", r, e.what());
      } catch (...) {
        std::fprintf(stderr, "customar launcher: rank %d failed with an unknown exception\n", r);
      }
      std::fflush(stdout);
      std::fflush(stderr);
      // _exit, not exit: a forked child must not run the parent's atexit handlers or flush its copies of buffers.
      _exit(code);
    }
    pids[r] = pid;
  }

  std::vector<RankExit> result(nprocs);
  for (int r = 0; r < nprocs; ++r) result[r].rank = r;
  int remaining = nprocs;
  auto start = std::chrono::steady_clock::now();
  bool killed = false;
  const bool bounded = std::isfinite(options.deadline_s);
  while (remaining > 0) {
    int status = 0;
    pid_t pid = waitpid(-1, &status, bounded ? WNOHANG : 0);
    if (pid == 0) {
      double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (elapsed > options.deadline_s && !killed) {
        killed = true;
        std::fprintf(stderr, "customar launcher: deadline of %.0f s passed; killing the remaining ranks\n",
                     options.deadline_s);
        for (int r = 0; r < nprocs; ++r)
          if (pids[r] > 0) kill(pids[r], SIGKILL);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      continue;
    }
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;
    }
    auto it = std::find(pids.begin(), pids.end(), pid);
    if (it == pids.end()) continue;
    int r = static_cast<int>(it - pids.begin());
    *it = -1;
    --remaining;
    result[r].exit_code = decode_status(status);
    // Tell the ranks still waiting for r that it is gone, so they fail now instead of at their timeout.
    s->exit_code[r].store(result[r].exit_code);
    s->exited.fetch_or(uint64_t(1) << r, std::memory_order_acq_rel);
  }
  munmap(mem, bytes);
  return result;
}

}  // namespace customar
