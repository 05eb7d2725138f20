#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Markdown tables and gnuplot data from bench/step_time.sh's CSV.

For every (rate, transport, W, d): each method's step time, its split into
compute and communication, bytes per rank, the speed-up over dense, and the
cost model: the shared shaped loopback carries W x bytes_per_rank per step,
so communication ~ W * bytes * 8 / rate, plus the measured compute.
"""
import collections
import csv
import os
import sys

RATES = {"1gbit": 1e9, "10gbit": 1e10, "25gbit": 2.5e10}


def main(path, out):
    rows = [r for r in csv.DictReader(open(path)) if r.get("method")]
    groups = collections.OrderedDict()
    for r in rows:
        groups.setdefault((r["label"], r["transport"], r["W"], r["d"]), []).append(r)
    lines = ["| rate | transport | W | d | method | step ms | compute ms | comm ms | MB / rank | "
             "speed-up vs dense | vs dense-bf16 | compute / fused pass | model ms |",
             "|---|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    plot = collections.defaultdict(list)
    for (label, transport, w, d), rs in groups.items():
        dense = next((float(r["step_s"]) for r in rs if r["method"] == "dense"), None)
        bf16 = next((float(r["step_s"]) for r in rs if r["method"] == "dense-bf16"), None)
        for r in rs:
            step = float(r["step_s"])
            compute = float(r["compute_s"])
            comm = float(r["communicate_s"])
            b = float(r["bytes_per_rank"])
            speed = f"{dense / step:.2f}x" if dense else "-"
            speed16 = f"{bf16 / step:.2f}x" if bf16 else "-"
            fused = r.get("compute_over_fused_pass") or "-"
            rate = RATES.get(label)
            model = f"{1e3 * (int(w) * b * 8 / rate + compute):.0f}" if rate else "-"
            lines.append(f"| {label} | {transport} | {w} | {int(d) / 1e6:g}M | {r['method']} | {1e3 * step:.0f} | "
                         f"{1e3 * compute:.0f} | {1e3 * comm:.0f} | {b / 1e6:.2f} | {speed} | {speed16} | {fused} | {model} |")
            if w == "4" and d == "50000000":
                plot[(transport, r["method"])].append((label, step))
    with open(os.path.join(out, "step_time.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    order = {"1gbit": 1, "10gbit": 10, "25gbit": 25, "unshaped": 100}
    for (transport, method), pts in plot.items():
        with open(os.path.join(out, f"plot_{transport}_{method}.dat"), "w") as f:
            for label, step in sorted(pts, key=lambda p: order.get(p[0], 0)):
                f.write(f"{order.get(label, 0)} {step}\n")
    print("\n".join(lines))
    crossover = crossover_table(groups)
    with open(os.path.join(out, "crossover.md"), "w") as f:
        f.write("\n".join(crossover) + "\n")
    print("\n".join(crossover))


def crossover_table(groups):
    """The rate below which each compressed method's step beats a baseline
    (dense, and dense with a bfloat16 wire when measured), from the cost
    model step = compute + W * bytes * 8 / rate with the compute and bytes
    measured at 1 Gbit/s: rate* = W * 8 * (bytes_base - bytes_m) /
    (compute_m - compute_base). Also per-link (one NIC per rank, not one
    shared link): rate* / W."""
    lines = ["| transport | W | d | method | against | extra compute ms | bytes saved MB / rank | "
             "crossover, shared link (Gbit/s) | crossover, link per rank (Gbit/s) |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|"]
    for (label, transport, w, d), rs in groups.items():
        if label != "1gbit":
            continue
        for base_name in ("dense", "dense-bf16"):
            base = next((r for r in rs if r["method"] == base_name), None)
            if base is None:
                continue
            for r in rs:
                if r["method"].startswith("dense"):
                    continue
                extra = float(r["compute_s"]) - float(base["compute_s"])
                saved = float(base["bytes_per_rank"]) - float(r["bytes_per_rank"])
                shared = int(w) * 8 * saved / extra / 1e9 if extra > 0 else float("inf")
                lines.append(f"| {transport} | {w} | {int(d) / 1e6:g}M | {r['method']} | {base_name} | "
                             f"{1e3 * extra:.0f} | {saved / 1e6:.1f} | {shared:.1f} | {shared / int(w):.1f} |")
    return lines


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
