# SPDX-License-Identifier: Apache-2.0
"""sketchsgd.torch.attach: the optimizer's momentum moved into the hook, over
real gloo process groups; what it refuses; the warning of the manual path
when momentum is left in the optimizer."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

import sketchsgd.torch as st
from test_hook import flat_params, mlp, run_world, small_buckets, train

LR = 0.05


SGD_CASES = {"momentum": {"momentum": 0.9}, "nesterov": {"momentum": 0.9, "nesterov": True},
             "decay": {"momentum": 0.9, "weight_decay": 1e-3}}


def _attach_or_manual(rank, world, method, hook_options):
    """Each SGD case twice in one group: attach(SGD with it), then the
    documented manual path (the hook given momentum, nesterov, weight decay;
    plain SGD)."""
    return {name: _one_case(rank, method, sgd, hook_options) for name, sgd in SGD_CASES.items()}


def _one_case(rank, method, sgd, hook_options):
    out = {}
    ddp = small_buckets(mlp(), 0.001)
    opt = torch.optim.SGD(ddp.parameters(), lr=LR, **sgd)
    state = st.attach(ddp, opt, method=method, **hook_options)
    train(ddp, opt, 14, rank)
    out["attached"] = flat_params(ddp.module)
    out["groups"] = [{k: g[k] for k in ("momentum", "nesterov", "weight_decay", "lr")} for g in opt.param_groups]
    out["hook"] = {"momentum": state.momentum, "nesterov": state.nesterov, "weight_decay": state.weight_decay}
    out["iterations"] = state.iter

    ddp = small_buckets(mlp(), 0.001)
    manual = st.SketchState(None, method=method, momentum=sgd.get("momentum", 0.0),
                            nesterov=sgd.get("nesterov", False), weight_decay=sgd.get("weight_decay", 0.0),
                            **hook_options)
    ddp.register_comm_hook(manual, st.sketch_hook)
    opt = torch.optim.SGD(ddp.parameters(), lr=LR)
    train(ddp, opt, 14, rank)
    out["manual"] = flat_params(ddp.module)
    return out


@pytest.mark.parametrize("method", ["sketched", "fetchsgd"])
def test_attach_equals_the_manual_path_bit_for_bit(method):
    options = dict(compression=10.0, seed=3, start_iter=4)
    ranks = run_world(_attach_or_manual, 2, method, options)
    for name, sgd in SGD_CASES.items():
        out = [r[name] for r in ranks]
        for r, o in enumerate(out):
            assert np.array_equal(o["attached"], o["manual"]), f"{name}, rank {r}: attach differs from the manual path"
            assert np.array_equal(o["attached"], out[0]["attached"]), f"{name}: rank {r} differs from rank 0"
            assert all(g["momentum"] == 0.0 and not g["nesterov"] and g["weight_decay"] == 0.0 and g["lr"] == LR
                       for g in o["groups"]), o["groups"]
            assert o["hook"] == {"momentum": 0.9, "nesterov": sgd.get("nesterov", False),
                                 "weight_decay": sgd.get("weight_decay", 0.0)}, o["hook"]
            assert o["iterations"] == 14
        assert not np.array_equal(out[0]["attached"], flat_params(mlp())), f"{name}: nothing was trained"
    # The cases differ from each other: what attach moves is used.
    assert not np.array_equal(ranks[0]["momentum"]["attached"], ranks[0]["nesterov"]["attached"])
    assert not np.array_equal(ranks[0]["momentum"]["attached"], ranks[0]["decay"]["attached"])


def _groups(model):
    weights = [p for p in model.parameters() if p.dim() > 1]
    vectors = [p for p in model.parameters() if p.dim() <= 1]
    return weights, vectors


def _dense_against_torch(rank, world):
    """attach with the hook's dense method (no compression) against DDP's own
    allreduce and torch.optim.SGD: the same momentum, Nesterov and weight
    decay per group (weights decayed, biases not)."""
    def sgd(model, lr_vectors):
        weights, vectors = _groups(model)
        return torch.optim.SGD([{"params": weights, "weight_decay": 5e-3},
                                {"params": vectors, "weight_decay": 0.0, "lr": lr_vectors}],
                               lr=LR, momentum=0.9, nesterov=True)
    ddp = small_buckets(mlp(), 0.001)
    opt = sgd(ddp.module, 0.02)
    state = st.attach(ddp, opt, method="dense", start_iter=3)
    train(ddp, opt, 12, rank)
    reference = small_buckets(mlp(), 0.001)
    ref_opt = sgd(reference.module, 0.02)
    train(reference, ref_opt, 12, rank)
    return {"attached": flat_params(ddp.module), "torch": flat_params(reference.module),
            "config_decay": state.config()["weight_decay"]}


def test_attach_with_the_dense_method_is_torch_sgd():
    # What attach moves (momentum, Nesterov, per-group weight decay) is
    # torch.optim.SGD's own step, bit for bit: the hook adds the decay before
    # its momentum, where SGD does, with SGD's operations in SGD's order,
    # across warm-up and the dense aggregator's steps (a sum of two ranks is
    # exact in either order).
    out = run_world(_dense_against_torch, 2)
    for o in out:
        assert np.array_equal(o["attached"], o["torch"]), np.abs(o["attached"] - o["torch"]).max()
        assert o["config_decay"] == [(0.0, 3), (5e-3, 3)], o["config_decay"]
    assert np.array_equal(out[0]["attached"], out[1]["attached"])


def _refusals(rank, world):
    ddp = small_buckets(mlp(), 0.001)
    p = list(ddp.parameters())
    cases = {
        "adam": torch.optim.Adam(p, lr=1e-3),
        "adamw": torch.optim.AdamW(p, lr=1e-3),
        "rmsprop": torch.optim.RMSprop(p, lr=1e-3, momentum=0.9),
        "dampening": torch.optim.SGD(p, lr=LR, momentum=0.9, dampening=0.1),
        "groups": torch.optim.SGD([{"params": p[:2], "momentum": 0.9}, {"params": p[2:], "momentum": 0.5}], lr=LR),
        "maximize": torch.optim.SGD(p, lr=LR, momentum=0.9, maximize=True),
        "outside": torch.optim.SGD(p + [nn.Parameter(torch.zeros(3))], lr=LR, momentum=0.9),
    }
    stepped = torch.optim.SGD(p, lr=LR, momentum=0.9)
    for q in p:
        q.grad = torch.zeros_like(q)
    stepped.step()
    cases["stepped"] = stepped
    messages = {}
    for name, opt in cases.items():
        before = [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups]
        try:
            st.attach(ddp, opt, method="sketched")
            messages[name] = None
        except (TypeError, ValueError) as e:
            messages[name] = f"{type(e).__name__}: {e}"
        after = [dict((k, v) for k, v in g.items() if k != "params") for g in opt.param_groups]
        assert before == after, f"{name}: the optimizer changed"
    try:
        st.attach(ddp, torch.optim.SGD(p, lr=LR, momentum=0.9), momentum=0.5)
        messages["option"] = None
    except ValueError as e:
        messages["option"] = f"ValueError: {e}"
    try:
        st.attach(ddp.module, torch.optim.SGD(p, lr=LR, momentum=0.9))
        messages["not ddp"] = None
    except TypeError as e:
        messages["not ddp"] = f"TypeError: {e}"
    # Nothing was registered: the hook can still be attached, once.
    good = torch.optim.SGD(p, lr=LR, momentum=0.9)
    st.attach(ddp, good, method="sketched", start_iter=2)
    try:
        st.attach(ddp, torch.optim.SGD(p, lr=LR, momentum=0.9))
        messages["twice"] = None
    except RuntimeError as e:
        messages["twice"] = f"RuntimeError: {e}"
    messages["good momentum"] = good.param_groups[0]["momentum"]
    return messages


def test_attach_refuses_what_it_cannot_take_and_changes_nothing():
    m = run_world(_refusals, 1)[0]
    for name in ("adam", "adamw"):
        assert m[name].startswith("TypeError") and "first and second moments cannot move into the hook" in m[name]
        assert "torch.optim.SGD" in m[name] and "momentum=0.0" in m[name], m[name]
    assert m["rmsprop"].startswith("TypeError") and "RMSprop" in m["rmsprop"]
    assert "dampening 0.1" in m["dampening"] and "dampening=0" in m["dampening"]
    assert "differ in momentum" in m["groups"]
    assert "maximize" in m["maximize"]
    assert "not ddp_model's" in m["outside"]
    assert "already stepped with momentum" in m["stepped"] and "attach first" in m["stepped"]
    assert "come from the optimizer" in m["option"]
    assert "DistributedDataParallel" in m["not ddp"]
    assert m["twice"] is not None and "once" in m["twice"], m["twice"]
    assert m["good momentum"] == 0.0


# -- the manual path's trap: momentum left in the optimizer ----------------------------------------------------

WARN_CASES = ["powersgd-style", "twice", "documented", "attach"]


def _warned(rank, world):
    return {case: _warned_case(rank, case) for case in WARN_CASES}


def _warned_case(rank, case):
    ddp = small_buckets(mlp(), 0.001)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if case == "attach":
            opt = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=0.9)
            st.attach(ddp, opt, method="sketched", start_iter=2)
        else:
            hook_momentum, opt_momentum = {"powersgd-style": (0.0, 0.9), "twice": (0.9, 0.9),
                                           "documented": (0.9, 0.0)}[case]
            state = st.SketchState(None, method="sketched", start_iter=2, momentum=hook_momentum)
            ddp.register_comm_hook(state, st.sketch_hook)
            opt = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=opt_momentum)
        train(ddp, opt, 3, rank)
    return [str(w.message) for w in caught if issubclass(w.category, st.MomentumWarning)]


def test_momentum_left_in_the_optimizer_warns():
    for case, messages in ((case, r[case]) for r in run_world(_warned, 2) for case in WARN_CASES):
        if case in ("documented", "attach"):
            assert messages == [], messages
        else:
            # Once when training starts, once more when compression starts.
            assert len(messages) == 2, messages
            assert "SGD has momentum 0.9" in messages[0] and "sketchsgd.torch.attach" in messages[0]
            assert ("applied twice" if case == "twice" else "PowerSGD") in messages[0]
