// The tuner's decision: from measured per-algorithm times at a ladder of message sizes, the thresholds that lose the
// least against the best algorithm at every size. Pure, so it is tested without a GPU; customar-perf --tune measures
// and calls it.
#pragma once

#include <string>
#include <vector>

#include "customar/config.h"

namespace customar {

/// One message size's measured times in microseconds; a negative time means "not measured / cannot run".
struct SizeTiming {
  size_t bytes = 0;
  double push_us = -1;
  double pull_us = -1;
  double twoshot_us = -1;
  double nccl_us = -1;
};

/// Thresholds for the V2 ladder push <= a < pull <= b < two-shot <= c < NCCL, chosen to minimise the summed
/// relative loss sum(time(chosen) / time(best) - 1) over the measured sizes (ties go to the larger threshold, the
/// measurement being the same, so a ladder whose top size still prefers two-shot keeps no NCCL crossover). Sizes
/// must be ascending. With no push times (a V1 run) the pull/two-shot boundary also becomes v1_oneshot_max;
/// otherwise v1_oneshot_max is taken from `base`.
Thresholds tune_thresholds(const std::vector<SizeTiming>& timings, const Thresholds& base);

/// The relative loss of `t` on `timings`, as tune_thresholds() minimises it (for reports).
double threshold_loss(const std::vector<SizeTiming>& timings, const Thresholds& t);

/// The default file the tuner writes and global_config() reads when CUSTOMAR_CONFIG_FILE is unset:
/// <cache dir>/tuned-config.json (the cache dir is per user and machine; see CUSTOMAR_CACHE_DIR).
std::string tuned_config_path();

}  // namespace customar
