// The single-node launcher: forks one process per rank (before any CUDA call) and gives each a Group that exchanges
// through shared memory. Tools and tests use it; it needs no GPU.
#pragma once

#include <functional>
#include <vector>

#include "customar/group.h"

namespace customar {

struct LaunchOptions {
  /// Kill every rank (SIGKILL) if the whole job is not done after this many seconds; 0 = no limit.
  double deadline_s = 0;
};

/// Result of one rank.
struct RankExit {
  int rank = 0;
  int exit_code = 0;  ///< the function's return value, 1 if it threw, 128+signal if it was killed.
  bool ok() const { return exit_code == 0; }
};

/// Runs fn(group) in `nprocs` forked processes, rank r in the r-th, and waits for all of them. In each child the
/// return value of fn becomes the process's exit code (an exception is printed and gives 1), and the child ends with
/// _exit() so the parent's atexit handlers and buffered streams are not run twice. If a rank dies, the others'
/// pending and later group calls fail with a TimeoutError naming it instead of waiting for it.
///
/// Must be called before this process touches CUDA: a forked child cannot use a CUDA context made by its parent.
/// The exchange area is an anonymous shared mapping made before the fork, so it has no name that another user
/// could open and nothing stale survives a crashed run. Throws SystemError if the mapping or a fork fails
/// (children already started are killed first) and InvalidArgument for nprocs < 1.
std::vector<RankExit> launch(int nprocs, const std::function<int(Group&)>& fn, const LaunchOptions& options = {});

/// Number of CUDA devices visible to this process, counted in a forked child so that this process itself does not
/// initialise CUDA before launch() (a process that forks after initialising CUDA gives children that cannot use it).
/// Returns 0 when there is no GPU or driver.
int visible_gpu_count();

/// A group of one rank (rank 0, size 1): all_gather returns the input, barrier returns at once.
std::unique_ptr<Group> make_single_group();

}  // namespace customar
