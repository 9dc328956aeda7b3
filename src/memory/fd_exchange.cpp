#include "memory/fd_exchange.h"

#include <poll.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstring>

#include "common/check.h"
#include "common/log.h"
#include "common/serialize.h"
#include "customar/error.h"

namespace customar::detail {

UniqueFd& UniqueFd::operator=(UniqueFd&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = other.release();
  }
  return *this;
}

int UniqueFd::release() {
  const int fd = fd_;
  fd_ = -1;
  return fd;
}

void UniqueFd::reset() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

namespace {

// Connections a receiver keeps open at once while it waits for its peers: strangers beyond it are turned away, so
// that they cannot exhaust this process's descriptors.
constexpr size_t kMaxPending = 64;

void random_bytes(void* p, size_t n) {
  // A secret must not be guessable: no fallback to a weaker source.
  size_t done = 0;
  while (done < n) {
    const ssize_t got = getrandom(static_cast<uint8_t*>(p) + done, n - done, 0);
    if (got < 0 && errno == EINTR) continue;
    CUSTOMAR_SYS_CHECK(got > 0, "getrandom");
    done += static_cast<size_t>(got);
  }
}

sockaddr_un unix_address(const std::string& address, socklen_t* len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (address.empty() || address.size() > sizeof(a.sun_path))
    throw Error("fd exchange: a socket address of " + std::to_string(address.size()) + " bytes is not a Unix address");
  std::memcpy(a.sun_path, address.data(), address.size());
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + address.size());
  return a;
}

int remaining_ms(Deadline deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return static_cast<int>(std::clamp<int64_t>(left.count(), 0, 1000 * 1000));
}

// Waits for `events` on `fd` until `deadline`: false when it passed.
bool wait_for(int fd, short events, Deadline deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, remaining_ms(deadline));
    if (n < 0 && errno == EINTR) continue;
    CUSTOMAR_SYS_CHECK(n >= 0, "poll");
    if (n > 0) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

std::string hex(const uint8_t* p, size_t n) {
  std::string s;
  char b[3];
  for (size_t i = 0; i < n; ++i) {
    std::snprintf(b, sizeof(b), "%02x", p[i]);
    s += b;
  }
  return s;
}

// One accepted connection: the bytes of its message so far and the descriptor that came with them.
struct Pending {
  UniqueFd conn;
  FdMessage msg{};
  size_t got = 0;
  UniqueFd fd;
  bool extra_fds = false;  // more than one descriptor arrived
};

// Reads what has arrived on `p`; false when the connection is done (the whole message, or closed early).
bool read_some(Pending& p) {
  alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int))];
  iovec iov{reinterpret_cast<uint8_t*>(&p.msg) + p.got, sizeof(FdMessage) - p.got};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  const ssize_t n = ::recvmsg(p.conn.get(), &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n < 0 && (errno == EINTR || errno == EAGAIN)) return true;
  if (n <= 0) return false;  // closed early, or an error on a stranger's connection: dropped either way
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      if (!p.fd.valid()) {
        p.fd = UniqueFd(fd);
      } else {
        UniqueFd unasked(fd);  // closed at once
        p.extra_fds = true;
      }
    }
  }
  if ((m.msg_flags & MSG_CTRUNC) != 0) p.extra_fds = true;  // descriptors beyond the buffer were closed by the kernel
  p.got += static_cast<size_t>(n);
  return p.got < sizeof(FdMessage);
}

}  // namespace

FdListener::FdListener() {
  random_bytes(secret_.data(), secret_.size());
  socket_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  CUSTOMAR_SYS_CHECK(socket_.valid(), "socket(AF_UNIX, SOCK_STREAM)");
  for (int attempt = 0;; ++attempt) {
    uint8_t name[16];
    random_bytes(name, sizeof(name));
    address_ = std::string(1, '\0') + "customar-fd-" + std::to_string(::getpid()) + "-" + hex(name, sizeof(name));
    socklen_t len = 0;
    const sockaddr_un a = unix_address(address_, &len);
    if (::bind(socket_.get(), reinterpret_cast<const sockaddr*>(&a), len) == 0) break;
    // A taken name is someone else's: never reuse it, draw another.
    CUSTOMAR_SYS_CHECK(errno == EADDRINUSE && attempt < 16, "bind(abstract Unix socket)");
  }
  CUSTOMAR_SYS_CHECK(::listen(socket_.get(), static_cast<int>(kMaxPending)) == 0, "listen");
}

std::vector<UniqueFd> FdListener::receive(const std::vector<bool>& expect, int rank, uint64_t tag, Deadline deadline) {
  std::vector<UniqueFd> got(expect.size());
  std::vector<Pending> pending;
  int strangers = 0;
  auto missing = [&] {
    for (size_t r = 0; r < expect.size(); ++r)
      if (expect[r] && !got[r].valid()) return static_cast<int>(r);
    return -1;
  };
  // A complete message: from a peer (it has the secret) it must be right in every way; without the secret it is a
  // stranger's and is dropped.
  auto take = [&](Pending& p) {
    if (p.got < sizeof(FdMessage) || p.msg.magic != kFdMessageMagic || p.msg.secret != secret_) {
      ++strangers;
      return;
    }
    const std::string who = "fd exchange: rank " + std::to_string(p.msg.from);
    if (p.msg.from >= expect.size() || !expect[p.msg.from])
      throw Error("fd exchange: a message claims to come from rank " + std::to_string(p.msg.from) +
                  ", which is not one this rank waits for");
    if (p.msg.to != static_cast<uint32_t>(rank) || p.msg.tag != tag)
      throw Error(who + " sent a descriptor for rank " + std::to_string(p.msg.to) + ", exchange " +
                  std::to_string(p.msg.tag) + " to rank " + std::to_string(rank) + ", which is in exchange " +
                  std::to_string(tag) + " (ranks out of step?)");
    if (!p.fd.valid() || p.extra_fds)
      throw Error(who + " sent " + std::string(p.fd.valid() ? "more than one descriptor" : "no descriptor") +
                  "; exactly one is expected");
    if (got[p.msg.from].valid()) throw Error(who + " sent two descriptors in one exchange");
    got[p.msg.from] = std::move(p.fd);
  };
  try {
    while (missing() >= 0) {
      std::vector<pollfd> fds{{socket_.get(), POLLIN, 0}};
      for (const Pending& p : pending) fds.push_back({p.conn.get(), POLLIN, 0});
      const int n = ::poll(fds.data(), fds.size(), remaining_ms(deadline));
      if (n < 0 && errno == EINTR) continue;
      CUSTOMAR_SYS_CHECK(n >= 0, "poll");
      if (n == 0 && std::chrono::steady_clock::now() >= deadline) break;
      for (size_t i = fds.size() - 1; i >= 1; --i) {
        if (fds[i].revents == 0 || read_some(pending[i - 1])) continue;
        take(pending[i - 1]);
        pending.erase(pending.begin() + static_cast<std::ptrdiff_t>(i - 1));
      }
      if ((fds[0].revents & POLLIN) == 0) continue;
      UniqueFd conn(::accept4(socket_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
      if (!conn.valid()) {
        CUSTOMAR_SYS_CHECK(errno == EAGAIN || errno == EINTR || errno == ECONNABORTED, "accept4");
        continue;
      }
      ucred cred{};
      socklen_t len = sizeof(cred);
      if (::getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != ::geteuid() ||
          pending.size() >= kMaxPending) {
        ++strangers;  // another user's process, or one connection too many: closed unread
        continue;
      }
      pending.emplace_back();
      pending.back().conn = std::move(conn);
    }
  } catch (...) {
    socket_.reset();
    throw;
  }
  socket_.reset();
  if (strangers > 0)
    CUSTOMAR_WARN("MEM", "fd exchange: ignored %d connection(s) without this exchange's secret or of another user",
                  strangers);
  const int first_missing = missing();
  if (first_missing >= 0) {
    std::string list;
    int n = 0;
    for (size_t r = 0; r < expect.size(); ++r)
      if (expect[r] && !got[r].valid()) list += (n++ == 0 ? "" : ", ") + std::to_string(r);
    throw TimeoutError("fd exchange: rank " + std::to_string(rank) + " got no descriptor from rank" +
                           (n > 1 ? "s " : " ") + list + " in time (exited, or stuck before the exchange?)",
                       first_missing);
  }
  return got;
}

void send_fd(const std::string& address, const FdMessage& message, int fd, Deadline deadline) {
  UniqueFd s(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  CUSTOMAR_SYS_CHECK(s.valid(), "socket(AF_UNIX, SOCK_STREAM)");
  socklen_t len = 0;
  const sockaddr_un a = unix_address(address, &len);
  const std::string to = "fd exchange: rank " + std::to_string(message.to);
  // A full backlog answers EAGAIN at once: try again until the deadline.
  while (::connect(s.get(), reinterpret_cast<const sockaddr*>(&a), len) != 0) {
    if (errno == ECONNREFUSED || errno == ENOENT)
      throw Error(to + " no longer listens (its process has exited or given up the exchange)");
    CUSTOMAR_SYS_CHECK(errno == EAGAIN || errno == EINTR, "connect(abstract Unix socket)");
    if (std::chrono::steady_clock::now() >= deadline)
      throw TimeoutError(to + " did not accept a connection in time", static_cast<int>(message.to));
    ::usleep(1000);
  }
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  iovec iov{const_cast<FdMessage*>(&message), sizeof(message)};
  msghdr m{};
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&m);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  while (true) {
    const ssize_t n = ::sendmsg(s.get(), &m, MSG_NOSIGNAL);
    if (n == static_cast<ssize_t>(sizeof(message))) return;
    if (n >= 0) throw Error(to + ": the message went out in part only (" + std::to_string(n) + " bytes)");
    if (errno == EPIPE || errno == ECONNRESET) throw Error(to + " closed the connection before the descriptor went");
    CUSTOMAR_SYS_CHECK(errno == EAGAIN || errno == EINTR, "sendmsg(SCM_RIGHTS)");
    if (!wait_for(s.get(), POLLOUT, deadline))
      throw TimeoutError(to + " did not take the descriptor in time", static_cast<int>(message.to));
  }
}

FdPeers publish_listener(Group& group, const FdListener* mine, const std::string& error) {
  Writer w;
  w.put_string(mine != nullptr ? ""
               : error.empty() ? "no listener"
                               : error)
      .put_string(mine != nullptr ? mine->address() : "")
      .put(mine != nullptr ? mine->secret() : FdSecret{});
  const std::vector<Bytes> all = group.all_gather(w.bytes());
  FdPeers peers;
  for (int r = 0; r < group.size(); ++r) {
    Reader rd(all[r]);
    const std::string peer_err = rd.get_string();
    peers.address.push_back(rd.get_string());
    peers.secret.push_back(rd.get<FdSecret>());
    rd.expect_end();
    if (!peer_err.empty()) throw Error("fd exchange: rank " + std::to_string(r) + " has no socket: " + peer_err);
  }
  return peers;
}

std::vector<UniqueFd> exchange_fds(Group& group, int mine, uint64_t tag, std::chrono::milliseconds timeout) {
  const int world = group.size(), rank = group.rank();
  // The socket first; its outcome travels with its address, so a rank that failed still takes part in the exchange.
  std::unique_ptr<FdListener> listener;
  std::string err;
  try {
    listener = std::make_unique<FdListener>();
  } catch (const std::exception& e) {
    err = e.what();
  }
  const FdPeers peers = publish_listener(group, listener.get(), err);
  const Deadline deadline = std::chrono::steady_clock::now() + timeout;
  // Sends never wait for a receiver to accept (the backlog holds the connection and the socket buffer the message),
  // so every rank sends first and then receives.
  for (int r = 0; r < world; ++r)
    if (r != rank)
      send_fd(peers.address[r],
              FdMessage{kFdMessageMagic, tag, static_cast<uint32_t>(rank), static_cast<uint32_t>(r), peers.secret[r]},
              mine, deadline);
  std::vector<bool> expect(world, true);
  expect[rank] = false;
  return listener->receive(expect, rank, tag, deadline);
}

}  // namespace customar::detail
