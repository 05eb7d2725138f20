#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Turns Google Benchmark JSON into a Markdown table with each benchmark's time
as a multiple of the plain streaming read measured in the same run and with
the same thread count.

  bench_count_sketch --benchmark_out=out.json --benchmark_out_format=json \
      --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
  python3 bench/ratios.py out.json
"""
import json
import sys


def main(path):
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for b in data["benchmarks"]:
        if b.get("run_type") == "aggregate" and b.get("aggregate_name") != "median":
            continue
        name = b["run_name"] if "run_name" in b else b["name"]
        parts = name.split("/")
        kernel, threads = parts[0], int(parts[1])
        ms = b["real_time"] / (1e6 if b["time_unit"] == "ns" else 1e3 if b["time_unit"] == "us" else 1)
        if b["time_unit"] == "ms":
            ms = b["real_time"]
        extra = b.get("extra_MB")
        rows[(kernel, threads)] = (ms, extra)
    ctx = data["context"]
    print(f"Machine: {ctx.get('num_cpus')} CPUs at {ctx.get('mhz_per_cpu')} MHz; "
          f"caches: " + ", ".join(f"L{c['level']} {c['type']} {c['size'] // 1024} KiB" for c in ctx.get("caches", [])))
    print()
    print("| kernel | threads | median time (ms) | x streaming read | peak extra heap (MB) |")
    print("|---|---:|---:|---:|---:|")
    for (kernel, threads), (ms, extra) in rows.items():
        base = rows.get(("stream_read", threads))
        ratio = f"{ms / base[0]:.1f}" if base else "-"
        extra_s = f"{extra:.1f}" if extra is not None else "-"
        print(f"| {kernel} | {threads} | {ms:.2f} | {ratio} | {extra_s} |")


if __name__ == "__main__":
    main(sys.argv[1])
