// Logging through CUSTOMAR_DEBUG=WARN|INFO|TRACE and CUSTOMAR_DEBUG_SUBSYS=INIT,TOPO,CONFIG,JIT,COLL,GRAPH,MEM (the
// names env.cpp accepts; a line is tagged with one of them). Text from outside in a line goes through
// text::printable.
// Each line: "customar <host>:<pid> [rank] <SUBSYS> <LEVEL> message" on stderr.
#pragma once

#include <cstdio>
#include <string>

#include "customar/env.h"

namespace customar::log {

/// True when a message of `level` for `subsys` would be printed.
bool enabled(LogLevel level, const char* subsys);
/// Prints one line (printf-style).
void write(LogLevel level, const char* subsys, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
/// The rank printed in every later line of this process (-1 = none).
void set_rank(int rank);
/// The rank printed in every later line of the calling thread, over the process's (virtual ranks are threads).
void set_thread_rank(int rank);

}  // namespace customar::log

#define CUSTOMAR_LOG(level, subsys, ...)                                        \
  do {                                                                          \
    if (::customar::log::enabled(::customar::LogLevel::level, subsys))          \
      ::customar::log::write(::customar::LogLevel::level, subsys, __VA_ARGS__); \
  } while (0)
#define CUSTOMAR_WARN(subsys, ...) CUSTOMAR_LOG(kWarn, subsys, __VA_ARGS__)
#define CUSTOMAR_INFO(subsys, ...) CUSTOMAR_LOG(kInfo, subsys, __VA_ARGS__)
#define CUSTOMAR_TRACE(subsys, ...) CUSTOMAR_LOG(kTrace, subsys, __VA_ARGS__)
