// A bounded, deterministic fuzz run of the JSON readers (topology and config files), every CI run: the files in
// tests/unit/data (topologies) and tests/unit/fuzz_seeds (configs) are mutated by a fixed-seed generator (bit flips,
// bytes and JSON tokens inserted or replaced, ranges deleted, repeated, cut, spliced from another seed) for a fixed
// time per reader; every input must parse or throw ConfigError (never another exception, a crash or a hang), and every
// accepted input must survive a round trip. The sequence of inputs depends only on the seed, so a failure names the
// iteration that reproduces it.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>

#include "common/text.h"
#include "fuzz_json_checks.h"

namespace fs = std::filesystem;
using namespace customar;

namespace {

constexpr uint64_t kSeed = 0x637573746f6d6172ULL;   // "customar"
constexpr auto kBudget = std::chrono::seconds(12);  // per reader; ctest -j 2 runs the two side by side
constexpr size_t kMaxIterations = 2000000;

// xorshift64*: small, fast, and the same sequence on every platform.
struct Rng {
  uint64_t s;
  uint64_t next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1DULL;
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }
};

// Fragments that steer a mutation towards the parser's edges: structure, escapes (a NUL, lone surrogates), bytes
// that are not UTF-8, terminal escapes, numbers at and beyond every limit, and the files' own keys.
const std::vector<std::string> kTokens = {"{",
                                          "}",
                                          "[",
                                          "]",
                                          ",",
                                          ":",
                                          "\"",
                                          "\\",
                                          "\\u0000",
                                          "\\ud800",
                                          "\\udc00",
                                          "\\ud83d\\ude00",
                                          "\\u001b[31m",
                                          "\xff",
                                          "\xc3",
                                          "\xe2\x80\xae",
                                          "\xc0\xaf",
                                          "\xed\xa0\x80",
                                          "\x1b",
                                          std::string(1, '\0'),
                                          "1e999",
                                          "-0",
                                          "0.5",
                                          "1e2",
                                          "null",
                                          "true",
                                          "false",
                                          "9223372036854775807",
                                          "9223372036854775808",
                                          "-9223372036854775809",
                                          "18446744073709551615",
                                          "65",
                                          "64",
                                          "-1",
                                          "0",
                                          "100001",
                                          " ",
                                          "\n",
                                          "\t",
                                          "\"gpus\":",
                                          "\"nvlink\":",
                                          "\"p2p\":",
                                          "\"nvrtc\":",
                                          "\"entries\":",
                                          "\"arch\":",
                                          "\"world_size\":",
                                          "\"unlimited\"",
                                          "\"hopper\"",
                                          "[[",
                                          "]]",
                                          "{}",
                                          "[]",
                                          std::string(40, '['),
                                          std::string(300, 'x')};

std::string mutate_once(std::string s, Rng& rng, const std::vector<std::string>& seeds) {
  size_t pos = rng.below(s.size() + 1);
  switch (rng.below(8)) {
    case 0:
      if (!s.empty()) s[pos % s.size()] ^= static_cast<char>(1u << rng.below(8));
      break;
    case 1:
      if (!s.empty()) s[pos % s.size()] = static_cast<char>(rng.below(256));
      break;
    case 2:
      s.insert(pos, kTokens[rng.below(kTokens.size())]);
      break;
    case 3:
      s.erase(pos, 1 + rng.below(16));
      break;
    case 4:
      s.insert(pos, s.substr(pos, 1 + rng.below(64)));
      break;
    case 5: {
      const std::string& other = seeds[rng.below(seeds.size())];
      s = s.substr(0, pos) + other.substr(rng.below(other.size() + 1));
      break;
    }
    case 6:
      s.resize(pos);
      break;
    default: {  // replace one token (a run of letters, digits or signs) by a dictionary token
      size_t end = pos;
      while (end < s.size() && (isalnum(static_cast<unsigned char>(s[end])) || s[end] == '-' || s[end] == '.')) ++end;
      s.replace(pos, std::max<size_t>(end - pos, 1), kTokens[rng.below(kTokens.size())]);
    }
  }
  return s;
}

std::vector<std::string> read_seeds(std::initializer_list<const char*> dirs) {
  std::vector<std::string> seeds;
  for (const char* dir : dirs) {
    std::vector<fs::path> paths;
    for (auto& e : fs::directory_iterator(dir))
      if (e.path().extension() == ".json") paths.push_back(e.path());
    std::sort(paths.begin(), paths.end());  // directory order differs between machines; the run must not
    for (const fs::path& p : paths) {
      std::ifstream f(p, std::ios::binary);
      seeds.emplace_back(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    }
  }
  return seeds;
}

// Runs `check` on mutants of `seeds` for kBudget; fails (with the iteration and the input, escaped) on anything but
// acceptance or ConfigError.
template <typename Check>
void run_mutants(const std::vector<std::string>& seeds, uint64_t seed, Check check) {
  ASSERT_FALSE(seeds.empty());
  Rng rng{seed};
  size_t accepted = 0, rejected = 0, i = 0;
  auto end = std::chrono::steady_clock::now() + kBudget;
  for (; i < kMaxIterations && std::chrono::steady_clock::now() < end; ++i) {
    std::string input = seeds[rng.below(seeds.size())];
    for (size_t n = rng.below(2) ? 1 : 1 + rng.below(4); n > 0; --n) input = mutate_once(std::move(input), rng, seeds);
    try {
      (check(input) == fuzz::Outcome::kAccepted ? accepted : rejected)++;
    } catch (const std::exception& e) {
      FAIL() << "iteration " << i << " (seed " << seed << "): " << e.what() << "\n input: " << text::printable(input);
    }
  }
  std::printf("fuzz: %zu inputs in %lld s (seed %llu): %zu accepted and round-tripped, %zu ConfigError, 0 other\n", i,
              static_cast<long long>(kBudget.count()), static_cast<unsigned long long>(seed), accepted, rejected);
  EXPECT_GT(accepted, 0u) << "no mutant was valid: the run did not reach the round trip";
  EXPECT_GT(rejected, 0u);
}

const std::string kData = CUSTOMAR_TEST_DATA;
const std::string kSeeds = CUSTOMAR_FUZZ_SEEDS;

}  // namespace

TEST(FuzzJson, TopologyReaderParsesOrThrowsConfigError) {
  std::vector<std::string> seeds = read_seeds({kData.c_str()});
  run_mutants(seeds, kSeed, [](const std::string& in) { return fuzz::check_topology(in); });
}

TEST(FuzzJson, ConfigReaderParsesOrThrowsConfigError) {
  std::vector<std::string> seeds = read_seeds({kSeeds.c_str()});
  const Config base = builtin_config();
  run_mutants(seeds, kSeed + 1, [&](const std::string& in) { return fuzz::check_config(in, base); });
}
