#!/usr/bin/env bash
# The V2 device source of an earlier commit, for customar-ab (a same-run A/B of the kernels before and after a
# change): the device headers concatenated as src/kernels/v2/embed.cmake does, plus forwarding bodies under today's
# record names (kernels/variants.h) where the commit still had the old ones.
#   lab/scripts/source-at.sh COMMIT OUT.cu
set -euo pipefail
commit="$1" out="$2"
cd "$(dirname "$0")/../.."
{
  for f in src/kernels/handle.h src/kernels/shape.h src/kernels/device/common.cuh src/kernels/device/oneshot_pull.cuh \
           src/kernels/device/twoshot.cuh src/kernels/device/oneshot_push.cuh; do
    git cat-file -e "$commit:$f" 2>/dev/null || continue
    echo "// ---- $(basename "$f") at $commit"
    git show "$commit:$f" | grep -v '^#include "' | grep -v '^#pragma once'
  done
  body() {  # NEW OLD: a forwarding body when the commit has OLD but not NEW
    if git show "$commit:src/kernels/device/oneshot_push.cuh" | grep -q "void $1("; then return; fi
    cat <<CU
namespace customar::detail {
template <typename T, int W, bool kPdl>
__device__ __forceinline__ void $1(const DeviceHandle& h, const T* in, T* out, size_t nvec, bool ia, bool oa) {
  $2<T, W, kPdl>(h, in, out, nvec, ia, oa);
}
}  // namespace customar::detail
CU
  }
  body push_one_block_body oneshot_push1_body
  body push_multi_block_body oneshot_push_body
  body push_wide_body oneshot_pushw_body
} > "$out"
echo "$out: $(wc -l < "$out") lines from $commit"
