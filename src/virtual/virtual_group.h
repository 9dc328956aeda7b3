// The group of a virtual world (include/customar/virtual.h): N threads of one process on one GPU. Exchanges go
// through memory the threads share; every wait is bounded by CUSTOMAR_INIT_TIMEOUT_MS and ends early, naming the
// rank, when a rank's thread has finished without arriving.
#pragma once

#include <cuda_runtime_api.h>

#include <memory>
#include <string>

#include "customar/group.h"

namespace customar::detail {

struct VirtualWorld;  // virtual_group.cpp

class VirtualGroup final : public Group {
 public:
  VirtualGroup(std::shared_ptr<VirtualWorld> world, int rank);
  int rank() const override { return rank_; }
  int size() const override;
  std::vector<Bytes> all_gather(std::span<const uint8_t> mine) override;
  void barrier() override;

  int device() const;
  /// This rank's stream (green context or plain), owned by the world.
  cudaStream_t stream() const;
  /// Blocks one kernel of this rank may use so that every rank's kernels are resident at once: the SMs of its green
  /// context, or with capped grids the SMs divided by twice the rank count (a kernel and its early-launched
  /// successor under programmatic dependent launch may both be resident, for every rank).
  int sm_share() const;
  /// True when each rank runs in a green context of its own SMs.
  bool green() const;
  const std::string& partition() const;
  /// Keeps `object` alive until every rank of the world has finished and the device is idle. For device memory a
  /// rank gives up on after a peer failed: a late peer's kernel may still touch it, and in one shared context a
  /// freed address would take every rank down.
  void keep_until_end(std::shared_ptr<void> object) const;

 private:
  std::shared_ptr<VirtualWorld> world_;
  int rank_;
};

/// The virtual group behind `group`, or nullptr for any other group.
const VirtualGroup* as_virtual(const Group& group);

}  // namespace customar::detail
