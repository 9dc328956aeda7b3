#!/usr/bin/env bash
# The peers on the GPU machine, from what lab/peers/fetch.sh left in .peers/ (carry it): unpacks site.tar.xz into a
# temporary folder on PYTHONPATH, puts the carried FlashInfer comm modules (.peers/aot/*.so) where FlashInfer loads
# prebuilt modules instead of compiling, and runs lab/peers/run_peers.py.
#   lab/peers/gpu-peers.sh check              one GPU: every peer imports, builds, and runs what runs at world size 1
#   lab/peers/gpu-peers.sh build DIR          builds FlashInfer's comm modules from source, copies the .so files to DIR
#   lab/peers/gpu-peers.sh bench|fused ...    run_peers.py bench / fused (see its --help)
#   lab/peers/gpu-peers.sh all DIR [WORLDS]   bench and fused at each world size (default: those of 2 4 8 that fit),
#                                             JSON lines to DIR/peers-wN.jsonl and DIR/fused-wN.jsonl
# NVLink multicast stays off in every process (it can put a shared host's GPUs out of service).
set -euo pipefail
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
site="${PEERS_SITE:-/tmp/peers-site}"
cache="${PEERS_CACHE_DIR:-/tmp/peers-cache}"
py="${PYTHON:-python3}"
if [ ! -f "$root/.peers/site.tar.xz" ]; then
  echo "gpu-peers: no .peers/site.tar.xz: run lab/peers/fetch.sh and carry .peers" >&2
  exit 2
fi

stamp="$(cksum < "$root/.peers/site.tar.xz")"
if [ "$(cat "$site/.stamp" 2>/dev/null)" != "$stamp" ]; then
  t0=$(date +%s)
  rm -rf "$site" && mkdir -p "$site"
  tar -xJf "$root/.peers/site.tar.xz" -C "$site"
  echo "$stamp" > "$site/.stamp"
  echo "# gpu-peers: unpacked .peers/site.tar.xz into $site in $(( $(date +%s) - t0 )) s"
fi
for so in "$root"/.peers/aot/*.so; do
  [ -f "$so" ] || continue
  name="$(basename "$so" .so)"
  mkdir -p "$site/flashinfer/data/aot/$name"
  cp "$so" "$site/flashinfer/data/aot/$name/$name.so"
  echo "# gpu-peers: FlashInfer loads the carried $name.so (not compiled here)"
done
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export FLASHINFER_WORKSPACE_BASE="$cache" TVM_FFI_CACHE_DIR="$cache/tvm-ffi"
export PEERS_RUN="${PEERS_RUN:-$(hostname)-$(date +%Y%m%dT%H%M%S)}"  # the `run` of every JSON line of this call

if [ "${1:-}" = all ]; then
  dir="${2:?usage: gpu-peers.sh all DIR [WORLDS]}"
  gpus=$(nvidia-smi -L | wc -l)
  mkdir -p "$dir"
  status=0
  for w in ${3:-2 4 8}; do
    [ "$gpus" -ge "$w" ] || continue
    # A stuck step ends at PEERS_STEP_TIMEOUT seconds, so that the next ones still run and their files come back.
    for mode in bench fused; do
      [ $mode = bench ] && file="$dir/peers-w$w.jsonl" || file="$dir/fused-w$w.jsonl"
      timeout -k 10 "${PEERS_STEP_TIMEOUT:-420}" "$py" "$here/run_peers.py" $mode -g "$w" -J "$file" || status=1
    done
  done
  exit $status
fi
exec "$py" "$here/run_peers.py" "$@"
