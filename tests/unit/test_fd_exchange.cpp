// Passing file descriptors between ranks over Unix sockets (memory/fd_exchange.h), without a GPU: forked ranks
// (customar::launch) exchange memfds, and strangers, peers that die and peers that send garbage meet clear, bounded
// errors or are ignored, with nothing left open.
#include <dirent.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <thread>

#include "customar/error.h"
#include "customar/launcher.h"
#include "forked_ranks.h"
#include "memory/fd_exchange.h"

using namespace customar;
using namespace customar::detail;
using customar::test::expect_all_zero;

namespace {

using std::chrono::milliseconds;

// Descriptors this process has open.
int open_fds() {
  int n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return -1;
  while (dirent* e = readdir(d)) n += e->d_name[0] != '.';
  closedir(d);
  return n - 1;  // the directory's own descriptor
}

// A memfd holding `value`.
UniqueFd memfd_with(int value) {
  UniqueFd fd(memfd_create("customar-test", MFD_CLOEXEC));
  if (!fd.valid() || write(fd.get(), &value, sizeof(value)) != static_cast<ssize_t>(sizeof(value))) return UniqueFd();
  return fd;
}

int value_of(int fd) {
  int v = -1;
  return pread(fd, &v, sizeof(v), 0) == static_cast<ssize_t>(sizeof(v)) ? v : -1;
}

Deadline in(milliseconds ms) { return std::chrono::steady_clock::now() + ms; }

FdMessage message_for(const FdListener& l, uint32_t from, uint32_t to, uint64_t tag) {
  return FdMessage{kFdMessageMagic, tag, from, to, l.secret()};
}

// Sends raw bytes (and optionally descriptors) to `address`, as a stranger or a broken peer would.
void send_raw(const std::string& address, const void* data, size_t n, const std::vector<int>& fds) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, address.data(), address.size());
  ASSERT_EQ(::connect(s.get(), reinterpret_cast<sockaddr*>(&a),
                      static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size())),
            0);
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))] = {};
  iovec iov{const_cast<void*>(data), n};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  if (!fds.empty()) {
    m.msg_control = control;
    m.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
    cmsghdr* c = CMSG_FIRSTHDR(&m);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
    std::memcpy(CMSG_DATA(c), fds.data(), fds.size() * sizeof(int));
  }
  ASSERT_EQ(::sendmsg(s.get(), &m, MSG_NOSIGNAL), static_cast<ssize_t>(n));
}

}  // namespace

TEST(FdExchange, EveryRankGetsEveryPeersDescriptorBetweenForkedRanks) {
  expect_all_zero(4, [](Group& g) {
    UniqueFd mine = memfd_with(100 + g.rank());
    std::vector<UniqueFd> got = exchange_fds(g, mine.get(), 7, milliseconds(10000));
    if (got.size() != 4u || got[g.rank()].valid()) return 10;
    for (int r = 0; r < 4; ++r)
      if (r != g.rank() && value_of(got[r].get()) != 100 + r) return 20 + r;
    return 0;
  });
}

TEST(FdExchange, LeavesNoDescriptorOpenAndNoSocketBehind) {
  expect_all_zero(3, [](Group& g) {
    UniqueFd mine = memfd_with(g.rank());
    (void)exchange_fds(g, mine.get(), 1, milliseconds(10000));  // warms up whatever the first call opens
    const int before = open_fds();
    for (uint64_t tag = 2; tag < 6; ++tag) (void)exchange_fds(g, mine.get(), tag, milliseconds(10000));
    return open_fds() == before ? 0 : 1;
  });
}

TEST(FdListener, NameIsAbstractFreshAndRandom) {
  FdListener a, b;
  const std::string prefix = std::string(1, '\0') + "customar-fd-" + std::to_string(getpid()) + "-";
  ASSERT_EQ(a.address().compare(0, prefix.size(), prefix), 0) << "in the abstract namespace, with the pid";
  EXPECT_EQ(a.address().size(), prefix.size() + 32) << "128 random bits in hex";
  EXPECT_NE(a.address(), b.address());
  EXPECT_NE(a.secret(), b.secret());
}

TEST(FdListener, IsGoneOnceItHasEveryDescriptor) {
  FdListener l;
  UniqueFd mine = memfd_with(5);
  send_fd(l.address(), message_for(l, 1, 0, 3), mine.get(), in(milliseconds(5000)));
  std::vector<UniqueFd> got = l.receive({false, true}, 0, 3, in(milliseconds(5000)));
  EXPECT_EQ(value_of(got[1].get()), 5);
  try {
    send_fd(l.address(), message_for(l, 1, 0, 3), mine.get(), in(milliseconds(1000)));
    ADD_FAILURE() << "a closed listener took a connection";
  } catch (const TimeoutError&) {
    ADD_FAILURE() << "a closed listener must refuse at once, not time out";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no longer listens"), std::string::npos) << e.what();
  }
}

TEST(FdListener, IgnoresStrangersAndKeepsWaitingForThePeer) {
  UniqueFd peer = memfd_with(42), planted = memfd_with(666);
  const int before = open_fds();
  FdListener l;  // its socket is closed once receive() returns
  std::thread strangers([&] {
    const char junk[] = "GET / HTTP/1.0\r\n\r\n";
    send_raw(l.address(), junk, sizeof(junk), {planted.get()});  // short, with a descriptor
    FdMessage guess = message_for(l, 1, 0, 9);
    guess.secret[0] ^= 1;  // everything right but the secret
    send_raw(l.address(), &guess, sizeof(guess), {planted.get()});
    send_fd(l.address(), message_for(l, 1, 0, 9), peer.get(), in(milliseconds(5000)));
  });
  std::vector<UniqueFd> got = l.receive({false, true}, 0, 9, in(milliseconds(5000)));
  strangers.join();
  EXPECT_EQ(value_of(got[1].get()), 42) << "the peer's descriptor, not the planted one";
  got.clear();
  EXPECT_EQ(open_fds(), before) << "the strangers' descriptors are closed";
}

TEST(FdListener, AMessageWithTheSecretButForAnotherExchangeIsAClearError) {
  FdListener l;
  UniqueFd fd = memfd_with(1);
  send_fd(l.address(), message_for(l, 1, 0, 99), fd.get(), in(milliseconds(5000)));
  try {
    (void)l.receive({false, true}, 0, 4, in(milliseconds(5000)));
    FAIL() << "accepted a descriptor of another exchange";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1 sent a descriptor for rank 0, exchange 99"), std::string::npos)
        << e.what();
  }
}

TEST(FdListener, AMessageWithTheSecretButNoDescriptorIsAClearError) {
  FdListener l;
  const FdMessage m = message_for(l, 1, 0, 4);
  send_raw(l.address(), &m, sizeof(m), {});
  try {
    (void)l.receive({false, true}, 0, 4, in(milliseconds(5000)));
    FAIL() << "accepted a message without a descriptor";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("no descriptor"), std::string::npos) << e.what();
  }
}

TEST(FdListener, TwoDescriptorsInOneMessageAreAClearErrorAndBothAreClosed) {
  UniqueFd a = memfd_with(1), b = memfd_with(2);
  const int before = open_fds();
  FdListener l;  // its socket is closed once receive() throws
  const FdMessage m = message_for(l, 1, 0, 4);
  send_raw(l.address(), &m, sizeof(m), {a.get(), b.get()});
  EXPECT_THROW((void)l.receive({false, true}, 0, 4, in(milliseconds(5000))), Error);
  EXPECT_EQ(open_fds(), before);
}

TEST(FdListener, AMissingPeerIsATimeoutNamingItAndTheWaitIsBounded) {
  FdListener l;
  UniqueFd fd = memfd_with(1);
  send_fd(l.address(), message_for(l, 1, 0, 4), fd.get(), in(milliseconds(5000)));
  const auto start = std::chrono::steady_clock::now();
  try {
    (void)l.receive({false, true, true}, 0, 4, in(milliseconds(300)));
    FAIL() << "returned without rank 2's descriptor";
  } catch (const TimeoutError& e) {
    EXPECT_EQ(e.missing_rank(), 2);
    EXPECT_NE(std::string(e.what()).find("from rank 2 in time"), std::string::npos) << e.what();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(FdListener, AnotherUsersConnectionIsClosedUnread) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root to run a sender as another user";
  FdListener l;
  UniqueFd fd = memfd_with(1);
  const pid_t child = fork();
  if (child == 0) {
    // Another user that somehow knows the name and the secret still gets nowhere.
    if (setuid(65534) != 0) _exit(2);
    try {
      send_fd(l.address(), message_for(l, 1, 0, 4), fd.get(), in(milliseconds(2000)));
    } catch (...) {
      _exit(3);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "the sender could not even send";
  EXPECT_THROW((void)l.receive({false, true}, 0, 4, in(milliseconds(300))), TimeoutError);
}

TEST(FdExchange, APeerThatDiesMidExchangeIsABoundedErrorNamingIt) {
  const auto start = std::chrono::steady_clock::now();
  auto exits = launch(
      3,
      [](Group& g) {
        if (g.rank() == 2) {
          // Publishes its socket like every rank, then dies before it sends anything.
          FdListener l;
          (void)publish_listener(g, &l, "");
          _exit(9);
        }
        UniqueFd mine = memfd_with(g.rank());
        try {
          (void)exchange_fds(g, mine.get(), 1, milliseconds(3000));
        } catch (const Error& e) {
          return std::string(e.what()).find("rank 2") != std::string::npos ? 0 : 1;
        }
        return 2;
      },
      LaunchOptions{60});
  EXPECT_EQ(exits[0].exit_code, 0);
  EXPECT_EQ(exits[1].exit_code, 0);
  EXPECT_EQ(exits[2].exit_code, 9);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST(FdExchange, GarbageFromARankIsAClearError) {
  auto exits = launch(
      2,
      [](Group& g) {
        if (g.rank() == 1) {
          // A broken peer: it knows rank 0's secret but sends a message of another exchange.
          FdListener l;
          const FdPeers peers = publish_listener(g, &l, "");
          UniqueFd fd = memfd_with(1);
          send_fd(peers.address[0], FdMessage{kFdMessageMagic, 77, 1, 0, peers.secret[0]}, fd.get(),
                  in(milliseconds(3000)));
          g.barrier();
          return 0;
        }
        UniqueFd mine = memfd_with(0);
        int rc = 2;
        try {
          (void)exchange_fds(g, mine.get(), 5, milliseconds(3000));
        } catch (const Error& e) {
          rc = std::string(e.what()).find("rank 1 sent a descriptor for rank 0, exchange 77") != std::string::npos;
          rc = rc ? 0 : 1;
        }
        g.barrier();
        return rc;
      },
      LaunchOptions{60});
  EXPECT_EQ(exits[0].exit_code, 0);
  EXPECT_EQ(exits[1].exit_code, 0);
}
