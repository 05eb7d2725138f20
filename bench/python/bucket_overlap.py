#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""What overlapping the sketch hook's buckets saves (issue 25 item 3): DDP
training steps of a 6M-parameter MLP (6 hidden layers of 1024: a 4 MB
bucket a layer) with the sketch hook, its buckets compressed one after
another (``overlap_buckets=False``) against neighbouring buckets' rounds
interleaved, one bucket on the wire while another computes (``overlap_buckets=True``),
alternating in blocks of steps in the same run. Rank 0 prints a table.

    sudo bench/netns_cluster.sh -n 4 --rate 100mbit -- env GLOO_SOCKET_IFNAME=eth0 \\
        PYTHONPATH=build-test/python /usr/bin/python3 bench/python/bucket_overlap.py
    PYTHONPATH=build-test/python /usr/bin/python3 bench/python/bucket_overlap.py --world 2   # loopback

Each step starts after a barrier (not timed) and ends when the optimizer has
stepped: the time of forward, backward with the hook, and the update.
"""
import argparse
import os
import statistics
import sys
import time

import torch
import torch.distributed as dist
from torch import nn

import sketchsgd.torch as st
from sketchsgd.local import run_local

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "pytorch"))
from train import launched_by_tcp_launch  # noqa: E402 - after the path it lives on


def mlp(width, depth):
    torch.manual_seed(1)
    layers = [nn.Linear(784, width), nn.ReLU()]
    for _ in range(depth - 1):
        layers += [nn.Linear(width, width), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(width, 10))


def run(rank, world, a):
    torch.set_num_threads(a.threads)
    dist._DEFAULT_FIRST_BUCKET_BYTES = int(a.bucket_mb * 2**20)  # every bucket of bucket_mb, the first too
    ddp = nn.parallel.DistributedDataParallel(mlp(a.width, a.depth), bucket_cap_mb=a.bucket_mb)
    state = st.SketchState(None, method=a.method, compression=a.compression, seed=1, start_iter=a.start_iter,
                           momentum=0.9, threads=a.threads)
    ddp.register_comm_hook(state, st.sketch_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(rank)
    x, y = torch.randn(a.batch, 784, generator=g), torch.randint(0, 10, (a.batch,), generator=g)
    times = {True: [], False: []}
    overlapped = {True: [0, 0], False: [0, 0]}  # rounds launched while another bucket's was in flight, rounds
    for step in range(a.start_iter + 2 + 2 * a.blocks * a.block):
        timed = step >= a.start_iter + 2  # compression running, buckets rebuilt
        overlap = not timed or ((step - a.start_iter - 2) // a.block) % 2 == 0
        state.overlap_buckets = overlap
        before = state.stats()
        dist.barrier()
        t0 = time.perf_counter()
        opt.zero_grad()
        nn.functional.cross_entropy(ddp(x), y).backward()
        opt.step()
        if timed:
            times[overlap].append(time.perf_counter() - t0)
            after = state.stats()
            overlapped[overlap][0] += after["rounds_overlapped"] - before["rounds_overlapped"]
            overlapped[overlap][1] += after["total"]["collectives"] - before["total"]["collectives"]
    return {"times": times, "overlapped": overlapped, "buckets": len(state.plans()),
            "compression": state.compression(), "steps": a.blocks * a.block}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--world", type=int, default=2, help="processes on loopback, when not started by tcp_launch.sh")
    p.add_argument("--method", default="sketched")
    p.add_argument("--compression", type=float, default=10.0)
    p.add_argument("--width", type=int, default=1024)
    p.add_argument("--depth", type=int, default=6, help="hidden layers")
    p.add_argument("--batch", type=int, default=32, help="per rank")
    p.add_argument("--bucket-mb", type=float, default=4.0, help="DDP's bucket cap (several buckets)")
    p.add_argument("--threads", type=int, default=1, help="torch's and the hook's threads per rank")
    p.add_argument("--start-iter", type=int, default=3)
    p.add_argument("--blocks", type=int, default=4, help="blocks per setting, alternating")
    p.add_argument("--block", type=int, default=5, help="steps per block")
    p.add_argument("--label", default="", help="printed with the table (the link's rate, say)")
    a = p.parse_args()
    launched_by_tcp_launch()
    if "RANK" in os.environ:
        dist.init_process_group("gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        out = run(rank, world, a)
        outs = [None] * world
        dist.all_gather_object(outs, out)
        dist.destroy_process_group()
        if rank != 0:
            return
    else:
        world = a.world
        outs = run_local(run, world, a, timeout=1800, threads=a.threads)
    # A step ends when the slowest rank's does: the mean over ranks of each step, then the median.
    med = {o: statistics.median(statistics.mean(r["times"][o][s] for r in outs) for s in range(len(outs[0]["times"][o])))
           for o in (False, True)}
    r0 = outs[0]
    print(f"{a.label or 'loopback'}: W = {world}, {a.method} at {a.compression:g}x ({r0['compression']:.1f}x "
          f"measured), MLP {a.depth} x {a.width}, {r0['buckets']} buckets of <= {a.bucket_mb:g} MB, batch {a.batch} per "
          f"rank, {a.threads} thread(s) per rank; {r0['steps']} steps per setting, alternating blocks of {a.block}")
    print("| buckets | s / step, one after another | s / step, overlapped | speed-up | rounds overlapped |")
    print("|---|---:|---:|---:|---:|")
    print(f"| {r0['buckets']} | {med[False]:.3f} | {med[True]:.3f} | {med[False] / med[True]:.2f}x | "
          f"{r0['overlapped'][True][0]} of {r0['overlapped'][True][1]} |")


if __name__ == "__main__":
    main()
