#!/usr/bin/env bash
# The import-order matrix, on a GPU machine with PyTorch, CuPy and JAX: customar shares one process with each of
# them in every order, and every process prints OK. LD_DEBUG=libs records which libnccl each process loaded (its
# "calling init" lines); a process that loads two different ones is marked (not failed: customar loads none at
# import, so they come from the frameworks), since two NCCLs under the soname libnccl.so.2 in one process is what
# made `import customar; import torch` abort ("free(): invalid pointer") while libcustomar linked NCCL. With two or more GPUs it then builds a Communicator whose backend is NCCL
# (CUSTOMAR_DISABLE=1) in processes that imported customar before torch, checks the sum beside torch.distributed's
# own NCCL, and shows which NCCL customar drove and why (CUSTOMAR_DEBUG=INFO).
#
#   scripts/gpu-import-matrix.sh [PYTHON]   PYTHON (default python3) must import customar: installed, or on
#                                           PYTHONPATH as gpu-check.sh puts a staged wheel there
#
# One line per case: OK / FAIL, the imports in order, and the libnccl files loaded. Logs in ${OUT:-/tmp/...}.
# About 31 processes of a few seconds each, run side by side. Exit status: 0 when every case printed OK, else 1.
set -uo pipefail
py="${1:-python3}"
out="${OUT:-/tmp/customar-gpu-import-matrix}"
mkdir -p "$out"
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX would take most of the GPU's memory at its first use

# Imports the named modules in order, each with what makes it load its CUDA libraries (and NCCL where it links it).
read -r -d '' importer <<'EOF'
import sys

def load_cupy_nccl():
    import cupy
    cupy.zeros(1)
    try:
        import cupy_backends.cuda.libs.nccl  # noqa: F401  (links libnccl.so.2 where CuPy has NCCL)
    except ImportError:
        pass

steps = {
    "customar": lambda: __import__("customar"),
    "torch": lambda: __import__("torch").cuda.init(),
    "torch.distributed": lambda: __import__("torch.distributed"),
    "cupy": load_cupy_nccl,
    "jax": lambda: __import__("jax").devices(),
}
for name in sys.argv[1:]:
    steps[name]()
print("OK", " ".join(sys.argv[1:]))
EOF

# The libnccl files one process's LD_DEBUG log shows initialised, one per line.
nccls_of() { grep -o 'calling init: [^ ]*libnccl[^ ]*' "$1" 2>/dev/null | sed 's/calling init: //' | sort -u; }

failed=0
# case NAME COMMAND...: runs COMMAND with LD_DEBUG=libs (one log per process) and prints one line.
case_() {
  local name="$1"; shift
  local log
  log="$out/$(printf '%s' "$name" | tr -c 'A-Za-z0-9_\n' '-')"
  rm -f "$log".ld.*
  local status=OK
  if ! LD_DEBUG=libs LD_DEBUG_OUTPUT="$log.ld" timeout 300 "$@" </dev/null >"$log.out" 2>&1 || ! grep -q '^OK' "$log.out"; then
    status=FAIL; failed=1
  fi
  local f all
  for f in "$log".ld.*; do
    [ -e "$f" ] && [ "$(nccls_of "$f" | grep -c .)" -gt 1 ] && status+=" (two NCCLs in one process)"
  done
  all=$(cat "$log".ld.* 2>/dev/null | nccls_of /dev/stdin | tr '\n' ' ')
  printf '%-36s %-50s libnccl: %s\n' "$status" "$name" "${all:-none}"
  [ "${status%% *}" = OK ] || tail -5 "$log.out"
}

echo "# import order (one process each, ${CUSTOMAR_IMPORT_JOBS:-8} at a time)"
pairs=("customar torch" "customar torch.distributed" "torch customar" "customar cupy" "cupy customar" "customar jax"
       "jax customar")
orders=$("$py" -c 'import itertools; [print(*p) for p in itertools.permutations(["customar", "torch", "cupy", "jax"])]')
# The processes are independent, so they run side by side; each case's line goes to its own file and the lines are
# printed in the cases' order.
i=0
while read -r order; do
  read -ra mods <<<"$order"
  while [ "$(jobs -rp | wc -l)" -ge "${CUSTOMAR_IMPORT_JOBS:-8}" ]; do wait -n; done
  case_ "$order" "$py" -c "$importer" "${mods[@]}" >"$out/case-$(printf '%02d' $i).line" &
  i=$((i + 1))
done < <(printf '%s\n' "${pairs[@]}" "$orders")
wait
cat "$out"/case-*.line
grep -q '^FAIL' "$out"/case-*.line && failed=1

gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
if [ "$gpus" -ge 2 ]; then
  echo "# customar's NCCL backend beside torch.distributed's NCCL, customar imported first (2 processes)"
  read -r -d '' nccl_backend <<'EOF'
import os, socket
import customar  # first, as in the report of the abort
import torch
import torch.distributed as dist

def worker(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.cuda.set_device(rank)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    comm = customar.Communicator(dist.group.WORLD, rank)
    assert comm.backend == "nccl", comm.reason
    x = torch.full((1 << 20,), float(rank + 1), device="cuda")
    out = comm.all_reduce(x)
    theirs = x.clone()
    dist.all_reduce(theirs, group=dist.new_group(backend="nccl"))
    torch.cuda.synchronize()
    want = world * (world + 1) / 2
    assert bool((out == want).all()) and bool((theirs == want).all()), (out[:4], theirs[:4])
    del comm
    dist.destroy_process_group()

if __name__ == "__main__":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(worker, args=(2, port), nprocs=2)
    print("OK nccl backend")
EOF
  # A file, not -c: spawned workers import the main module to find worker().
  printf '%s\n' "$nccl_backend" >"$out/nccl_backend.py"
  case_ "nccl-backend customar-first" env CUSTOMAR_DISABLE=1 CUSTOMAR_DEBUG=INFO CUSTOMAR_DEBUG_SUBSYS=INIT \
    "$py" "$out/nccl_backend.py"
  grep -h "NCCL [0-9.]* at" "$out/nccl-backend-customar-first.out" | sed 's/^/  /' | sort -u
fi
exit "$failed"
