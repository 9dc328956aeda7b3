// --v2-source FILE of the GPU tests: V2 communicators run kernels compiled from FILE (a planted bug,
// lab/scripts/plant-bug.sh) instead of the built-in device source, so that a test shows it catches the bug.
#pragma once

#include <cuda_runtime_api.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>

#include "comm/lab_access.h"
#include "customar/communicator.h"
#include "world.h"

namespace customar::test {

/// The text of `path`; throws when it cannot be read or is empty.
inline std::string read_v2_source(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream text;
  text << f.rdbuf();
  if (!f || text.str().empty()) throw std::runtime_error("cannot read " + path);
  return text.str();
}

/// Collective: a V2 `comm` runs kernels compiled from `source` (nothing happens for an empty source or another
/// backend). Every rank has its kernels loaded before any runs one: a load while a peer's kernel spins can wait for it.
inline void use_v2_source(Group& g, Communicator& comm, int device, const std::string& source) {
  if (source.empty() || comm.backend() != Backend::kV2) return;
  cudaDeviceProp prop{};
  TEST_CUDA(cudaGetDeviceProperties(&prop, device));
  detail::LabAccess::replace_kernels(
      comm, detail::make_v2_kernels_from_source(g.size(), prop.major * 10 + prop.minor, source));
  g.barrier();
}

}  // namespace customar::test
