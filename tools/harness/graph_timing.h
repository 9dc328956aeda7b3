// How customar-perf and customar-floor time a call, so that their tables can be read side by side: a CUDA graph of
// `iters` calls, replayed; median per call over the replays; worst rank.
#pragma once

#include <cuda_runtime_api.h>

#include <algorithm>
#include <functional>
#include <vector>

#include "check_kernels.h"
#include "customar/group.h"

namespace customar::test {

/// Median per-call time in µs over `replays` rounds (each `iters` calls), worst rank. One host barrier, then every
/// round queued back to back: the kernels keep the ranks in step, and a rank's late start lands only in the first
/// round. `round` enqueues one round on `s`.
inline double time_rounds(Group& g, const std::function<void()>& round, int iters, int replays, cudaStream_t s) {
  std::vector<cudaEvent_t> ev(replays + 1);
  for (auto& e : ev) TEST_CUDA(cudaEventCreate(&e));
  g.barrier();
  TEST_CUDA(cudaEventRecord(ev[0], s));
  for (int r = 0; r < replays; ++r) {
    round();
    TEST_CUDA(cudaEventRecord(ev[r + 1], s));
  }
  TEST_CUDA(cudaEventSynchronize(ev[replays]));
  std::vector<double> t;
  for (int r = 0; r < replays; ++r) {
    float ms = 0;
    TEST_CUDA(cudaEventElapsedTime(&ms, ev[r], ev[r + 1]));
    t.push_back(ms * 1000.0 / iters);
  }
  for (auto& e : ev) TEST_CUDA(cudaEventDestroy(e));
  std::sort(t.begin(), t.end());
  double worst = 0;
  for (double v : all_gather_value(g, t[t.size() / 2])) worst = std::max(worst, v);
  return worst;
}

/// Captures `iters` calls of `issue` (which enqueues one call on `s`) into a graph, replays it `warmup` times, then
/// times `replays` replays with time_rounds().
inline double time_graph(Group& g, const std::function<void()>& issue, int iters, int warmup, int replays,
                         cudaStream_t s) {
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  TEST_CUDA(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
  for (int i = 0; i < iters; ++i) issue();
  TEST_CUDA(cudaStreamEndCapture(s, &graph));
  TEST_CUDA(cudaGraphInstantiate(&exec, graph, 0));
  for (int w = 0; w < warmup; ++w) TEST_CUDA(cudaGraphLaunch(exec, s));
  TEST_CUDA(cudaStreamSynchronize(s));
  const double us = time_rounds(
      g, [&] { TEST_CUDA(cudaGraphLaunch(exec, s)); }, iters, replays, s);
  TEST_CUDA(cudaGraphExecDestroy(exec));
  TEST_CUDA(cudaGraphDestroy(graph));
  return us;
}

}  // namespace customar::test
