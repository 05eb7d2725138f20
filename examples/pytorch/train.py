#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Fashion-MNIST with PyTorch DistributedDataParallel on CPU (gloo), with a
choice of communication hook: DDP's default allreduce, PowerSGD, or
sketchsgd's sketch hook. Start W ranks as processes on one machine:

    python3 -m torch.distributed.run --nproc_per_node 4 examples/pytorch/train.py \\
        --hook sketch --method sketched --compression 10 --seed 1

Every rank reads the data from Debian's dataset-fashion-mnist package and
takes its share of each global batch; the parameters stay identical on every
rank (checked at the end). Rank 0 prints one RESULT line (JSON): test
accuracy, bytes this rank wrote to its sockets while training (measured from
/proc/self/io: every collective, whatever the hook), the hook's own count
where it keeps one, and wall time per step.
"""
import argparse
import faulthandler
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

DATA = "/usr/share/datasets/fashion-mnist"


def positive(kind):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be positive and finite, got {text}")
        return value
    return parse


def arguments():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hook", choices=["allreduce", "fp16", "powersgd", "sketch"], default="sketch",
                   help="fp16: torch's fp16_compress_hook (gloo in torch 1.13 refuses bfloat16)")
    p.add_argument("--method", default="sketched", help="sketch hook: sketched, global-sketch, fetchsgd, local-topk")
    p.add_argument("--compression", type=positive(float), default=10.0, help="sketch hook: target X (bytes / X)")
    p.add_argument("--rank-powersgd", type=positive(int), default=1, help="PowerSGD: matrix approximation rank")
    p.add_argument("--epochs", type=positive(int), default=3)
    p.add_argument("--batch", type=positive(int), default=128, help="global batch (split over the ranks)")
    p.add_argument("--lr", type=positive(float), default=0.1)
    p.add_argument("--momentum", type=float, default=0.5)
    p.add_argument("--start-iter", type=positive(int), default=50, help="warm-up iterations of plain allreduce")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--max-steps", type=int, default=0, help="stop after this many steps (0: the epochs)")
    p.add_argument("--log-every", type=int, default=0, help="rank 0 prints the mean training loss this often")
    p.add_argument("--model", choices=["cnn", "mlp"], default="cnn",
                   help="cnn: 46,730 parameters; mlp: 784 -> W -> W -> 10 (--width 2048: 5,824,522 parameters)")
    p.add_argument("--width", type=positive(int), default=2048, help="mlp: the hidden layers' width")
    p.add_argument("--cols-per-k", type=positive(int), default=None, help="sketch hook: columns per extracted k")
    p.add_argument("--eval-every", type=int, default=0,
                   help="every this many steps, test accuracy (each rank a share of the test set), printed by "
                        "rank 0 as an EVAL line with the training time so far (evaluations not counted)")
    p.add_argument("--eval-images", type=positive(int), default=10000,
                   help="--eval-every's accuracy on the first this many test images (the RESULT's on all)")
    p.add_argument("--one-bucket", action="store_true",
                   help="every gradient in one DDP bucket (torch 1.13's PowerSGD over gloo aborts with several: "
                        "its rounds, issued from callbacks, reach the ranks' groups in different orders)")
    p.add_argument("--label", default="", help="copied into the RESULT line (a study's rate, say)")
    p.add_argument("--data", default=DATA)
    a = p.parse_args()
    if not 0 <= a.momentum < 1:
        p.error(f"--momentum must be in [0, 1), got {a.momentum}")
    if a.start_iter < 2:
        p.error("--start-iter must be at least 2 (DDP rebuilds its buckets after the first iteration)")
    return a


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(folder, split):
    images = read_idx(os.path.join(folder, f"{split}-images-idx3-ubyte.gz")).astype(np.float32) / 255.0
    labels = read_idx(os.path.join(folder, f"{split}-labels-idx1-ubyte.gz")).astype(np.int64)
    images = (images - 0.2860) / 0.3530  # Fashion-MNIST's mean and standard deviation
    return torch.from_numpy(images).unsqueeze(1), torch.from_numpy(labels)


def cnn():
    """A small CNN (about 48 k parameters: two conv layers, two linear ones)."""
    return nn.Sequential(nn.Conv2d(1, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(16, 32, 5), nn.ReLU(),
                         nn.MaxPool2d(2), nn.Flatten(), nn.Linear(512, 64), nn.ReLU(), nn.Linear(64, 10))


def mlp(width):
    """784 -> width -> width -> 10 with ReLU: a real-sized model that 2 cores train in minutes."""
    return nn.Sequential(nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, 10))


def launched_by_tcp_launch():
    """Ranks started by scripts/tcp_launch.sh (bench/netns_cluster.sh: one
    network namespace and shaped link per rank) get torch's variables from
    its SKETCHSGD_* ones: rank 0 serves the store on a fixed port of its
    address and publishes the port, as tcp_launch.sh waits for it to."""
    if "RANK" in os.environ or "SKETCHSGD_RANK" not in os.environ:
        return
    rank = int(os.environ["SKETCHSGD_RANK"])
    host, port = os.environ["SKETCHSGD_TCP_ROOT"].rsplit(":", 1)
    if rank == 0:
        port = os.environ.get("MASTER_PORT", "29511")
        with open(os.environ["SKETCHSGD_TCP_PORT_FILE"], "w") as f:
            f.write(port)
    os.environ.update({"RANK": str(rank), "WORLD_SIZE": os.environ["SKETCHSGD_SIZE"], "MASTER_ADDR": host,
                       "MASTER_PORT": port})


def shared_accuracy(model, test_x, test_y, rank, world, n):
    """The share of the first n test images right, each rank evaluating 1/W of them."""
    n = min(n, len(test_x))
    share = slice(rank * n // world, (rank + 1) * n // world)
    with torch.no_grad():
        right = torch.tensor([int((model(test_x[share]).argmax(1) == test_y[share]).sum())], dtype=torch.int64)
    dist.all_reduce(right)
    return int(right) / n


def exit_within(seconds):
    """A rank that cannot shut down within ``seconds`` prints where it hangs
    and exits with 1 rather than hold a study's next run. (Ranks did hang in
    their objects' destructors at return when the job's last collective was
    a small int64 allreduce, so the accuracy at the end is every rank's own.)"""
    faulthandler.dump_traceback_later(seconds, exit=True)


def wchar():
    with open("/proc/self/io") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("wchar:"))


def main():
    a = arguments()
    launched_by_tcp_launch()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if world < 2 and rank == 0:
        print("train: one rank: nothing is communicated (start with torch.distributed.run --nproc_per_node W)",
              file=sys.stderr)
    if a.batch % world:
        raise SystemExit(f"--batch {a.batch} must be a multiple of the world size {world}")
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    torch.manual_seed(a.seed)
    model = cnn() if a.model == "cnn" else mlp(a.width)
    if a.one_bucket:  # DDP's first bucket has a cap of its own (1 MB), read when DDP is constructed
        cap = sum(p.numel() * p.element_size() for p in model.parameters())
        dist._DEFAULT_FIRST_BUCKET_BYTES = cap
        ddp = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=cap / 2**20 + 1)
    else:
        ddp = nn.parallel.DistributedDataParallel(model)
    momentum = a.momentum
    hook_state = None
    if a.hook == "fp16":
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
        ddp.register_comm_hook(None, default_hooks.fp16_compress_hook)
    elif a.hook == "powersgd":
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powersgd
        hook_state = powersgd.PowerSGDState(process_group=None, matrix_approximation_rank=a.rank_powersgd,
                                            start_powerSGD_iter=a.start_iter, random_seed=a.seed)
        ddp.register_comm_hook(hook_state, powersgd.powerSGD_hook)
    elif a.hook == "sketch":
        import sketchsgd.torch
        extra = {} if a.cols_per_k is None else {"cols_per_k": a.cols_per_k}
        hook_state = sketchsgd.torch.SketchState(None, method=a.method, compression=a.compression, seed=a.seed,
                                                 start_iter=a.start_iter, momentum=a.momentum, **extra)
        ddp.register_comm_hook(hook_state, sketchsgd.torch.sketch_hook)
        momentum = 0.0  # the hook applies momentum (before compression, with error feedback)
    opt = torch.optim.SGD(ddp.parameters(), lr=a.lr, momentum=momentum)

    train_x, train_y = load(a.data, "train")
    test_x, test_y = load(a.data, "t10k")
    per_rank = a.batch // world
    steps_per_epoch = len(train_x) // a.batch
    total = steps_per_epoch * a.epochs if a.max_steps <= 0 else a.max_steps
    step, loss_sum = 0, 0.0
    written0, t0 = wchar(), time.perf_counter()
    paused = 0.0  # seconds spent evaluating: not training time
    curve = []
    while step < total:
        order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(a.seed * 1000 + step))
        for b in range(steps_per_epoch):
            if step >= total:
                break
            take = order[b * a.batch + rank * per_rank:b * a.batch + (rank + 1) * per_rank]
            loss = nn.functional.cross_entropy(ddp(train_x[take]), train_y[take])
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += float(loss)
            step += 1
            if a.log_every > 0 and step % a.log_every == 0 and rank == 0:
                print(f"step {step}: loss {float(loss):.4f}", file=sys.stderr, flush=True)
            if a.eval_every > 0 and (step % a.eval_every == 0 or step == total):
                at, written_now = time.perf_counter(), wchar()
                point = {"step": step, "seconds": at - t0 - paused, "bytes_written": written_now - written0,
                         "accuracy": shared_accuracy(model, test_x, test_y, rank, world, a.eval_images)}
                curve.append(point)
                if rank == 0:
                    print("EVAL " + json.dumps(point), flush=True)
                dist.barrier()  # every rank resumes the clock together
                paused += time.perf_counter() - at
    seconds = time.perf_counter() - t0 - paused
    written = wchar() - written0

    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    everyone = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(everyone, flat)
    identical = all(torch.equal(everyone[0], x) for x in everyone)
    with torch.no_grad():
        accuracy = float((model(test_x).argmax(1) == test_y).float().mean())
    result = {"hook": a.hook, "method": a.method if a.hook == "sketch" else None,
              "compression_target": a.compression if a.hook == "sketch" else None,
              "powersgd_rank": a.rank_powersgd if a.hook == "powersgd" else None, "world": world,
              "seed": a.seed, "start_iter": a.start_iter, "steps": step, "epochs": a.epochs, "accuracy": accuracy,
              "mean_train_loss": loss_sum / max(step, 1), "bytes_written_per_rank": written,
              "seconds_per_step": seconds / max(step, 1), "parameters": flat.numel(), "identical": identical,
              "model": a.model, "label": a.label, "lr": a.lr, "momentum": a.momentum, "batch": a.batch, "curve": curve}
    if a.hook == "sketch":
        s = hook_state.stats()
        result.update({"hook_payload_bytes": s["total"]["bytes_sent"], "hook_wire_bytes": s["total"]["wire_bytes"],
                       "achieved_compression": hook_state.compression(), "plans": hook_state.plans()})
    if rank == 0:
        print("RESULT " + json.dumps(result), flush=True)
    exit_within(60)
    dist.destroy_process_group()
    if not identical:
        raise SystemExit("train: ranks ended with different parameters")


if __name__ == "__main__":
    main()
