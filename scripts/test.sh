#!/usr/bin/env bash
# The test command (README, .ci/run): installs what is missing, builds, runs the CPU tests (no GPU needed), checks
# that an installed customar is usable through find_package, and that the lab still compiles.
# The Python binding's tests need nanobind, scikit-build-core, pytest and numpy: the missing ones are installed with
# pip; where that fails (no network), one line says that the Python tests were skipped and everything else still
# runs. Under CI (CI=true) a failed install fails the run instead, so CI never skips them silently.
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
missing=$(python3 - <<'EOF'
import importlib.util
mods = {"nanobind": "nanobind", "scikit_build_core": "scikit-build-core", "pytest": "pytest", "numpy": "numpy"}
print(" ".join(pkg for mod, pkg in mods.items() if importlib.util.find_spec(mod) is None))
EOF
)
read -ra missing_pkgs <<<"$missing"
python_ok=1
if [ ${#missing_pkgs[@]} -gt 0 ] &&
   ! python3 -m pip install -q --disable-pip-version-check "${missing_pkgs[@]}" >"$prefix/pip.log" 2>&1; then
  if [ "${CI:-}" = true ]; then
    cat "$prefix/pip.log" >&2
    echo "test: pip could not install $missing, which CI needs for the Python tests" >&2
    exit 1
  fi
  echo "test: Python tests skipped: $missing missing and pip could not install them ($(tail -n 1 "$prefix/pip.log"))"
  python_ok=0
fi
if [ "$python_ok" = 1 ]; then
  launchers=""
  if command -v ccache >/dev/null; then
    launchers="-DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache"
  fi
  CMAKE_ARGS="$launchers" python3 -m pip install -q --disable-pip-version-check --no-build-isolation .
  repo="$PWD"
  (cd "$prefix" && python3 -m pytest -q -p no:cacheprovider "$repo/python/tests")
fi
(cd "$build" && ctest --output-on-failure -j "${CUSTOMAR_JOBS:-2}")

# The lab (lab/) is no part of the product: the build above shows that the product builds without it; this shows that
# the lab still compiles against the product. A build tree configured with the lab on already built it.
if ! grep -q '^CUSTOMAR_BUILD_LAB:BOOL=ON$' "$build/CMakeCache.txt"; then
  cmake -S . -B "$build" -DCUSTOMAR_BUILD_LAB=ON >/dev/null
  status=0
  cmake --build "$build" -j "${CUSTOMAR_JOBS:-2}" --target customar-floor customar-ab || status=$?
  cmake -S . -B "$build" -DCUSTOMAR_BUILD_LAB=OFF >/dev/null
  exit "$status"
fi
