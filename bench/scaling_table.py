#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Tables and plot data of bench/scaling.sh (docs/performance.md, "Scaling").

    scaling_table.py validate OUT --cores N   measured.csv vs the model of the rig -> validation.md
    scaling_table.py predict OUT              prediction.csv -> prediction.md, plot data
"""
from __future__ import annotations

import argparse
import csv
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import step_model as sm  # noqa: E402

NAMES = {"dense": "dense", "dense-bf16": "dense, bf16 wire", "dense-fp16": "dense, fp16 wire",
         "true-topk": "true top-k", "local-topk": "local top-k", "gtopk": "gTop-k",
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


def rig_burst(rate: str) -> float:
    """Payload bytes of a rig link's tbf bucket: bench/netns_cluster.sh's
    burst (32 KiB below 1 Gbit/s, 512 KiB per Gbit/s) times the payload share."""
    kib = int(gbits_of(rate) * 512) if rate.endswith("gbit") else 32
    return kib * 1024 * sm.WIRE_EFFICIENCY


def medians(path: str, key) -> dict:
    """The rows of a bench_step_time CSV grouped by key(row) (repeated runs):
    each timing and byte count the median over the group, with the number of
    runs and the fastest and slowest step."""
    groups: dict = {}
    for r in csv.DictReader(open(path)):
        groups.setdefault(key(r), []).append(r)
    out = {}
    for k, rs in groups.items():
        row = dict(rs[0])
        for f in row:
            if f.endswith("_s") or f in ("bytes_per_rank", "compute_over_floor", "compute_over_fused_pass"):
                row[f] = statistics.median(float(r[f]) for r in rs)
        steps = [float(r["step_s"]) for r in rs]
        out[k] = row | {"runs": len(rs), "step_range": (min(steps), max(steps))}
    return out


def validate(out: str, cores: int) -> None:
    """measured.csv against the model of the rig, each the median of its
    repeated runs. The rig's W processes share this machine's cores, which a
    cluster's ranks do not, so the model starts from the same step on W
    in-process ranks, one thread each (rig_compute.csv, measured apart from
    the TCP runs): the compute, slowed by the sharing, and the waits for
    descheduled peers. Of its communication only the data moved in memory
    can overlap with the wire; its size is taken from dense's in-process
    communication (dense has no waits to speak of: its compute is a copy) in
    proportion to the bytes. So the rig's step is
        inproc step - moved + max(moved, network),
    moved = dense's inproc communication x bytes / dense's bytes, network the
    alpha-beta model with the rig's alpha and tbf bucket. The earlier rule
    (one rank's compute x W / cores, plus the network without the bucket) is
    reported beside it."""
    fits = sm.fit_compute(os.path.join(out, "compute.csv"))
    alpha = {int(r["W"]): float(r["communicate_s"]) / rd_rounds(int(r["W"]))
             for r in csv.DictReader(open(os.path.join(out, "latency.csv")))}
    if not os.path.exists(os.path.join(out, "rig_compute.csv")):
        sys.exit(f"scaling_table: {out}/rig_compute.csv is missing: the rig's model needs it "
                 "(a run of today's bench/scaling.sh writes it)")
    rig = medians(os.path.join(out, "rig_compute.csv"), lambda r: (r["label"] or r["method"], int(r["W"])))
    measured = medians(os.path.join(out, "measured.csv"), lambda r: (r["label"], int(r["W"]), r["method"]))
    rows = []
    for (rate, w, m), r in measured.items():
        s = sm.default_shape(float(r["d"]), float(r["k"]), P=0 if m.startswith("global") else 4)
        bw = gbits_of(rate) * 1e9 / 8 * sm.WIRE_EFFICIENCY
        network, sent = sm.communication(m, s, w, alpha[w], bw, rig_burst(rate))
        dense = rig[("dense", w)]
        moved = dense["communicate_s"] * sent / dense["bytes_per_rank"]
        inproc = rig[(m, w)]["step_s"]
        _, _, earlier, _ = sm.predict(m, fits[m], s, w, gbits_of(rate), alpha[w], cores)
        rows.append({"link": rate, "W": w, "method": m, "measured_step_s": r["step_s"],
                     "fastest_run_s": r["step_range"][0], "slowest_run_s": r["step_range"][1],
                     "model_step_s": inproc - moved + max(moved, network), "earlier_model_step_s": earlier,
                     "inproc_step_s": inproc, "moved_s": moved, "measured_communicate_s": r["communicate_s"],
                     "model_network_s": network, "measured_bytes": r["bytes_per_rank"], "model_bytes": sent,
                     "runs": r["runs"]})
    with open(os.path.join(out, "validation.csv"), "w", newline="") as f:
        table = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        table.writeheader()
        table.writerows(rows)

    def error(r: dict, model: str) -> float:
        return (r[model] - r["measured_step_s"]) / r["measured_step_s"]

    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:.1f}"

    lines = [f"alpha (1 KB allreduce time / rounds): " +
             ", ".join(f"W = {w}: {a * 1e6:.0f} us" for w, a in sorted(alpha.items())) +
             f"; medians of {', '.join(map(str, sorted({r['runs'] for r in rows})))} runs", "",
             "| link | W | method | measured step (ms) | runs' range (ms) | model (ms) | error | error, earlier rule "
             "| inproc step / of it moved (ms) | communication measured / network model (ms) "
             "| bytes/rank measured / model |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['link']} | {r['W']} | {NAMES[r['method']]} | {ms(r['measured_step_s'])} "
                     f"| {ms(r['fastest_run_s'])}-{ms(r['slowest_run_s'])} | {ms(r['model_step_s'])} "
                     f"| {error(r, 'model_step_s') * 100:+.1f}% | {error(r, 'earlier_model_step_s') * 100:+.1f}% "
                     f"| {ms(r['inproc_step_s'])} / {ms(r['moved_s'])} "
                     f"| {ms(r['measured_communicate_s'])} / {ms(r['model_network_s'])} "
                     f"| {r['measured_bytes']:.0f} / {r['model_bytes']:.0f} |")
    lines.append("")
    for name, model in (("model", "model_step_s"), (f"earlier rule (compute x W / {cores} cores)", "earlier_model_step_s")):
        errs = [error(r, model) for r in rows]
        lines.append(f"{name}: {sum(abs(e) <= 0.2 for e in errs)} of {len(errs)} within 20%, largest |error| "
                     f"{max(abs(e) for e in errs) * 100:.1f}%")
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
    for base in ("dense", "dense-bf16"):
        if base not in methods:
            continue
        lines += ["", f"Every sketch method faster than {NAMES[base]} ring allreduce: the smallest W (of those "
                  "modelled) from which it holds", "", "| d | " + " | ".join(f"{g:g} Gbit/s" for g in gs) + " |",
                  "|---|" + "---|" * len(gs)]
        for d in ds:
            cells = []
            for g in gs:
                wins = [w for w in ws if all(step[(m, w, d, g)] < step[(base, w, d, g)] for m in SKETCHES)]
                cells.append(f"W >= {wins[0]}" if wins and all(w in wins for w in ws if w >= wins[0]) else
                             (", ".join(map(str, wins)) if wins else "never"))
            lines.append(f"| {d / 1e6:g}M | " + " | ".join(cells) + " |")
    lines += floor_table(os.path.join(out, "compute.csv"))
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


def floor_table(path: str) -> list[str]:
    """The measured compute of one rank (W = 1, the largest d) next to the
    machine's floor measured in the same run (bench_step_time's columns),
    when compute.csv has them. A GPU-modelled prediction's folder has none."""
    if not os.path.exists(path):
        return []
    rows = [r for r in csv.DictReader(open(path)) if int(r["W"]) == 1 and r.get("fused_pass_s")]
    if not rows:
        return []
    d = max(float(r["d"]) for r in rows)
    lines = ["", f"Compute of one rank at d = {d / 1e6:g}M, one thread, against the floor measured in the same run "
             "(fused pass: u = m u + g; v += u over d; floor: the bytes the method must stream at the measured "
             "bandwidth, or for a sketch the scatter into its table if larger)", "",
             "| method | compute (ms) | fused pass (ms) | floor (ms) | compute / fused pass | compute / floor |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        if float(r["d"]) != d:
            continue
        lines.append(f"| {NAMES.get(r['method'], r['method'])} | {1e3 * float(r['compute_s']):.1f} "
                     f"| {1e3 * float(r['fused_pass_s']):.1f} | {1e3 * float(r['floor_s']):.1f} "
                     f"| {r['compute_over_fused_pass']} | {r['compute_over_floor']} |")
    return lines


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
