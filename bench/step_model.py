#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Predicted optimizer step time of every method: compute measured on this
machine, communication from the collectives sketchsgd runs, under an
alpha-beta model with a full-duplex link of its own per rank.

    bench/step_model.py --compute compute.csv [--d 25e6,100e6,1e9] [--workers 4,8,...,1024]
        [--gbits 1,10,25,100] [--latency-us 25] [--k K] [--rows R] [--cols C] [--P P]
        [--gpu-model stream_read.json]

compute.csv is what `bench/scaling.sh` measures with `bench_step_time
--transport inproc` (one rank, then two, one thread each); its compute per
coordinate is taken as linear in d, and the merges that grow with W (local
top-k's W k entries, gTop-k's tree rounds) from the two-rank runs. Prints a
table: method, W, d, Gbit/s, compute s, communication s, step s, bytes per
rank. The defaults are the prediction of docs/performance.md's "Scaling".
`--gpu-model` scales compute by this core's streaming read (bench_count_sketch
stream_read/1, JSON) over an H100's published memory bandwidth: GPU compute
modelled, not measured. `--cores N` models N cores shared by all W ranks (the
earlier model of bench/netns_cluster.sh's rig, kept for comparison).

The collectives, as the library runs them (include/sketchsgd/collective):
  allreduce of n bytes: recursive doubling up to 8 KiB (log2 W rounds of n),
    else the ring (2 (W-1) rounds of n / W);
  allgatherv of m bytes a rank: a ring allgather of the 8-byte counts, then a
    ring over the data (W-1 rounds of m);
  reduce / broadcast: binomial trees (ceil(log2 W) rounds of m).
A round costs alpha + bytes / bandwidth: ranks send and receive at once.
The bandwidth is the link's times 1448 / 1514, TCP's payload in a full
Ethernet frame of MTU 1500 (timestamps on), which is what tc tbf meters.
`burst` (the validation rig only) is tbf's bucket: it fills while a link
idles through a compute phase, so the first message of each collective
passes up to that many bytes at once; a real link has no bucket.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from dataclasses import dataclass, field

SMALL_BYTES = 8 << 10  # allreduce_options::small_bytes
ENTRY = 8  # a (4-byte index, 4-byte value) pair on the wire
WIRE_EFFICIENCY = 1448 / 1514  # TCP payload per Ethernet frame at MTU 1500
H100_HBM_BYTES_PER_S = 3.35e12  # H100 SXM, HBM3 (NVIDIA H100 datasheet)
METHODS = ["dense", "dense-bf16", "dense-fp16", "true-topk", "local-topk", "gtopk", "sketched", "fetchsgd",
           "global-sketch", "global-sketch-rd"]
# dense-bf16 / dense-fp16: dense SGD with its sum on a 16-bit wire (2 bytes a value).
# global-sketch-rd: gs-SGD with its table summed by recursive doubling, as its
# paper does (bench_step_time --method global-sketch --sketch-allreduce rd).


@dataclass
class Shape:
    d: float
    k: float
    rows: int
    cols: float
    P: int  # Sketched-SGD's candidates factor (global-sketch: 0, no second round)


def default_shape(d: float, k: float | None = None, rows: int = 1, cols: float | None = None, P: int = 4) -> Shape:
    """bench_step_time's defaults: k = d / 1000, one row of 19 k columns, P = 4."""
    k = k if k else max(1.0, math.floor(d / 1000))
    return Shape(d, k, rows, cols if cols else 19 * k, P)


# ---- communication ----------------------------------------------------------------


def pof2_below(w: int) -> int:
    p = 1
    while p * 2 <= w:
        p *= 2
    return p


def recursive_doubling(n: float, w: int, alpha: float, bw: float) -> tuple[float, float]:
    """(seconds, mean bytes a rank sends) of a recursive-doubling allreduce of n bytes."""
    if w <= 1 or n <= 0:
        return 0.0, 0.0
    p = pof2_below(w)
    rounds = math.log2(p) + (2 if w > p else 0)
    # Bytes: the mean over ranks (the W - p extra ranks fold in and out
    # through a partner: 2 (W - p) messages more).
    return rounds * (alpha + n / bw), (p * math.log2(p) + 2 * (w - p)) * n / w


def allreduce(n: float, w: int, alpha: float, bw: float) -> tuple[float, float]:
    """(seconds, mean bytes a rank sends) of the library's allreduce of n bytes."""
    if w <= 1 or n <= 0:
        return 0.0, 0.0
    if n <= SMALL_BYTES:
        return recursive_doubling(n, w, alpha, bw)
    return 2 * (w - 1) * (alpha + n / w / bw), 2 * (w - 1) / w * n


def allgatherv(m: float, w: int, alpha: float, bw: float) -> tuple[float, float]:
    if w <= 1:
        return 0.0, 0.0
    counts = (w - 1) * (alpha + 8 / bw)
    data = (w - 1) * (alpha + m / bw)
    return counts + data, (w - 1) * (8 + m)


def tree(m: float, w: int, alpha: float, bw: float) -> float:
    """Seconds of a binomial reduce or broadcast: its critical path is
    ceil(log2 W) rounds of one message of m."""
    if w <= 1:
        return 0.0
    return math.ceil(math.log2(w)) * (alpha + m / bw)


def allreduce_first_message(n: float, w: int) -> float:
    """Bytes of the first message a rank sends in the allreduce of n bytes:
    the ring's first block, or all of n by recursive doubling."""
    return n / w if n > SMALL_BYTES else n


def communication(method: str, s: Shape, w: int, alpha: float, bw: float, burst: float = 0.0) -> tuple[float, float]:
    """(seconds, bytes sent by a rank) of one step's collectives; `burst`:
    payload bytes a link's tbf bucket lets through at once (the rig only)."""
    if w <= 1:
        return 0.0, 0.0
    parts: list[tuple[float, float, float]] = []  # (seconds, bytes sent, first message)
    if method in ("dense", "true-topk"):
        parts.append((*allreduce(4 * s.d, w, alpha, bw), allreduce_first_message(4 * s.d, w)))
    elif method in ("dense-bf16", "dense-fp16"):
        # Always the ring (a 16-bit wire never takes recursive doubling).
        n = 2 * s.d
        parts.append((2 * (w - 1) * (alpha + n / w / bw), 2 * (w - 1) / w * n, n / w))
    elif method == "local-topk":
        parts.append((*allgatherv(ENTRY * s.k, w, alpha, bw), ENTRY * s.k))
    elif method == "gtopk":
        # Tree of k pairs towards rank 0 (each rank sends once; the critical
        # path has ceil(log2 W) rounds), then rank 0 broadcasts the k pairs.
        # Bytes: W - 1 messages each way in all, as a mean per rank.
        tree_s = tree(ENTRY * s.k, w, alpha, bw)
        parts += [(tree_s, (w - 1) / w * ENTRY * s.k, ENTRY * s.k)] * 2
    elif method == "global-sketch-rd":
        parts.append((*recursive_doubling(4 * s.rows * s.cols, w, alpha, bw), 4 * s.rows * s.cols))
    else:
        n = 4 * s.rows * s.cols
        parts.append((*allreduce(n, w, alpha, bw), allreduce_first_message(n, w)))
        if method == "sketched" and s.P > 0:
            n = 4 * s.P * s.k
            parts.append((*allreduce(n, w, alpha, bw), allreduce_first_message(n, w)))
    return sum(t - min(burst, first) / bw for t, _, first in parts), sum(p[1] for p in parts)


# ---- compute ------------------------------------------------------------------------


@dataclass
class ComputeFit:
    points: list[tuple[float, float]]  # (d, compute s) of one rank alone (W = 1), d increasing
    per_entry_log: float = 0.0  # local top-k: s per gathered entry per log2(entries)
    per_round_entry: float = 0.0  # gTop-k: s per entry per tree round
    scale: float = 1.0  # applied to everything (a faster device)
    # (d, compute of one of two ranks sharing this machine / compute alone): the
    # slow-down of ranks that share one machine's memory bandwidth (the rig only)
    sharing: list[tuple[float, float]] = field(default_factory=list)

    def shared(self, d: float) -> float:
        if not self.sharing:
            return 1.0
        return min(self.sharing, key=lambda p: abs(math.log(p[0] / d)))[1]

    def alone(self, d: float) -> float:
        """Compute at W = 1: piecewise linear between the measured d, and in
        proportion to d outside them (every phase is O(d) with k = d / 1000)."""
        pts = self.points
        if d <= pts[0][0]:
            return pts[0][1] * d / pts[0][0]
        for (d0, t0), (d1, t1) in zip(pts, pts[1:]):
            if d <= d1:
                return t0 + (t1 - t0) * (d - d0) / (d1 - d0)
        return pts[-1][1] * d / pts[-1][0]

    def scaled(self, f: float) -> "ComputeFit":
        return ComputeFit(self.points, self.per_entry_log, self.per_round_entry, self.scale * f, self.sharing)


def fit_compute(path: str) -> dict[str, ComputeFit]:
    """Per method: the W = 1 runs' compute against d, and the merge costs that
    grow with W from the W = 2 runs at the largest d."""
    rows = list(csv.DictReader(open(path)))
    fits: dict[str, ComputeFit] = {}
    for m in METHODS:
        # gs-SGD computes the same whichever allreduce sums its table.
        alone = [r for r in rows if r["method"] == m.removesuffix("-rd") and int(r["W"]) == 1]
        if not alone:
            continue
        fit = ComputeFit(sorted((float(r["d"]), float(r["compute_s"])) for r in alone))
        for r in alone:
            two = [t for t in rows if t["method"] == r["method"] and int(t["W"]) == 2 and t["d"] == r["d"]]
            if two:
                # Local top-k and gTop-k merge more at W = 2: their selection (compress) alone shows the sharing.
                key = "compress_s" if m in ("local-topk", "gtopk") else "compute_s"
                fit.sharing.append((float(r["d"]), max(1.0, float(two[0][key]) / float(r[key]))))
        big = max(alone, key=lambda r: float(r["d"]))
        pair = [r for r in rows if r["method"] == m and int(r["W"]) == 2 and r["d"] == big["d"]]
        if pair:
            extra = max(0.0, float(pair[0]["recover_s"]) - float(big["recover_s"]))
            k = float(big["k"])
            if m == "local-topk":
                n = 2 * k
                fit.per_entry_log = float(pair[0]["recover_s"]) / (n * math.log2(n))
            elif m == "gtopk":
                fit.per_round_entry = extra / k
        fits[m] = fit
    return fits


def compute(method: str, fit: ComputeFit, s: Shape, w: int) -> float:
    t = fit.alone(s.d)
    if method == "local-topk" and w > 1 and fit.per_entry_log:
        # The recover phase is a stable sort of the W k gathered entries.
        n = w * s.k
        t += fit.per_entry_log * n * math.log2(n) - fit.per_entry_log * s.k * math.log2(max(2.0, s.k))
    if method == "gtopk" and w > 1:
        t += fit.per_round_entry * s.k * math.ceil(math.log2(w))
    return t * fit.scale


def predict(method: str, fit: ComputeFit, s: Shape, w: int, gbits: float, alpha: float, cores: int = 0):
    """(compute s, communication s, step s, bytes sent by a rank)."""
    # W ranks time-sharing `cores` cores of one machine, and its memory bandwidth.
    share = max(1.0, w / cores) * fit.shared(s.d) if cores else 1.0
    c = compute(method, fit, s, w) * share
    comm, sent = communication(method, s, w, alpha, gbits * 1e9 / 8 * WIRE_EFFICIENCY)
    return c, comm, c + comm, sent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compute", required=True, help="CSV of bench_step_time --transport inproc runs")
    ap.add_argument("--d", default="25e6,100e6,1e9", help="comma-separated dimensions")
    ap.add_argument("--workers", default="4,8,16,32,64,128,256,512,1024")
    ap.add_argument("--gbits", default="1,10,25,100", help="per-link bandwidth, Gbit/s, comma-separated")
    ap.add_argument("--latency-us", type=float, default=25.0, help="alpha: per message, microseconds")
    ap.add_argument("--k", type=float, default=0, help="selected coordinates (default d / 1000)")
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--cols", type=float, default=0, help="sketch columns (default 19 k)")
    ap.add_argument("--P", type=int, default=4, help="Sketched-SGD's candidates factor")
    ap.add_argument("--cores", type=int, default=0, help="cores shared by all ranks (0: one per rank)")
    ap.add_argument("--compute-scale", type=float, default=1.0, help="multiply measured compute (e.g. a GPU)")
    ap.add_argument("--gpu-model", metavar="STREAM_JSON",
                    help="multiply compute by this core's stream_read/1 bytes/s over the H100's HBM bandwidth")
    ap.add_argument("--methods", default="", help="comma-separated (default: every method compute.csv measured)")
    a = ap.parse_args()
    fits = fit_compute(a.compute)
    methods = a.methods.split(",") if a.methods else [m for m in METHODS if m in fits]
    scale = a.compute_scale
    if a.gpu_model:
        stream = json.load(open(a.gpu_model))["benchmarks"][0]["bytes_per_second"]
        scale *= stream / H100_HBM_BYTES_PER_S
        print(f"step_model: GPU compute modelled: CPU compute x {scale:.4g}", file=sys.stderr)
    out = csv.writer(sys.stdout)
    out.writerow(["method", "W", "d", "gbits", "compute_s", "communicate_s", "step_s", "bytes_per_rank"])
    for d in (float(x) for x in a.d.split(",")):
        for w in (int(x) for x in a.workers.split(",")):
            for g in (float(x) for x in a.gbits.split(",")):
                for m in methods:
                    if m not in fits:
                        sys.exit(f"step_model: no compute measured for {m} in {a.compute}")
                    s = default_shape(d, a.k or None, a.rows, a.cols or None, 0 if m.startswith("global") else a.P)
                    fit = fits[m].scaled(scale)
                    c, comm, step, sent = predict(m, fit, s, w, g, a.latency_us * 1e-6, a.cores)
                    out.writerow([m, w, f"{d:.0f}", f"{g:g}", f"{c:.5f}", f"{comm:.5f}", f"{step:.5f}", f"{sent:.0f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
