#!/usr/bin/env bash
# The latency floors (customar-floor) and the one-shot push at several block shapes (CUSTOMAR_PUSH_THREADS), every
# result checked, at each world size present; then the tuner. A short call (minutes) for the small-message work of
# bench/NOTES.md. Usage: scripts/gpu-push-sweep.sh [BIN_DIR]. Script switch: CUSTOMAR_SWEEP_THREADS (default
# "0 64 128 256"), CUSTOMAR_SWEEP_MAX (largest size, default 4M).
set -u
cd "$(dirname "$0")/.."
source scripts/gpu-lib.sh "${1:-}"
nvidia-smi --query-gpu=index,name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv,noheader
for ws in 2 4 8; do
  [ "$gpus" -ge "$ws" ] || continue
  "$floor" -g "$ws" | tee "$out/floor-w$ws.txt"
  for t in ${CUSTOMAR_SWEEP_THREADS:-0 64 128 256}; do
    CUSTOMAR_PUSH_THREADS=$t CUSTOMAR_ALGO=oneshot_push "$perf" -g "$ws" -k v2 -b 1K -e "${CUSTOMAR_SWEEP_MAX:-4M}" \
      -J "$out/push-w$ws-t$t.jsonl" > "$out/push-w$ws-t$t.txt" 2>&1 || echo "FAIL push threads=$t world=$ws"
  done
  # One table: out-of-place µs per size, one column per block shape, and the wrong-result count of all.
  python3 - "$out" "$ws" ${CUSTOMAR_SWEEP_THREADS:-0 64 128 256} <<'PY'
import json, sys
out, ws, shapes = sys.argv[1], sys.argv[2], sys.argv[3:]
rows, wrong = {}, 0
for t in shapes:
    try:
        for line in open(f"{out}/push-w{ws}-t{t}.jsonl"):
            r = json.loads(line)
            if r.get("backend") not in ("v2", "auto"):
                continue
            rows.setdefault(r["bytes"], {})[t] = r["oop_us"]
            wrong += r.get("wrong", 0)
    except OSError:
        pass
print(f"# push sweep, world {ws}: us per call (graph), by CUSTOMAR_PUSH_THREADS; wrong results in all: {wrong}")
print("bytes".rjust(10) + "".join(f"t={t}".rjust(9) for t in shapes))
for b in sorted(rows):
    print(str(b).rjust(10) + "".join((f"{rows[b][t]:.2f}" if t in rows[b] else "-").rjust(9) for t in shapes))
PY
done
