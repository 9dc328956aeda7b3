#!/usr/bin/env bash
# The main job (README's first command): installs what is missing, builds, prints the topology and the decisions
# (customar-info), and on a machine with two or more GPUs runs the benchmark on all of them (customar-perf -k all:
# every backend beside NCCL). Extra arguments go to customar-perf.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
build="${CUSTOMAR_BUILD_DIR:-build}"
"$build/tools/customar-info"
gpus=0
if command -v nvidia-smi >/dev/null; then gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); fi
if [ "$gpus" -ge 2 ]; then
  export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
  "$build/tools/customar-perf" -g "$gpus" -k all "$@"
else
  echo "run-main: $gpus GPU(s) visible; the benchmark needs two or more"
fi
