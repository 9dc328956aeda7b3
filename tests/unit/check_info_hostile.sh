#!/bin/sh
# customar-info against hostile and broken input, run as users run it: one case per ctest (tests/unit/CMakeLists.txt).
# Usage: check_info_hostile.sh CASE INFO DATA_DIR WORK_DIR. Exits 0 when the case holds; else prints why and exits 1.
# Every run of customar-info is bounded by `timeout`: a hang is a failure (exit 124), not a stuck CI job.
set -u
case_name=$1 info=$2 data=$3 work=$4/$1
rm -rf "$work" && mkdir -p "$work" && chmod 700 "$work"
topo=$data/nvlink8.json

fail() { echo "FAIL ($case_name): $*"; echo "--- stdout"; cat "$work/out" 2>/dev/null; echo "--- stderr"; cat "$work/err" 2>/dev/null; exit 1; }
# run [VAR=VALUE...] -- ARGS: customar-info with that environment; $rc, $work/out, $work/err.
run() {
  vars=""
  while [ "$1" != "--" ]; do vars="$vars $1"; shift; done
  shift
  env -u CUSTOMAR_CONFIG_FILE -u CUSTOMAR_TOPO_FILE -u CUSTOMAR_CACHE_DIR $vars timeout 20 "$info" "$@" \
    >"$work/out" 2>"$work/err"
  rc=$?
  [ $rc -ne 124 ] || fail "customar-info hung"
}
expect_error() {  # expect_error TEXT: exit code 2 and TEXT in stderr
  [ $rc -eq 2 ] || fail "exit code $rc, expected 2"
  grep -qF -- "$1" "$work/err" || fail "stderr lacks '$1'"
}
expect_out() { grep -qF -- "$1" "$work/out" || fail "stdout lacks '$1'"; }
expect_builtin() {  # the thresholds came from the built-in table alone
  [ $rc -eq 0 ] || fail "exit code $rc"
  grep -q "config: built-in$" "$work/out" || fail "a tuned config was loaded"
}
no_esc() { ! grep -q "$(printf '\033')" "$1" || fail "a raw ESC byte reached $1"; }
tuned() {  # tuned MODE: a cache dir holding a tuned config of zero thresholds, mode MODE
  mkdir -p "$work/cache" && chmod 700 "$work/cache"
  printf '{"entries": [{"arch": "hopper", "world_size": 8, "oneshot_push_max": 0, "oneshot_pull_max": 0}]}' \
    >"$work/cache/tuned-config.json"
  chmod "$1" "$work/cache/tuned-config.json"
}

case $case_name in
  topo_empty_name)
    run -- --topo ""; expect_error "--topo needs a file name" ;;
  topo_directory)
    run -- --topo "$data"; expect_error "is a directory" ;;
  topo_fifo)
    mkfifo "$work/topo.json"; run -- --topo "$work/topo.json"; expect_error "is a FIFO" ;;
  config_dev_zero)
    run CUSTOMAR_CONFIG_FILE=/dev/zero -- --topo "$topo"; expect_error "is a character device" ;;
  config_sparse_2g)
    # 1 GB of address space: a reader that reads the file whole ends in std::bad_alloc. Not under AddressSanitizer,
    # which reserves terabytes of shadow memory.
    ldd "$info" 2>/dev/null | grep -q libasan || ulimit -v 1000000
    truncate -s 2G "$work/big.json"; run CUSTOMAR_CONFIG_FILE="$work/big.json" -- --topo "$topo"
    expect_error "larger than 1 MiB" ;;
  config_fifo)
    mkfifo "$work/c.json"; run CUSTOMAR_CONFIG_FILE="$work/c.json" -- --topo "$topo"; expect_error "is a FIFO" ;;
  tuned_trusted_is_loaded)
    tuned 644; run CUSTOMAR_CACHE_DIR="$work/cache" -- --topo "$topo"
    [ $rc -eq 0 ] || fail "exit code $rc"; expect_out "config: built-in + $work/cache/tuned-config.json" ;;
  tuned_world_writable_is_ignored)
    tuned 666; run CUSTOMAR_CACHE_DIR="$work/cache" -- --topo "$topo"
    expect_builtin
    grep -qF "writable by group or others" "$work/err" || fail "no warning" ;;
  tuned_dir_world_writable_is_ignored)
    tuned 644; chmod 777 "$work/cache"; run CUSTOMAR_CACHE_DIR="$work/cache" -- --topo "$topo"
    expect_builtin
    grep -qF "writable by group or others" "$work/err" || fail "no warning" ;;
  tuned_fifo_is_ignored)
    mkdir -p "$work/cache" && chmod 700 "$work/cache" && mkfifo "$work/cache/tuned-config.json"
    run CUSTOMAR_CACHE_DIR="$work/cache" -- --topo "$topo"
    expect_builtin ;;
  dump_over_symlink)
    echo "someone else's" >"$work/victim"; ln -s "$work/victim" "$work/dump.json"
    run -- --topo "$topo" --dump "$work/dump.json"; expect_error "is a symbolic link"
    [ "$(cat "$work/victim")" = "someone else's" ] || fail "the link's target was overwritten"
    [ -L "$work/dump.json" ] || fail "the link was replaced"
    [ "$(ls -A "$work" | wc -l)" -eq 4 ] || fail "a temporary file was left: $(ls -A "$work")" ;;
  dump_over_fifo)
    mkfifo "$work/dump.json"; run -- --topo "$topo" --dump "$work/dump.json"; expect_error "is a FIFO"
    [ -p "$work/dump.json" ] || fail "the FIFO was replaced" ;;
  dump_empty_name)
    run -- --topo "$topo" --dump ""; expect_error "--dump needs a file name" ;;
  escapes_in_names)
    # A GPU name with a terminal title escape, a bell and a right-to-left override (valid JSON, valid UTF-8).
    sed 's/"NVIDIA H100 80GB HBM3"/"evil\\u001b]0;pwned\\u0007\\u202e"/; s/"sm": 90/"sm": 70/' "$topo" \
      >"$work/evil.json"
    run -- --topo "$work/evil.json"; [ $rc -eq 0 ] || fail "exit code $rc"
    no_esc "$work/out"; expect_out 'evil\x1B]0;pwned\x07\u{202E}'
    run -- --topo "$work/evil.json" --json; [ $rc -eq 0 ] || fail "exit code $rc"
    no_esc "$work/out"; expect_out 'evil\u001b]0;pwned\u0007\u202e'
    if command -v python3 >/dev/null; then
      python3 -c 'import json,sys; json.loads(open(sys.argv[1], "rb").read().decode("utf-8"))' "$work/out" \
        || fail "--json output is not valid UTF-8 JSON"
    fi ;;
  *)
    echo "unknown case $case_name"; exit 1 ;;
esac
rm -rf "$work"
echo "ok ($case_name)"
