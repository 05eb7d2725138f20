#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Turns the trainer's RESULT lines and evaluation CSV into results.md and
the gnuplot data files (one per series) used by plots.gp."""
import csv
import os
import sys


def parse_results(path):
    rows = []
    with open(path) as f:
        for line in f:
            if not line.startswith("RESULT"):
                continue
            fields = dict(item.split("=", 1) for item in line.split()[1:])
            rows.append(fields)
    return rows


def main(summary, evaluations, out):
    rows = parse_results(summary)
    dense = next(r for r in rows if r["method"] == "dense")
    dense_acc = float(dense["accuracy"])
    with open(os.path.join(out, "results.md"), "w") as f:
        f.write("| method | target compression | achieved compression | MB sent per worker | final test accuracy | "
                "vs dense (points) | seconds |\n|---|---:|---:|---:|---:|---:|---:|\n")
        for r in rows:
            acc = float(r["accuracy"])
            target = float(r["compression_target"])
            target_text = f"{target:g}" if target > 0 else "-"
            f.write(f"| {r['method']} | {target_text} | {float(r['compression']):.1f} | "
                    f"{int(r['bytes']) / 1e6:.1f} | {100 * acc:.2f}% | {100 * (acc - dense_acc):+.2f} | "
                    f"{float(r['seconds']):.1f} |\n")
    # Final accuracy against bytes, one file per method.
    by_method = {}
    for r in rows:
        by_method.setdefault(r["method"], []).append((int(r["bytes"]), float(r["accuracy"])))
    for method, points in by_method.items():
        with open(os.path.join(out, f"final_{method}.dat"), "w") as f:
            for b, a in sorted(points):
                f.write(f"{b / 1e6} {100 * a}\n")
    # Accuracy against step at 10x (and dense).
    curves = {}
    with open(evaluations) as f:
        for e in csv.DictReader(f):
            target = float(e["target_compression"])
            if e["method"] != "dense" and target != 10:
                continue
            curves.setdefault(e["method"], []).append((int(e["step"]), 100 * float(e["test_accuracy"])))
    for method, points in curves.items():
        with open(os.path.join(out, f"curve_{method}.dat"), "w") as f:
            for s, a in points:
                f.write(f"{s} {a}\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
