// How long the launcher's ranks may live: never longer than the process that launched them, and, unless that
// process asks for no limit by name, not longer than the deadline (one hour by default).
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <thread>

#include "customar/error.h"
#include "customar/launcher.h"

using namespace customar;

namespace {

// Reads one pid from `fd`, or -1 after `timeout_ms`.
pid_t read_pid(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  pid_t pid = -1;
  if (poll(&p, 1, timeout_ms) != 1 || read(fd, &pid, sizeof(pid)) != static_cast<ssize_t>(sizeof(pid))) return -1;
  return pid;
}

// Waits up to `seconds` for `pid` (a child of this process) to end; returns its status, or -1 if it still runs.
int wait_for(pid_t pid, double seconds) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  int status = 0;
  while (std::chrono::steady_clock::now() < end) {
    if (waitpid(pid, &status, WNOHANG) == pid) return status;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return -1;
}

}  // namespace

// A parent that launches two ranks which hang, then is killed with SIGKILL (no handler runs). This process is made
// a subreaper, so the orphaned ranks become its children and it can see whether the kernel killed them.
TEST(LauncherLifetime, RanksDieWhenTheirParentIsKilled) {
  ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1), 0);
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t parent = fork();
  ASSERT_GE(parent, 0);
  if (parent == 0) {
    close(fds[0]);
    launch(
        2,
        [&](Group&) {
          pid_t me = getpid();
          if (write(fds[1], &me, sizeof(me)) != static_cast<ssize_t>(sizeof(me))) return 1;
          for (;;) pause();
        },
        LaunchOptions{600});
    _exit(0);
  }
  close(fds[1]);
  pid_t ranks[2] = {read_pid(fds[0], 10000), read_pid(fds[0], 10000)};
  close(fds[0]);
  ASSERT_GT(ranks[0], 0);
  ASSERT_GT(ranks[1], 0);
  kill(parent, SIGKILL);
  ASSERT_EQ(waitpid(parent, nullptr, 0), parent);
  for (pid_t rank : ranks) {
    int status = wait_for(rank, 10);
    if (status == -1) {  // outlived its parent: clean up, then fail
      kill(rank, SIGKILL);
      waitpid(rank, nullptr, 0);
      ADD_FAILURE() << "rank pid " << rank << " still runs after its parent was killed";
      continue;
    }
    EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  }
  prctl(PR_SET_CHILD_SUBREAPER, 0);
}

TEST(LauncherLifetime, TheDefaultDeadlineIsOneHour) {
  EXPECT_EQ(LaunchOptions{}.deadline_s, 3600.0);
  EXPECT_EQ(kDefaultLaunchDeadlineS, 3600.0);
}

TEST(LauncherLifetime, ZeroNegativeOrNanDeadlineIsAnErrorNotForever) {
  for (double d : {0.0, -1.0, std::nan("")}) {
    try {
      launch(
          1, [](Group&) { return 0; }, LaunchOptions{d});
      ADD_FAILURE() << "deadline " << d << " accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("kNoDeadline"), std::string::npos) << e.what();
    }
  }
}

TEST(LauncherLifetime, NoDeadlineIsSaidByName) {
  auto exits = launch(
      2, [](Group& g) { return g.rank() + 3; }, LaunchOptions{kNoDeadline});
  EXPECT_EQ(exits[0].exit_code, 3);
  EXPECT_EQ(exits[1].exit_code, 4);
}
