// Topology detection: this rank's GPU facts, its row of the link matrices, then an all-gather and an AND across
// ranks so that every rank holds the identical topology and therefore takes the identical path.
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
#include "jit/nvrtc.h"
#include "topology/nvml.h"

namespace customar {

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

Topology detect_group_topology(Group& group, int device) {
  const Env& e = env();
  Topology t;
  if (!e.topo_file.empty()) {
    Topology file = load_topology_file(e.topo_file);
    if (file.world_size() < group.size())
      throw ConfigError("CUSTOMAR_TOPO_FILE=" + e.topo_file + " describes " + std::to_string(file.world_size()) +
                        " GPUs but the group has " + std::to_string(group.size()) + " ranks");
    t = file.prefix(group.size());
    if (!t.nvrtc.has_value()) t.nvrtc = nvrtc_available();
    CUSTOMAR_INFO("TOPO", "topology of %d ranks loaded from %s", group.size(), e.topo_file.c_str());
  } else {
    detail::Writer w;
    GpuInfo mine = gpu_info(device, host_identity());
    w.put_string(mine.host).put_string(mine.pci_bus_id).put_string(mine.uuid).put_string(mine.name);
    w.put<int32_t>(mine.sm).put<int32_t>(mine.sm_count).put<uint8_t>(nvrtc_available() ? 1 : 0);
    std::vector<Bytes> all = group.all_gather(w.bytes());
    std::vector<GpuInfo> gpus;
    bool nvrtc_all = true;
    for (const Bytes& b : all) {
      detail::Reader r(b);
      GpuInfo g;
      g.host = r.get_string();
      g.pci_bus_id = r.get_string();
      g.uuid = r.get_string();
      g.name = r.get_string();
      g.sm = r.get<int32_t>();
      g.sm_count = r.get<int32_t>();
      nvrtc_all = nvrtc_all && r.get<uint8_t>() != 0;
      gpus.push_back(std::move(g));
    }
    t = empty_links(std::move(gpus));
    t.nvrtc = nvrtc_all;
    int me = group.rank();
    fill_row(t, me, device);
    if (!detail::nvml_ok())
      CUSTOMAR_WARN("TOPO", "NVML unavailable (%s): NVLink reported absent", detail::nvml_error().c_str());
    // Exchange rows; rank i's row is authoritative for (i, *), then AND with the transpose.
    Bytes row;
    for (int j = 0; j < t.world_size(); ++j)
      row.push_back(static_cast<uint8_t>((t.nvlink[me][j] ? 1 : 0) | (t.p2p[me][j] ? 2 : 0)));
    std::vector<Bytes> rows = group.all_gather(row);
    for (int i = 0; i < t.world_size(); ++i) {
      if (static_cast<int>(rows[i].size()) != t.world_size())
        throw Error("topology: a rank sent a row of the wrong length");
      for (int j = 0; j < t.world_size(); ++j) {
        t.nvlink[i][j] = (rows[i][j] & 1) != 0;
        t.p2p[i][j] = (rows[i][j] & 2) != 0;
      }
    }
    combine_links(t);
  }
  if (!e.topo_dump_file.empty() && group.rank() == 0) {
    save_topology_file(t, e.topo_dump_file);
    CUSTOMAR_INFO("TOPO", "topology written to %s", e.topo_dump_file.c_str());
  }
  return t;
}

}  // namespace customar
