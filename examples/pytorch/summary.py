#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Summarizes compare.sh's RESULT lines: a Markdown table (stdout) and
summary.dat (next to the input; one block per hook family) for plot.gp."""
import json
import os
import statistics
import sys


def label(r):
    if r["hook"] == "allreduce":
        return "allreduce (DDP default)"
    if r["hook"] == "fp16":
        return "fp16_compress_hook (16-bit allreduce)"
    if r["hook"] == "powersgd":
        return f"PowerSGD rank {r['powersgd_rank']}"
    return f"sketch hook ({r['method']}) {r['compression_target']:g}x"


def main(path):
    rows = [json.loads(line) for line in open(path) if line.strip()]
    groups = {}
    for r in rows:
        groups.setdefault(label(r), []).append(r)
    dense = groups.get("allreduce (DDP default)")
    dense_bytes = statistics.mean(r["bytes_written_per_rank"] / r["steps"] for r in dense) if dense else None
    print("| hook | seeds | test accuracy (mean ± sd) | bytes per rank per step | after warm-up | vs allreduce | "
          "seconds per step | ranks identical |")
    print("|---|---|---|---|---|---|---|---|")
    lines = []
    for name, rs in groups.items():
        acc = [100 * r["accuracy"] for r in rs]
        per_step = statistics.mean(r["bytes_written_per_rank"] / r["steps"] for r in rs)
        sd = statistics.stdev(acc) if len(acc) > 1 else 0.0
        # After warm-up: the warm-up's steps moved what the allreduce run moves per step.
        steps = statistics.mean(r["steps"] for r in rs)
        # Plain allreduce steps first (50: train.py's default, older RESULT lines); fp16 has no warm-up.
        warm = 0 if rs[0]["hook"] in ("allreduce", "fp16") else rs[0].get("start_iter", 50)
        after = (per_step * steps - warm * dense_bytes) / (steps - warm) if dense_bytes else per_step
        ratio = f"{dense_bytes / after:.1f}x less" if dense_bytes else "-"
        if name.startswith("allreduce"):
            ratio = "1x"
        elif rs[0]["hook"] == "fp16":
            ratio = f"{dense_bytes / per_step:.1f}x less" if dense_bytes else "-"
        secs = statistics.mean(r["seconds_per_step"] for r in rs)
        same = all(r["identical"] for r in rs)
        print(f"| {name} | {len(rs)} | {statistics.mean(acc):.2f} ± {sd:.2f} | {per_step / 1e3:.1f} kB | {after / 1e3:.1f} kB | {ratio} | "
              f"{1e3 * secs:.1f} ms | {'yes' if same else 'NO'} |")
        family = 0 if name.startswith(("allreduce", "fp16")) else 1 if name.startswith("PowerSGD") else 2
        short = ("fp16" if name.startswith("fp16") else "") if family == 0 else name.split()[-1]
        lines.append((family, f'"{short}" {after:.1f} {statistics.mean(acc):.3f} {sd:.3f}'))
    print(f"\n{len(rows)} runs, {sorted({r['steps'] for r in rows})} steps each; bytes are what each rank's "
          "process wrote to its sockets while training (/proc/self/io, rank 0), warm-up steps included; "
          "'after warm-up' takes out the warm-up (--start-iter) steps of plain allreduce (as many bytes per step as the "
          "allreduce run), and 'vs allreduce' compares that with the allreduce run.")
    with open(os.path.join(os.path.dirname(path), "summary.dat"), "w") as f:
        # One gnuplot data block per family (index 0: allreduce, 1: PowerSGD, 2: the sketch hook).
        f.write("\n\n\n".join("\n".join(text for fam, text in lines if fam == family) or "# none"
                               for family in range(3)) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
