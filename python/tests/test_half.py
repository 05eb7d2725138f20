# SPDX-License-Identifier: Apache-2.0
"""16-bit gradients: the aggregators read bfloat16 and float16 tensors (and
float16 arrays) in place and give the bits of the float32 path on the same
values; the hook's bucket path takes 16-bit buckets over real gloo ranks
(DDP itself cannot hold a 16-bit model on this CPU torch); no float32 copy of
a gradient is made (peak memory measured); DDP under bfloat16 autocast trains
with the hook within a point of allreduce (FetchSGD: two)."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

import sketchsgd
import sketchsgd.torch as st
from sketchsgd.local import LocalRunError, run_local

SEED = 20261206
METHODS = ["sketched", "global-sketch", "fetchsgd", "local-topk", "true-topk", "gtopk", "dense"]
D = 5000


def run_world(fn, world, *args):
    try:
        return run_local(fn, world, *args)
    except LocalRunError as e:
        pytest.fail(str(e))


def options(method):
    o = {"method": method, "dimension": D, "k": 50, "rows": 3, "cols": 500, "seed": 5, "momentum": 0.9,
         "average": True}
    if method not in ("dense", "true-topk", "local-topk", "gtopk"):
        o["dense"] = [(0, 20)]
    return o


def gradient(rank, step, dtype):
    g = torch.Generator().manual_seed(SEED + 31 * step + rank)
    x = torch.randn(D, generator=g)
    x[torch.randint(0, D, (40,), generator=g)] *= 30.0
    x[::97] *= 1e-6  # float16 subnormals, bfloat16 small normals
    return x.to(dtype)


# -- the aggregator reads 16-bit values as floats, in place -----------------------------------------------------

def _same_bits(rank, world):
    out = {}
    for method in METHODS:
        for dtype in (torch.bfloat16, torch.float16):
            wide = sketchsgd.Aggregator(rank, world, options(method))
            half = sketchsgd.Aggregator(rank, world, options(method))
            for step in range(3):
                g16 = gradient(rank, step, dtype)
                before = g16.clone()
                st.carry_step(wide, g16.float())
                st.carry_step(half, g16 if dtype == torch.bfloat16 or step % 2 else g16.numpy())
                a, b = wide.update(), half.update()
                same = (np.array_equal(a["indices"], b["indices"]) and np.array_equal(a["values"], b["values"])
                        and torch.equal(before, g16))
                written = torch.empty(D, dtype=dtype)
                half.write_update(written)
                expected = torch.empty(D)
                wide.write_update(expected)
                out[(method, str(dtype), step)] = same and torch.equal(written, expected.to(dtype))
    return out


def test_16_bit_gradients_give_the_float32_bits_of_their_values():
    # Each 16-bit value is a float exactly, so the step on it equals the step
    # on its float32 copy, bit for bit; write_update rounds to the dtype as
    # torch's .to() does (to nearest, ties to even).
    for r in run_world(_same_bits, 2):
        bad = [k for k, ok in r.items() if not ok]
        assert not bad, f"differ from the float32 path: {bad} (seed {SEED})"


def test_a_count_sketch_reads_16_bit_values_as_floats():
    g = gradient(0, 0, torch.bfloat16)
    for values in (g, g.half(), g.half().numpy()):
        s, t = sketchsgd.CountSketch(3, 256, seed=2), sketchsgd.CountSketch(3, 256, seed=2)
        s.accumulate(values, offset=7)
        t.accumulate(torch.as_tensor(values).float(), offset=7)
        assert s == t


def test_what_cannot_be_read_in_place_is_refused():
    agg = sketchsgd.Aggregator(0, 1, options("sketched"))
    for bad, why in [(torch.zeros(D, dtype=torch.float64), "float32, bfloat16 or float16"),
                     (torch.zeros(2 * D, dtype=torch.bfloat16)[::2], "contiguous"),
                     (np.zeros(D, dtype=np.float64), "float32 or float16"),
                     (torch.zeros(D, 1, dtype=torch.float16), "1-d")]:
        with pytest.raises(TypeError, match=why):
            agg.begin(bad)
    assert not agg.in_step
    with pytest.raises(TypeError, match="read-only"):
        a = np.zeros(D, dtype=np.float16)
        a.setflags(write=False)
        agg.write_update(a)


# -- no float32 copy: peak memory ----------------------------------------------------------------------------------

_PEAK = textwrap.dedent("""
    import sys, torch, sketchsgd
    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key))
    d = int(sys.argv[1])
    o = {"method": sys.argv[3], "dimension": d, "k": 1000, "rows": 1, "cols": 200000, "seed": 1,
         "momentum": 0.9, "threads": 1}
    agg = sketchsgd.Aggregator(0, 1, o)
    g = torch.randn(d).to(getattr(torch, sys.argv[2]))
    out = torch.empty_like(g)
    def step():
        agg.begin(g)
        while agg.next() is not None:
            pass  # one rank: every round is already carried
        agg.write_update(out)
    step()  # the first step sizes every buffer the aggregator keeps
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets the peak (VmHWM) to the present resident size
    before = status("VmRSS:")
    for _ in range(2):
        step()
    print(status("VmHWM:") - before)
""")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("method", ["sketched", "fetchsgd", "dense"])
def test_a_16_bit_step_makes_no_float32_copy_of_the_gradient(method, dtype):
    # The peak resident memory of two steps over what the process held after
    # its first (every buffer the aggregator keeps sized), in a fresh
    # process: a float32 copy of the d = 8M gradient would add 32 MB.
    d = 8_000_000
    grown_kb = int(subprocess.run([sys.executable, "-c", _PEAK, str(d), dtype, method], check=True,
                                  capture_output=True, text=True).stdout)
    assert grown_kb * 1024 < d, f"{method}: peak memory grew {grown_kb} KB in a step on {d} {dtype} values"


# -- the hook's bucket path with 16-bit buckets over gloo --------------------------------------------------------

class Bucket:
    """What the hook reads of a dist.GradBucket (which Python cannot build):
    one flat buffer, its parameters, and their gradients as views of it."""

    def __init__(self, index, params, dtype, is_last):
        self._buffer = torch.cat([p.grad.reshape(-1) for p in params]).to(dtype)
        self._params, self._index, self._last = params, index, is_last
        at, self._views = 0, []
        for p in params:
            self._views.append(self._buffer[at:at + p.numel()].view(p.shape))
            at += p.numel()

    def buffer(self):
        return self._buffer

    def index(self):
        return self._index

    def is_last(self):
        return self._last

    def parameters(self):
        return self._params

    def gradients(self):
        return self._views


def _hook_on_buckets(rank, world, method, dtype_name):
    dtype = getattr(torch, dtype_name)
    torch.manual_seed(SEED)
    params = [nn.Parameter(torch.zeros(s)) for s in [(60, 50), (50,), (50, 40), (40,)]]
    state = st.SketchState(None, method=method, compression=8.0, seed=11, start_iter=2, momentum=0.9)
    groups = [params[:2], params[2:]]
    out = []
    for it in range(5):
        g = torch.Generator().manual_seed(SEED + 7919 * it + rank)
        for p in params:
            p.grad = torch.randn(p.shape, generator=g) * (1 + 20 * (torch.rand(p.shape, generator=g) < 0.01))
        buckets = [Bucket(i, ps, dtype, i == len(groups) - 1) for i, ps in enumerate(groups)]
        inputs = [b.buffer().clone() for b in buckets]
        results = [st.sketch_hook(state, b) for b in buckets]
        values = [f.wait() for f in results]
        out.append({"inputs": [x.float().numpy() for x in inputs], "dtype": [str(v.dtype) for v in values],
                    "outputs": [v.float().numpy() for v in values],
                    "same_buffer": all(v.data_ptr() == b.buffer().data_ptr() for v, b in zip(values, buckets))})
    return {"steps": out, "options": {i: p.options for i, p in state._plans.items()}}


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
@pytest.mark.parametrize("method", ["sketched", "fetchsgd"])
def test_the_hook_takes_16_bit_buckets_and_writes_them_back(method, dtype):
    # After two warm-up steps (allreduce; bfloat16 through a float32 copy, as
    # gloo cannot sum bfloat16), every compressed step gives, in the bucket's
    # own dtype, the transport-driven aggregator's result on the bucket's
    # values rounded to that dtype.
    world = 2
    out = run_world(_hook_on_buckets, world, method, dtype)
    for r in out:
        assert all(s["same_buffer"] and s["dtype"] == [f"torch.{dtype}"] * 2 for s in r["steps"])
    for index, o in out[0]["options"].items():
        assert o is not None
        inputs = np.stack([np.stack([out[r]["steps"][s]["inputs"][index] for r in range(world)])
                           for s in range(2, 5)])
        expected = sketchsgd.inproc_steps(o, world, inputs)
        for s in range(3):
            for r in range(world):
                want = torch.from_numpy(expected[s, r]).to(getattr(torch, dtype)).float().numpy()
                assert np.array_equal(out[r]["steps"][s + 2]["outputs"][index], want), \
                    f"{method} {dtype} bucket {index} step {s + 2} rank {r} (seed {SEED})"
    assert np.array_equal(out[0]["steps"][0]["outputs"][0], out[1]["steps"][0]["outputs"][0])  # warm-up


# -- DDP under bfloat16 autocast -----------------------------------------------------------------------------------

def _task(rank, it, n=32):
    """Ten noisy Gaussian classes in 32 dimensions, overlapping."""
    centers = torch.randn(10, 32, generator=torch.Generator().manual_seed(SEED)) * 0.55
    g = torch.Generator().manual_seed(SEED + 1000 * it + rank)
    y = torch.randint(0, 10, (n,), generator=g)
    return centers[y] + torch.randn(n, 32, generator=g) * 1.5, y


def _autocast_training(rank, world, method):
    torch.set_num_threads(1)  # the same bits on any machine
    torch.manual_seed(SEED)
    model = nn.Sequential(nn.Linear(32, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    ddp = nn.parallel.DistributedDataParallel(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.02, momentum=0.9)
    if method != "allreduce":
        st.attach(ddp, opt, method=method, compression=10.0, seed=3, start_iter=20)
    for it in range(400):
        x, y = _task(rank, it)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = nn.functional.cross_entropy(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = _task(1000, 0, n=4000)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        return float((model(x).argmax(1) == y).float().mean())


def test_ddp_under_bfloat16_autocast_trains_with_the_hook_within_a_point():
    # Issue 27's targets at 10x: Sketched-SGD within 1 point of allreduce,
    # FetchSGD within 2 (seed 20261206, W = 2: 66.9 / 66.9 / 65.5 %).
    accuracy = {m: run_world(_autocast_training, 2, m)[0] for m in ["allreduce", "sketched", "fetchsgd"]}
    assert accuracy["allreduce"] > 0.6, accuracy
    assert accuracy["sketched"] >= accuracy["allreduce"] - 0.01, accuracy
    assert accuracy["fetchsgd"] >= accuracy["allreduce"] - 0.02, accuracy
