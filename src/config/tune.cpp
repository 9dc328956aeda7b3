#include "config/tune.h"

#include <limits>

#include "common/files.h"
#include "common/json.h"
#include "common/log.h"
#include "common/text.h"
#include "customar/error.h"

namespace customar {

namespace {

// The algorithm plan_call() would run, in its order: the crossover to NCCL first (a table may say "pull up to
// unlimited" and still hand large messages to NCCL).
double pick(const SizeTiming& s, const Thresholds& t) {
  double us = s.bytes > t.custom_max          ? s.nccl_us
              : s.bytes <= t.oneshot_push_max ? s.push_us
              : s.bytes <= t.oneshot_pull_max ? s.pull_us
                                              : s.twoshot_us;
  return us < 0 ? std::numeric_limits<double>::infinity() : us;
}

double best(const SizeTiming& s) {
  double b = std::numeric_limits<double>::infinity();
  for (double v : {s.push_us, s.pull_us, s.twoshot_us, s.nccl_us})
    if (v >= 0 && v < b) b = v;
  return b;
}

}  // namespace

double threshold_loss(const std::vector<SizeTiming>& timings, const Thresholds& t) {
  double loss = 0;
  for (const SizeTiming& s : timings) loss += pick(s, t) / best(s) - 1;
  return loss;
}

Thresholds tune_thresholds(const std::vector<SizeTiming>& timings, const Thresholds& base) {
  // Candidate boundaries: "below every size" (0) or exactly at one measured size. The NCCL crossover is never
  // "unlimited": where the custom path wins the largest size measured, nothing above it was, so NCCL keeps what lies
  // beyond (the staging buffers end at 64 MiB in any case). n <= ~30 sizes, so trying every (a <= b <= c) is cheap.
  std::vector<size_t> cuts = {0};
  for (const SizeTiming& s : timings) cuts.push_back(s.bytes);
  Thresholds best_t = base;
  double best_loss = std::numeric_limits<double>::infinity();
  for (size_t a : cuts)
    for (size_t b : cuts) {
      if (b < a) continue;
      for (size_t c : cuts) {
        if (c < b) continue;
        Thresholds t = base;
        t.oneshot_push_max = a;
        t.oneshot_pull_max = b;
        t.custom_max = c;
        double loss = threshold_loss(timings, t);
        // <= : later candidates are larger thresholds, preferred on ties.
        if (loss <= best_loss) {
          best_loss = loss;
          best_t = t;
        }
      }
    }
  // V1 has no push: when none was measured, the pull/two-shot boundary found is V1's.
  bool any_push = false;
  for (const SizeTiming& s : timings) any_push = any_push || s.push_us >= 0;
  if (!any_push) best_t.v1_oneshot_max = best_t.oneshot_pull_max;
  return best_t;
}

std::string tuned_config_path() {
  const std::string& dir = files::user_cache_dir();
  return dir.empty() ? "" : dir + "/tuned-config.json";
}

namespace {

// The tuned config decides every rank's thresholds: read only what this user wrote, and no link.
constexpr files::ReadRules kTrustedJson{json::kMaxInputBytes, /*follow_link=*/false, /*private_owner=*/true};

}  // namespace

std::optional<std::string> read_tuned_config(const std::string& path) {
  if (path.empty()) return std::nullopt;
  std::string why;
  files::DirState dir = files::check_private_dir(files::parent_dir(path), &why);
  if (dir == files::DirState::kMissing) return std::nullopt;
  if (dir == files::DirState::kUnsafe) {
    CUSTOMAR_WARN("CONFIG", "tuned config not loaded, built-in thresholds used: %s", why.c_str());
    return std::nullopt;
  }
  files::ReadResult r = files::try_read_file(path, kTrustedJson);
  if (r.status == files::ReadStatus::kMissing) return std::nullopt;
  if (r.status == files::ReadStatus::kRefused) {
    CUSTOMAR_WARN("CONFIG", "tuned config %s not loaded, built-in thresholds used: it %s",
                  text::printable(path).c_str(), r.why.c_str());
    return std::nullopt;
  }
  return std::move(r.data);
}

std::string save_tuned_thresholds(const std::string& path, ArchFamily family, int world_size, const Thresholds& t) {
  const bool default_file = path.empty();
  const std::string file = default_file ? tuned_config_path() : path;
  if (file.empty())
    throw ConfigError(
        "no directory for the tuned config: HOME is not an absolute path and CUSTOMAR_CACHE_DIR is unset; set one "
        "or name a file");
  std::string why;
  if (default_file && !files::make_private_dir(files::parent_dir(file), &why))
    throw ConfigError("tuned config " + text::printable(file) + " not written: " + why);
  files::ReadRules rules = kTrustedJson;
  rules.private_owner = default_file;  // a file the user names is theirs to judge
  files::ReadResult old = files::try_read_file(file, rules);
  if (old.status == files::ReadStatus::kRefused)
    throw ConfigError("tuned config " + text::printable(file) + " not replaced: it " + old.why);
  Config merged;  // what the file already says for other (arch, world size) entries stays
  if (old.status == files::ReadStatus::kOk) merged = merge_config_json(Config{}, old.data, file);
  merged.table[{family, world_size}] = t;
  files::write_file_atomic(file, config_to_json(merged), 0644);
  return file;
}

}  // namespace customar
