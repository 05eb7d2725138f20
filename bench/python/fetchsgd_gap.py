#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Issue 27's FetchSGD gap in the DDP hook, measured: W = 2 (--world) forked ranks over
gloo on loopback, a CNN of 114,206 parameters on Fashion-MNIST, SGD at
learning rate 0.05 with momentum 0.9 moved into the hook by
sketchsgd.torch.attach, global batch 128, 800 steps; one line of JSON per
configuration (test accuracy on the 10,000 test images).

    PYTHONPATH=build/python python3 bench/python/fetchsgd_gap.py \\
        allreduce fetchsgd fetchsgd:start_iter=100 fetchsgd:rows=3

A configuration is a method (allreduce: DDP's own, no hook; or a hook
method) and ``key=value`` hook options after colons (compression,
start_iter, rows, cols_per_k, ...; integers or floats). ``place=optimizer``
keeps the momentum in torch.optim.SGD and registers the hook without it
(the PowerSGD-style trap) instead of attach."""
import argparse
import gzip
import json
import os
import sys
import time

import numpy as np
import torch
from torch import nn

from sketchsgd.local import run_local

DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(split):
    folder = os.environ.get("FASHION_MNIST", DATA)
    images = read_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    labels = read_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
    return torch.from_numpy((images - 0.2860) / 0.3530).unsqueeze(1), torch.from_numpy(labels)


def cnn():
    """114,206 parameters: conv 1->32 and 32->64 (5x5), linear 1024->60->10."""
    return nn.Sequential(nn.Conv2d(1, 32, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(1024, 60), nn.ReLU(), nn.Linear(60, 10))


def parse(spec):
    method, *rest = spec.split(":")
    options = {}
    for item in rest:
        key, value = item.split("=")
        try:
            options[key] = int(value) if value.lstrip("-").isdigit() else float(value)
        except ValueError:
            options[key] = value
    return method, options


def job(rank, world, spec, steps, lr, momentum, batch, seed):
    import sketchsgd.torch as st
    method, options = parse(spec)
    torch.manual_seed(seed)
    model = cnn()
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=lr, momentum=momentum)
    state = None
    if method != "allreduce":
        options = dict({"compression": 10.0, "seed": seed}, **options)
        if options.pop("place", None) == "optimizer":  # the trap: momentum after compression
            state = st.SketchState(None, method=method, **options)
            ddp.register_comm_hook(state, st.sketch_hook)
        else:
            state = st.attach(ddp, opt, method=method, **options)
    train_x, train_y = load("train")
    per_rank = batch // world
    per_epoch = len(train_x) // batch
    t0 = time.perf_counter()
    losses = []
    stopped = None
    for step in range(steps):
        if step % per_epoch == 0:
            order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed * 1000 + step))
        b = step % per_epoch
        take = order[b * batch + rank * per_rank:b * batch + (rank + 1) * per_rank]
        loss = nn.functional.cross_entropy(ddp(train_x[take]), train_y[take])
        opt.zero_grad()
        try:
            loss.backward()
        except RuntimeError as e:  # the hook's non-finite check: every rank raises at the same step
            stopped = f"step {step}: {str(e)[:120]}"
            break
        opt.step()
        losses.append(float(loss))
    seconds = time.perf_counter() - t0
    test_x, test_y = load("t10k")
    with torch.no_grad():
        accuracy = float((model(test_x).argmax(1) == test_y).float().mean())
    out = {"config": spec, "accuracy": accuracy, "final_loss": float(np.mean(losses[-50:])), "stopped": stopped,
           "finite": bool(all(torch.isfinite(p).all() for p in model.parameters())),
           "seconds": seconds, "parameters": sum(p.numel() for p in model.parameters())}
    if state is not None:
        out.update({"compression": state.compression(), "plans": state.plans()})
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("configs", nargs="+")
    p.add_argument("--steps", type=int, default=800)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--world", type=int, default=2, help="ranks (each takes batch // world images a step)")
    a = p.parse_args()
    for spec in a.configs:
        r = run_local(job, a.world, spec, a.steps, a.lr, a.momentum, a.batch, a.seed, timeout=3600.0)
        print(json.dumps(dict(r[0], world=a.world, steps=a.steps, lr=a.lr, momentum=a.momentum, batch=a.batch,
                              seed=a.seed,
                              identical=bool(all(x["accuracy"] == r[0]["accuracy"] for x in r)))), flush=True)


if __name__ == "__main__":
    sys.exit(main())
