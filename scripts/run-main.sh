#!/usr/bin/env bash
# The main job (README's first command): installs what is missing, builds, and runs customar-info, which prints the
# detected topology and, for each world size, the backend customar would pick and why.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh
scripts/build.sh
"${CUSTOMAR_BUILD_DIR:-build}/tools/customar-info" "$@"
