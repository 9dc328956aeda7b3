// A group of ranks that can exchange bytes: how customar's collectives set themselves up. The data path never goes
// through a Group; it carries only the small messages of initialisation (IPC handles, topology rows, votes).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "customar/error.h"

struct ncclComm;
typedef struct ncclComm* ncclComm_t;  // NOLINT: the same declaration as nccl.h, so both headers may be included.

namespace customar {

using Bytes = std::vector<uint8_t>;

/// Ranks 0..size()-1 that exchange bytes. Implementations are not thread-safe: one thread per rank calls them, and
/// every rank calls the collectives in the same order.
class Group {
 public:
  virtual ~Group() = default;
  /// This process's rank, 0 <= rank() < size().
  virtual int rank() const = 0;
  /// Number of ranks.
  virtual int size() const = 0;
  /// Every rank contributes `mine` (any length, lengths may differ); returns all contributions in rank order.
  /// Collective. Throws TimeoutError if a rank does not arrive within CUSTOMAR_INIT_TIMEOUT_MS (the bound of every
  /// set-up exchange; the data path never goes through a Group).
  virtual std::vector<Bytes> all_gather(std::span<const uint8_t> mine) = 0;
  /// Returns when every rank has called it. Collective; throws TimeoutError like all_gather().
  virtual void barrier() = 0;
};

/// All-gathers a trivially copyable value.
template <typename T>
std::vector<T> all_gather_value(Group& group, const T& value);

/// A group over an existing NCCL communicator (one rank per GPU). Exchanges go through ncclAllGather on a private
/// stream of `device`; the communicator stays owned by the caller and must outlive this object.
std::unique_ptr<Group> make_nccl_group(ncclComm_t comm, int device);

}  // namespace customar

#include <cstring>
#include <type_traits>

namespace customar {
template <typename T>
std::vector<T> all_gather_value(Group& group, const T& value) {
  static_assert(std::is_trivially_copyable_v<T>);
  auto raw = group.all_gather(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  std::vector<T> out(raw.size());
  for (size_t i = 0; i < raw.size(); ++i) {
    if (raw[i].size() != sizeof(T)) throw Error("all_gather_value: a rank sent a value of another size");
    std::memcpy(&out[i], raw[i].data(), sizeof(T));
  }
  return out;
}
}  // namespace customar
