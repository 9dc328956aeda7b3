// Group topology detection with the topology file passed in, so that tests can give ranks different files.
#pragma once

#include <string>

#include "customar/group.h"
#include "customar/topology.h"

namespace customar::detail {

/// Collective; what detect_group_topology() does, with `topo_file` in place of CUSTOMAR_TOPO_FILE ("" detects).
/// Always makes the same exchanges on every rank. Throws ConfigError on every rank alike when a rank failed locally,
/// or when ranks disagree on the source (one reads a file, another detects, or two read different topologies).
Topology detect_group_topology_from(Group& group, int device, const std::string& topo_file);

}  // namespace customar::detail
