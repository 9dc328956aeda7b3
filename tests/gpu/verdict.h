// Every rank's verdict on one call, compared across ranks: the GPU tests' way to say that a call was right everywhere
// and, for customar's own algorithms, bitwise identical on every rank.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdio>
#include <string>

#include "check_kernels.h"
#include "customar/group.h"

namespace customar::test {

/// Collective. True when no rank found a wrong element and, if `want_identical`, every rank's output has rank 0's
/// checksum; otherwise false with `*why` naming the first rank that differs.
inline bool agree(Group& g, const CheckResult& r, bool want_identical, std::string* why) {
  struct V {
    unsigned long long wrong, checksum, first_bad;
  } mine{r.wrong, r.checksum, r.first_bad};
  const auto all = all_gather_value(g, mine);
  for (int k = 0; k < g.size(); ++k)
    if (all[k].wrong) {
      *why = "rank " + std::to_string(k) + ": " + std::to_string(all[k].wrong) + " wrong elements, first at " +
             std::to_string(all[k].first_bad);
      return false;
    }
  if (want_identical)
    for (int k = 1; k < g.size(); ++k)
      if (all[k].checksum != all[0].checksum) {
        *why = "rank " + std::to_string(k) + "'s result differs bitwise from rank 0's";
        return false;
      }
  return true;
}

/// Counts one check of this rank in `passed` or `failed`; a failure is printed at once, as
/// "FAIL [world W, rank R] what".
inline void count_check(bool ok, const std::string& what, int world, int rank, int& passed, int& failed) {
  ok ? ++passed : ++failed;
  if (!ok) std::printf("FAIL [world %d, rank %d] %s\n", world, rank, what.c_str());
}

/// Collective: rank 0 prints the world's tally; returns this rank's exit code, 0 when no rank failed.
inline int tally(Group& g, int passed, int failed) {
  int all_failed = 0;
  for (int f : all_gather_value(g, failed)) all_failed += f;
  if (g.rank() == 0) std::printf("[world %d] %d passed, %d failed\n", g.size(), passed, all_failed);
  return all_failed == 0 ? 0 : 1;
}

/// Ends a capture that failed part-way on `stream`, dropping what it held: a capture left open would make every later
/// call of this thread fail.
inline void abandon_capture(cudaStream_t stream) {
  cudaGraph_t partial = nullptr;
  (void)cudaStreamEndCapture(stream, &partial);
  if (partial != nullptr) (void)cudaGraphDestroy(partial);
  (void)cudaGetLastError();
}

/// A CUDA graph captured on a stream and instantiated, or, when the capture failed, `error` and nothing to replay.
struct CapturedGraph {
  cudaGraph_t graph = nullptr;
  cudaGraphExec_t exec = nullptr;
  std::string error;  // empty when the capture succeeded

  /// Destroys the executable and the graph. Called explicitly, before the ranks meet: it can wait for the device,
  /// and between virtual ranks a peer's next kernel waits for this rank (free_then_meet).
  void release() {
    if (exec != nullptr) TEST_CUDA(cudaGraphExecDestroy(exec));
    if (graph != nullptr) TEST_CUDA(cudaGraphDestroy(graph));
    exec = nullptr;
    graph = nullptr;
  }
};

/// Captures what `body` enqueues on `stream` (thread-local mode) and instantiates it. A failure ends the capture
/// (abandon_capture) and is returned in `error`, with no executable.
template <typename F>
CapturedGraph capture_graph(cudaStream_t stream, F&& body) {
  CapturedGraph g;
  try {
    TEST_CUDA(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    body();
    TEST_CUDA(cudaStreamEndCapture(stream, &g.graph));
    TEST_CUDA(cudaGraphInstantiate(&g.exec, g.graph, 0));
  } catch (const std::exception& e) {
    g.error = e.what();
    abandon_capture(stream);
  }
  return g;
}

}  // namespace customar::test
