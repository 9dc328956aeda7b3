#!/usr/bin/env bash
# Configures and builds into ${CUSTOMAR_BUILD_DIR:-build}, warnings as errors, through ccache where it is installed
# (optional: without it every build compiles everything).
# Extra arguments go to cmake's configure step (e.g. -DCMAKE_CUDA_ARCHITECTURES=90).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/cuda/bin:$PATH"
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/customar-ccache}"
export CCACHE_MAXSIZE="${CCACHE_MAXSIZE:-2G}"
build="${CUSTOMAR_BUILD_DIR:-build}"
launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache -DCMAKE_CUDA_COMPILER_LAUNCHER=ccache)
fi
cmake -S . -B "$build" -G Ninja -DCMAKE_CUDA_COMPILER=/usr/local/cuda/bin/nvcc -DCUSTOMAR_WERROR=ON "${launcher[@]}" "$@"
# Two jobs: CI has two cores and 24 GiB; nvcc's device passes are the memory-hungry part.
cmake --build "$build" -j "${CUSTOMAR_JOBS:-2}"
