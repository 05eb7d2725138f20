#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The sketch hook's overhead on one DDP bucket of 25 MB (DDP's default
bucket size), next to a plain gloo allreduce of the same bucket and to
PowerSGD, measured in the same run. Prints a table.

    PYTHONPATH=build-test/python /usr/bin/python3 bench/python/hook_overhead.py [--steps 8]

* compute: the hook's own work per bucket on a world of one process with
  2 threads (the collectives of a one-rank gloo group move nothing): for the
  sketch hook the aggregator's local + compress + recover time, for PowerSGD
  the whole hook (its QR and matrix products).
* at W = 2: the whole hook per bucket between 2 processes over loopback
  (1 thread each), and a plain gloo allreduce of the 25 MB bucket.
"""
import argparse
import statistics
import time

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powersgd

import sketchsgd.torch as st
from sketchsgd.budget import choose_sizes
from sketchsgd.local import run_local

SIDE = 2560  # one 2560 x 2560 weight: 6,553,600 float32 = 25 MiB, one bucket
WORLD = 2


def model():
    torch.manual_seed(0)
    return nn.Linear(SIDE, SIDE, bias=False)


def hook_of(name):
    """(state, hook) for a configuration name."""
    if name == "allreduce":
        return None, default_hooks.allreduce_hook
    if name.startswith("powersgd"):
        rank = int(name.split()[1])
        return powersgd.PowerSGDState(None, matrix_approximation_rank=rank, start_powerSGD_iter=2,
                                      min_compression_rate=1), powersgd.powerSGD_hook
    method, x = name.split()[1], float(name.split()[2])
    sizes = choose_sizes(method, SIDE * SIDE, 0, WORLD, x)  # the sizes of the W = 2 job, also on one rank
    kwargs = {"k": sizes["k"]}
    if method != "local-topk":
        kwargs["cols"] = sizes["cols"]
    state = st.SketchState(None, method=method, compression=None, start_iter=2, threads=torch.get_num_threads(),
                           **kwargs)
    return state, st.sketch_hook


def timed(rank, world, name, steps):
    """Seconds per bucket of the hook (from its call to its future's completion)."""
    ddp = nn.parallel.DistributedDataParallel(model(), bucket_cap_mb=25)
    state, hook = hook_of(name)
    times = []

    def timing_hook(s, bucket):
        start = time.perf_counter()

        def done(fut):
            times.append(time.perf_counter() - start)
            value = fut.value()
            return value if isinstance(value, torch.Tensor) else value[0]
        return hook(s, bucket).then(done)

    ddp.register_comm_hook(state, timing_hook)
    x = torch.randn(64, SIDE, generator=torch.Generator().manual_seed(rank))
    for _ in range(steps + 3):  # 3 warm-up iterations (bucket rebuild, start_iter)
        ddp.zero_grad()
        ddp(x).square().mean().backward()
    out = {"hook": statistics.median(times[3:])}
    if isinstance(state, st.SketchState):
        agg = next(iter(state.stats()["aggregators"].values()))
        out["phases"] = dict(agg["total_time"], steps=agg["steps"])
    return out


def allreduce_time(rank, world, steps):
    x = torch.randn(SIDE * SIDE)
    times = []
    for _ in range(steps + 1):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=8)
    a = p.parse_args()
    names = ["powersgd 1", "powersgd 4", "sketch sketched 10", "sketch global-sketch 10", "sketch fetchsgd 10",
             "sketch local-topk 10"]
    plain = run_local(allreduce_time, WORLD, a.steps, timeout=600)[0]
    print(f"one bucket of {SIDE * SIDE} float32 ({4 * SIDE * SIDE / 2**20:.0f} MiB); median of {a.steps} steps")
    print(f"plain gloo allreduce at W = {WORLD} (1 thread each, loopback): {1e3 * plain:.1f} ms\n")
    print("| hook | compute, W = 1, 2 threads | whole hook at W = 2 | compute / plain allreduce |")
    print("|---|---|---|---|")
    for name in names:
        alone = run_local(timed, 1, name, a.steps, timeout=900, threads=2)[0]
        pair = run_local(timed, WORLD, name, a.steps, timeout=900)[0]
        compute = alone["hook"]
        detail = ""
        if "phases" in alone:
            ph = alone["phases"]
            compute = sum(ph.get(k, 0.0) for k in ("local", "compress", "recover")) / max(1, ph.get("steps", 1))
            detail = f" (hook total {1e3 * alone['hook']:.1f} ms)"
        print(f"| {name} | {1e3 * compute:.1f} ms{detail} | {1e3 * pair['hook']:.1f} ms | {compute / plain:.2f} |")


if __name__ == "__main__":
    main()
