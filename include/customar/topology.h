// What the machine can do: one entry per rank's GPU, NVLink and peer access between every pair.
//
// The file format (CUSTOMAR_TOPO_FILE, CUSTOMAR_TOPO_DUMP_FILE, `customar-info --topo`) is an interface:
//   {
//     "gpus":   [ {"host": "node0", "pci_bus_id": "0000:18:00.0", "name": "NVIDIA H100 80GB HBM3",
//                  "sm": 90, "sm_count": 132}, ... ],     one entry per rank, in rank order
//     "nvlink": [[false, true], [true, false]],          NVLink between rank i and rank j
//     "p2p":    [[false, true], [true, false]],          peer access works between i and j
//     "nvrtc":  true,                                     optional; default: detected on this machine
//     "virtual": true                                     optional; the ranks are threads on one GPU (virtual.h)
//   }
// "uuid" is accepted and written as an optional field of a GPU entry. Every other key is an error.
#pragma once

#include <optional>
#include <string>
#include <vector>

namespace customar {

class Group;

/// One rank's GPU.
struct GpuInfo {
  std::string host;        ///< host identity (hostname plus boot id when detected); ranks on one host share it.
  std::string pci_bus_id;  ///< "dddd:bb:dd.f", lower-case hex, the key that matches CUDA and NVML devices.
  std::string uuid;        ///< "GPU-..." where known, else empty.
  std::string name;        ///< marketing name, e.g. "NVIDIA H100 80GB HBM3".
  int sm = 0;              ///< compute capability as major*10+minor, e.g. 90.
  int sm_count = 0;        ///< number of streaming multiprocessors.

  bool operator==(const GpuInfo&) const = default;
};

/// The GPUs of a group of ranks and the links between them. Matrices are world_size x world_size and symmetric
/// after combine(); the diagonal is ignored.
struct Topology {
  std::vector<GpuInfo> gpus;
  std::vector<std::vector<bool>> nvlink;
  std::vector<std::vector<bool>> p2p;
  std::optional<bool> nvrtc;  ///< NVRTC loadable on every rank; unset means "detect on this machine".
  /// The ranks are threads of one process on one GPU (include/customar/virtual.h): the links describe the machine
  /// they stand in for, and sm_count each rank's share of the one GPU.
  bool virtual_ranks = false;

  int world_size() const { return static_cast<int>(gpus.size()); }
  bool single_host() const;  ///< every GPU reports the same host.
  bool all_nvlink() const;   ///< NVLink between every pair i != j.
  bool all_p2p() const;      ///< peer access between every pair i != j.

  /// The first `n` ranks' sub-topology. Throws InvalidArgument if n > world_size().
  Topology prefix(int n) const;

  bool operator==(const Topology&) const = default;
};

/// Serialises to the file format above (two-space indented JSON).
std::string topology_to_json(const Topology& topo);

/// Parses the file format above. Throws ConfigError naming the field and what was expected.
Topology topology_from_json(const std::string& text);

/// Reads and parses a topology file: a regular file (a symbolic link to one is followed) of at most 1 MiB, opened
/// without blocking, so a FIFO, device or directory is refused at once. Throws ConfigError naming the file and what
/// was wrong (missing, "is a directory", too large, the field that does not parse).
Topology load_topology_file(const std::string& path);

/// Writes topology_to_json() to `path` atomically: into a new temporary file in the same directory (mode 0644 less
/// the umask), then renamed over `path`. Throws InvalidArgument when something other than a regular file is at
/// `path` (a symbolic link, device, FIFO, directory: never written through or replaced) and SystemError when a
/// system call fails; no temporary file is left behind either way.
void save_topology_file(const Topology& topo, const std::string& path);

/// Detects every CUDA device visible to this process as if each were one rank, in CUDA ordinal order. Needs no
/// group: customar-info uses it. Returns an empty topology (world size 0) when no GPU or driver is present.
Topology detect_local_machine();

/// Detects the topology of a group in which this process drives `device` (a CUDA ordinal). Collective: every rank
/// of `group` must call it. Each rank measures its own row (NVLink and peer access from its GPU to every other,
/// through NVML by PCI bus id and CUDA where the peer is visible); rows are all-gathered and combined with a logical
/// AND so every rank returns the identical result. Honours CUSTOMAR_TOPO_FILE (load instead of detect; the first
/// world-size entries are used) and CUSTOMAR_TOPO_DUMP_FILE (rank 0 writes what was found).
Topology detect_group_topology(Group& group, int device);

/// An embedded example machine (8x H100 SXM, NVLink through NVSwitch), shown by customar-info without GPUs.
Topology example_topology();

/// Symmetrises the matrices: link (i,j) holds only if both ranks saw it. Throws ConfigError on shape mismatch.
void combine_links(Topology& topo);

/// True when NVRTC can be dlopen'ed in this process (cached).
bool nvrtc_available();

/// True when NVML can be dlopen'ed and initialised in this process (cached).
bool nvml_available();

}  // namespace customar
