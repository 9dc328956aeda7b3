// What every input to the JSON readers must satisfy, shared by the seeded mutation test (test_fuzz_json.cpp) and the
// libFuzzer entry point (fuzz_json_libfuzzer.cpp): it parses, or it throws ConfigError and nothing else; and what
// parses is written back and parsed again to the same value.
#pragma once

#include <string>

#include "customar/config.h"
#include "customar/error.h"
#include "customar/topology.h"

namespace customar::fuzz {

/// Outcome of one input.
enum class Outcome { kAccepted, kRejected };

/// Throws std::logic_error when a round trip changes the value; lets any exception but ConfigError through.
inline Outcome check_topology(const std::string& input) {
  Topology t;
  try {
    t = topology_from_json(input);
  } catch (const ConfigError&) {
    return Outcome::kRejected;
  }
  if (!(topology_from_json(topology_to_json(t)) == t)) throw std::logic_error("topology changed in a round trip");
  return Outcome::kAccepted;
}

/// As check_topology(), for a config file merged over the built-in table.
inline Outcome check_config(const std::string& input, const Config& base) {
  Config c;
  try {
    c = merge_config_json(base, input, "fuzz.json");
  } catch (const ConfigError&) {
    return Outcome::kRejected;
  }
  if (merge_config_json(Config{}, config_to_json(c), "round-trip").table != c.table)
    throw std::logic_error("config changed in a round trip");
  return Outcome::kAccepted;
}

}  // namespace customar::fuzz
