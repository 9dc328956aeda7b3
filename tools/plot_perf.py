#!/usr/bin/env python3
"""Plots customar-perf JSON lines (-J FILE): latency vs size and bus bandwidth vs size, one line per backend.

    python3 tools/plot_perf.py perf-w2.jsonl [perf-w4.jsonl ...] -o perf.png
"""
import argparse
import collections
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("files", nargs="+")
    p.add_argument("-o", "--output", default="perf.png")
    args = p.parse_args()
    series = collections.defaultdict(list)
    for path in args.files:
        with open(path) as f:
            for line in f:
                r = json.loads(line)
                series[(r["world"], r["backend"])].append((r["bytes"], r["oop_us"], r["busbw_gbs"]))
    fig, (lat, bw) = plt.subplots(1, 2, figsize=(13, 5))
    for (world, backend), pts in sorted(series.items()):
        pts.sort()
        x = [b for b, _, _ in pts]
        lat.plot(x, [t for _, t, _ in pts], marker=".", label=f"{backend} ({world} GPUs)")
        bw.plot(x, [g for _, _, g in pts], marker=".", label=f"{backend} ({world} GPUs)")
    for ax, title, ylabel in ((lat, "latency", "us per call"), (bw, "bus bandwidth", "GB/s")):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("message bytes")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    lat.set_yscale("log")
    lat.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
