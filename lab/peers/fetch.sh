#!/usr/bin/env bash
# Fetches the peers' released packages for the GPU machine (Python 3.12, x86-64, no network there) and leaves what
# it carries in .peers/ (ignored): site.tar.xz (SGLang, FlashInfer pruned to its comm sources, apache-tvm-ffi) and
# MANIFEST.txt (pins, hashes, each requirement against the GPU machine's packages). FlashInfer's compiled comm
# modules go to .peers/aot/ (lab/peers/build-here.sh here, or `lab/peers/gpu-peers.sh build DIR` there).
# Usage: lab/peers/fetch.sh        (network to PyPI; wheels cached in ${PEERS_CACHE:-~/.cache/customar-peers})
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${PEERS_CACHE:-$HOME/.cache/customar-peers}/wheels"
py="${PYTHON:-python3}"
mkdir -p "$cache" "$root/.peers"
plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64 any; do plat+=(--platform "$p"); done
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
  -d "$cache" sglang==0.5.10.post1 flashinfer-python==0.7.2.post1 apache-tvm-ffi==0.1.15.post2
"$py" "$here/stage.py" "$cache" "$root/.peers"
echo "stand-ins (lab/peers/stubs, last on sys.path): $(cd "$here/stubs" && ls -d */ *.py | tr '\n' ' ')"
du -ab "$root/.peers" | sort -n | tail -8
echo "fetch: .peers is $(du -sb "$root/.peers" | cut -f1) bytes ($(du -sh "$root/.peers" | cut -f1));" \
  "carry it with \`carry: [\".peers\"]\`"
