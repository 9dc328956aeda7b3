// Topology detection: this rank's GPU facts, its row of the link matrices, then an all-gather and an AND across
// ranks so that every rank holds the identical topology and therefore takes the identical path.
#include "topology/detect.h"

#include <cuda_runtime_api.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <mutex>

#include "common/check.h"
#include "common/log.h"
#include "common/serialize.h"
#include "customar/env.h"
#include "customar/group.h"
#include "customar/topology.h"
#include "group/agree.h"
#include "jit/nvrtc.h"
#include "topology/nvml.h"
#include "virtual/virtual_group.h"

namespace customar {

using detail::nvml_error;
using detail::nvml_ok;
using detail::Reader;
using detail::Writer;

namespace {

std::string host_identity() {
  char host[256] = {0};
  gethostname(host, sizeof(host) - 1);
  // The boot id separates two machines (or VMs) that happen to share a hostname; containers of one host share it.
  std::string boot;
  std::ifstream f("/proc/sys/kernel/random/boot_id");
  std::getline(f, boot);
  return boot.empty() ? std::string(host) : std::string(host) + "/" + boot.substr(0, 8);
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string uuid_text(const cudaUUID_t& u) {
  static const char* hex = "0123456789abcdef";
  std::string s = "GPU-";
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    auto b = static_cast<unsigned char>(u.bytes[i]);
    s += hex[b >> 4];
    s += hex[b & 15];
  }
  return s;
}

GpuInfo gpu_info(int device, const std::string& host) {
  cudaDeviceProp prop{};
  CUSTOMAR_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  char bus[32] = {0};
  CUSTOMAR_CUDA_CHECK(cudaDeviceGetPCIBusId(bus, sizeof(bus), device));
  GpuInfo g;
  g.host = host;
  g.pci_bus_id = lower(bus);
  g.uuid = uuid_text(prop.uuid);
  g.name = prop.name;
  g.sm = prop.major * 10 + prop.minor;
  g.sm_count = prop.multiProcessorCount;
  return g;
}

// The CUDA ordinal of a PCI bus id in this process, or -1 when that GPU is not visible here.
int visible_ordinal(const std::string& bus) {
  int dev = -1;
  if (cudaDeviceGetByPCIBusId(&dev, bus.c_str()) != cudaSuccess) {
    (void)cudaGetLastError();  // not visible: clear the sticky-free error so later calls are not confused
    return -1;
  }
  return dev;
}

// Row `me` of the link matrices: from my GPU to each other GPU, by PCI bus id, never by ordinal.
void fill_row(Topology& t, int me, int my_device) {
  int n = t.world_size();
  for (int j = 0; j < n; ++j) {
    if (j == me) continue;
    const std::string& peer_bus = t.gpus[j].pci_bus_id;
    if (t.gpus[j].host != t.gpus[me].host) continue;  // no links across hosts
    if (peer_bus == t.gpus[me].pci_bus_id) {
      // Two ranks on one GPU: they could share memory, but the kernels assume distinct devices. Leave unlinked.
      CUSTOMAR_WARN("TOPO", "ranks %d and %d drive the same GPU %s", me, j, peer_bus.c_str());
      continue;
    }
    detail::NvmlPair pair = detail::nvml_pair(t.gpus[me].pci_bus_id, peer_bus);
    t.nvlink[me][j] = pair.nvlink;
    int peer_dev = visible_ordinal(peer_bus);
    if (peer_dev >= 0) {
      int can = 0;
      CUSTOMAR_CUDA_CHECK(cudaDeviceCanAccessPeer(&can, my_device, peer_dev));
      t.p2p[me][j] = can != 0;
    } else {
      // The peer is hidden from this process (CUDA_VISIBLE_DEVICES); NVML still sees every GPU of the host.
      t.p2p[me][j] = pair.p2p;
    }
  }
}

Topology empty_links(std::vector<GpuInfo> gpus) {
  Topology t;
  size_t n = gpus.size();
  t.gpus = std::move(gpus);
  t.nvlink.assign(n, std::vector<bool>(n, false));
  t.p2p.assign(n, std::vector<bool>(n, false));
  return t;
}

}  // namespace

bool nvml_available() { return detail::nvml_ok(); }

bool nvrtc_available() { return detail::nvrtc_loaded(); }

Topology detect_local_machine() {
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    (void)cudaGetLastError();
    return Topology{};
  }
  std::string host = host_identity();
  std::vector<GpuInfo> gpus;
  for (int d = 0; d < count; ++d) gpus.push_back(gpu_info(d, host));
  Topology t = empty_links(std::move(gpus));
  for (int d = 0; d < count; ++d) fill_row(t, d, d);
  combine_links(t);
  t.nvrtc = nvrtc_available();
  return t;
}

namespace detail {

namespace {

Topology detect_or_load(Group& group, int device, const std::string& topo_file) {
  // Every rank makes the same two exchanges whatever happens locally: a rank that failed, or that reads a topology
  // file while its peers detect, reports it inside the exchange instead of skipping it, so no message is ever read
  // as the answer to another. Errors and disagreements then throw on every rank alike.
  Topology file;
  GpuInfo mine;
  std::string err = local_error([&] {
    if (!topo_file.empty()) {
      file = load_topology_file(topo_file);
      if (file.world_size() < group.size())
        throw ConfigError("CUSTOMAR_TOPO_FILE=" + topo_file + " describes " + std::to_string(file.world_size()) +
                          " GPUs but the group has " + std::to_string(group.size()) + " ranks");
      file = file.prefix(group.size());
    } else {
      mine = gpu_info(device, host_identity());
    }
  });
  Writer w;
  w.put_string(err).put<uint8_t>(topo_file.empty() ? 0 : 1);
  if (topo_file.empty()) {
    w.put_string(mine.host).put_string(mine.pci_bus_id).put_string(mine.uuid).put_string(mine.name);
    w.put<int32_t>(mine.sm).put<int32_t>(mine.sm_count).put<uint8_t>(nvrtc_available() ? 1 : 0);
  } else {
    w.put_string(err.empty() ? topology_to_json(file) : std::string());
  }
  std::vector<Bytes> all = group.all_gather(w.bytes());
  std::vector<std::string> file_json(all.size());
  std::vector<std::string> errors(all.size());
  std::vector<bool> uses_file(all.size(), false);
  std::vector<GpuInfo> gpus;
  bool nvrtc_all = true;
  for (size_t r = 0; r < all.size(); ++r) {
    Reader rd(all[r]);
    errors[r] = rd.get_string();
    uses_file[r] = rd.get<uint8_t>() != 0;
    if (uses_file[r]) {
      file_json[r] = rd.get_string();
      continue;
    }
    GpuInfo g;
    g.host = rd.get_string();
    g.pci_bus_id = rd.get_string();
    g.uuid = rd.get_string();
    g.name = rd.get_string();
    g.sm = rd.get<int32_t>();
    g.sm_count = rd.get<int32_t>();
    nvrtc_all = nvrtc_all && rd.get<uint8_t>() != 0;
    gpus.push_back(std::move(g));
  }
  // All ranks must read the same machine: one that detects while another reads a file, or two that read different
  // files, would build different backends (or kernels of different grid sizes) and wait for each other forever.
  for (size_t r = 1; r < all.size(); ++r) {
    if (uses_file[r] != uses_file[0])
      throw ConfigError("CUSTOMAR_TOPO_FILE differs between ranks: rank " + std::to_string(r) +
                        (uses_file[r] ? " reads a topology file" : " detects the machine") + " while rank 0 " +
                        (uses_file[0] ? "reads one" : "detects it") +
                        "; set the same CUSTOMAR_TOPO_FILE (or none) on every rank");
  }
  for (size_t r = 0; r < all.size(); ++r) {
    if (!errors[r].empty())
      throw ConfigError("topology: rank " + std::to_string(r) + " could not describe its GPU: " + errors[r]);
  }
  if (uses_file[0]) {
    for (size_t r = 1; r < all.size(); ++r) {
      if (file_json[r] != file_json[0])
        throw ConfigError("CUSTOMAR_TOPO_FILE differs between ranks: rank " + std::to_string(r) +
                          " reads another topology than rank 0; every rank must read the same one");
    }
    // Every rank's file is now known to equal this rank's own.
    if (!file.nvrtc.has_value()) file.nvrtc = nvrtc_available();
    CUSTOMAR_INFO("TOPO", "topology of %d ranks loaded from %s", group.size(), topo_file.c_str());
    return file;
  }

  Topology t = empty_links(std::move(gpus));
  t.nvrtc = nvrtc_all;
  const int me = group.rank();
  err = local_error([&] { fill_row(t, me, device); });
  if (err.empty() && !nvml_ok())
    CUSTOMAR_WARN("TOPO", "NVML unavailable (%s): NVLink reported absent", nvml_error().c_str());
  // Exchange rows; rank i's row is authoritative for (i, *), then AND with the transpose.
  Writer rw;
  rw.put_string(err);
  for (int j = 0; j < t.world_size(); ++j)
    rw.put<uint8_t>(static_cast<uint8_t>((t.nvlink[me][j] ? 1 : 0) | (t.p2p[me][j] ? 2 : 0)));
  std::vector<Bytes> rows = group.all_gather(rw.bytes());
  for (int i = 0; i < t.world_size(); ++i) {
    Reader rd(rows[i]);
    std::string peer_err = rd.get_string();
    if (!peer_err.empty())
      throw ConfigError("topology: rank " + std::to_string(i) + " could not probe its links: " + peer_err);
    for (int j = 0; j < t.world_size(); ++j) {
      auto bits = rd.get<uint8_t>();
      t.nvlink[i][j] = (bits & 1) != 0;
      t.p2p[i][j] = (bits & 2) != 0;
    }
  }
  combine_links(t);
  return t;
}

// A virtual world stands in for a machine of its size with NVLink between every pair (the one that exercises every
// custom path); its ranks' GPU is the one device. No exchange: every rank is a thread of this process.
Topology virtual_machine(Group& group, int device) {
  std::vector<GpuInfo> gpus(group.size(), gpu_info(device, host_identity()));
  Topology t = empty_links(std::move(gpus));
  for (int i = 0; i < t.world_size(); ++i)
    for (int j = 0; j < t.world_size(); ++j) t.nvlink[i][j] = t.p2p[i][j] = i != j;
  t.nvrtc = nvrtc_available();
  return t;
}

}  // namespace

Topology detect_group_topology_from(Group& group, int device, const std::string& topo_file) {
  const VirtualGroup* v = as_virtual(group);
  // The world's device, not the one passed in: every rank of a virtual world drives it (a bad device was voted on).
  Topology t = v != nullptr && topo_file.empty() ? virtual_machine(group, v->device())
                                                 : detect_or_load(group, device, topo_file);
  if (v != nullptr) {
    // Each rank's share of the one GPU is what its kernels may use: the grids then let every rank be resident.
    t.virtual_ranks = true;
    for (GpuInfo& g : t.gpus) g.sm_count = std::min(g.sm_count, v->sm_share());
  }
  return t;
}

}  // namespace detail

Topology detect_group_topology(Group& group, int device) {
  const Env& e = env();
  Topology t = detail::detect_group_topology_from(group, device, e.topo_file);
  if (!e.topo_dump_file.empty() && group.rank() == 0) {
    save_topology_file(t, e.topo_dump_file);
    CUSTOMAR_INFO("TOPO", "topology written to %s", e.topo_dump_file.c_str());
  }
  return t;
}

}  // namespace customar
