// The one place that documents every CUSTOMAR_* variable. Add a variable here (table and parse_env) and nowhere
// else; everything else reads env().
//
// Not read by the library, so not in the table: switches of the scripts in scripts/, each documented at the top of
// its script. Build: CUSTOMAR_BUILD_DIR, CUSTOMAR_JOBS (build.sh), CUSTOMAR_WHEEL_PYTHON (stage-gpu.sh). GPU runs:
// CUSTOMAR_SKIP_BENCH, CUSTOMAR_ONLY_BENCH, CUSTOMAR_BENCH_WORLDS, CUSTOMAR_ANCHORS (gpu-check.sh);
// CUSTOMAR_STRESS_CALLS, CUSTOMAR_STRESS_SECONDS, CUSTOMAR_STRESS_WORLDS, CUSTOMAR_LIFECYCLE_ITERS,
// CUSTOMAR_SKIP_SANITIZERS, CUSTOMAR_ONLY_SANITIZERS, CUSTOMAR_SANITIZER_SECONDS (gpu-stress.sh). CMake options
// (CUSTOMAR_BUILD_TESTS, ...) are cache variables. The lab (lab/) reads no variable of the library's.
#include "customar/env.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "common/text.h"
#include "customar/error.h"

namespace customar {

const std::vector<EnvVar>& env_vars() {
  static const std::vector<EnvVar> vars = {
      {"CUSTOMAR_DEBUG", "WARN", "log level: NONE, WARN, INFO or TRACE"},
      {"CUSTOMAR_DEBUG_SUBSYS", "",
       "comma-separated subsystems to log at INFO/TRACE: INIT,TOPO,CONFIG,JIT,COLL,GRAPH,MEM (empty or ALL: every "
       "one)"},
      {"CUSTOMAR_TOPO_FILE", "",
       "load the topology from this JSON file instead of detecting it (tests, machines we do not have)"},
      {"CUSTOMAR_TOPO_DUMP_FILE", "", "rank 0 writes the detected topology to this JSON file"},
      {"CUSTOMAR_CONFIG_FILE", "",
       "JSON thresholds merged over the built-in table; unset: <cache dir>/tuned-config.json if customar-perf --tune "
       "wrote one"},
      {"CUSTOMAR_DISABLE", "0", "1: use NCCL for every call"},
      {"CUSTOMAR_DISABLE_V2", "0", "1: never use the run-time compiled V2 kernels (best of V1 / NCCL)"},
      {"CUSTOMAR_ALGO", "",
       "force an algorithm where the backend can run it: oneshot_push, oneshot_pull, twoshot or nccl"},
      {"CUSTOMAR_TIMEOUT_MS", "10000",
       "a kernel waiting for a peer gives up after this many milliseconds and the call throws TimeoutError naming the "
       "peer"},
      {"CUSTOMAR_INIT_TIMEOUT_MS", "120000", "set-up exchanges between ranks give up after this many milliseconds"},
      {"CUSTOMAR_CACHE_DIR", "",
       "absolute path of the directory of the run-time compiled kernel cache and the tuned config (created 0700; "
       "used only while it is this user's and writable by no one else); unset: $HOME/.cache/customar, or no cache "
       "when HOME is unset or not absolute"},
      {"CUSTOMAR_JIT_DUMP", "",
       "existing directory to write each run-time compiled kernel's source, PTX and compile log into (a warning, "
       "once, when it cannot be written)"},
      {"CUSTOMAR_NCCL_LIBRARY", "",
       "path of the NCCL library (libnccl.so.2) to load when none is loaded in the process already; unset: from "
       "Python the nvidia-nccl-cu13 wheel's, else the system's libnccl.so.2 (customar-info shows the one taken)"},
      {"CUSTOMAR_CHECK", "0",
       "1: debug mode; every call first checks across ranks that all ranks passed the same count and dtype"},
  };
  return vars;
}

namespace {

// Every message quotes the value escaped: it may hold anything, terminal escape sequences included.
std::string setting(const char* name, const std::string& value) {
  return std::string(name) + "=" + text::printable(value);
}

bool parse_bool(const char* name, const char* value) {
  std::string v(value);
  if (v == "1" || v == "true" || v == "TRUE" || v == "yes") return true;
  if (v == "0" || v == "false" || v == "FALSE" || v == "no" || v.empty()) return false;
  throw ConfigError(setting(name, v) + ": expected 0 or 1");
}

// Plain decimal digits and nothing else: no sign, no spaces, no leading zero but in "0" itself (" 5", "+5" and "007"
// are typos or another program's notation, not numbers customar should guess at), at most 18 digits (no overflow).
bool parse_whole(const char* value, long long* out) {
  size_t n = std::strlen(value);
  if (n == 0 || n > 18 || (value[0] == '0' && n > 1)) return false;
  long long v = 0;
  for (size_t i = 0; i < n; ++i) {
    if (value[i] < '0' || value[i] > '9') return false;
    v = v * 10 + (value[i] - '0');
  }
  *out = v;
  return true;
}

int64_t parse_ms(const char* name, const char* value) {
  long long v = 0;
  if (!parse_whole(value, &v) || v <= 0 || v > 24LL * 3600 * 1000)
    throw ConfigError(setting(name, value) +
                      ": expected a whole number of milliseconds from 1 to 86400000, in decimal digits only");
  return v;
}

// The subsystems log lines are tagged with; a name outside this list would silently hide every line.
constexpr const char* kSubsystems[] = {"INIT", "TOPO", "CONFIG", "JIT", "COLL", "GRAPH", "MEM", "ALL"};

std::string parse_subsys(const char* raw) {
  std::string v(raw);
  for (size_t pos = 0; !v.empty() && pos <= v.size();) {
    size_t end = std::min(v.find(',', pos), v.size());
    std::string word = v.substr(pos, end - pos);
    bool known = false;
    for (const char* s : kSubsystems) known = known || word == s;
    if (!known)
      throw ConfigError(setting("CUSTOMAR_DEBUG_SUBSYS", v) + ": unknown subsystem " + text::quoted(word) +
                        "; expected a comma-separated list of INIT, TOPO, CONFIG, JIT, COLL, GRAPH, MEM or ALL");
    pos = end + 1;
  }
  return v;
}

// A path as given. "~" is refused: the shell expands it only at the start of an unquoted word, so a "~" that reaches
// customar was not expanded, and taking it literally makes a directory named "~" in the working directory.
// Relative paths are allowed where the file belongs to one run (it is resolved like a command-line argument), not
// where it is state shared by every process of the user (`absolute_only`): those would change with the directory a
// process happens to start in.
std::string parse_path(const char* name, const char* raw, bool absolute_only) {
  std::string v(raw);
  if (!v.empty() && v[0] == '~')
    throw ConfigError(setting(name, v) + ": \"~\" is not expanded here; give an absolute path (e.g. $HOME/...)");
  if (absolute_only && !v.empty() && v[0] != '/') throw ConfigError(setting(name, v) + ": expected an absolute path");
  return v;
}

}  // namespace

Env parse_env(const std::function<const char*(const char*)>& getenv_fn) {
  Env e;
  for (const EnvVar& var : env_vars()) {
    const char* raw = getenv_fn(var.name);
    if (raw == nullptr) continue;
    std::string name = var.name;
    if (std::string(raw) != var.default_value) e.non_default.push_back(name + "=" + raw);
    if (name == "CUSTOMAR_DEBUG") {
      std::string v(raw);
      if (v == "NONE")
        e.debug = LogLevel::kNone;
      else if (v == "WARN")
        e.debug = LogLevel::kWarn;
      else if (v == "INFO")
        e.debug = LogLevel::kInfo;
      else if (v == "TRACE")
        e.debug = LogLevel::kTrace;
      else
        throw ConfigError(setting("CUSTOMAR_DEBUG", v) + ": expected NONE, WARN, INFO or TRACE");
    } else if (name == "CUSTOMAR_DEBUG_SUBSYS") {
      e.debug_subsys = parse_subsys(raw);
    } else if (name == "CUSTOMAR_TOPO_FILE") {
      e.topo_file = parse_path(var.name, raw, false);
    } else if (name == "CUSTOMAR_TOPO_DUMP_FILE") {
      e.topo_dump_file = parse_path(var.name, raw, false);
    } else if (name == "CUSTOMAR_CONFIG_FILE") {
      e.config_file = parse_path(var.name, raw, false);
    } else if (name == "CUSTOMAR_DISABLE") {
      e.disable = parse_bool(var.name, raw);
    } else if (name == "CUSTOMAR_DISABLE_V2") {
      e.disable_v2 = parse_bool(var.name, raw);
    } else if (name == "CUSTOMAR_ALGO") {
      std::string v(raw);
      if (!v.empty() && v != "oneshot_push" && v != "oneshot_pull" && v != "twoshot" && v != "nccl")
        throw ConfigError(setting("CUSTOMAR_ALGO", v) + ": expected oneshot_push, oneshot_pull, twoshot or nccl");
      e.algo = v;
    } else if (name == "CUSTOMAR_TIMEOUT_MS") {
      e.timeout_ms = parse_ms(var.name, raw);
    } else if (name == "CUSTOMAR_INIT_TIMEOUT_MS") {
      e.init_timeout_ms = parse_ms(var.name, raw);
    } else if (name == "CUSTOMAR_CACHE_DIR") {
      e.cache_dir = parse_path(var.name, raw, true);
    } else if (name == "CUSTOMAR_JIT_DUMP") {
      e.jit_dump = parse_path(var.name, raw, false);
    } else if (name == "CUSTOMAR_NCCL_LIBRARY") {
      e.nccl_library = raw;
    } else if (name == "CUSTOMAR_CHECK") {
      e.check = parse_bool(var.name, raw);
    }
  }
  return e;
}

const Env& env() {
  // Parsed once: a later setenv() by the application does not change customar's behaviour mid-run.
  static const Env cached = parse_env([](const char* name) { return std::getenv(name); });
  return cached;
}

}  // namespace customar
