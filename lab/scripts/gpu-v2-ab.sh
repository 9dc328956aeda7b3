#!/usr/bin/env bash
# A/B of V2 kernel variants on one build and one machine: lab/ab/customar_ab.cpp behind the product's Communicator,
# several rounds interleaved (so drift hits every variant alike), every result checked.
#   lab/scripts/gpu-v2-ab.sh [customar-ab flags] VARIANT.cu...      ("builtin" = the compiled-in source)
# A variant starts from `customar-ab --dump-source v.cu` (the built-in device source); keep DeviceHandle's layout.
# The lab needs a build with -DCUSTOMAR_BUILD_LAB=ON (CUSTOMAR_BUILD_DIR, default build).
set -u
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
ab="${CUSTOMAR_BUILD_DIR:-build}/lab/customar-ab"
[ -x "$ab" ] || { echo "gpu-v2-ab: $ab missing: configure with -DCUSTOMAR_BUILD_LAB=ON" >&2; exit 2; }
exec "$ab" "$@"
