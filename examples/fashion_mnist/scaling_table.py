#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The table and plot data of examples/fashion_mnist/scaling.sh:
accuracy and bytes per worker against W, per method and compression.

    scaling_table.py RESULTS OUT_DIR   -> OUT_DIR/scaling.md, OUT_DIR/w_*.dat
"""
import os
import re
import statistics
import sys
from collections import defaultdict

NAMES = {"dense": "dense", "true-topk": "true top-k", "local-topk": "local top-k", "gtopk": "gTop-k",
         "sketched": "Sketched-SGD", "fetchsgd": "FetchSGD", "global-sketch": "global sketch"}


def main() -> int:
    results, out = sys.argv[1], sys.argv[2]
    runs = defaultdict(list)  # (method, compression, W) -> [(accuracy, bytes per step)]
    for line in open(results):
        if not line.startswith("RESULT"):
            continue
        f = dict(re.findall(r"(\w+)=(\S+)", line.split(" # ")[0]))
        key = (f["method"], float(f["compression_target"]), int(f["workers"]))
        runs[key].append((float(f["accuracy"]), int(f["bytes"]) / int(f["steps"])))
    ws = sorted({k[2] for k in runs})
    configs = sorted({k[:2] for k in runs}, key=lambda c: (c[1], list(NAMES).index(c[0])))
    lines = ["| method | target at W = 4 | " + " | ".join(f"W = {w}" for w in ws) + " |",
             "|---|---:|" + "---:|" * len(ws)]
    for m, x in configs:
        cells = []
        for w in ws:
            r = runs.get((m, x, w))
            if not r:
                cells.append("-")
                continue
            acc = [a for a, _ in r]
            spread = f" ±{(max(acc) - min(acc)) / 2 * 100:.2f}" if len(acc) > 1 else ""
            cells.append(f"{statistics.mean(acc) * 100:.2f}%{spread} / {r[0][1] / 1e3:.0f} kB")
        lines.append(f"| {NAMES[m]} | {'dense' if x == 0 else f'{x:g}x'} | " + " | ".join(cells) + " |")
    text = ("Final test accuracy / bytes sent per worker per step (rank 0), global batch fixed; "
            "several seeds: mean ± half the range\n\n" + "\n".join(lines) + "\n")
    open(os.path.join(out, "scaling.md"), "w").write(text)
    print(text)
    for m, x in configs:
        with open(os.path.join(out, f"w_{m}_{x:g}.dat"), "w") as f:
            f.write("# W accuracy_percent kB_per_step\n")
            for w in ws:
                r = runs.get((m, x, w))
                if r:
                    f.write(f"{w} {statistics.mean(a for a, _ in r) * 100:.3f} {r[0][1] / 1e3:.3f}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
