#!/usr/bin/env bash
# Builds FlashInfer's comm modules (trtllm_comm, vllm_comm) on this machine, with no GPU, for sm_90a (H100/H200),
# into .peers/aot/, so that the GPU machine loads them instead of compiling. FlashInfer's build runs in Python and
# imports torch, so a Python 3.12 venv with torch 2.11 is made once under ${PEERS_CACHE:-~/.cache/customar-peers}.
# The compiles run at the lowest priority (nice 19), MAX_JOBS (default 2) at a time.
# Usage: lab/peers/fetch.sh first, then lab/peers/build-here.sh  (PEERS_PYTHON312=/path/to/python3.12 if not found)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${PEERS_CACHE:-$HOME/.cache/customar-peers}"
venv="$cache/venv312"
[ -f "$root/.peers/site.tar.xz" ] || { echo "build-here: run lab/peers/fetch.sh first" >&2; exit 2; }

if [ ! -x "$venv/bin/python" ]; then
  py312=""
  for c in ${PEERS_PYTHON312:-} python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3 /usr/bin/python3.12; do
    if "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then py312="$c"; break; fi
  done
  [ -n "$py312" ] || { echo "build-here: no Python 3.12 (set PEERS_PYTHON312)" >&2; exit 2; }
  "$py312" -m venv "$venv"
  # torch without its CUDA wheels: the toolkit in /usr/local/cuda has most libraries; these three it lacks.
  "$venv/bin/pip" install -q --no-deps torch==2.11.0 nvidia-cusparselt-cu13==0.8.0 nvidia-nvshmem-cu13==3.4.5 \
    nvidia-cufile==1.20.0.107
  "$venv/bin/pip" install -q --no-warn-conflicts numpy packaging requests tqdm nvidia-ml-py jinja2 filelock \
    "cuda-bindings>=13.0.3,<14" typing-extensions sympy networkx fsspec "setuptools<82" ninja
fi
site="$(mktemp -d)"
trap 'rm -rf "$site"' EXIT
tar -xJf "$root/.peers/site.tar.xz" -C "$site"
libs="$(ls -d "$venv"/lib/python3.12/site-packages/nvidia/*/lib | tr '\n' ':')"
export LD_LIBRARY_PATH="$libs/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PYTHONPATH="$site" FLASHINFER_CUDA_ARCH_LIST=9.0a FLASHINFER_WORKSPACE_BASE="$cache/flashinfer-build"
export MAX_JOBS="${MAX_JOBS:-2}" PATH="$venv/bin:/usr/local/cuda/bin:$PATH"
t0=$(date +%s)
nice -n 19 "$venv/bin/python" "$here/run_peers.py" build "$root/.peers/aot"
echo "build-here: $(( $(date +%s) - t0 )) s; .peers is $(du -sb "$root/.peers" | cut -f1) bytes"
