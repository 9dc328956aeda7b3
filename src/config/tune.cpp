#include "config/tune.h"

#include <cstdlib>
#include <limits>

#include "customar/env.h"

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
  const std::string& dir = env().cache_dir;
  if (!dir.empty()) return dir + "/tuned-config.json";
  const char* home = std::getenv("HOME");
  return std::string(home != nullptr && home[0] ? home : "/tmp") + "/.cache/customar/tuned-config.json";
}

}  // namespace customar
