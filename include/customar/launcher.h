// The single-node launcher: forks one process per rank (before any CUDA call) and gives each a Group that exchanges
// through shared memory. Tools and tests use it; it needs no GPU.
#pragma once

#include <functional>
#include <limits>
#include <vector>

#include "customar/group.h"

namespace customar {

/// LaunchOptions::deadline_s by default: one hour. Long enough for any test, tool or benchmark customar runs (the
/// longest take minutes), short enough that a rank hung in a kernel or a syscall does not hold its GPU and its parent
/// for good.
inline constexpr double kDefaultLaunchDeadlineS = 3600;

/// LaunchOptions::deadline_s for a job that may run for ever (an inference server): launch() then waits as long as
/// the ranks run. Asked for by name, so that "no limit" is never the result of a forgotten or zero field.
inline constexpr double kNoDeadline = std::numeric_limits<double>::infinity();

struct LaunchOptions {
  /// Kill every rank (SIGKILL) if the whole job is not done after this many seconds (the ranks still running then
  /// exit with 128 + SIGKILL). Must be > 0: zero, negative and NaN are InvalidArgument, so that a zero is never read
  /// as "no limit"; kNoDeadline says that.
  double deadline_s = kDefaultLaunchDeadlineS;
};

/// Result of one rank.
struct RankExit {
  int rank = 0;
  int exit_code = 0;  ///< the function's return value, 1 if it threw, 128+signal if it was killed.
  bool ok() const { return exit_code == 0; }
};

/// Runs fn(group) in `nprocs` forked processes, rank r in the r-th, and waits for all of them, at most
/// `options.deadline_s`. In each child the return value of fn becomes the process's exit code (an exception is
/// printed and gives 1), and the child ends with _exit() so the parent's atexit handlers and buffered streams are not
/// run twice. If a rank dies, the others' pending and later group calls fail with a TimeoutError naming it instead of
/// waiting for it. The ranks die with their parent: if the thread that called launch() ends for any reason (the
/// process killed, even with SIGKILL), the kernel kills every rank (PR_SET_PDEATHSIG), so no rank outlives it holding
/// a GPU. Processes the ranks fork themselves are theirs to manage.
///
/// Must be called before this process touches CUDA: a forked child cannot use a CUDA context made by its parent.
/// The exchange area is an anonymous shared mapping made before the fork, so it has no name that another user
/// could open and nothing stale survives a crashed run. Throws SystemError if the mapping or a fork fails
/// (children already started are killed first) and InvalidArgument for nprocs outside 1..64 or a deadline that is
/// not > 0.
std::vector<RankExit> launch(int nprocs, const std::function<int(Group&)>& fn, const LaunchOptions& options = {});

/// Number of CUDA devices visible to this process, counted in a forked child so that this process itself does not
/// initialise CUDA before launch() (a process that forks after initialising CUDA gives children that cannot use it).
/// Returns 0 when there is no GPU or driver.
int visible_gpu_count();

/// A group of one rank (rank 0, size 1): all_gather returns the input, barrier returns at once.
std::unique_ptr<Group> make_single_group();

}  // namespace customar
