// Per (architecture family, world size) thresholds that pick the algorithm for a message size.
//
// The table is filled lazily and exactly once per process (global_config()), from every entry point that needs it,
// the capability check included, because the check reads the table's keys as "supported world sizes": read before
// anything fills it, an empty table would reject every machine.
//
// Config file (CUSTOMAR_CONFIG_FILE, written by the tuner), merged over the built-in table:
//   {
//     "entries": [
//       {"arch": "hopper", "world_size": 4, "oneshot_push_max": 393216, "oneshot_pull_max": 262144,
//        "custom_max": 16777216, "v1_oneshot_max": 524288}
//     ]
//   }
// "arch" is one of "ampere", "hopper", "blackwell", "other"; every size is a byte count (integer >= 0) or the
// string "unlimited"; fields left out keep the built-in value; "machine" (string) may tag the file.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace customar {

/// Byte sizes; kUnlimited means "no upper bound".
inline constexpr size_t kUnlimited = SIZE_MAX;

/// Thresholds of one (arch, world size). A message of `bytes`:
///   bytes <= oneshot_push_max -> one-shot push (V2),
///   else bytes <= oneshot_pull_max -> one-shot pull,
///   else bytes <= custom_max -> two-shot,
///   else NCCL (the upper crossover).
/// V1 has no push: bytes <= v1_oneshot_max -> one-shot pull, else two-shot, up to custom_max.
struct Thresholds {
  size_t oneshot_push_max = 0;
  size_t oneshot_pull_max = 0;
  size_t custom_max = 0;
  size_t v1_oneshot_max = 0;
  bool operator==(const Thresholds&) const = default;
};

/// GPU generations that get their own thresholds.
enum class ArchFamily : int { kAmpere = 0, kHopper = 1, kBlackwell = 2, kOther = 3 };

/// Maps a compute capability (major*10+minor) to its family: 80-89 Ampere/Ada, 90 Hopper, 100-109 Blackwell.
ArchFamily arch_family(int sm);
/// "ampere", "hopper", "blackwell", "other".
const char* arch_family_name(ArchFamily family);

/// The whole table. Immutable once built; safe to read from any thread.
struct Config {
  std::map<std::pair<ArchFamily, int>, Thresholds> table;
  std::string source;  ///< "built-in" or "built-in + <file>".

  /// Thresholds for (family, world size), or nullptr when the world size is not supported for that family.
  const Thresholds* find(ArchFamily family, int world_size) const;
  /// The supported world sizes for a family, ascending (the table's keys).
  std::vector<int> world_sizes(ArchFamily family) const;
};

/// The built-in table: tuned on 2x and 4x H200 where measured, SGLang's custom all-reduce V2 values elsewhere (Hopper
/// tuned on H200, Blackwell on B200), with an upper crossover to NCCL (custom all-reduce loses to NCCL above 16 MiB at
/// 4 GPUs and above 32 MiB at 2, measured on H100).
Config builtin_config();

/// Parses a config file's text and merges it over `base`. Throws ConfigError naming the field.
Config merge_config_json(const Config& base, const std::string& text, const std::string& origin);

/// Serialises a config in the file format above (every entry).
std::string config_to_json(const Config& config);

/// Fills a Config exactly once, thread-safe, on first use. global_config() is one of these; tests make their own.
class LazyConfig {
 public:
  using Loader = std::function<Config()>;
  explicit LazyConfig(Loader loader) : loader_(std::move(loader)) {}
  /// Returns the table, filling it on the first call. A loader that throws leaves it unfilled (the next call retries)
  /// and rethrows.
  const Config& get();
  /// How many times the loader has run to completion (0 or 1).
  int fill_count() const { return fill_count_; }

 private:
  Loader loader_;
  std::once_flag once_;
  Config config_;
  int fill_count_ = 0;
};

/// The process-wide table: builtin_config() merged with CUSTOMAR_CONFIG_FILE if set (a regular file of at most
/// 1 MiB, a symbolic link to one followed), else with the tuned config that customar-perf --tune wrote
/// (<cache dir>/tuned-config.json) if it is there and trusted: owned by this user, writable by no one else, not a
/// link, in a directory that is the same; an untrusted one is ignored with a warning. Filled on first use.
/// Throws ConfigError if the file is missing (CUSTOMAR_CONFIG_FILE), not a regular file, too large or malformed.
const Config& global_config();

}  // namespace customar
