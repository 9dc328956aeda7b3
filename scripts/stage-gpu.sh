#!/usr/bin/env bash
# Copies what scripts/gpu-check.sh runs into .gpu-bin/ (plain files, stripped), so a GPU machine without a
# compiler can run it: build here, carry .gpu-bin, run there. Usage: scripts/stage-gpu.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-${CUSTOMAR_BUILD_DIR:-build}}"
rm -rf .gpu-bin && mkdir -p .gpu-bin
cp -L "$build/src/libcustomar.so.0" .gpu-bin/libcustomar.so.0
for f in tools/customar-info tools/customar-perf lab/customar-floor lab/customar-ab tests/gpu/allreduce_test tests/gpu/reliability_test \
         tests/gpu/fused_test tests/gpu/symmetric_test; do
  [ -f "$build/$f" ] && cp "$build/$f" .gpu-bin/
done
strip --strip-debug .gpu-bin/* 2>/dev/null || true
du -sh .gpu-bin
# The Python wheel, for the GPU machine's Python (CUSTOMAR_WHEEL_PYTHON=/path/to/python3.12, the minor version there).
if [ -n "${CUSTOMAR_WHEEL_PYTHON:-}" ]; then
  rm -rf .whl
  "$CUSTOMAR_WHEEL_PYTHON" -m pip install -q nanobind scikit-build-core
  "$CUSTOMAR_WHEEL_PYTHON" -m pip wheel . --no-build-isolation --no-deps -w .whl -q
  ls .whl
fi
