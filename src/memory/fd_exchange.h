// Passing file descriptors (the POSIX handles of VMM allocations, memory/vmm_memory.cpp) between the local ranks of a
// group. A Group carries bytes only, so each rank listens on a Unix socket of its own and its peers connect and send
// their descriptor with SCM_RIGHTS; the group carries the sockets' names and a secret per receiver.
//
// Security: a descriptor is a capability on a rank's GPU memory, so
//   - a receiver's socket lives in the abstract namespace (no file: nothing to pre-create, nothing stale after a
//     crash, gone when the socket closes) under a fresh name of 128 random bits and this process's pid; a name that is
//     taken is never reused, another is drawn;
//   - abstract sockets have no permission bits, so a receiver accepts only connections from processes of its own
//     user (SO_PEERCRED), and a message counts only if it carries the receiver's secret (128 random bits, sent through
//     the group, never through a socket): another process that finds the name (in /proc/net/unix) can neither plant a
//     descriptor nor learn anything, since receivers never send;
//   - a sender sends only to the names the group gave it, so its descriptor reaches the legitimate receiver alone;
//   - every descriptor that arrives unasked (a stranger's, a second one in a message) is closed at once, received
//     descriptors are close-on-exec, and a receiver closes its socket as soon as it has every peer's descriptor.
// Every wait is bounded: a peer that dies or never sends is reported by rank.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "customar/group.h"

namespace customar::detail {

/// A file descriptor, closed on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd() { reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  /// Gives the descriptor up without closing it.
  int release();
  /// Closes the descriptor (if any).
  void reset();

 private:
  int fd_ = -1;
};

using FdSecret = std::array<uint8_t, 16>;
using Deadline = std::chrono::steady_clock::time_point;

/// What a sender puts before its descriptor, and all it puts. Fixed size, host byte order (both ends are on one host).
struct FdMessage {
  uint64_t magic;   ///< kFdMessageMagic
  uint64_t tag;     ///< what the exchange is about (the caller's; e.g. an allocation's number), equal on both ends
  uint32_t from;    ///< the sender's rank
  uint32_t to;      ///< the receiver's rank
  FdSecret secret;  ///< the receiver's secret
};
static_assert(sizeof(FdMessage) == 40, "FdMessage has no padding");
inline constexpr uint64_t kFdMessageMagic = 0x31646666'72617563ull;  // "cuarffd1"

/// The receiving end of one exchange: a listening socket under a fresh abstract name, and its secret.
class FdListener {
 public:
  /// Binds and listens. Throws SystemError naming the call (no socket, no randomness).
  FdListener();
  /// The address: the abstract name with its leading NUL, as it goes into sockaddr_un::sun_path.
  const std::string& address() const { return address_; }
  const FdSecret& secret() const { return secret_; }
  /// Waits until every rank r with expect[r] has sent one descriptor with (tag, to == rank, this secret), and returns
  /// them by rank (invalid where none was expected). Connections of another user, and messages without the secret
  /// (strangers), are closed and ignored. Throws Error naming the rank for a message with the secret but wrong in any
  /// other way (tag, ranks, not exactly one descriptor, a second message from a rank), TimeoutError naming the first
  /// rank still missing at `deadline`, SystemError for a failed call. Closes the socket before it returns or throws.
  std::vector<UniqueFd> receive(const std::vector<bool>& expect, int rank, uint64_t tag, Deadline deadline);

 private:
  UniqueFd socket_;
  std::string address_;
  FdSecret secret_{};
};

/// Connects to `address` and sends `message` with `fd` attached. Throws Error when nobody listens there (the
/// receiver has exited), TimeoutError at `deadline`, SystemError for a failed call.
void send_fd(const std::string& address, const FdMessage& message, int fd, Deadline deadline);

/// Every rank's socket address and secret, by rank.
struct FdPeers {
  std::vector<std::string> address;
  std::vector<FdSecret> secret;
};

/// Collective: every rank's listener address and secret through the group (`mine` nullptr, with `error` saying why,
/// on a rank whose listener could not be made: every rank then throws Error naming it).
FdPeers publish_listener(Group& group, const FdListener* mine, const std::string& error);

/// Collective: every rank sends `mine` (which stays open; the caller closes it) to every peer, and gets every peer's
/// descriptor back by rank (invalid at its own). The group carries each rank's socket address and secret first. Throws
/// the errors of FdListener and send_fd() on the rank that met them; the caller agrees on the outcome across ranks
/// (group/agree.h), as a peer may be left waiting until `timeout`.
std::vector<UniqueFd> exchange_fds(Group& group, int mine, uint64_t tag, std::chrono::milliseconds timeout);

}  // namespace customar::detail
