#!/usr/bin/env python3
"""Compares customar-perf results with the peers, per size, as a Markdown table (graph-replayed, bf16).

    python3 tools/compare_peers.py perf-w2.jsonl --anchors anchors-w2.json [--peer-readme ../shared/anchors/README.md]

Columns: customar's backends from the perf JSON lines (-J); torch.distributed and SymmetricMemory from anchors.py's
JSON (same lease); vLLM and SGLang from the peers' README table for the same world size (another lease and card:
say so when quoting). `best peer` is the fastest peer at that size; `auto/best` is the ratio the targets are set on.
"""
import argparse
import collections
import json
import re


def readme_peers(path, world):
    """{bytes: {column: us}} from the README's '## world size N' table."""
    out = {}
    with open(path) as f:
        text = f.read()
    m = re.search(r"## world size %d\n(.*?)(\n## |\Z)" % world, text, re.S)
    if not m:
        return out
    lines = [l for l in m.group(1).splitlines() if l.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        row = {}
        for name, cell in zip(head[1:], cells[1:]):
            if name in ("vllm", "sgl-push", "sgl-pull1", "sgl-pull2", "nccl-symm") and cell not in ("-", ""):
                row[name] = float(cell)
        out[int(cells[0])] = row
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("perf")
    p.add_argument("--anchors")
    p.add_argument("--peer-readme")
    a = p.parse_args()
    ours = collections.defaultdict(dict)
    world = None
    for line in open(a.perf):
        r = json.loads(line)
        world = r["world"]
        ours[r["bytes"]][r["backend"]] = r["oop_us"]
    torch_rows = {}
    if a.anchors:
        for r in json.load(open(a.anchors))["rows"]:
            torch_rows[r["bytes"]] = {"torch-nccl": r["nccl_graph_us"], "symm-1": r["symm1_graph_us"],
                                      "symm-2": r["symm2_graph_us"]}
    readme = readme_peers(a.peer_readme, world) if a.peer_readme else {}
    own = ["nccl", "nccl-symm", "v1", "auto", "nostage"]
    peers = ["torch-nccl", "symm-1", "symm-2", "vllm", "sgl-push", "sgl-pull1", "sgl-pull2"]
    print("| bytes | " + " | ".join(own + peers) + " | best peer | auto/nccl | auto/best peer |")
    print("|---:|" + "---:|" * (len(own) + len(peers) + 3))
    for size in sorted(ours):
        row = ours[size]
        peer = dict(torch_rows.get(size, {}))
        peer.update({k: v for k, v in readme.get(size, {}).items() if k != "nccl-symm"})
        cells = [("%.2f" % row[k]) if k in row else "-" for k in own]
        cells += [("%.1f" % peer[k]) if k in peer else "-" for k in peers]
        # NCCL's symmetric kernels are a peer too; measured in our own run.
        # NCCL's symmetric kernels count as a peer, but only at sizes the other peers were measured at too.
        cand = [v for k, v in peer.items()] + ([row["nccl-symm"]] if peer and "nccl-symm" in row else [])
        best = min(cand) if cand else None
        auto = row.get("auto")
        cells.append("%.2f" % best if best else "-")
        cells.append("%.2f" % (auto / row["nccl"]) if auto and "nccl" in row else "-")
        cells.append("%.2f" % (auto / best) if auto and best else "-")
        print("| %d | " % size + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
