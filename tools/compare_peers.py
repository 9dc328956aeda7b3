#!/usr/bin/env python3
"""Compares customar-perf results with the peers, per size, as Markdown tables (graph-replayed, bf16).

    python3 tools/compare_peers.py perf-w2.jsonl [--peers peers-w2.jsonl ...] [--anchors anchors-w2.json]
                                   [--elsewhere FILE ...] [--peer-readme ../shared/anchors/README.md]

Same run (measured on the same machine in the same run as customar's rows): customar-perf's JSON lines (-J), the
peers' JSON lines from lab/peers/run_peers.py (--peers; their torch-nccl / symm-* replace anchors.py's) and
anchors.py's JSON (--anchors). Elsewhere: --elsewhere (run_peers.py lines from another run) and the peers' README
table (--peer-readme; another card and run). Elsewhere columns carry a dagger and enter no ratio; a same-run file whose
GPU differs from customar's rows is demoted to elsewhere.

Tables: per size, customar's backends, the same-run peers, the elsewhere figures, `best peer` (the fastest same-run
peer, NCCL's symmetric kernels included) and which it is, `auto/nccl` and `auto/best peer` (the ratio the targets are
set on); then `auto` over each same-run peer; then the fused calls (rows with an `op`), per op and hidden size.
"""
import argparse
import collections
import json
import re
import sys

OWN = ["nccl", "nccl-symm", "v1", "auto", "nostage"]
ANCHOR_COLUMNS = {"torch-nccl": "nccl_graph_us", "symm-1": "symm1_graph_us", "symm-2": "symm2_graph_us"}
README_COLUMNS = ("vllm", "sgl-push", "sgl-pull1", "sgl-pull2")
PEER_ORDER = ["torch-nccl", "symm-1", "symm-2", "sgl-push", "sgl-pull1", "sgl-pull2", "fi-trtllm1", "fi-trtllm2",
              "fi-vllm", "vllm"]
DAGGER = "†"


class Source:
    """Peer figures from one file: {bytes: {column: us}}, fused rows, and where they were measured."""

    def __init__(self, name, same_run, decimals=2):
        self.name, self.same_run, self.decimals = name, same_run, decimals
        self.sizes = collections.defaultdict(dict)
        self.fused = []
        self.gpu = None


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_perf(path):
    """customar's rows: ({bytes: {backend: oop_us}}, world, gpu, fused rows)."""
    ours, fused, world, gpu = collections.defaultdict(dict), [], None, None
    for r in read_jsonl(path):
        world, gpu = r["world"], r.get("gpu")
        if r.get("oop_us") is None:
            continue
        if r.get("op"):
            fused.append(r)
        else:
            ours[r["bytes"]][r["backend"]] = r["oop_us"]
    return ours, world, gpu, fused


def load_peer_rows(path, world, same_run):
    """run_peers.py's JSON lines for this world size (rows without a time, skipped sizes, are left out)."""
    src = Source(path, same_run)
    for r in read_jsonl(path):
        if r.get("world") != world or r.get("oop_us") is None:
            continue
        src.gpu = r.get("gpu", src.gpu)
        if r.get("op"):
            src.fused.append(r)
        else:
            src.sizes[r["bytes"]][r["backend"]] = r["oop_us"]
    return src


def load_anchors(path, world):
    src = Source(path, True)
    data = json.load(open(path))
    src.gpu = data.get("gpu")
    if data.get("world", world) != world:
        return src
    for r in data["rows"]:
        for col, key in ANCHOR_COLUMNS.items():
            if r.get(key) is not None:
                src.sizes[r["bytes"]][col] = r[key]
    return src


def readme_peers(path, world):
    """The README's '## world size N' table: another card and run, so always elsewhere."""
    src = Source(path, False, decimals=1)
    with open(path) as f:
        text = f.read()
    m = re.search(r"## world size %d\n(.*?)(\n## |\Z)" % world, text, re.S)
    if not m:
        return src
    lines = [line for line in m.group(1).splitlines() if line.startswith("|")]
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        for name, cell in zip(head[1:], cells[1:]):
            if name in README_COLUMNS and cell not in ("-", ""):
                src.sizes[int(cells[0])][name] = float(cell)
    return src


def demote_other_gpus(sources, gpu):
    """A 'same-run' file measured on another GPU cannot be from this run."""
    for s in sources:
        if s.same_run and gpu and s.gpu and s.gpu != gpu:
            print("compare_peers: %s ran on %s, customar on %s: shown as elsewhere" % (s.name, s.gpu, gpu),
                  file=sys.stderr)
            s.same_run = False


def merge(sources, same_run):
    """{bytes: {column: us}} and {column: decimals} over the sources of one kind; later sources win."""
    values, decimals = collections.defaultdict(dict), {}
    for s in sources:
        if s.same_run != same_run:
            continue
        for size, cols in s.sizes.items():
            values[size].update(cols)
            for c in cols:
                decimals[c] = s.decimals
    return values, decimals


def ordered(columns):
    rank = {c: i for i, c in enumerate(PEER_ORDER)}
    return sorted(columns, key=lambda c: (rank.get(c, len(PEER_ORDER)), c))


def fmt(value, decimals):
    return "-" if value is None else "%.*f" % (decimals, value)


def ratio(a, b):
    return "%.2f" % (a / b) if a and b else "-"


def main_table(ours, same, elsewhere, same_dec, else_dec):
    """The per-size table: Markdown lines."""
    own = OWN + sorted({b for row in ours.values() for b in row} - set(OWN))
    peers = ordered({c for row in same.values() for c in row})
    away = ordered({c for row in elsewhere.values() for c in row} - set(peers))
    head = own + peers + [c + DAGGER for c in away] + ["best peer", "which", "auto/nccl", "auto/best peer"]
    out = ["| bytes | " + " | ".join(head) + " |", "|---:|" + "---:|" * len(head)]
    for size in sorted(set(ours) | set(same)):
        row, peer = ours.get(size, {}), same.get(size, {})
        cells = [fmt(row.get(k), 2) for k in own]
        cells += [fmt(peer.get(k), same_dec.get(k, 2)) for k in peers]
        cells += [fmt(elsewhere.get(size, {}).get(k), else_dec.get(k, 2)) for k in away]
        # NCCL's symmetric kernels count as a peer (same run), at sizes where another peer was measured too.
        cand = dict(peer)
        if peer and "nccl-symm" in row:
            cand["nccl-symm"] = row["nccl-symm"]
        best = min(cand, key=cand.get) if cand else None
        auto = row.get("auto")
        cells += [fmt(cand.get(best), 2), best or "-", ratio(auto, row.get("nccl")), ratio(auto, cand.get(best))]
        out.append("| %d | " % size + " | ".join(cells) + " |")
    return out, away


def ratio_table(ours, same):
    """auto over each same-run peer, per size."""
    peers = ordered({c for row in same.values() for c in row})
    if not peers:
        return []
    out = ["| bytes | " + " | ".join("auto/" + p for p in peers) + " |", "|---:|" + "---:|" * len(peers)]
    for size in sorted(s for s in ours if s in same):
        auto = ours[size].get("auto")
        out.append("| %d | " % size + " | ".join(ratio(auto, same[size].get(p)) for p in peers) + " |")
    return out


def fused_tables(rows_by_source, ours):
    """Rows with an `op` (e.g. fused_add_rmsnorm), one table per (op, hidden): tokens down, backends across, and
    customar's plain all-reduce of the same bytes (auto) first, the part of the fused call it would replace."""
    groups = collections.defaultdict(lambda: collections.defaultdict(dict))
    away = set()
    for src_name, same_run, rows in rows_by_source:
        for r in rows:
            col = r["backend"] + ("" if same_run else DAGGER)
            if not same_run:
                away.add(src_name)
            groups[(r["op"], r["hidden"])][r["tokens"]][col] = r["oop_us"]
    out = []
    for (op, hidden), by_tokens in sorted(groups.items()):
        cols = ordered({c for row in by_tokens.values() for c in row})
        out += ["", "%s, hidden %d (µs per call):" % (op, hidden), "",
                "| tokens | bytes | auto (all-reduce alone) | " + " | ".join(cols) + " |",
                "|---:|---:|---:|" + "---:|" * len(cols)]
        for tokens in sorted(by_tokens):
            nbytes = tokens * hidden * 2
            cells = [fmt(ours.get(nbytes, {}).get("auto"), 2)] + [fmt(by_tokens[tokens].get(c), 2) for c in cols]
            out.append("| %d | %d | " % (tokens, nbytes) + " | ".join(cells) + " |")
    return out, away


def report(perf, peers=(), anchors=None, elsewhere=(), readme=None):
    """Every table as Markdown lines."""
    ours, world, gpu, our_fused = load_perf(perf)
    sources = []
    if anchors:
        sources.append(load_anchors(anchors, world))
    sources += [load_peer_rows(p, world, True) for p in peers]
    sources += [load_peer_rows(p, world, False) for p in elsewhere]
    if readme:
        sources.append(readme_peers(readme, world))
    demote_other_gpus(sources, gpu)
    same, same_dec = merge(sources, True)
    away_vals, away_dec = merge(sources, False)
    lines, away_cols = main_table(ours, same, away_vals, same_dec, away_dec)
    lines += [""] + ratio_table(ours, same)
    fused, fused_away = fused_tables([(perf, True, our_fused)] + [(s.name, s.same_run, s.fused) for s in sources],
                                     ours)
    lines += fused
    lines.append("")
    same_names = [perf] + [s.name for s in sources if s.same_run]
    lines.append("Same run (world size %s, %s): %s." % (world, gpu, ", ".join(same_names)))
    away_names = [s.name for s in sources if not s.same_run and (s.sizes or s.fused)]
    if away_cols or fused_away:
        lines.append("%s measured elsewhere (another run or card), in no ratio: %s." % (DAGGER, ", ".join(away_names)))
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("perf", help="customar-perf -J output")
    p.add_argument("--peers", action="append", default=[], help="run_peers.py -J output of the same run")
    p.add_argument("--anchors", help="anchors.py output of the same run")
    p.add_argument("--elsewhere", action="append", default=[], help="run_peers.py -J output of another run")
    p.add_argument("--peer-readme", help="the peers' README (figures from another card and run)")
    a = p.parse_args()
    print("\n".join(report(a.perf, a.peers, a.anchors, a.elsewhere, a.peer_readme)))


if __name__ == "__main__":
    main()
