#!/usr/bin/env bash
# The latency floors (customar-floor) and the one-shot push at several block sizes (customar-ab --push-block), every
# result checked, at each world size present. Usage: lab/scripts/gpu-push-sweep.sh. Script switches:
# SWEEP_BLOCKS (default "128 256 512"), SWEEP_MAX (largest size, default 4M).
set -u
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
b="${CUSTOMAR_BUILD_DIR:-build}/lab"
gpus=$(nvidia-smi -L | wc -l)
nvidia-smi --query-gpu=index,name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
for ws in 2 4 8; do
  [ "$gpus" -ge "$ws" ] || continue
  "$b/customar-floor" -g "$ws"
  "$b/customar-ab" -g "$ws" --algo oneshot_push -e "${SWEEP_MAX:-4M}" builtin
  for t in ${SWEEP_BLOCKS:-128 256 512}; do
    "$b/customar-ab" -g "$ws" --algo oneshot_push -e "${SWEEP_MAX:-4M}" --push-block "$t" builtin | sed "s/^builtin/block-$t/"
  done
done
