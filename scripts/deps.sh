#!/usr/bin/env bash
# Installs what the build needs and is missing (Debian/Ubuntu, as root). Safe to run again; does nothing when all is
# present, so it also runs on machines without network access that already have everything. ccache is optional: it
# comes along when something needed is being installed anyway, and its failure to install stops nothing.
set -euo pipefail
need=()
command -v cmake >/dev/null || need+=(cmake)
command -v ninja >/dev/null || need+=(ninja-build)
command -v g++ >/dev/null || need+=(g++)
command -v readelf >/dev/null || need+=(binutils)
[ -f /usr/include/gtest/gtest.h ] || need+=(libgtest-dev)
command -v python3 >/dev/null || need+=(python3)
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
apt_install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@"; }
if [ ${#need[@]} -gt 0 ]; then
  echo "deps: installing ${need[*]}"
  $SUDO apt-get update -qq
  apt_install "${need[@]}"
  if ! command -v ccache >/dev/null; then
    apt_install ccache >/dev/null 2>&1 || echo "deps: ccache not installed (optional: builds run without a compiler cache)"
  fi
fi
if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  echo "deps: the CUDA toolkit (nvcc, and NVRTC for the V2 kernels) is needed under /usr/local/cuda" >&2
  exit 1
fi
