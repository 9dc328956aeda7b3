// Every CUSTOMAR_* environment variable, in one table (src/common/env.cpp) with its name, default and meaning.
// The environment is read once, on first use, and cached for the life of the process; non-default values are
// logged at INFO when the first communicator is built. `customar-info --env` prints the table.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace customar {

/// One documented variable.
struct EnvVar {
  const char* name;
  const char* default_value;
  const char* meaning;
};

/// The table of every variable customar reads.
const std::vector<EnvVar>& env_vars();

/// Log levels of CUSTOMAR_DEBUG.
enum class LogLevel : int { kNone = 0, kWarn = 1, kInfo = 2, kTrace = 3 };

/// The parsed environment.
struct Env {
  LogLevel debug = LogLevel::kWarn;
  std::string debug_subsys;  ///< comma-separated known subsystems or ALL; empty = all.
  std::string topo_file;     ///< file paths here may be relative (to the working directory), never "~/..."
  std::string topo_dump_file;
  std::string config_file;
  bool disable = false;
  bool disable_v2 = false;
  std::string algo;                  ///< empty = chosen by the config.
  int64_t timeout_ms = 10000;        ///< bounded waits of the data path.
  int64_t init_timeout_ms = 120000;  ///< bounded waits of set-up exchanges (a peer may be compiling kernels).
  std::string cache_dir;             ///< absolute; empty = $HOME/.cache/customar, or no cache without an absolute HOME.
  std::string jit_dump;
  bool check = false;
  std::string nccl_library;  ///< NCCL to load when none is loaded yet; empty = the wheel's (Python) or the system's.
  /// Names of variables that are set to a non-default value, for the INFO log.
  std::vector<std::string> non_default;
};

/// Parses the environment through `getenv_fn` (nullptr for an unset variable). Strict: numbers are decimal digits
/// only (no sign, space or leading zero), subsystem names must be known, paths must not start with "~" and
/// CUSTOMAR_CACHE_DIR must be absolute. Throws ConfigError for a value that is not allowed (the message names the
/// variable, quotes the value escaped, and says what it accepts). Reads no file.
Env parse_env(const std::function<const char*(const char*)>& getenv_fn);

/// This process's environment, parsed once (thread-safe) and cached. Throws ConfigError like parse_env().
const Env& env();

}  // namespace customar
