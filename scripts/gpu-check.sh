#!/usr/bin/env bash
# Every GPU check in one call. With one GPU: the correctness matrix at world sizes 2..8 as virtual ranks (threads on
# the one GPU, green contexts and capped grids), the reliability modes that make sense in one process, the fused and
# symmetric-buffer matrices, planted bugs the matrix must catch, the Python binding and the import-order matrix, both
# README commands on a fresh copy of the repo, and same-run A/B timings of changed kernels. With two GPUs or more,
# also the multi-process matrix at 2, 4 and 8 GPUs, forced topologies, and the benchmark with the tuner and peers.
#
#   scripts/gpu-check.sh [BIN_DIR]     BIN_DIR: .gpu-bin if staged (scripts/stage-gpu.sh), else the build tree
#
# Script switches (read by this script only): CUSTOMAR_CHECK_SECTIONS, the sections to run (default "info virtual
# reliability fused symm plants python readme ab peers multi bench"); CUSTOMAR_VIRTUAL_WORLDS (default "2 3 4 5 6 7 8");
# CUSTOMAR_BENCH_WORLDS (default "2 4 8", multi-GPU benchmark); CUSTOMAR_ANCHORS (the peers' torch harness).
# Prints one line per run and ends with "gpu-check: N passed, M failed" (runs).
set -u
cd "$(dirname "$0")/.."
source scripts/gpu-lib.sh "${1:-}"
data=tests/unit/data
sections=" ${CUSTOMAR_CHECK_SECTIONS:-info virtual reliability fused symm plants python readme ab peers multi bench} "
want() { [[ "$sections" == *" $1 "* ]]; }
vworlds="${CUSTOMAR_VIRTUAL_WORLDS:-2 3 4 5 6 7 8}"
# Many streams on one GPU (virtual ranks, each with a second stream): enough hardware queues that none waits behind
# another's spinning kernel.
export CUDA_DEVICE_MAX_CONNECTIONS=32

if want info; then
  nvidia-smi --query-gpu=index,name,pci.bus_id,driver_version --format=csv,noheader
  "$info" | tee "$out/customar-info.log"
fi

# The matrix at every world size as virtual ranks: green contexts (the default where the driver has them) at every
# size, capped grids at the smallest and largest.
if want virtual; then
  for n in $vworlds; do
    run "virtual-w$n" -- "$test" --virtual "$n" --expect v2
  done
  for n in 2 8; do
    run "virtual-capped-w$n" -- "$test" --virtual "$n" --partition capped --quick --expect v2
  done
  run "virtual-pcie2-topology" CUSTOMAR_TOPO_FILE=$data/pcie2.json -- "$test" --virtual 2 --quick --expect v1
  run "virtual-pcie4-topology" CUSTOMAR_TOPO_FILE=$data/pcie4.json -- "$test" --virtual 4 --quick --expect nccl
  run "virtual-check-mode-w4" CUSTOMAR_CHECK=1 -- "$test" --virtual 4 --quick --expect v2
fi

# In one process: a rank that never calls and a late rank (TimeoutError naming it, then StateError), mismatched
# calls under CUSTOMAR_CHECK, a mixed-size stress, create/destroy cycles.
if want reliability; then
  for n in 3 8; do
    run "virtual-no-call-w$n" CUSTOMAR_TIMEOUT_MS=2000 -- "$rel" no-call --virtual "$n"
    run "virtual-late-peer-w$n" CUSTOMAR_TIMEOUT_MS=2000 -- "$rel" late-peer --virtual "$n"
    run "virtual-no-call-push1-w$n" CUSTOMAR_TIMEOUT_MS=2000 -- "$rel" no-call --virtual "$n" --count 512
  done
  run "virtual-check-mode-w5" CUSTOMAR_CHECK=1 -- "$rel" check-mode --virtual 5
  for n in 2 5 7 8; do
    run "virtual-stress-w$n" -- "$rel" stress --virtual "$n" --calls 200000 --seconds 25
  done
  run "virtual-lifecycle-w4" -- "$rel" lifecycle --virtual 4 --iters 30
fi

# The fused all-reduce + residual + RMSNorm and the symmetric-buffer paths, at every world size as virtual ranks.
for kind in fused symmetric; do
  want "${kind%etric}" || continue
  bin="${bin_dir:+$bin_dir/}${kind}_test"
  [ -z "$bin_dir" ] && bin="${CUSTOMAR_BUILD_DIR:-build}/tests/gpu/${kind}_test"
  [ -x "$bin" ] || { echo "skip $kind: $bin not built"; continue; }
  for n in $vworlds; do run "virtual-$kind-w$n" -- "$bin" --virtual "$n"; done
done

# Bugs planted one at a time into the V2 device source (lab/scripts/plant-bug.sh); the matrix, or after it 20 s of
# back-to-back calls of mixed sizes and algorithms (a rank lapping a peer), must fail on each.
if want plants && [ -x "$ab" ]; then
  "$ab" --dump-source "$out/v2-builtin.cu"
  for plant in $(lab/scripts/plant-bug.sh --list); do
    lab/scripts/plant-bug.sh "$plant" "$out/v2-builtin.cu" "$out/v2-$plant.cu" || continue
    n=$(lab/scripts/plant-bug.sh --world "$plant") p=$(lab/scripts/plant-bug.sh --partition "$plant")
    expect_failure "plant-$plant-w$n" CUSTOMAR_TIMEOUT_MS=2000 -- bash -c \
      '"$1" --virtual "$2" --partition "$5" --quick --v2-source "$3" &&
       "$4" stress --virtual "$2" --partition "$5" --seconds 20 --v2-source "$3"' \
      plant "$test" "$n" "$out/v2-$plant.cu" "$rel" "$p"
  done
  # What one GPU cannot show is recorded, not counted: docs/virtual-ranks.md says why.
  for plant in $(lab/scripts/plant-bug.sh --unseen); do
    lab/scripts/plant-bug.sh "$plant" "$out/v2-builtin.cu" "$out/v2-$plant.cu" || continue
    n=$(lab/scripts/plant-bug.sh --world "$plant")
    if CUSTOMAR_TIMEOUT_MS=2000 "$test" --virtual "$n" --quick --v2-source "$out/v2-$plant.cu" > "$out/plant-$plant.log" 2>&1
    then echo "plant $plant (w$n): not caught on one GPU, as expected"; else echo "plant $plant (w$n): caught"; fi
  done
fi

# The Python binding (a staged wheel in .whl/, or customar importable), the import-order matrix, the examples.
if want python; then
  if ls .whl/customar-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/customar-site \
      .whl/customar-*.whl && export PYTHONPATH="/tmp/customar-site:${PYTHONPATH:-}"
  fi
  if python3 -c "import customar" 2>/dev/null; then
    run "python-tests" PYTHONUNBUFFERED=1 -- python3 -m pytest -q -p no:cacheprovider -rs python/tests
    run "import-matrix" -- scripts/gpu-import-matrix.sh python3
    [ -f examples/virtual_tp.py ] && run "virtual-tp-example" -- python3 examples/virtual_tp.py
    [ "$gpus" -ge 2 ] && run "tp-mlp-example" -- python3 examples/tp_mlp.py --iters 100
  else
    echo "skip python: customar is not importable (stage a wheel with CUSTOMAR_WHEEL_PYTHON)"
  fi
fi

# Both README commands, as a new user runs them: a fresh copy of the tree (no build, no wheel), no network.
if want readme; then
  fresh=$(mktemp -d)/customar
  mkdir -p "$fresh" && tar --exclude=./build --exclude='./build-*' --exclude=./.gpu-bin --exclude=./.whl \
    --exclude=./.peers --exclude=./.dbg -cf - . | tar -xf - -C "$fresh"
  run "readme-run-main" CUSTOMAR_JOBS=16 LD_LIBRARY_PATH="$user_ld_library_path" -- bash -c "cd $fresh && scripts/run-main.sh"
  run "readme-test" CUSTOMAR_JOBS=16 LD_LIBRARY_PATH="$user_ld_library_path" -- bash -c "cd $fresh && scripts/test.sh"
fi

# Kernels whose source changed, against their earlier source, in the same run (virtual ranks: a one-GPU comparison).
if want ab && [ -x "$ab" ] && ls .ab/*.cu >/dev/null 2>&1; then
  for v in .ab/*.cu; do
    for algo in oneshot_pull twoshot; do
      "$ab" --virtual 2 --algo "$algo" -b 1K -e 32M -r 3 builtin "$v" > "$out/ab-$(basename "$v" .cu)-$algo.txt" 2>&1 ||
        echo "FAIL ab $v $algo"
    done
  done
fi

# The peers' released packages (lab/peers, carried in .peers/): each imports, its kernels compile, what runs at one
# GPU runs.
if want peers && [ -d .peers ]; then
  run "peers-check" -- timeout 500 lab/peers/gpu-peers.sh check
fi

# Several GPUs: the multi-process matrix, forced topologies, the benchmark, tuner and peers.
if want multi && [ "$gpus" -ge 2 ]; then
  for ws in 2 4 8; do
    [ "$gpus" -ge "$ws" ] || continue
    run "auto-w$ws" CUSTOMAR_DEBUG=WARN -- "$test" -n "$ws" --expect v2
    run "disable-v2-w$ws" CUSTOMAR_DISABLE_V2=1 -- "$test" -n "$ws" --quick --expect v1
  done
  run "topo-pcie2" CUSTOMAR_TOPO_FILE=$data/pcie2.json -- "$test" -n 2 --quick --expect v1
  [ "$gpus" -ge 4 ] && run "topo-pcie4" CUSTOMAR_TOPO_FILE=$data/pcie4.json -- "$test" -n 4 --quick --expect nccl
  run "disabled" CUSTOMAR_DISABLE=1 -- "$test" -n 2 --quick --expect nccl
  run "world-1" -- "$test" -n 1 --quick --expect none
  jit=$(mktemp -d)
  run "jit-cold" CUSTOMAR_CACHE_DIR=$jit CUSTOMAR_DEBUG=INFO CUSTOMAR_DEBUG_SUBSYS=JIT -- "$test" -n 2 --smoke
  run "jit-warm" CUSTOMAR_CACHE_DIR=$jit CUSTOMAR_DEBUG=INFO CUSTOMAR_DEBUG_SUBSYS=JIT -- "$test" -n 2 --smoke
fi
if want bench && [ "$gpus" -ge 2 ] && [ -x "$perf" ]; then
  for ws in ${CUSTOMAR_BENCH_WORLDS:-2 4 8}; do
    [ "$gpus" -ge "$ws" ] || continue
    [ -x "$floor" ] && "$floor" -g "$ws" | tee "$out/floor-w$ws.txt"
    "$perf" -g "$ws" -k all -e 256M -J "$out/perf-w$ws.jsonl" | tee "$out/perf-w$ws.txt"
    "$perf" -g "$ws" -k auto -c 0 --tune "$out/tuned-w$ws.json" | grep "^# tune"
  done
  anchors="${CUSTOMAR_ANCHORS:-}"
  [ -z "$anchors" ] && [ -f .anchors/anchors.py ] && anchors=.anchors/anchors.py
  if [ -n "$anchors" ]; then
    for ws in ${CUSTOMAR_BENCH_WORLDS:-2 4 8}; do
      [ "$gpus" -ge "$ws" ] && run "anchors-w$ws" -- timeout 400 python3 "$anchors" "$ws" "$out/anchors-w$ws.json"
    done
  fi
fi

printf '%s\n' "${summary[@]}"
echo "gpu-check: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
