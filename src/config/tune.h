// The tuner's decision: from measured per-algorithm times at a ladder of message sizes, the thresholds that lose the
// least against the best algorithm at every size. Pure, so it is tested without a GPU; customar-perf --tune measures
// and calls it. And the tuned config file it writes and global_config() reads.
#pragma once

#include <optional>
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
/// <cache dir>/tuned-config.json (files::user_cache_dir(): per user and machine). Empty when there is no cache
/// directory (HOME unset or not absolute and CUSTOMAR_CACHE_DIR unset): then there is no tuned config.
std::string tuned_config_path();

/// The text of the tuned config at `path`, or nothing when there is none to load: `path` empty, no file there, or a
/// file or directory that is not trusted (not this user's, writable by others, a link, not a regular file, larger
/// than 1 MiB), which is logged as a warning and otherwise ignored. The content decides what runs on every rank, so
/// only a file this user wrote is read. Throws only ConfigError from env().
std::optional<std::string> read_tuned_config(const std::string& path);

/// Writes `t` as the entry (family, world_size) of the tuned config at `path` (empty: tuned_config_path(), whose
/// directory is created 0700), keeping the file's other entries, through files::write_file_atomic() (mode 0644).
/// Returns the path written. Throws ConfigError when there is no path, when the directory or the existing file is
/// not trusted (as read_tuned_config() judges; for a named `path` the file need not be this user's) or is
/// malformed, InvalidArgument / SystemError as write_file_atomic() does. Not thread-safe against other writers of
/// the same file: the last one wins, whole.
std::string save_tuned_thresholds(const std::string& path, ArchFamily family, int world_size, const Thresholds& t);

}  // namespace customar
