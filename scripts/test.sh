#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds, runs the CPU tests (no GPU needed) and
# checks that an installed customar is usable through find_package.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
build="${CUSTOMAR_BUILD_DIR:-build}"
# The package config: install into a scratch prefix and build a consumer against it.
prefix="$(mktemp -d)"
trap 'rm -rf "$prefix"' EXIT
cmake --install "$build" --prefix "$prefix/install" >/dev/null
cmake -S tests/package -B "$prefix/consumer" -G Ninja -DCMAKE_PREFIX_PATH="$prefix/install" >/dev/null
cmake --build "$prefix/consumer" >/dev/null
"$prefix/consumer/consumer"
cd "$build" && ctest --output-on-failure -j 2 -LE gpu
