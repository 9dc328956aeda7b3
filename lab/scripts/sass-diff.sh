#!/usr/bin/env bash
# SASS of every product kernel, for "did this change touch the code the GPU runs?": V1 from the built library, V2
# from NVRTC (world sizes 2..8, sm_90), one file per module with kernel names and addresses stripped so that two
# builds compare line by line. Needs cuobjdump and nvdisasm (the toolkit's, or the nvidia-cuda-cuobjdump and
# nvidia-cuda-nvdisasm wheels). No GPU.
#   lab/scripts/sass-diff.sh dump BUILD_DIR OUT_DIR      (BUILD_DIR configured with -DCUSTOMAR_BUILD_LAB=ON)
#   lab/scripts/sass-diff.sh diff OLD_DIR NEW_DIR         one line per module: same / differs (and which kernels)
set -euo pipefail
case "${1:-}" in
  dump)
    build="$2" out="$3"
    mkdir -p "$out"
    CUSTOMAR_CACHE_DIR="$(mktemp -d)" "$build/lab/customar-ab" --write-cubins "$out" 90
    # One function per block; names and the address comments dropped, so a renamed kernel with the same code compares
    # equal. The function name is kept on its own line as a header for the diff.
    strip_sass() { cuobjdump -sass "$1" | sed -E 's@/\*[0-9a-f]{4,}\*/@@g; s/[[:space:]]+$//' | grep -v '^$'; }
    for f in "$out"/*.cubin; do strip_sass "$f" > "${f%.cubin}.sass"; rm "$f"; done
    strip_sass "$build/src/libcustomar.so" > "$out/v1.sass"
    ;;
  diff)
    old="$2" new="$3"
    for f in "$old"/*.sass; do
      n="$new/$(basename "$f")"
      if [ ! -f "$n" ]; then echo "$(basename "$f"): missing in $new"; continue; fi
      python3 - "$f" "$n" <<'PY'
import re, sys
def funcs(path):
    out, name = {}, None
    for line in open(path):
        m = re.match(r'\s*Function : (\S+)', line)
        if m:
            name = m.group(1); out[name] = []
        elif name:
            out[name].append(" ".join(line.split()))  # column widths follow the longest name in the module
    return out
old, new = funcs(sys.argv[1]), funcs(sys.argv[2])
# Bodies compared by content: a kernel renamed with the same code is "same".
new_bodies = {tuple(v): k for k, v in new.items()}
changed = [k for k, v in old.items() if tuple(v) not in new_bodies]
name = sys.argv[1].rsplit('/', 1)[-1]
print(f"{name}: {'same' if not changed else 'differs'} ({len(old)} kernels before, {len(new)} after"
      + (f"; changed: {', '.join(sorted(changed))}" if changed else "") + ")")
PY
    done
    ;;
  *) echo "usage: $0 dump BUILD_DIR OUT_DIR | diff OLD_DIR NEW_DIR" >&2; exit 2 ;;
esac
