// Runs a test body on forked ranks (customar::launch, no GPU) and expects every rank to succeed: each rank returns 0,
// or a code naming the expectation it found broken.
#pragma once

#include <gtest/gtest.h>

#include <functional>

#include "customar/launcher.h"

namespace customar::test {

inline void expect_all_zero(int n, const std::function<int(Group&)>& fn) {
  auto exits = launch(n, fn, LaunchOptions{60});
  ASSERT_EQ(exits.size(), static_cast<size_t>(n));
  for (const auto& e : exits) EXPECT_EQ(e.exit_code, 0) << "rank " << e.rank;
}

}  // namespace customar::test
