#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tables and plot data of bench/scaling.sh (docs/performance.md, "Scaling").

    scaling_table.py validate OUT --cores N   measured.csv vs the model -> validation.md
    scaling_table.py predict OUT              prediction.csv -> prediction.md, plot data
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step_model as sm  # noqa: E402

NAMES = {"dense": "dense", "true-topk": "true top-k", "local-topk": "local top-k", "gtopk": "gTop-k",
         "sketched": "Sketched-SGD", "fetchsgd": "FetchSGD", "global-sketch": "global sketch",
         "global-sketch-rd": "global sketch (rd)"}
SKETCHES = ["sketched", "fetchsgd", "global-sketch"]


def gbits_of(rate: str) -> float:
    for unit, f in (("gbit", 1.0), ("mbit", 1e-3)):
        if rate.endswith(unit):
            return float(rate[: -len(unit)]) * f
    raise ValueError(f"rate {rate}")


def rd_rounds(w: int) -> float:
    p = sm.pof2_below(w)
    return math.log2(p) + (2 if w > p else 0)


def validate(out: str, cores: int) -> None:
    fits = sm.fit_compute(os.path.join(out, "compute.csv"))
    alpha = {int(r["W"]): float(r["communicate_s"]) / rd_rounds(int(r["W"]))
             for r in csv.DictReader(open(os.path.join(out, "latency.csv")))}
    rows = []
    for r in csv.DictReader(open(os.path.join(out, "measured.csv"))):
        m, w, d = r["method"], int(r["W"]), float(r["d"])
        s = sm.default_shape(d, float(r["k"]), P=0 if m.startswith("global") else 4)
        c, comm, step, sent = sm.predict(m, fits[m], s, w, gbits_of(r["label"]), alpha[w], cores)
        rows.append((r["label"], w, m, float(r["step_s"]), step, float(r["compute_s"]), c, float(r["communicate_s"]),
                     comm, float(r["bytes_per_rank"]), sent))
    with open(os.path.join(out, "validation.csv"), "w") as f:
        f.write("link,W,method,measured_step_s,model_step_s,measured_compute_s,model_compute_s,"
                "measured_communicate_s,model_communicate_s,measured_bytes,model_bytes\n")
        for row in rows:
            f.write(",".join(str(x) for x in row) + "\n")
    lines = [f"alpha (1 KB allreduce time / rounds): " +
             ", ".join(f"W = {w}: {a * 1e6:.0f} us" for w, a in sorted(alpha.items())), "",
             "| link | W | method | measured step (ms) | model (ms) | error | compute measured / model (ms) "
             "| communication measured / model (ms) | bytes/rank measured / model |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    worst = 0.0
    for (rate, w, m, ms, ps, mc, pc, mm, pm, mb, pb) in rows:
        err = (ps - ms) / ms
        worst = max(worst, abs(err))
        lines.append(f"| {rate} | {w} | {NAMES[m]} | {ms * 1e3:.1f} | {ps * 1e3:.1f} | {err * 100:+.1f}% "
                     f"| {mc * 1e3:.1f} / {pc * 1e3:.1f} | {mm * 1e3:.1f} / {pm * 1e3:.1f} | {mb:.0f} / {pb:.0f} |")
    lines.append("")
    lines.append(f"largest |error| of the step time: {worst * 100:.1f}% over {len(rows)} runs")
    text = "\n".join(lines) + "\n"
    open(os.path.join(out, "validation.md"), "w").write(text)
    print(text)


def predict(out: str) -> None:
    rows = list(csv.DictReader(open(os.path.join(out, "prediction.csv"))))
    step = {(r["method"], int(r["W"]), float(r["d"]), float(r["gbits"])): float(r["step_s"]) for r in rows}
    sent = {(r["method"], int(r["W"]), float(r["d"])): float(r["bytes_per_rank"]) for r in rows}
    ws = sorted({int(r["W"]) for r in rows})
    ds = sorted({float(r["d"]) for r in rows})
    gs = sorted({float(r["gbits"]) for r in rows})
    methods = [m for m in sm.METHODS if any(r["method"] == m for r in rows)]
    lines = []
    for d in ds:
        for g in gs:
            lines += [f"d = {d / 1e6:g}M, {g:g} Gbit/s per link: predicted step time (s)", "",
                      "| W | " + " | ".join(NAMES[m] for m in methods) + " |",
                      "|---:|" + "---:|" * len(methods)]
            for w in ws:
                lines.append(f"| {w} | " + " | ".join(f"{step[(m, w, d, g)]:.3g}" for m in methods) + " |")
            lines.append("")
    lines += ["global sketch against gTop-k: gTop-k's step / global sketch's (> 1: global sketch faster)", "",
              "| d | Gbit/s | " + " | ".join(f"W = {w}" for w in ws) + " |", "|---|---:|" + "---:|" * len(ws)]
    for d in ds:
        for g in gs:
            lines.append(f"| {d / 1e6:g}M | {g:g} | " +
                         " | ".join(f"{step[('gtopk', w, d, g)] / step[('global-sketch', w, d, g)]:.2f}" for w in ws)
                         + " |")
    lines += ["", "Every sketch method faster than dense ring allreduce: the smallest W (of those modelled) from "
              "which it holds", "", "| d | " + " | ".join(f"{g:g} Gbit/s" for g in gs) + " |",
              "|---|" + "---|" * len(gs)]
    for d in ds:
        cells = []
        for g in gs:
            wins = [w for w in ws if all(step[(m, w, d, g)] < step[("dense", w, d, g)] for m in SKETCHES)]
            cells.append(f"W >= {wins[0]}" if wins and all(w in wins for w in ws if w >= wins[0]) else
                         (", ".join(map(str, wins)) if wins else "never"))
        lines.append(f"| {d / 1e6:g}M | " + " | ".join(cells) + " |")
    lines += ["", "Bytes sent per rank per step (MB), any link", "",
              "| d | W | " + " | ".join(NAMES[m] for m in methods) + " |", "|---|---:|" + "---:|" * len(methods)]
    for d in ds:
        for w in ws:
            lines.append(f"| {d / 1e6:g}M | {w} | " + " | ".join(f"{sent[(m, w, d)] / 1e6:.3g}" for m in methods) + " |")
    text = "\n".join(lines) + "\n"
    open(os.path.join(out, "prediction.md"), "w").write(text)
    print(text)
    # Plot data: step time against W per method, one file per (d, link).
    for d in ds:
        for g in gs:
            with open(os.path.join(out, f"model_d{d / 1e6:g}M_{g:g}g.dat"), "w") as f:
                f.write("# W " + " ".join(methods) + "\n")
                for w in ws:
                    f.write(f"{w} " + " ".join(f"{step[(m, w, d, g)]:.6g}" for m in methods) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["validate", "predict"])
    ap.add_argument("out")
    ap.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    a = ap.parse_args()
    if a.what == "validate":
        validate(a.out, a.cores)
    else:
        predict(a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
