// Finds NCCL at run time. customar links no NCCL: an application (PyTorch, JAX, CuPy, a C++ engine) brings its own,
// and two copies under one soname in one process break each other. The order, first usable wins:
//   1. an NCCL already loaded in this process: the application's, so that customar and the application share one
//      NCCL and a communicator the application made (CommOptions::nccl_comm, make_nccl_group) is driven by the
//      library that made it;
//   2. CUSTOMAR_NCCL_LIBRARY;
//   3. from Python, the nvidia-nccl-cu13 wheel's library, whose path the Python package hands over at import;
//   4. the system's libnccl.so.2 (the dynamic linker's search path, then libcustomar's RUNPATH: the CUDA toolkit).
// A candidate is usable when it loads, reports at least kMinNcclVersion and exports every required entry point.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "nccl/nccl_api.h"

namespace customar::detail {

/// Which rule of the order above proposed a candidate.
enum class NcclRule { kLoaded, kEnv, kPython, kSystem };

/// "already loaded in this process", "CUSTOMAR_NCCL_LIBRARY", "the nvidia-nccl-cu13 wheel", "the system's
/// libnccl.so.2".
const char* nccl_rule_text(NcclRule rule);

/// A library to try: a file path, or a soname for the dynamic linker to search.
struct NcclCandidate {
  NcclRule rule;
  std::string path;
};

/// The outcome of a resolution: the library taken, or why there is none.
struct NcclLibrary {
  bool usable = false;
  NcclApi api;                        ///< every required entry point set when usable
  NcclRule rule = NcclRule::kSystem;  ///< the rule that proposed it, when usable
  /// One line per rule that proposed nothing and per candidate that failed (path, rule and why), in order.
  std::vector<std::string> notes;

  /// "NCCL 2.28.9 at /path (already loaded in this process)", then the notes; or error() when not usable.
  std::string describe() const;
  /// "no usable NCCL library (customar needs NCCL >= 2.10.3 at run time): tried ...; ..." with every note and what
  /// to do about it.
  std::string error() const;
};

/// The candidates in the order above. Loaded NCCLs are found now (see the implementation for how); an empty
/// `env_path` means CUSTOMAR_NCCL_LIBRARY is unset; `python_path` is nullopt outside Python and "" when the Python
/// package found no wheel. Rules that propose nothing add a line to `notes`.
std::vector<NcclCandidate> nccl_candidates(const std::string& env_path, const std::optional<std::string>& python_path,
                                           std::vector<std::string>* notes);

/// Tries the candidates in order and takes the first usable one; the ones that fail are unloaded again (so that a
/// rejected library does not shadow a later candidate under the same soname) and noted. `notes` start the result's
/// notes. Never throws.
NcclLibrary resolve_nccl(const std::vector<NcclCandidate>& candidates, std::vector<std::string> notes = {});

/// This process's NCCL: resolve_nccl(nccl_candidates(CUSTOMAR_NCCL_LIBRARY, the Python package's path)). The first
/// usable result is kept for the life of the process; a failed resolution is not kept, so a later call finds a
/// library loaded meanwhile. Thread-safe. Throws ConfigError only for a bad CUSTOMAR_* variable.
NcclLibrary nccl_library();

/// The API of this process's NCCL (nccl_library()), or NcclError with NcclLibrary::error()'s text.
const NcclApi& nccl_api();

/// The API of this process's NCCL if it has been resolved, else nullptr. Loads nothing, never throws.
const NcclApi* resolved_nccl_api();

/// Records the nvidia-nccl-cu13 wheel's libnccl.so.2 that the Python package found ("" when that wheel is not
/// installed). Called once by the package at import, before any communicator exists; after the first usable
/// resolution it changes nothing.
void set_python_nccl_library(const std::string& path);

}  // namespace customar::detail
