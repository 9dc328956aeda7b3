# Shared by scripts/gpu-check.sh and scripts/gpu-stress.sh (sourced, not run): where the binaries are, the
# environment every GPU process gets, and `run`, which runs one named check and tallies it.
# Sets: bin_dir (empty for the build tree), info, test, rel, perf, floor, ab, out, gpus, passed, failed, summary,
# user_ld_library_path.

# NVLink multicast stays off in every process we start (it can take a shared host's GPUs out of service).
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
# The caller's library path, for what must run as a user would run it (the README commands): the staged libcustomar
# in front of it would be loaded in place of a fresh build's own.
user_ld_library_path="${LD_LIBRARY_PATH:-}"
if [ -n "${1:-}" ]; then bin_dir="$1"; elif [ -d .gpu-bin ]; then bin_dir=.gpu-bin; else bin_dir=""; fi
if [ -n "$bin_dir" ]; then
  export LD_LIBRARY_PATH="$PWD/$bin_dir:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}"
  info="$bin_dir/customar-info" test="$bin_dir/allreduce_test" rel="$bin_dir/reliability_test"
  perf="$bin_dir/customar-perf" floor="$bin_dir/customar-floor" ab="$bin_dir/customar-ab"
else
  b="${CUSTOMAR_BUILD_DIR:-build}"
  info="$b/tools/customar-info" test="$b/tests/gpu/allreduce_test" rel="$b/tests/gpu/reliability_test"
  perf="$b/tools/customar-perf" floor="$b/lab/customar-floor" ab="$b/lab/customar-ab"
fi
out="${OUT:-/tmp/customar-$(basename "$0" .sh)}"
mkdir -p "$out"
gpus=$(nvidia-smi -L | wc -l)
passed=0 failed=0
summary=()

# run NAME [ENV=VALUE...] -- COMMAND...: output to $out/NAME.log; on failure its tail is printed. Each run is
# bounded by CUSTOMAR_RUN_TIMEOUT seconds (default 600).
# expect_failure NAME ...: the same, passing when the command fails (a planted bug must be caught); the first FAIL
# line it printed is shown.
expect_failure() {
  local name="$1"; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  if timeout "${CUSTOMAR_RUN_TIMEOUT:-600}" env "${envs[@]}" "$@" > "$out/$name.log" 2>&1; then
    failed=$((failed + 1)); summary+=("FAIL $name (the planted bug was not caught)")
  else
    passed=$((passed + 1))
    summary+=("PASS $name (caught: $( (grep -m1 '^FAIL' "$out/$name.log" || tail -n 1 "$out/$name.log") | cut -c1-160))")
  fi
}
run() {
  local name="$1"; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  local t0
  t0=$(date +%s%N)
  if timeout "${CUSTOMAR_RUN_TIMEOUT:-600}" env "${envs[@]}" "$@" > "$out/$name.log" 2>&1; then
    passed=$((passed + 1)); summary+=("PASS $name ($(tail -1 "$out/$name.log"))")
  else
    failed=$((failed + 1)); summary+=("FAIL $name"); echo "---- $name ----"; tail -20 "$out/$name.log"
  fi
  printf '%-40s %7d ms\n' "$name" $(( ($(date +%s%N) - t0) / 1000000 ))
  grep -h "^metric:\|^  error:" "$out/$name.log" | head -12
  return 0
}
