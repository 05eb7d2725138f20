#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The policy study's RESULT lines and evaluations as a Markdown table (mean
and per-seed final accuracy of each configuration) and the gnuplot data of
its two plots (mean test accuracy against step)."""
import csv
import os
import sys
from collections import defaultdict


def label(method, target, update, mask):
    name = "dense" if method == "dense" else f"Sketched-SGD {float(target):g}x"
    rule = "Adam" if update == "adam" else "momentum SGD"
    return f"{name}, {rule}" + ("" if mask == "1" or method == "dense" or update == "adam" else ", no masking")


def main(summary, evaluations, out):
    runs = defaultdict(list)
    with open(summary) as f:
        for line in f:
            if line.startswith("RESULT"):
                r = dict(item.split("=", 1) for item in line.split()[1:])
                runs[label(r["method"], r["compression_target"], r["update"], r["mask"])].append(r)
    reference = {rule: sum(float(r["accuracy"]) for r in runs[f"dense, {rule}"]) / len(runs[f"dense, {rule}"])
                 for rule in ("momentum SGD", "Adam") if runs[f"dense, {rule}"]}
    with open(os.path.join(out, "policies.md"), "w") as f:
        f.write("| configuration | achieved compression | test accuracy per seed | mean | vs dense with the same rule |\n"
                "|---|---:|---|---:|---:|\n")
        for name, rs in runs.items():
            accs = [100 * float(r["accuracy"]) for r in sorted(rs, key=lambda r: int(r["seed"]))]
            mean = sum(accs) / len(accs)
            rule = "Adam" if ", Adam" in name else "momentum SGD"
            delta = mean - 100 * reference[rule] if rule in reference else float("nan")
            f.write(f"| {name} | {float(rs[0]['compression']):.1f} | {' / '.join(f'{a:.2f}' for a in accs)} | "
                    f"{mean:.2f}% | {delta:+.2f} |\n")
    curves = defaultdict(lambda: defaultdict(list))
    with open(evaluations) as f:
        for e in csv.DictReader(f):
            name = label(e["method"], e["target_compression"], e["update"], e["mask"])
            curves[name][int(e["step"])].append(100 * float(e["test_accuracy"]))
    for name, by_step in curves.items():
        slug = name.replace(" ", "_").replace(",", "").replace("-", "")
        with open(os.path.join(out, f"policy_{slug}.dat"), "w") as f:
            for step in sorted(by_step):
                f.write(f"{step} {sum(by_step[step]) / len(by_step[step])}\n")


if __name__ == "__main__":
    main(*sys.argv[1:4])
