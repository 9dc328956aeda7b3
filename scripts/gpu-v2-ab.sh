#!/usr/bin/env bash
# A/B of V2 kernel variants on one build and one lease: customar-perf -k auto for each CUSTOMAR_V2_SOURCE file in
# turn, several rounds interleaved (so drift hits every variant alike), one line per size and variant.
# Usage: scripts/gpu-v2-ab.sh [-g GPUS] [-e MAX] [-r ROUNDS] VARIANT.cu...   ("builtin" = the compiled-in source)
# A variant starts from `customar-info --v2-source FILE` (the built-in device source); keep DeviceHandle's layout.
# Every result is checked (#wrong), so a variant that breaks the protocol shows up as wrong, not as fast. The kernel
# cache keys on the source text, so variants share it safely.
set -u
cd "$(dirname "$0")/.."
source scripts/gpu-lib.sh ""
g=2 max=64K rounds=2
while getopts "g:e:r:" opt; do
  case $opt in g) g=$OPTARG ;; e) max=$OPTARG ;; r) rounds=$OPTARG ;; *) exit 2 ;; esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { echo "usage: $0 [-g GPUS] [-e MAX] [-r ROUNDS] VARIANT.cu..." >&2; exit 2; }
echo "# variant round size algo oop_us wrong ip_us"
for round in $(seq 1 "$rounds"); do
  for v in "$@"; do
    src=""; [ "$v" != builtin ] && src="$(realpath "$v")"
    CUSTOMAR_V2_SOURCE="$src" "$perf" -g "$g" -k auto -e "$max" 2>&1 |
      awk -v v="$(basename "$v")" -v r="$round" '$5 == "auto" {print v, r, $1, $6, $7, $10, $11}'
  done
done
