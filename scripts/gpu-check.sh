#!/usr/bin/env bash
# Every GPU check in one call, for a machine with 2+ GPUs: topology report, the multi-process correctness matrix at
# world sizes 2, 4 (and 8 where present) for the automatic choice and each algorithm forced, forced topologies under
# graph capture, the Python binding, then customar-perf and the tuner. Usage: scripts/gpu-check.sh [BIN_DIR]  (default: .gpu-bin if staged, else build)
# Prints one line per run and ends with "N passed, M failed" (runs). Script switches (not read by the library):
# CUSTOMAR_SKIP_BENCH=1 skips the benchmark, tuner and peers' anchors; CUSTOMAR_ONLY_BENCH=1 runs only those (each
# half fits one 10-minute device call at 2 GPUs); CUSTOMAR_BENCH_WORLDS (default "2 4 8") picks the world sizes the
# benchmark half measures (a 4-GPU lease that already has 2-GPU numbers: CUSTOMAR_BENCH_WORLDS=4).
set -u
cd "$(dirname "$0")/.."
source scripts/gpu-lib.sh "${1:-}"
data=tests/unit/data

nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version --format=csv,noheader
"$info" | tee "$out/customar-info.log"
if [ "${CUSTOMAR_ONLY_BENCH:-0}" != 1 ]; then

for ws in 2 4 8; do
  [ "$gpus" -ge "$ws" ] || continue
  run "auto-w$ws" CUSTOMAR_DEBUG=WARN -- "$test" -n "$ws" --expect v2
  run "push-w$ws" CUSTOMAR_ALGO=oneshot_push -- "$test" -n "$ws" --quick --expect v2
  run "oneshot-w$ws" CUSTOMAR_ALGO=oneshot_pull -- "$test" -n "$ws" --quick
  run "twoshot-w$ws" CUSTOMAR_ALGO=twoshot -- "$test" -n "$ws" --quick
  run "nccl-w$ws" CUSTOMAR_ALGO=nccl -- "$test" -n "$ws" --quick
  run "disable-v2-w$ws" CUSTOMAR_DISABLE_V2=1 -- "$test" -n "$ws" --quick --expect v1
done
run "topo-pcie2" CUSTOMAR_TOPO_FILE=$data/pcie2.json -- "$test" -n 2 --quick --expect v1
[ "$gpus" -ge 4 ] && run "topo-pcie4" CUSTOMAR_TOPO_FILE=$data/pcie4.json -- "$test" -n 4 --quick --expect nccl
[ "$gpus" -ge 4 ] && run "topo-nvlink4-missing-pair" CUSTOMAR_TOPO_FILE=$data/nvlink4_missing_pair.json -- "$test" -n 4 --quick --expect nccl
run "disabled" CUSTOMAR_DISABLE=1 -- "$test" -n 2 --quick --expect nccl
run "world-1" -- "$test" -n 1 --quick --expect none
# The V1 kernels at full size under auto thresholds (V2 disabled), and V2 with a cold then warm kernel cache.
run "v1-auto-w$gpus" CUSTOMAR_DISABLE_V2=1 -- "$test" -n "$gpus" --expect v1
jit=$(mktemp -d)
run "jit-cold" CUSTOMAR_CACHE_DIR=$jit CUSTOMAR_DEBUG=INFO CUSTOMAR_DEBUG_SUBSYS=JIT -- "$test" -n 2 --quick --expect v2
run "jit-warm" CUSTOMAR_CACHE_DIR=$jit CUSTOMAR_DEBUG=INFO CUSTOMAR_DEBUG_SUBSYS=JIT -- "$test" -n 2 --quick --expect v2
grep -h "V2 kernels\|JIT INFO" "$out/jit-cold.log" "$out/jit-warm.log" | sort -u | head -6

# The Python binding (torch.multiprocessing at 2 and 4 GPUs, graphs, CuPy) and the tensor-parallel MLP example, when
# a wheel was staged into .whl/ (scripts/stage-gpu.sh with CUSTOMAR_WHEEL_PYTHON) or customar is importable.
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/customar-site .whl/*.whl &&
    export PYTHONPATH="/tmp/customar-site:${PYTHONPATH:-}"
fi
if python3 -c "import customar, torch" 2>/dev/null; then
  run "python-gpu" PYTHONUNBUFFERED=1 -- python3 -m pytest -q -p no:cacheprovider python/tests
  run "tp-mlp-example" -- python3 examples/tp_mlp.py --iters 100
  tail -4 "$out/tp-mlp-example.log"
fi
fi  # CUSTOMAR_ONLY_BENCH

# Latency floors, benchmark (every backend beside NCCL and NCCL's symmetric kernels) and the tuner, per world size. The tuner writes
# to $out, not to the machine's tuned config, so the benchmark above measured the built-in thresholds.
if [ -x "$perf" ] && [ "${CUSTOMAR_SKIP_BENCH:-0}" != 1 ]; then
  for ws in ${CUSTOMAR_BENCH_WORLDS:-2 4 8}; do
    [ "$gpus" -ge "$ws" ] || continue
    [ -x "$floor" ] && "$floor" -g "$ws" | tee "$out/floor-w$ws.txt"
    "$perf" -g "$ws" -k all -e 256M -J "$out/perf-w$ws.jsonl" | tee "$out/perf-w$ws.txt"
    t0=$(date +%s)
    "$perf" -g "$ws" -k auto -c 0 --tune "$out/tuned-w$ws.json" | grep "^# tune"
    echo "# tune: world $ws took $(( $(date +%s) - t0 )) s"
  done
fi

# The peers' torch figures (torch.distributed over NCCL, SymmetricMemory one-/two-shot), re-measured in the same
# lease as customar-perf above: ../shared/anchors/anchors.py, or a copy carried in .anchors/ (CUSTOMAR_ANCHORS=path).
anchors="${CUSTOMAR_ANCHORS:-}"
for a in .anchors/anchors.py ../shared/anchors/anchors.py; do [ -z "$anchors" ] && [ -f "$a" ] && anchors="$a"; done
if [ -n "$anchors" ] && [ "${CUSTOMAR_SKIP_BENCH:-0}" != 1 ] && python3 -c "import torch" 2>/dev/null; then
  for ws in ${CUSTOMAR_BENCH_WORLDS:-2 4 8}; do
    [ "$gpus" -ge "$ws" ] || continue
    run "anchors-w$ws" -- timeout 400 python3 "$anchors" "$ws" "$out/anchors-w$ws.json"
  done
fi

printf '%s\n' "${summary[@]}"
echo "gpu-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
