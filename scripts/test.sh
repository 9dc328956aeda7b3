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
# The Python binding: `pip install .` (scikit-build-core + nanobind, the same CMake project) and its CPU tests,
# run from outside the tree so that the installed package is the one imported.
python3 -m pip install -q --disable-pip-version-check nanobind scikit-build-core pytest numpy
CMAKE_ARGS="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache" \
  python3 -m pip install -q --disable-pip-version-check --no-build-isolation .
repo="$PWD"
(cd "$prefix" && python3 -m pytest -q -p no:cacheprovider "$repo/python/tests")
cd "$build" && ctest --output-on-failure -j 2
