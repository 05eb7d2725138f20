# SPDX-License-Identifier: Apache-2.0
"""The hook under DDP's options, over gloo at W = 2: gradient accumulation
with no_sync(), gradient_as_bucket_view, static_graph and
find_unused_parameters. Each trains, the ranks end identical, and the hook's
iteration, warm-up and state count optimizer steps, not backward calls."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

import sketchsgd.torch as st
from test_hook import Planted, batch, flat_params, mlp, planted_coefficients, run_world, train

LR = 0.05
STEPS = 9
START = 3
HOOK = dict(compression=8.0, seed=11, start_iter=START)


def ddp_of(model, **ddp_options):
    dist._DEFAULT_FIRST_BUCKET_BYTES = 1024  # several buckets, the first one too
    return nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.001, **ddp_options)


def counts(state):
    s = state.stats()
    return {"iter": state.iter, "warmup_collectives": s["warmup"]["collectives"],
            "bucket_steps": s["bucket_steps"], "buckets": len(state.plans()),
            "compressed_buckets": sum(1 for p in state.plans() if "allreduce" not in p)}


# -- no_sync(): several micro-batches, one synced backward, one optimizer step ---------------------------------

MICRO = 3


def _accumulate(rank, world, method, accumulate):
    """Planted gradients (small integers: every sum exact). With ``accumulate``
    each step is MICRO backward calls, all but the last under no_sync(); else
    one backward of the micro-batches' summed coefficients. The hook's input
    is then the same bucket, bit for bit, so every result must be."""
    model = Planted()
    ddp = ddp_of(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=0.9)
    state = st.attach(ddp, opt, method=method, **HOOK)
    seen = []
    for step in range(STEPS):
        micro = [planted_coefficients(model, rank, MICRO * step + j) for j in range(MICRO)]
        opt.zero_grad()
        if accumulate:
            for j, c in enumerate(micro):
                if j < MICRO - 1:
                    with ddp.no_sync():
                        ddp(c).backward()
                else:
                    ddp(c).backward()
        else:
            ddp([sum(parts) for parts in zip(*micro)]).backward()
        seen.append(state.iter)
        opt.step()
    return {"params": flat_params(model), "iters": seen, **counts(state)}


def _accumulate_both(rank, world, method):
    return _accumulate(rank, world, method, True), _accumulate(rank, world, method, False)


@pytest.mark.parametrize("method", ["sketched", "fetchsgd"])
def test_no_sync_accumulation_counts_optimizer_steps(method):
    acc, one = zip(*run_world(_accumulate_both, 2, method))
    for r in range(2):
        assert np.array_equal(acc[r]["params"], acc[0]["params"]), f"rank {r} differs"
        # Accumulated micro-batches are the one big batch, to the bit.
        assert np.array_equal(acc[r]["params"], one[r]["params"]), f"rank {r}: no_sync differs from one batch"
        # The hook ran once per optimizer step: its iteration is the step.
        assert acc[r]["iters"] == list(range(1, STEPS + 1)), acc[r]["iters"]
        assert acc[r]["iter"] == STEPS
        # Warm-up: START optimizer steps of plain allreduce (one bucket of all
        # parameters the first step, then DDP's rebuilt buckets); then every
        # bucket compressed, once per step.
        assert acc[r]["warmup_collectives"] == one[r]["warmup_collectives"] == 1 + (START - 1) * acc[r]["buckets"]
        assert acc[r]["bucket_steps"] == (STEPS - START) * acc[r]["compressed_buckets"]
    assert acc[0]["buckets"] >= 2
    assert not np.array_equal(acc[0]["params"], flat_params(Planted()))


# -- gradient_as_bucket_view, static_graph: the same run as without them ---------------------------------------

def _with_option(rank, world, method, option):
    ddp = ddp_of(mlp(), **({option: True} if option else {}))
    opt = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=0.9, weight_decay=1e-4)
    state = st.attach(ddp, opt, method=method, **HOOK)
    iters = []
    for it in range(STEPS):
        train(ddp, opt, 1, rank, first=it)
        iters.append(state.iter)
    return {"params": flat_params(ddp.module), "iters": iters, **counts(state)}


OPTIONS = ["gradient_as_bucket_view", "static_graph"]


def _each_option(rank, world, method):
    return {option: _with_option(rank, world, method, option) for option in [None] + OPTIONS}


@pytest.mark.parametrize("method", ["sketched", "fetchsgd"])
def test_options_give_the_run_without_them(method):
    ranks = run_world(_each_option, 2, method)
    for option in OPTIONS:
        _check_option(option, [r[option] for r in ranks], [r[None] for r in ranks])


def _check_option(option, with_it, without):
    for r in range(2):
        assert np.array_equal(with_it[r]["params"], with_it[0]["params"]), f"rank {r} differs ({option})"
        assert np.array_equal(with_it[r]["params"], without[r]["params"]), f"rank {r}: {option} changed the result"
        assert with_it[r]["iters"] == list(range(1, STEPS + 1))
        assert with_it[r]["bucket_steps"] == (STEPS - START) * with_it[r]["compressed_buckets"] > 0
    assert np.all(np.isfinite(with_it[0]["params"]))
    assert not np.array_equal(with_it[0]["params"], flat_params(mlp()))


# -- find_unused_parameters ------------------------------------------------------------------------------------

class Branches(nn.Module):
    """An MLP with a branch only rank 0 takes and a layer no rank uses."""

    def __init__(self):
        super().__init__()
        self.body = mlp()
        self.rank0_only = nn.Linear(10, 10)
        self.unused = nn.Linear(10, 10)

    def forward(self, x, rank):
        y = self.body(x)
        return y + self.rank0_only(y) if rank == 0 else y


def _unused(rank, world, method):
    torch.manual_seed(7)
    model = Branches()
    unused_before = flat_params(model.unused)
    ddp = ddp_of(model, find_unused_parameters=True)
    opt = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=0.9)
    state = st.attach(ddp, opt, method=method, **HOOK)
    for it in range(STEPS):
        x, y = batch(rank, it)
        loss = nn.functional.cross_entropy(ddp(x, rank), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {"params": flat_params(model), "unused_unchanged": np.array_equal(flat_params(model.unused), unused_before),
            "unused_grad": model.unused.weight.grad, "rank0_only": flat_params(model.rank0_only), **counts(state)}


@pytest.mark.parametrize("method", ["sketched", "fetchsgd", "local-topk"])
def test_find_unused_parameters(method):
    out = run_world(_unused, 2, method)
    torch.manual_seed(7)
    initial = Branches()
    for r, o in enumerate(out):
        assert np.array_equal(o["params"], out[0]["params"]), f"rank {r} differs"
        # A layer no rank uses: DDP leaves its gradient None, SGD skips it.
        assert o["unused_unchanged"] and o["unused_grad"] is None
        assert o["iter"] == STEPS and o["bucket_steps"] == (STEPS - START) * o["compressed_buckets"] > 0
    # A layer one rank uses (the other contributes zeros) is trained on both.
    assert not np.array_equal(out[0]["rank0_only"], flat_params(initial.rank0_only))
    assert np.all(np.isfinite(out[0]["params"]))
