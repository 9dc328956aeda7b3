#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstring>

namespace customar::log {

namespace {
std::atomic<int> g_rank{-1};
thread_local int t_rank = -1;

LogLevel level_or_warn() {
  try {
    return env().debug;
  } catch (...) {
    // A malformed CUSTOMAR_DEBUG must not stop warnings from being printed; env() reports it to its caller.
    return LogLevel::kWarn;
  }
}
}  // namespace

void set_rank(int rank) { g_rank.store(rank, std::memory_order_relaxed); }
void set_thread_rank(int rank) { t_rank = rank; }

bool enabled(LogLevel level, const char* subsys) {
  if (static_cast<int>(level) > static_cast<int>(level_or_warn())) return false;
  if (level == LogLevel::kWarn) return true;  // warnings are never filtered by subsystem
  const std::string* filter = nullptr;
  try {
    filter = &env().debug_subsys;
  } catch (...) {
    return true;
  }
  if (filter->empty()) return true;
  // Match whole comma-separated words, case-sensitive like NCCL_DEBUG_SUBSYS.
  size_t n = std::strlen(subsys);
  for (size_t pos = 0; pos <= filter->size();) {
    size_t end = filter->find(',', pos);
    if (end == std::string::npos) end = filter->size();
    if (end - pos == n && filter->compare(pos, n, subsys) == 0) return true;
    if (filter->compare(pos, end - pos, "ALL") == 0) return true;
    pos = end + 1;
  }
  return false;
}

void write(LogLevel level, const char* subsys, const char* fmt, ...) {
  static const char* const names[] = {"NONE", "WARN", "INFO", "TRACE"};
  char host[64] = {0};
  gethostname(host, sizeof(host) - 1);
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof(msg), fmt, ap);
  va_end(ap);
  const int rank = t_rank >= 0 ? t_rank : g_rank.load(std::memory_order_relaxed);
  char rank_text[16] = "-";
  if (rank >= 0) snprintf(rank_text, sizeof(rank_text), "%d", rank);
  // One fprintf per line so lines of concurrent ranks do not interleave mid-line.
  fprintf(stderr, "customar %s:%d [%s] %s %s %s\n", host, static_cast<int>(getpid()), rank_text, subsys,
          names[static_cast<int>(level)], msg);
}

}  // namespace customar::log
