// Hooks for benchmarks only (never for production calls): they break the results on purpose to time one part.
#pragma once

#include "customar/communicator.h"

namespace customar::detail {

struct BenchAccess {
  /// Skips the fused copy of the input into the staging buffer, so a benchmark can time what that copy costs
  /// (the sums are then wrong). Must be set identically on every rank.
  static void set_skip_copy_in(Communicator& comm, bool on);
};

}  // namespace customar::detail
