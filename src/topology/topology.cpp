// Topology value helpers and the file format (see include/customar/topology.h).
#include "customar/topology.h"

#include <sstream>

#include "common/files.h"
#include "common/json.h"
#include "common/text.h"
#include "customar/error.h"
#include "customar/types.h"

namespace customar {

bool Topology::single_host() const {
  for (const auto& g : gpus)
    if (g.host != gpus.front().host) return false;
  return true;
}

static bool all_pairs(const std::vector<std::vector<bool>>& m, int n) {
  for (int i = 0; i < n; ++i)
    for (int j = 0; j < n; ++j)
      if (i != j && !m[i][j]) return false;
  return true;
}

bool Topology::all_nvlink() const { return all_pairs(nvlink, world_size()); }
bool Topology::all_p2p() const { return all_pairs(p2p, world_size()); }

Topology Topology::prefix(int n) const {
  if (n < 0 || n > world_size())
    throw InvalidArgument("Topology::prefix(" + std::to_string(n) + "): the topology has only " +
                          std::to_string(world_size()) + " GPUs");
  Topology t;
  t.gpus.assign(gpus.begin(), gpus.begin() + n);
  t.nvlink.resize(n);
  t.p2p.resize(n);
  for (int i = 0; i < n; ++i) {
    t.nvlink[i].assign(nvlink[i].begin(), nvlink[i].begin() + n);
    t.p2p[i].assign(p2p[i].begin(), p2p[i].begin() + n);
  }
  t.nvrtc = nvrtc;
  t.virtual_ranks = virtual_ranks;
  return t;
}

void combine_links(Topology& topo) {
  int n = topo.world_size();
  for (auto* m : {&topo.nvlink, &topo.p2p}) {
    if (static_cast<int>(m->size()) != n) throw ConfigError("topology: link matrix has the wrong number of rows");
    for (auto& row : *m)
      if (static_cast<int>(row.size()) != n) throw ConfigError("topology: link matrix row has the wrong length");
    for (int i = 0; i < n; ++i) {
      for (int j = i + 1; j < n; ++j) {
        bool both = (*m)[i][j] && (*m)[j][i];
        (*m)[i][j] = (*m)[j][i] = both;
      }
    }
  }
}

static std::string matrix_json(const std::vector<std::vector<bool>>& m) {
  std::string out = "[";
  for (size_t i = 0; i < m.size(); ++i) {
    out += i ? ", [" : "[";
    for (size_t j = 0; j < m[i].size(); ++j) out += std::string(j ? ", " : "") + (m[i][j] ? "true" : "false");
    out += "]";
  }
  return out + "]";
}

std::string topology_to_json(const Topology& topo) {
  std::ostringstream o;
  o << "{\n  \"gpus\": [";
  for (size_t i = 0; i < topo.gpus.size(); ++i) {
    const GpuInfo& g = topo.gpus[i];
    o << (i ? ",\n" : "\n") << "    {\"host\": " << json::quote(g.host)
      << ", \"pci_bus_id\": " << json::quote(g.pci_bus_id);
    if (!g.uuid.empty()) o << ", \"uuid\": " << json::quote(g.uuid);
    o << ", \"name\": " << json::quote(g.name) << ", \"sm\": " << g.sm << ", \"sm_count\": " << g.sm_count << "}";
  }
  o << "\n  ],\n  \"nvlink\": " << matrix_json(topo.nvlink) << ",\n  \"p2p\": " << matrix_json(topo.p2p);
  if (topo.nvrtc.has_value()) o << ",\n  \"nvrtc\": " << (*topo.nvrtc ? "true" : "false");
  if (topo.virtual_ranks) o << ",\n  \"virtual\": true";
  o << "\n}\n";
  return o.str();
}

namespace {

// Limits of a topology file: world sizes beyond one node's GPUs are a typo, not a machine.
constexpr size_t kMaxGpus = 64;
constexpr size_t kMaxStringBytes = 256;

[[noreturn]] void bad(const std::string& field, const std::string& what) {
  throw ConfigError("topology: field " + text::quoted(field) + ": " + what);
}

std::string get_string(const json::Value& v, const std::string& field) {
  if (!v.is_string()) bad(field, std::string("expected a string, got ") + v.type_name());
  if (v.string().size() > kMaxStringBytes) bad(field, "string longer than 256 bytes");
  return v.string();
}

int get_int(const json::Value& v, const std::string& field, int lo, int hi) {
  if (!v.is_integer) bad(field, std::string("expected an integer, got ") + v.type_name());
  if (v.integer < lo || v.integer > hi)
    bad(field, "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", got " +
                   std::to_string(v.integer));
  return static_cast<int>(v.integer);
}

std::vector<std::vector<bool>> get_matrix(const json::Value& v, const std::string& field, size_t n) {
  if (!v.is_array()) bad(field, std::string("expected an array of arrays of booleans, got ") + v.type_name());
  if (v.array().size() != n)
    bad(field, "expected " + std::to_string(n) + " rows (one per GPU), got " + std::to_string(v.array().size()));
  std::vector<std::vector<bool>> m(n, std::vector<bool>(n, false));
  for (size_t i = 0; i < n; ++i) {
    const json::Value& row = v.array()[i];
    std::string rf = field + "[" + std::to_string(i) + "]";
    if (!row.is_array()) bad(rf, std::string("expected an array of booleans, got ") + row.type_name());
    if (row.array().size() != n)
      bad(rf, "expected " + std::to_string(n) + " entries, got " + std::to_string(row.array().size()));
    for (size_t j = 0; j < n; ++j) {
      const json::Value& cell = row.array()[j];
      if (!cell.is_bool())
        bad(rf + "[" + std::to_string(j) + "]", std::string("expected true or false, got ") + cell.type_name());
      m[i][j] = cell.boolean();
    }
  }
  return m;
}

}  // namespace

Topology topology_from_json(const std::string& text) {
  json::Value root = json::parse(text, "topology");
  if (!root.is_object()) bad("(root)", std::string("expected an object, got ") + root.type_name());
  const json::Value* gpus = nullptr;
  const json::Value* nvlink = nullptr;
  const json::Value* p2p = nullptr;
  const json::Value* nvrtc = nullptr;
  const json::Value* virt = nullptr;
  for (const auto& [key, val] : root.object()) {
    if (key == "gpus")
      gpus = &val;
    else if (key == "nvlink")
      nvlink = &val;
    else if (key == "p2p")
      p2p = &val;
    else if (key == "nvrtc")
      nvrtc = &val;
    else if (key == "virtual")
      virt = &val;
    else
      bad(key, "unknown field; allowed: gpus, nvlink, p2p, nvrtc, virtual");
  }
  if (gpus == nullptr) bad("gpus", "missing");
  if (nvlink == nullptr) bad("nvlink", "missing");
  if (p2p == nullptr) bad("p2p", "missing");
  if (!gpus->is_array()) bad("gpus", std::string("expected an array of objects, got ") + gpus->type_name());
  size_t n = gpus->array().size();
  if (n == 0) bad("gpus", "expected at least one GPU");
  if (n > kMaxGpus) bad("gpus", "more than 64 GPUs");

  Topology topo;
  for (size_t i = 0; i < n; ++i) {
    const json::Value& g = gpus->array()[i];
    std::string gf = "gpus[" + std::to_string(i) + "]";
    if (!g.is_object()) bad(gf, std::string("expected an object, got ") + g.type_name());
    GpuInfo info;
    bool has_host = false, has_pci = false, has_name = false, has_sm = false, has_count = false;
    for (const auto& [key, val] : g.object()) {
      std::string f = gf + "." + key;
      if (key == "host")
        info.host = get_string(val, f), has_host = true;
      else if (key == "pci_bus_id")
        info.pci_bus_id = get_string(val, f), has_pci = true;
      else if (key == "uuid")
        info.uuid = get_string(val, f);
      else if (key == "name")
        info.name = get_string(val, f), has_name = true;
      else if (key == "sm")
        info.sm = get_int(val, f, 10, 1000), has_sm = true;
      else if (key == "sm_count")
        info.sm_count = get_int(val, f, 1, 100000), has_count = true;
      else
        bad(f, "unknown field; allowed: host, pci_bus_id, uuid, name, sm, sm_count");
    }
    if (!has_host) bad(gf + ".host", "missing");
    if (!has_pci) bad(gf + ".pci_bus_id", "missing");
    if (!has_name) bad(gf + ".name", "missing");
    if (!has_sm) bad(gf + ".sm", "missing");
    if (!has_count) bad(gf + ".sm_count", "missing");
    if (info.pci_bus_id.empty()) bad(gf + ".pci_bus_id", "must not be empty");
    for (const auto& other : topo.gpus)
      if (other.host == info.host && other.pci_bus_id == info.pci_bus_id)
        bad(gf + ".pci_bus_id", "the same GPU (" + text::printable(info.pci_bus_id) + " on " +
                                    text::printable(info.host) + ") appears twice");
    topo.gpus.push_back(std::move(info));
  }
  topo.nvlink = get_matrix(*nvlink, "nvlink", n);
  topo.p2p = get_matrix(*p2p, "p2p", n);
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < n; ++j) {
      if (topo.nvlink[i][j] != topo.nvlink[j][i])
        bad("nvlink", "not symmetric at [" + std::to_string(i) + "][" + std::to_string(j) + "]");
      if (topo.p2p[i][j] != topo.p2p[j][i])
        bad("p2p", "not symmetric at [" + std::to_string(i) + "][" + std::to_string(j) + "]");
    }
  }
  if (nvrtc != nullptr) {
    if (!nvrtc->is_bool()) bad("nvrtc", std::string("expected true or false, got ") + nvrtc->type_name());
    topo.nvrtc = nvrtc->boolean();
  }
  if (virt != nullptr) {
    if (!virt->is_bool()) bad("virtual", std::string("expected true or false, got ") + virt->type_name());
    topo.virtual_ranks = virt->boolean();
  }
  return topo;
}

Topology load_topology_file(const std::string& path) {
  // The user names this file for one run: a link is followed (a mounted config often is one); what it leads to must
  // still be a regular file of at most 1 MiB, opened without blocking.
  files::ReadRules rules{json::kMaxInputBytes, /*follow_link=*/true, /*private_owner=*/false};
  std::string contents = files::read_file(path, rules, "topology file ");
  try {
    return topology_from_json(contents);
  } catch (const ConfigError& e) {
    throw ConfigError("topology file " + text::printable(path) + ": " + e.what());
  }
}

void save_topology_file(const Topology& topo, const std::string& path) {
  files::write_file_atomic(path, topology_to_json(topo), 0644);
}

Topology example_topology() {
  Topology t;
  const char* buses[] = {"0000:18:00.0", "0000:2a:00.0", "0000:3a:00.0", "0000:5d:00.0",
                         "0000:9a:00.0", "0000:ab:00.0", "0000:ba:00.0", "0000:db:00.0"};
  for (const char* bus : buses) t.gpus.push_back({"example-node", bus, "", "NVIDIA H100 80GB HBM3", 90, 132});
  t.nvlink.assign(8, std::vector<bool>(8, true));
  t.p2p.assign(8, std::vector<bool>(8, true));
  for (int i = 0; i < 8; ++i) t.nvlink[i][i] = t.p2p[i][i] = false;
  t.nvrtc = true;
  return t;
}

}  // namespace customar
