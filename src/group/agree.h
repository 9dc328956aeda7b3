// Collective error agreement for multi-step set-up. A rank that fails a step locally must not simply throw: its peers
// would go on to the next exchange and wait for it (or, worse, read its next message as the one they expect). So
// every step ends with an exchange of each rank's outcome, and all ranks throw the same error together.
#pragma once

#include <exception>
#include <string>

#include "customar/group.h"

namespace customar::detail {

/// Collective. Throws Error("<step> failed on rank r: <message>") on every rank if any rank's `my_error` is
/// non-empty (the lowest such rank is named); returns normally on every rank otherwise.
void agree_or_throw(Group& group, const std::string& my_error, const std::string& step);

/// Runs the local part of a step and returns "" or the text of what it threw (never empty then): the error this rank
/// brings to the next exchange, for steps whose outcome travels inside a message of their own.
template <typename F>
std::string local_error(F&& local) {
  try {
    local();
  } catch (const std::exception& e) {
    return e.what()[0] != '\0' ? e.what() : "unknown error";
  } catch (...) {
    return "unknown exception";
  }
  return "";
}

/// Runs the local part of a step, turning any exception into this rank's error, then agrees.
template <typename F>
void run_step(Group& group, const std::string& step, F&& local) {
  agree_or_throw(group, local_error(local), step);
}

}  // namespace customar::detail
