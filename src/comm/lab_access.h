// The lab's way into a Communicator (lab/, built only with CUSTOMAR_BUILD_LAB): read its handle and plans, and run
// another build of the kernels behind the same seam, so that kernel variants are measured on the product's buffers,
// plans and checks. The product never calls it, and nothing in the data path tests for it.
#pragma once

#include <memory>

#include "customar/communicator.h"
#include "dispatch/plan.h"
#include "kernels/handle.h"
#include "kernels/kernels.h"

namespace customar::detail {

struct LabAccess {
  /// The device handle of a communicator with a custom backend.
  static const DeviceHandle& handle(const Communicator& comm);
  /// The plan all_reduce() would run.
  static Plan plan(const Communicator& comm, size_t count, DataType dtype);
  /// Runs `kernels` instead of the communicator's own from the next call on (every rank must do the same, with
  /// kernels of the same protocol). Throws StateError for a communicator without custom kernels.
  static void replace_kernels(Communicator& comm, std::unique_ptr<Kernels> kernels);
};

}  // namespace customar::detail
