#!/usr/bin/env bash
# Plants one known bug into a copy of the V2 device source, so that the test matrix can show it catches it
# (scripts/gpu-check.sh runs allreduce_test --virtual N --v2-source PLANTED for each).
#   lab/scripts/plant-bug.sh --list            the plants the virtual-rank matrix must catch
#   lab/scripts/plant-bug.sh --unseen          plants one GPU does not show (cross-GPU memory ordering:
#                                              docs/virtual-ranks.md)
#   lab/scripts/plant-bug.sh --world NAME      the world size that plant needs
#   lab/scripts/plant-bug.sh --partition NAME  how the virtual ranks share the GPU for it (allreduce_test --partition)
#   lab/scripts/plant-bug.sh NAME IN.cu OUT.cu writes the planted copy; fails if the source no longer has the target
set -euo pipefail
case "${1:-}" in
  --list) echo "twoshot-partition push-no-rearm twoshot-no-second-barrier pull-one-staging-buffer"; exit 0 ;;
  --unseen) echo "flags-gpu-scope"; exit 0 ;;
  --world)
    case "$2" in twoshot-partition) echo 6 ;; push-no-rearm) echo 2 ;; *) echo 8 ;; esac
    exit 0 ;;
  # A rank laps a peer only when their blocks run at different paces: with green contexts each rank's blocks own
  # their SMs and keep pace; capped grids put blocks of several ranks on one SM.
  --partition)
    case "$2" in pull-one-staging-buffer) echo capped ;; *) echo auto ;; esac
    exit 0 ;;
esac
name="$1" in="$2" out="$3"
plant() {  # FROM TO: replace one literal line fragment, or fail when it is not there
  grep -qF "$1" "$in" || { echo "plant-bug: '$1' not found in $in" >&2; exit 1; }
  FROM="$1" TO="$2" python3 -c 'import os,sys; s=open(sys.argv[1]).read(); open(sys.argv[2],"w").write(s.replace(os.environ["FROM"], os.environ["TO"], 1))' "$in" "$out"
}
case "$name" in
  # Only a world of 6 ranks loses the last vector of every part: the partition is one vector short there.
  twoshot-partition) plant "size_t part = (nvec + world - 1) / world;" \
                           "size_t part = (nvec + world - 1) / world - (world == 6 && nvec > 64 ? 1 : 0);" ;;
  # The push buffer is never re-armed with the sentinel: a later call reads an old call's data as arrived.
  push-no-rearm) plant "old[i] = sentinel;" "(void)old;" ;;
  # Two-shot without its second barrier: a rank gathers parts its peers have not finished reducing.
  twoshot-no-second-barrier) plant "if (!block_barrier<W>(h, 1, s)) return;" "" ;;
  # One staging buffer instead of two: call k+1 overwrites what a slow peer still reads of call k.
  pull-one-staging-buffer) plant "(epoch & 1) * h.capacity" "0 * h.capacity" ;;
  # Barrier flags at GPU scope instead of system scope: wrong across GPUs, invisible on one.
  flags-gpu-scope) plant 'st.release.sys.global.u64' 'st.release.gpu.global.u64' ;;
  *) echo "plant-bug: unknown plant $name" >&2; exit 2 ;;
esac
echo "planted $name into $out"
