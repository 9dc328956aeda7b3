#!/usr/bin/env bash
# Reliability suite for a machine with 2+ GPUs (issue: dead peers, bad input, stress, sanitizers, lifecycle).
# Usage: scripts/gpu-stress.sh [BIN_DIR]   (default: .gpu-bin if staged, else the build tree)
# CUSTOMAR_STRESS_CALLS (default 1000000) and CUSTOMAR_STRESS_SECONDS (default 150) bound the stress runs.
# Ends with "gpu-stress: N passed, M failed" (runs); per-run metric lines are collected above it.
set -u
cd "$(dirname "$0")/.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
if [ -n "${1:-}" ]; then bin="$1"; elif [ -d .gpu-bin ]; then bin=.gpu-bin; else bin=""; fi
if [ -n "$bin" ]; then
  export LD_LIBRARY_PATH="$PWD/$bin:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  rel="$bin/reliability_test" test="$bin/allreduce_test"
else
  b="${CUSTOMAR_BUILD_DIR:-build}"
  rel="$b/tests/gpu/reliability_test" test="$b/tests/gpu/allreduce_test"
fi
out="${OUT:-/tmp/customar-gpu-stress}"
mkdir -p "$out"
calls="${CUSTOMAR_STRESS_CALLS:-1000000}"
secs="${CUSTOMAR_STRESS_SECONDS:-150}"
gpus=$(nvidia-smi -L | wc -l)
passed=0 failed=0
summary=()
run() {  # run NAME ENV... -- COMMAND...
  local name="$1"; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local t0=$(date +%s%N)
  if env "${envs[@]}" "$@" > "$out/$name.log" 2>&1; then
    passed=$((passed + 1)); summary+=("PASS $name")
  else
    failed=$((failed + 1)); summary+=("FAIL $name"); echo "---- $name ----"; tail -20 "$out/$name.log"
  fi
  printf '%-36s %7d ms\n' "$name" $(( ($(date +%s%N) - t0) / 1000000 ))
  grep -h "^metric:\|^  error:" "$out/$name.log" | head -12
}

for ws in 2 4; do
  [ "$gpus" -ge "$ws" ] || continue
  [ "${CUSTOMAR_ONLY_SANITIZERS:-0}" = 1 ] && continue
  for backend in v2 v1; do
    extra=(); [ "$backend" = v1 ] && extra=(CUSTOMAR_DISABLE_V2=1)
    run "dead-peer-$backend-w$ws" CUSTOMAR_TIMEOUT_MS=2000 "${extra[@]}" -- "$rel" dead-peer -n "$ws"
    run "dead-peer-graph-$backend-w$ws" CUSTOMAR_TIMEOUT_MS=2000 "${extra[@]}" -- "$rel" dead-peer -n "$ws" --graph
    run "no-call-$backend-w$ws" CUSTOMAR_TIMEOUT_MS=2000 "${extra[@]}" -- "$rel" no-call -n "$ws"
  done
  run "check-mode-w$ws" CUSTOMAR_CHECK=1 -- "$rel" check-mode -n "$ws"
  run "stress-w$ws" -- "$rel" stress -n "$ws" --calls "$calls" --seconds "$secs"
  run "lifecycle-w$ws" -- "$rel" lifecycle -n "$ws" --iters "${CUSTOMAR_LIFECYCLE_ITERS:-100}"
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
