#include "customar/config.h"

#include <sstream>

#include "common/files.h"
#include "common/json.h"
#include "common/log.h"
#include "common/text.h"
#include "config/tune.h"
#include "customar/env.h"
#include "customar/error.h"
#include "customar/types.h"

namespace customar {

ArchFamily arch_family(int sm) {
  if (sm >= 80 && sm < 90) return ArchFamily::kAmpere;
  if (sm >= 90 && sm < 100) return ArchFamily::kHopper;
  if (sm >= 100 && sm < 110) return ArchFamily::kBlackwell;
  return ArchFamily::kOther;
}

const char* arch_family_name(ArchFamily family) {
  switch (family) {
    case ArchFamily::kAmpere:
      return "ampere";
    case ArchFamily::kHopper:
      return "hopper";
    case ArchFamily::kBlackwell:
      return "blackwell";
    case ArchFamily::kOther:
      return "other";
  }
  return "other";
}

const Thresholds* Config::find(ArchFamily family, int world_size) const {
  auto it = table.find({family, world_size});
  return it == table.end() ? nullptr : &it->second;
}

std::vector<int> Config::world_sizes(ArchFamily family) const {
  std::vector<int> out;
  for (const auto& [key, t] : table)
    if (key.first == family) out.push_back(key.second);
  return out;
}

Config builtin_config() {
  constexpr size_t K = 1024, M = 1024 * 1024;
  // (one-shot push, one-shot pull) per world size 2..8. Hopper at 2 and 4 GPUs: what customar-perf --tune measured on
  // 2x and 4x H200 (bench/data/tuned-h200-w{2,4}.json); the 2-GPU push serves up to 4 MiB, where push and pull cross
  // (within 0.2 us of each other, the push ahead). Every other row is SGLang's custom all-reduce V2 table (Hopper tuned
  // on H200, Blackwell on B200), unmeasured here. Ampere and untuned families inherit the Hopper rows. The tuner
  // replaces them with this machine's measurements.
  const size_t hopper[7][2] = {{4 * M, kUnlimited}, {512 * K, 512 * K}, {256 * K, 1 * M},  {256 * K, 256 * K},
                               {192 * K, 192 * K},  {192 * K, 192 * K}, {160 * K, 160 * K}};
  const size_t blackwell[7][2] = {{4 * M, kUnlimited}, {4 * M, 4 * M},     {2 * M, 2 * M},    {2 * M, 2 * M},
                                  {1 * M, 1 * M},      {896 * K, 896 * K}, {720 * K, 720 * K}};
  Config c;
  c.source = "built-in";
  for (int ws = kMinWorldSize; ws <= kMaxWorldSize; ++ws) {
    // Upper crossover to NCCL, from the 4x H100 anchors: vLLM's custom all-reduce still beats NCCL at 32 MiB on two
    // GPUs (124 vs 138 us) but loses at 32 MiB on four (183 vs 171 us), so 32 MiB at 2 GPUs and 16 MiB above.
    size_t custom_max = ws == 2 ? 32 * M : 16 * M;
    // V1's rule, as SGLang's V1 has it: one-shot always at 2 GPUs, below 512 KiB up to 4, 256 KiB up to 8.
    size_t v1_oneshot = ws == 2 ? kUnlimited : (ws <= 4 ? 512 * K : 256 * K);
    auto add = [&](ArchFamily f, const size_t(*tab)[2]) {
      c.table[{f, ws}] = Thresholds{tab[ws - 2][0], tab[ws - 2][1], custom_max, v1_oneshot};
    };
    add(ArchFamily::kHopper, hopper);
    add(ArchFamily::kBlackwell, blackwell);
    // Untuned families start from the Hopper values: closer to their link speeds than Blackwell's.
    add(ArchFamily::kAmpere, hopper);
    add(ArchFamily::kOther, hopper);
  }
  return c;
}

namespace {

[[noreturn]] void bad(const std::string& origin, const std::string& field, const std::string& what) {
  throw ConfigError(text::printable(origin) + ": field " + text::quoted(field) + ": " + what);
}

size_t get_size(const json::Value& v, const std::string& origin, const std::string& field) {
  if (v.is_string() && v.string() == "unlimited") return kUnlimited;
  if (!v.is_integer || v.integer < 0)
    bad(origin, field, std::string("expected a byte count (integer >= 0) or \"unlimited\", got ") + v.type_name());
  return static_cast<size_t>(v.integer);
}

bool parse_family(const std::string& s, ArchFamily* out) {
  for (ArchFamily f : {ArchFamily::kAmpere, ArchFamily::kHopper, ArchFamily::kBlackwell, ArchFamily::kOther}) {
    if (s == arch_family_name(f)) {
      *out = f;
      return true;
    }
  }
  return false;
}

std::string size_json(size_t v) { return v == kUnlimited ? "\"unlimited\"" : std::to_string(v); }

}  // namespace

Config merge_config_json(const Config& base, const std::string& text, const std::string& origin) {
  json::Value root = json::parse(text, origin);
  if (!root.is_object()) bad(origin, "(root)", std::string("expected an object, got ") + root.type_name());
  Config c = base;
  c.source = base.source + " + " + origin;
  const json::Value* entries = nullptr;
  for (const auto& [key, val] : root.object()) {
    if (key == "entries")
      entries = &val;
    else if (key == "machine") {
      if (!val.is_string()) bad(origin, key, "expected a string");
    } else {
      bad(origin, key, "unknown field; allowed: entries, machine");
    }
  }
  if (entries == nullptr) bad(origin, "entries", "missing");
  if (!entries->is_array()) bad(origin, "entries", std::string("expected an array, got ") + entries->type_name());
  for (size_t i = 0; i < entries->array().size(); ++i) {
    const json::Value& e = entries->array()[i];
    std::string ef = "entries[" + std::to_string(i) + "]";
    if (!e.is_object()) bad(origin, ef, std::string("expected an object, got ") + e.type_name());
    ArchFamily family{};
    int ws = 0;
    bool has_arch = false;
    for (const auto& [key, val] : e.object()) {
      if (key == "arch") {
        if (!val.is_string() || !parse_family(val.string(), &family))
          bad(origin, ef + ".arch", "expected one of \"ampere\", \"hopper\", \"blackwell\", \"other\"");
        has_arch = true;
      } else if (key == "world_size") {
        if (!val.is_integer || val.integer < kMinWorldSize || val.integer > kMaxWorldSize)
          bad(origin, ef + ".world_size", "expected an integer from 2 to 8");
        ws = static_cast<int>(val.integer);
      }
    }
    if (!has_arch) bad(origin, ef + ".arch", "missing");
    if (ws == 0) bad(origin, ef + ".world_size", "missing");
    Thresholds t = c.table.count({family, ws}) ? c.table[{family, ws}] : Thresholds{};
    for (const auto& [key, val] : e.object()) {
      std::string f = ef + "." + key;
      if (key == "arch" || key == "world_size") continue;
      if (key == "oneshot_push_max")
        t.oneshot_push_max = get_size(val, origin, f);
      else if (key == "oneshot_pull_max")
        t.oneshot_pull_max = get_size(val, origin, f);
      else if (key == "custom_max")
        t.custom_max = get_size(val, origin, f);
      else if (key == "v1_oneshot_max")
        t.v1_oneshot_max = get_size(val, origin, f);
      else
        bad(origin, f,
            "unknown field; allowed: arch, world_size, oneshot_push_max, oneshot_pull_max, custom_max, v1_oneshot_max");
    }
    c.table[{family, ws}] = t;
  }
  return c;
}

std::string config_to_json(const Config& config) {
  std::ostringstream o;
  o << "{\n  \"entries\": [";
  bool first = true;
  for (const auto& [key, t] : config.table) {
    o << (first ? "\n" : ",\n") << "    {\"arch\": \"" << arch_family_name(key.first)
      << "\", \"world_size\": " << key.second << ", \"oneshot_push_max\": " << size_json(t.oneshot_push_max)
      << ", \"oneshot_pull_max\": " << size_json(t.oneshot_pull_max) << ", \"custom_max\": " << size_json(t.custom_max)
      << ", \"v1_oneshot_max\": " << size_json(t.v1_oneshot_max) << "}";
    first = false;
  }
  o << "\n  ]\n}\n";
  return o.str();
}

const Config& LazyConfig::get() {
  // call_once gives exactly-once under concurrent first calls; if the loader throws, the flag stays unset and a later
  // call retries, so a transient failure (a file being rewritten) is not cached forever.
  std::call_once(once_, [this] {
    config_ = loader_();
    ++fill_count_;
  });
  return config_;
}

namespace {

// CUSTOMAR_CONFIG_FILE when set (any readable regular file the user names, through a link too), else the tuned
// config when it is there and trusted, else nothing.
Config load_global_config() {
  Config c = builtin_config();
  const std::string& file = env().config_file;
  if (!file.empty()) {
    files::ReadRules rules{json::kMaxInputBytes, /*follow_link=*/true, /*private_owner=*/false};
    return merge_config_json(c, files::read_file(file, rules, "CUSTOMAR_CONFIG_FILE="), file);
  }
  const std::string tuned = tuned_config_path();
  if (std::optional<std::string> text = read_tuned_config(tuned)) return merge_config_json(c, *text, tuned);
  return c;
}

}  // namespace

const Config& global_config() {
  static LazyConfig lazy([] {
    Config c = load_global_config();
    CUSTOMAR_INFO("CONFIG", "thresholds filled from %s", text::printable(c.source).c_str());
    return c;
  });
  return lazy.get();
}

}  // namespace customar
