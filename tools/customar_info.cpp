// customar-info: prints the topology (detected, or from --topo FILE) and, for each world size, the backend the
// dispatcher picks and why. `--json` prints one object for the full world size; `--env` lists every variable.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>

#include "common/json.h"
#include "common/text.h"
#include "customar/config.h"
#include "customar/dispatch.h"
#include "customar/env.h"
#include "customar/error.h"
#include "customar/topology.h"
#include "nccl/nccl_loader.h"

using namespace customar;

namespace {

void usage() {
  std::printf(
      "usage: customar-info [--topo FILE] [--json] [--env] [--dump FILE]\n"
      "  --topo FILE   read the topology from FILE instead of detecting it\n"
      "  --json        print {\"world_size\", \"backend\", \"reason\"} for the full world size and nothing else\n"
      "  --env         list every CUSTOMAR_* environment variable with its default and meaning\n"
      "  --dump FILE   write the topology (detected or loaded) to FILE in the topology file format\n");
}

std::string size_text(size_t b) {
  if (b == kUnlimited) return "unlimited";
  if (b >= (1u << 20) && b % (1u << 20) == 0) return std::to_string(b >> 20) + " MiB";
  if (b >= 1024 && b % 1024 == 0) return std::to_string(b >> 10) + " KiB";
  return std::to_string(b) + " B";
}

void print_matrix(const char* title, const std::vector<std::vector<bool>>& m) {
  std::printf("%s\n      ", title);
  for (size_t j = 0; j < m.size(); ++j) std::printf("%4zu", j);
  std::printf("\n");
  for (size_t i = 0; i < m.size(); ++i) {
    std::printf("  %2zu  ", i);
    for (size_t j = 0; j < m.size(); ++j) std::printf("%4s", i == j ? "-" : (m[i][j] ? "Y" : "."));
    std::printf("\n");
  }
}

// Text from files, the driver and the environment, made safe for a terminal (text::printable).
std::string shown(const std::string& s) { return text::printable(s); }

}  // namespace

int main(int argc, char** argv) {
  std::optional<std::string> topo_path, dump_path;
  bool as_json = false, list_env = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--topo" || a == "--dump") {
      // An empty or missing name is an error, not "no option": `--topo "$FILE"` with FILE unset must not quietly
      // show another machine.
      if (i + 1 >= argc || argv[i + 1][0] == '\0') {
        std::fprintf(stderr, "customar-info: %s needs a file name\n", a.c_str());
        return 2;
      }
      (a == "--topo" ? topo_path : dump_path) = argv[++i];
    } else if (a == "--json")
      as_json = true;
    else if (a == "--env")
      list_env = true;
    else if (a == "-h" || a == "--help") {
      usage();
      return 0;
    } else {
      std::fprintf(stderr, "customar-info: unknown argument '%s'\n", shown(a).c_str());
      usage();
      return 2;
    }
  }
  try {
    if (list_env) {
      for (const EnvVar& v : env_vars())
        std::printf("%-26s default %-20s %s\n", v.name, v.default_value[0] ? v.default_value : "(unset)", v.meaning);
      return 0;
    }
    const Env& e = env();
    Topology topo;
    std::string origin;
    if (topo_path.has_value()) {
      topo = load_topology_file(*topo_path);
      origin = "from " + *topo_path;
    } else if (!e.topo_file.empty()) {
      topo = load_topology_file(e.topo_file);
      origin = "from CUSTOMAR_TOPO_FILE=" + e.topo_file;
    } else {
      topo = detect_local_machine();
      origin = "detected on this machine";
      if (topo.world_size() == 0) {
        topo = example_topology();
        origin = "no GPU found here: showing the embedded example machine (8x H100, NVLink through NVSwitch)";
      }
    }
    if (!topo.nvrtc.has_value()) topo.nvrtc = nvrtc_available();
    if (dump_path.has_value()) save_topology_file(topo, *dump_path);
    const Config& config = global_config();
    DispatchOptions options = DispatchOptions::from_env();

    if (as_json) {
      Decision d = decide_backend(topo, config, options);
      std::printf("{\"world_size\": %d, \"backend\": \"%s\", \"reason\": %s}\n", topo.world_size(),
                  std::string(backend_name(d.backend)).c_str(), json::quote(d.reason).c_str());
      return 0;
    }

    std::printf("customar topology (%s)\n", shown(origin).c_str());
    std::printf("  %-4s %-14s %-28s %-4s %-5s %s\n", "rank", "pci_bus_id", "name", "sm", "SMs", "host");
    for (int i = 0; i < topo.world_size(); ++i) {
      const GpuInfo& g = topo.gpus[i];
      std::printf("  %-4d %-14s %-28s %-4d %-5d %s\n", i, shown(g.pci_bus_id).c_str(), shown(g.name).c_str(), g.sm,
                  g.sm_count, shown(g.host).c_str());
    }
    print_matrix("NVLink (NVML P2P status, NVLink capability)", topo.nvlink);
    print_matrix("Peer access", topo.p2p);
    std::printf("NVRTC: %s   NVML here: %s   config: %s\n", topo.nvrtc.value_or(false) ? "available" : "unavailable",
                nvml_available() ? "available" : "unavailable", shown(config.source).c_str());
    const detail::NcclLibrary nccl = detail::nccl_library();  // the NCCL a communicator here would drive, and why
    if (nccl.usable)
      std::printf("NCCL: %s at %s (%s)\n", detail::nccl_version_text(nccl.api.version).c_str(),
                  shown(nccl.api.path).c_str(), detail::nccl_rule_text(nccl.rule));
    else
      std::printf(
          "NCCL: none usable (%s or newer is needed: where NCCL is the backend, creating a communicator fails; "
          "V1 / V2 serve without it, and calls they cannot take throw NcclError)\n",
          detail::nccl_version_text(detail::kMinNcclVersion).c_str());
    for (const std::string& note : nccl.notes) std::printf("  %s\n", shown(note).c_str());
    if (!e.non_default.empty()) {
      std::printf("environment:");
      for (const auto& v : e.non_default) std::printf(" %s", shown(v).c_str());
      std::printf("\n");
    }
    std::printf("\nDecisions (world size = first N ranks)\n");
    std::printf("  %-3s %-5s %-10s %-10s %-10s %-10s %s\n", "N", "backend",
                "push<=", "pull<=", "custom<=", "v1 1shot<=", "reason");
    for (int n = 1; n <= topo.world_size(); ++n) {
      Topology sub = topo.prefix(n);
      Decision d = decide_backend(sub, config, options);
      const Thresholds* t = n > 1 ? config.find(arch_family(sub.gpus[0].sm), n) : nullptr;
      if (t != nullptr && (d.backend == Backend::kV1 || d.backend == Backend::kV2)) {
        std::printf("  %-3d %-7s %-10s %-10s %-10s %-10s %s\n", n, std::string(backend_name(d.backend)).c_str(),
                    d.backend == Backend::kV2 ? size_text(t->oneshot_push_max).c_str() : "-",
                    d.backend == Backend::kV2 ? size_text(t->oneshot_pull_max).c_str() : "-",
                    size_text(t->custom_max).c_str(), size_text(t->v1_oneshot_max).c_str(), shown(d.reason).c_str());
      } else {
        std::printf("  %-3d %-7s %-10s %-10s %-10s %-10s %s\n", n, std::string(backend_name(d.backend)).c_str(), "-",
                    "-", "-", "-", shown(d.reason).c_str());
      }
    }
    return 0;
  } catch (const Error& err) {
    std::fprintf(stderr, "customar-info: error: %s\n", err.what());
    return 2;
  }
}
