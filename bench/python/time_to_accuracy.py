#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Summarizes time_to_accuracy.sh's RESULT lines (examples/pytorch/train.py
with --eval-every): per link rate, a Markdown table of time and bytes to the
target accuracy and of final accuracy (stdout), and with --plots DIR the
curves as gnuplot data (per hook, the mean over its seeds) and a gnuplot
script (DIR/plot.gp: accuracy against training time and against bytes, one
pair of plots per rate).

    python3 bench/python/time_to_accuracy.py results.jsonl --target 0.84 --plots DIR

Time and bytes to the target are those of the first evaluation at or above
it (evaluations every --eval-every steps: that is the resolution); after
warm-up means from the first evaluation at or after the warm-up's last step
to the end."""
import argparse
import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "pytorch"))
from summary import label as name  # noqa: E402 - the hooks' names, as examples/pytorch/compare.sh's tables give them


def reached(curve, target):
    """(seconds, bytes, step) of the first evaluation at or above target, or None."""
    return next(((p["seconds"], p["bytes_written"], p["step"]) for p in curve if p["accuracy"] >= target), None)


def after_warmup(r):
    """Seconds and bytes per step from the first evaluation at or after the warm-up to the end."""
    curve = r["curve"]
    start = next((p for p in curve if p["step"] >= r["start_iter"]), None)
    end = curve[-1]
    if start is None or end["step"] <= start["step"]:
        return None, None
    n = end["step"] - start["step"]
    return (end["seconds"] - start["seconds"]) / n, (end["bytes_written"] - start["bytes_written"]) / n


def mean_sd(values, fmt):
    if not values:
        return "not reached"
    if len(values) == 1:
        return fmt.format(values[0])
    return (fmt + " ± " + fmt).format(statistics.mean(values), statistics.stdev(values))


def table(rows, target):
    runs = {}
    for r in rows:
        runs.setdefault(name(r), []).append(r)
    base = runs.get("allreduce (DDP default)")
    base_time = [x[0] for x in (reached(r["curve"], target) for r in base or []) if x]
    lines = [f"| hook | seeds | time to {100 * target:g}% (s) | vs allreduce | MB to {100 * target:g}% | "
             "steps | accuracy at the end (%) | s / step after warm-up | MB / step after warm-up |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for label, group in runs.items():
        hits = [reached(r["curve"], target) for r in group]
        times = [h[0] for h in hits if h]
        mbs = [h[1] / 1e6 for h in hits if h]
        speed = (f"{statistics.mean(base_time) / statistics.mean(times):.2f}x"
                 if times and base_time and len(times) == len(group) else "-")
        missed = len(group) - len(times)
        per = [after_warmup(r) for r in group]
        lines.append(f"| {label} | {', '.join(str(r['seed']) for r in group)} | "
                     f"{mean_sd(times, '{:.0f}')}{f' ({missed} not reached)' if missed and times else ''} | {speed} | "
                     f"{mean_sd(mbs, '{:.0f}')} | {', '.join(sorted({str(r['steps']) for r in group}))} | "
                     f"{mean_sd([100 * r['accuracy'] for r in group], '{:.2f}')} | "
                     f"{mean_sd([p[0] for p in per if p[0]], '{:.3f}')} | "
                     f"{mean_sd([p[1] / 1e6 for p in per if p[1]], '{:.2f}')} |")
    return lines


def across_rates(rows):
    """Per hook and seed, whether the accuracy at every evaluation step that
    runs at several rates share is the same (training is deterministic: the
    link changes only the time)."""
    runs = {}
    for r in rows:
        runs.setdefault((name(r), r["seed"]), []).append({p["step"]: p["accuracy"] for p in r["curve"]})
    out = []
    for (label, seed), curves in runs.items():
        if len(curves) > 1:
            common = set.intersection(*(set(c) for c in curves))
            same = all(c[s] == curves[0][s] for c in curves for s in common)
            out.append(f"{label}, seed {seed}: {'the same' if same else 'DIFFERENT'} at the {len(common)} "
                       "evaluations the rates share")
    return out


def plots(rows, folder):
    """One data file per hook and rate (the mean over its seeds at every
    evaluation they share), and a gnuplot script drawing them."""
    script = ["set terminal pngcairo size 1100,420 font ',10' noenhanced", "set key bottom right", "set grid",
              "set ylabel 'test accuracy (%, 2,000 images)'", "set yrange [78:*]"]
    for rate in by_rate(r["label"] for r in rows):
        runs = {}
        for r in rows:
            if r["label"] == rate:
                runs.setdefault(name(r), []).append(r)
        files = []
        for label, group in runs.items():
            r = group[0]
            path = os.path.join(folder, f"curve_{rate}_{r['hook']}_{r.get('method') or r.get('powersgd_rank') or ''}"
                                        ".dat")
            curves = [{p["step"]: p for p in g["curve"]} for g in group]
            steps = sorted(set.intersection(*(set(c) for c in curves)))
            with open(path, "w") as f:
                seeds = ", ".join(str(g["seed"]) for g in group)
                f.write(f"# step seconds megabytes accuracy (means over seeds {seeds})\n")
                for step in steps:
                    mean = lambda key: statistics.mean(c[step][key] for c in curves)  # noqa: E731
                    f.write(f"{step} {mean('seconds'):.3f} {mean('bytes_written') / 1e6:.3f} "
                            f"{100 * mean('accuracy'):.2f}\n")
            seeds = f"{len(group)} seeds" if len(group) > 1 else f"seed {r['seed']}"
            files.append((path, f"{label} ({seeds})"))
        for column, axis, tag in ((2, "training time (s)", "time"), (3, "MB written per rank", "bytes")):
            script += [f"set output '{os.path.join(folder, f'accuracy_vs_{tag}_{rate}.png')}'",
                       f"set xlabel '{axis}'", f"set title 'W = 4, 5.8M-parameter MLP, {rate}/s per rank'",
                       "plot " + ", ".join(f"'{p}' using {column}:4 with linespoints title '{t}'" for p, t in files)]
    with open(os.path.join(folder, "plot.gp"), "w") as f:
        f.write("\n".join(script) + "\n")


def by_rate(rates):
    """Link rates (tc's spelling: 1gbit, 100mbit, ...) in increasing order."""
    scale = {"kbit": 1e-3, "mbit": 1.0, "gbit": 1e3}
    def value(rate):
        m = re.fullmatch(r"([\d.]+)(kbit|mbit|gbit)", rate)
        return float(m.group(1)) * scale[m.group(2)] if m else float("inf")
    return sorted(set(rates), key=lambda r: (value(r), r))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results")
    p.add_argument("--target", type=float, default=0.84)
    p.add_argument("--plots", default=None, help="folder for the curves' data and plot.gp")
    a = p.parse_args()
    rows = [json.loads(line) for line in open(a.results) if line.strip()]
    for rate in by_rate(r["label"] for r in rows):
        subset = [r for r in rows if r["label"] == rate]
        print(f"\n{rate}/s per rank, W = 4, {subset[0]['parameters']:,} parameters, warm-up "
              f"{subset[0]['start_iter']} steps, identical ranks: "
              f"{'yes' if all(r['identical'] for r in subset) else 'NO'}\n")
        print("\n".join(table(subset, a.target)))
    checks = across_rates(rows)
    if checks:
        print("\nTest accuracy across the rates (every evaluation step the runs share):\n")
        print("\n".join(f"- {line}" for line in checks))
    if a.plots:
        plots(rows, a.plots)


if __name__ == "__main__":
    main()
