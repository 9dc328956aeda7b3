#!/usr/bin/env bash
# Reliability suite for a machine with 2+ GPUs (dead peers, bad input, stress, sanitizers, lifecycle).
# Usage: scripts/gpu-stress.sh [BIN_DIR]   (default: .gpu-bin if staged, else the build tree)
# CUSTOMAR_STRESS_CALLS (default 1000000) and CUSTOMAR_STRESS_SECONDS (default 300) bound the stress runs (10^6
# calls take about 155 s at 2 GPUs and 160 s at 4 on H200). CUSTOMAR_STRESS_WORLDS (default "2 4") picks the world
# sizes of the per-world runs.
# Ends with "gpu-stress: N passed, M failed" (runs); per-run metric lines are collected above it.
set -u
cd "$(dirname "$0")/.."
source scripts/gpu-lib.sh "${1:-}"
calls="${CUSTOMAR_STRESS_CALLS:-1000000}"
secs="${CUSTOMAR_STRESS_SECONDS:-300}"

for ws in ${CUSTOMAR_STRESS_WORLDS:-2 4}; do
  [ "$gpus" -ge "$ws" ] || continue
  [ "${CUSTOMAR_ONLY_SANITIZERS:-0}" = 1 ] && continue
  for backend in v2 v1; do
    extra=(); [ "$backend" = v1 ] && extra=(CUSTOMAR_DISABLE_V2=1)
    run "dead-peer-$backend-w$ws" CUSTOMAR_TIMEOUT_MS=2000 "${extra[@]}" -- "$rel" dead-peer -n "$ws"
    run "dead-peer-graph-$backend-w$ws" CUSTOMAR_TIMEOUT_MS=2000 "${extra[@]}" -- "$rel" dead-peer -n "$ws" --graph
    run "no-call-$backend-w$ws" CUSTOMAR_TIMEOUT_MS=2000 "${extra[@]}" -- "$rel" no-call -n "$ws"
    run "late-peer-$backend-w$ws" CUSTOMAR_TIMEOUT_MS=2000 "${extra[@]}" -- "$rel" late-peer -n "$ws"
  done
  # 1 KiB and 2 MiB: the push's one-block and wide kernels, which have entry points of their own (2 MiB is a push where
  # the push buffers hold it, as at 2 GPUs; elsewhere the pull serves it).
  run "dead-peer-graph-push1-w$ws" CUSTOMAR_TIMEOUT_MS=2000 -- "$rel" dead-peer -n "$ws" --graph --count 512
  run "no-call-push1-w$ws" CUSTOMAR_TIMEOUT_MS=2000 -- "$rel" no-call -n "$ws" --count 512
  run "dead-peer-graph-2m-w$ws" CUSTOMAR_TIMEOUT_MS=2000 CUSTOMAR_ALGO=oneshot_push -- \
    "$rel" dead-peer -n "$ws" --graph --count 1048576
  run "late-peer-2m-w$ws" CUSTOMAR_TIMEOUT_MS=2000 CUSTOMAR_ALGO=oneshot_push -- "$rel" late-peer -n "$ws" --count 1048576
  run "check-mode-w$ws" CUSTOMAR_CHECK=1 -- "$rel" check-mode -n "$ws"
  run "stress-w$ws" -- "$rel" stress -n "$ws" --calls "$calls" --seconds "$secs"
  run "lifecycle-w$ws" -- "$rel" lifecycle -n "$ws" --iters "${CUSTOMAR_LIFECYCLE_ITERS:-100}"
  # The same with customar's own part off (NCCL only): how much of any host-memory growth is NCCL's.
  run "lifecycle-nccl-only-w$ws" CUSTOMAR_DISABLE=1 -- "$rel" lifecycle -n "$ws" --iters "${CUSTOMAR_LIFECYCLE_ITERS:-100}"
done

# API errors are not reported: NCCL's own initialisation probes kernels for other architectures
# (cudaErrorNoKernelImageForDevice from cudaFuncGetAttributes inside ncclCommInitRank), which is not ours to fix.
if command -v compute-sanitizer >/dev/null && [ "${CUSTOMAR_SKIP_SANITIZERS:-0}" != 1 ]; then
  for tool in memcheck racecheck synccheck; do
    for backend in v2 v1; do
      extra=(); [ "$backend" = v1 ] && extra=(CUSTOMAR_DISABLE_V2=1)
      run "sanitizer-$tool-$backend" CUSTOMAR_TIMEOUT_MS=120000 "${extra[@]}" -- \
        timeout "${CUSTOMAR_SANITIZER_SECONDS:-120}" compute-sanitizer --tool "$tool" --report-api-errors no --error-exitcode 99 --print-limit 20 \
        --target-processes all "$test" -n 2 --smoke
    done
  done
fi

printf '%s\n' "${summary[@]}"
echo "gpu-stress: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
