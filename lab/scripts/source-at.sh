#!/usr/bin/env bash
# A V2 device source for customar-ab (a same-run A/B of kernels before and after a change): today's device headers in
# the order src/CMakeLists.txt embeds them, with FILEs (basenames under src/kernels/device/) taken from COMMIT.
# Everything else is today's, so the generated entry points of every kernel (norm and symmetric ones included) still
# compile and only the named kernels differ.
#   lab/scripts/source-at.sh COMMIT OUT.cu FILE...      e.g. source-at.sh 1c4177c old.cu oneshot_pull.cuh twoshot.cuh
# A handle field the commit's kernels read and today's DeviceHandle lacks is read as an expression of today's handle
# with the product's value then (the table below): the same kind of load and branch, so the A/B sees its cost.
set -euo pipefail
commit="$1" out="$2"
shift 2
[ $# -gt 0 ] || { echo "source-at: name the device files to take from $commit" >&2; exit 2; }
cd "$(dirname "$0")/../.."
git rev-parse -q --verify "$commit^{commit}" >/dev/null || { echo "source-at: no commit $commit" >&2; exit 2; }
# Removed handle fields: name -> an always-false expression over today's handle (skip_copy_in was false in the product).
removed_fields=(-e 's/\bh\.skip_copy_in\b/(h.rank < 0)/g')
files=$(sed -n '/^set(CUSTOMAR_DEVICE_SOURCES/,/)/p' src/CMakeLists.txt | grep -o 'kernels/[A-Za-z0-9_/]*\.[a-z]*')
for want in "$@"; do
  grep -qx "kernels/device/$want" <<<"$files" || { echo "source-at: $want is not a device source" >&2; exit 2; }
done
{
  for f in $files; do
    name=$(basename "$f")
    if printf '%s\n' "$@" | grep -qx "$name"; then
      git cat-file -e "$commit:src/$f" 2>/dev/null || { echo "source-at: $commit has no src/$f" >&2; exit 2; }
      echo "// ---- $name at $commit"
      git show "$commit:src/$f" | sed "${removed_fields[@]}"
    else
      echo "// ---- $name"
      cat "src/$f"
    fi | grep -v '^#include "' | grep -v '^#pragma once'
  done
} > "$out"
echo "source-at: $out: today's device source with $* from $commit"
