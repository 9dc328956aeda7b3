// The set-up vote behind dispatch_custom_allreduce() and the Communicator: every fact and setting that steers the
// data path is decided per rank, exchanged once, and either agreed or rejected on every rank alike. Ranks that took
// different paths (a different backend, threshold, forced algorithm or check mode) would wait for each other forever
// or read past each other's buffers, so disagreement is never resolved silently except for the backend, where the
// lowest vote is always safe.
#pragma once

#include <optional>
#include <string>

#include "customar/config.h"
#include "customar/dispatch.h"
#include "customar/group.h"
#include "customar/topology.h"

namespace customar::detail {

/// What one rank brings to the vote.
struct LocalChoice {
  std::string error;  ///< non-empty: this rank could not decide (unreadable config file, ...); everyone throws
  Decision decision;
  Thresholds thresholds;           ///< the config's row for the topology's (family, world size); zeros when none
  std::optional<Algo> force_algo;  ///< CUSTOMAR_ALGO
  bool check = false;              ///< CUSTOMAR_CHECK
};

/// Identical on every rank once agree_choice() returns.
struct AgreedChoice {
  Decision decision;
  Thresholds thresholds;
  std::optional<Algo> force_algo;
  bool check = false;
};

/// This rank's choice on `topo`, from the global config and the environment, capped at `max_backend`. Never throws:
/// a failure is recorded in `error` so that the vote still happens.
LocalChoice local_choice(const Topology& topo, std::optional<Backend> max_backend);

/// Collective. The lowest backend wins (with its voter's reason). Throws ConfigError on every rank when a rank
/// reported an error, when ranks disagree on CUSTOMAR_CHECK, or, where the agreed backend is a custom one, on the
/// thresholds or CUSTOMAR_ALGO.
AgreedChoice agree_choice(Group& group, const LocalChoice& mine);

/// Collective: topology (detected or CUSTOMAR_TOPO_FILE, dumped to CUSTOMAR_TOPO_DUMP_FILE), local choice, vote.
/// `local_error`, when non-empty, is a failure the caller found before (a bad device): it is voted like any other.
AgreedChoice agree_setup(Group& group, int device, std::optional<Backend> max_backend, Topology* topology_out,
                         const std::string& local_error = "");

}  // namespace customar::detail
