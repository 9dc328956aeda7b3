#!/usr/bin/env python3
"""Turns the peers' downloaded wheels into what the GPU machine unpacks: DEST/site.tar.xz and DEST/MANIFEST.txt.

    stage.py WHEEL_DIR DEST

Unpacks SGLang, FlashInfer and apache-tvm-ffi (a wheel unpacked is an installed pure or binary package: none of the
three has scripts or data that an installer would move), prunes FlashInfer to what flashinfer.comm builds from,
and lists every requirement in the wheels' metadata against the GPU machine's packages (gpu-machine-packages.txt):
there already, carried here, a stand-in (stubs/), or not imported by the modules the peers use.
Run by lab/peers/fetch.sh; stdlib only (and pip's vendored `packaging`).
"""
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
PINS = {"sglang": "0.5.10.post1", "flashinfer-python": "0.7.2.post1", "apache-tvm-ffi": "0.1.15.post2"}
# What SGLang's package import pulls in that its JIT all-reduce never calls and the GPU machine lacks (stubs/).
STAND_INS = {"ipython", "pybase64", "pydantic"}
NOTES = {"cuda-python": "a meta-package: cuda-bindings, which flashinfer imports, is on the GPU machine"}
# FlashInfer's comm module builds (jit/comm.py: trtllm_comm, vllm_comm) need these sources from data/csrc, its
# headers in data/include, and neither CUTLASS nor CCCL (the CUDA toolkit's own CCCL is used).
FI_CSRC_KEEP = {"trtllm_allreduce.cu", "trtllm_allreduce_fusion.cu", "trtllm_moe_allreduce_fusion.cu",
                "vllm_custom_all_reduce.cu", "tvm_ffi_utils.h"}
FI_DATA_DROP = ("cutlass", "cccl")
# SGLang's wheel also installs a top-level `tools` folder (a version script), which would shadow other `tools`.
TOP_DROP = ("tools",)


def norm(name):
    return name.lower().replace("_", "-").replace(".", "-")


def find_wheel(wheel_dir, dist):
    stem = dist.replace("-", "_") + "-" + PINS[dist] + "-"
    for f in sorted(os.listdir(wheel_dir)):
        if f.startswith(stem) and f.endswith(".whl"):
            return os.path.join(wheel_dir, f)
    raise SystemExit("stage.py: no wheel %s==%s in %s" % (dist, PINS[dist], wheel_dir))


def du(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def prune_flashinfer(site):
    data = os.path.join(site, "flashinfer", "data")
    before = du(os.path.join(site, "flashinfer"))
    for d in FI_DATA_DROP:
        shutil.rmtree(os.path.join(data, d))
    csrc = os.path.join(data, "csrc")
    for f in os.listdir(csrc):
        if f not in FI_CSRC_KEEP:
            p = os.path.join(csrc, f)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    missing = FI_CSRC_KEEP - set(os.listdir(csrc))
    if missing:
        raise SystemExit("stage.py: FlashInfer's wheel lacks %s" % sorted(missing))
    return "flashinfer pruned from %.0f MB to %.0f MB: data/%s removed, data/csrc cut to %s" % (
        before / 1e6, du(os.path.join(site, "flashinfer")) / 1e6, " and data/".join(FI_DATA_DROP),
        ", ".join(sorted(FI_CSRC_KEEP)))


def requirements(wheel):
    """(requirement, classification) for each Requires-Dist that applies on Linux x86-64, Python 3.12."""
    from pip._vendor.packaging.requirements import Requirement
    there = {norm(line.strip()) for line in open(os.path.join(HERE, "gpu-machine-packages.txt"))
             if line.strip() and not line.startswith("#")}
    env = {"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux",
           "python_version": "3.12", "python_full_version": "3.12.3", "implementation_name": "cpython"}
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        lines = z.read(meta).decode().splitlines()
    out = []
    for line in lines:
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker and not req.marker.evaluate(dict(env, extra="")):
            continue
        name = norm(req.name)
        if name in {norm(p) for p in PINS}:
            kind = "carried (pinned)"
        elif name in STAND_INS:
            kind = "stand-in (lab/peers/stubs)"
        elif name in NOTES:
            kind = NOTES[name]
        elif name in there:
            kind = "on the GPU machine (its own version%s)" % (", not this pin" if "==" in str(req.specifier) else "")
        else:
            kind = "not carried: not imported by sglang.jit_kernel.all_reduce or flashinfer.comm"
        out.append((req.name + str(req.specifier), kind))
    return out


def main():
    wheel_dir, dest = sys.argv[1], sys.argv[2]
    os.makedirs(dest, exist_ok=True)
    manifest = ["# What .peers/site.tar.xz holds (lab/peers/stage.py): unpack onto PYTHONPATH, lab/peers/stubs last."]
    with tempfile.TemporaryDirectory() as site:
        for dist in PINS:
            wheel = find_wheel(wheel_dir, dist)
            with zipfile.ZipFile(wheel) as z:
                z.extractall(site)
            digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
            manifest.append("%s==%s  %s  sha256 %s" % (dist, PINS[dist], os.path.basename(wheel), digest))
            for req, kind in requirements(wheel):
                manifest.append("    requires %-45s %s" % (req, kind))
        manifest.append(prune_flashinfer(site))
        for top in TOP_DROP:
            shutil.rmtree(os.path.join(site, top), ignore_errors=True)
        manifest.append("left out: top-level %s" % ", ".join(TOP_DROP))
        for d, dirs, _ in os.walk(site):
            for sub in [x for x in dirs if x == "__pycache__"]:
                shutil.rmtree(os.path.join(d, sub))
        tmp = os.path.join(dest, "site.tar.xz.tmp")
        with tarfile.open(tmp, "w:xz") as t:
            for entry in sorted(os.listdir(site)):
                t.add(os.path.join(site, entry), arcname=entry)
        os.replace(tmp, os.path.join(dest, "site.tar.xz"))
        manifest.append("site.tar.xz: %d bytes packed, %d bytes unpacked" % (
            os.path.getsize(os.path.join(dest, "site.tar.xz")), du(site)))
    with open(os.path.join(dest, "MANIFEST.txt"), "w") as f:
        f.write("\n".join(manifest) + "\n")
    print("\n".join(manifest))


if __name__ == "__main__":
    main()
