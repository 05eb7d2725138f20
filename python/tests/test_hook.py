# SPDX-License-Identifier: Apache-2.0
"""The DDP communication hook over real gloo process groups on loopback
(W = 2 and 3 processes)."""

import numpy as np
import pytest
import torch
import torch.distributed as dist
from torch import nn

import sketchsgd
import sketchsgd.torch as st
from sketchsgd.local import LocalRunError, run_local

SEED = 20261201
COMPRESSED = ["sketched", "global-sketch", "fetchsgd", "local-topk", "true-topk"]


def run_world(fn, world, *args):
    try:
        return run_local(fn, world, *args)
    except LocalRunError as e:
        pytest.fail(str(e))


def wchar() -> int:
    """Bytes this process has written (sockets included) so far."""
    with open("/proc/self/io") as f:
        for line in f:
            if line.startswith("wchar:"):
                return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/self/io")


# -- models ----------------------------------------------------------------------------------------------------

def mlp() -> nn.Module:
    torch.manual_seed(SEED)
    return nn.Sequential(nn.Linear(64, 96), nn.ReLU(), nn.Linear(96, 48), nn.ReLU(), nn.Linear(48, 10))


def batch(rank: int, it: int):
    g = torch.Generator().manual_seed(SEED + 1000 * it + rank)
    return torch.randn(16, 64, generator=g), torch.randint(0, 10, (16,), generator=g)


def train(ddp, opt, iterations, rank, first=0, poison=None):
    for it in range(first, first + iterations):
        x, y = batch(rank, it)
        if poison is not None and poison == (rank, it):
            x[0, 0] = float("nan")
        loss = nn.functional.cross_entropy(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def flat_params(model) -> np.ndarray:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).numpy().copy()


def small_buckets(model, cap_mb):
    """DDP with buckets of cap_mb, the first one too (several per model)."""
    dist._DEFAULT_FIRST_BUCKET_BYTES = int(cap_mb * 1024 * 1024)  # the documented knob of DDP's first bucket
    return nn.parallel.DistributedDataParallel(model, bucket_cap_mb=cap_mb)


def ddp_with_hook(model, **state_options):
    ddp = small_buckets(model, 0.001)
    state = st.SketchState(None, **state_options)
    ddp.register_comm_hook(state, st.sketch_hook)
    return ddp, state


# -- parameters identical, bytes as gloo moves them ------------------------------------------------------------

def _train_and_count(rank, world, method):
    ddp, state = ddp_with_hook(mlp(), method=method, compression=10.0, seed=3, start_iter=2, momentum=0.9)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    train(ddp, opt, 3, rank)  # warm-up and bucket rebuild done, compression running
    before_w, before_c = wchar(), state.stats()["total"]["wire_bytes"]
    train(ddp, opt, 8, rank, first=3)
    written, counted = wchar() - before_w, state.stats()["total"]["wire_bytes"] - before_c
    return {"params": flat_params(ddp.module), "written": written, "counted": counted,
            "compression": state.compression(), "plans": state.plans()}


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("method", COMPRESSED)
def test_ranks_stay_identical_and_bytes_are_what_gloo_wrote(method, world):
    out = run_world(_train_and_count, world, method)
    for r in range(1, world):
        assert np.array_equal(out[r]["params"], out[0]["params"]), f"rank {r} differs ({method}, W={world})"
    assert np.all(np.isfinite(out[0]["params"]))
    assert not np.array_equal(out[0]["params"], flat_params(mlp())), "nothing was trained"
    for r, o in enumerate(out):
        # Every byte this process wrote while training went through the hook's collectives.
        assert o["counted"] == o["written"], f"rank {r}: counted {o['counted']}, wrote {o['written']}"
    assert len(out[0]["plans"]) >= 2, out[0]["plans"]
    if method != "true-topk":  # true top-k moves the dense vector whatever k is
        assert 9.0 <= out[0]["compression"] <= 11.0, out[0]["compression"]


# -- the hook's result is the C++ aggregator's -----------------------------------------------------------------

class Planted(nn.Module):
    """loss = sum_p <p, c_p>: the gradient is exactly the coefficients c."""

    def __init__(self):
        super().__init__()
        self.w1 = nn.Parameter(torch.zeros(40, 50))
        self.b1 = nn.Parameter(torch.zeros(50))
        self.w2 = nn.Parameter(torch.zeros(50, 30))
        self.b2 = nn.Parameter(torch.zeros(30))

    def forward(self, coefficients):
        return sum((p * c).sum() for p, c in zip(self.parameters(), coefficients))


def planted_coefficients(model, rank, it):
    """Small integers plus a few heavy ones, different on every rank and step:
    sums of them are exact in any order, so gloo's ring and sketchsgd's own
    collectives must agree to the bit."""
    g = torch.Generator().manual_seed(SEED + 7919 * it + rank)
    out = []
    for p in model.parameters():
        c = torch.randint(-8, 9, p.shape, generator=g).float()
        flat = c.view(-1)
        heavy = torch.randint(0, flat.numel(), (3,), generator=g)
        flat[heavy] = torch.randint(-300, 301, (3,), generator=g).float()
        out.append(c)
    return out


def _record_buckets(rank, world, method, iterations, extra=None):
    model = Planted()
    ddp = small_buckets(model, 0.001)
    state = st.SketchState(None, method=method, compression=8.0, seed=11, start_iter=2, **(extra or {}))
    record = []

    def hook(s, bucket):
        before = bucket.buffer().clone()
        index, compressed = bucket.index(), s.iter >= s.start_iter

        def done(fut):
            value = fut.value()
            if compressed:
                record.append((index, before.numpy(), value.clone().numpy()))
            return value
        return st.sketch_hook(s, bucket).then(done)

    ddp.register_comm_hook(state, hook)
    for it in range(iterations):
        model.zero_grad()
        ddp(planted_coefficients(model, rank, it)).backward()
    options = {i: p.options for i, p in state._plans.items()}
    return {"record": record, "options": options}


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("method", ["sketched", "global-sketch", "fetchsgd", "local-topk", "sketched:slices",
                                    "global-sketch:slices", "fetchsgd:slices"])
def test_hook_equals_the_transport_driven_aggregator(method, world):
    """Sliced sketches' tables are carried while the next slice is sketched,
    by the hook and by the transport-driven step alike: the same bits."""
    name, _, sliced = method.partition(":")
    out = run_world(_record_buckets, world, name, 7, {"slices": 3} if sliced else None)
    options = out[0]["options"]
    assert len(options) >= 2 and all(o is not None for o in options.values()), options
    assert all(o.get("slices", 1) == (3 if sliced else 1) for o in options.values()), options
    for index, o in options.items():
        per_rank = [[(x, y) for i, x, y in r["record"] if i == index] for r in out]
        steps = len(per_rank[0])
        assert steps == 5
        inputs = np.stack([np.stack([per_rank[r][s][0] for r in range(world)]) for s in range(steps)])
        expected = sketchsgd.inproc_steps(o, world, inputs)
        for s in range(steps):
            for r in range(world):
                assert np.array_equal(per_rank[r][s][1], expected[s, r]), \
                    f"{method} W={world} bucket {index} step {s} rank {r} (seed {SEED})"


# -- non-finite gradients --------------------------------------------------------------------------------------

def _poisoned(rank, world, policy, overlap=False):
    ddp, state = ddp_with_hook(mlp(), method="sketched", compression=10.0, seed=3, start_iter=2,
                               nonfinite=policy, overlap_buckets=overlap)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    train(ddp, opt, 4, rank)
    before = flat_params(ddp.module)
    try:
        train(ddp, opt, 1, rank, first=4, poison=(1, 4))
    except Exception as e:  # noqa: BLE001 - what backward raised, for the test
        # Raised only once every bucket's job is done: nothing still runs on a
        # gloo thread (so the state can be saved, and the group torn down).
        state.state_dict()
        return {"raised": f"{type(e).__name__}: {e}"}
    after_poison = flat_params(ddp.module)
    train(ddp, opt, 3, rank, first=5)
    return {"raised": None, "unchanged": np.array_equal(before, after_poison), "params": flat_params(ddp.module),
            "skipped": state.stats()["skipped_bucket_steps"]}


@pytest.mark.parametrize("overlap", [False, True])
def test_nonfinite_skip_skips_on_every_rank(overlap):
    out = run_world(_poisoned, 2, "skip", overlap)
    assert all(o["raised"] is None and o["unchanged"] for o in out)
    assert all(o["skipped"] >= 2 for o in out)  # every bucket of the poisoned step
    assert np.array_equal(out[0]["params"], out[1]["params"]) and np.all(np.isfinite(out[0]["params"]))


@pytest.mark.parametrize("overlap", [False, True])
def test_nonfinite_throw_raises_on_every_rank(overlap):
    out = run_world(_poisoned, 2, "throw", overlap)
    for o in out:  # also rank 0, whose own gradient was finite
        assert o["raised"] is not None and "non-finite" in o["raised"], o


def _float64(rank, world, overlap):
    ddp, state = ddp_with_hook(mlp().double(), method="sketched", compression=10.0, start_iter=2,
                               overlap_buckets=overlap)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    for it in range(3):  # two warm-up steps in float64, then the first compressed one
        x, y = batch(rank, it)
        opt.zero_grad()
        try:
            nn.functional.cross_entropy(ddp(x.double()), y).backward()
        except Exception as e:  # noqa: BLE001 - what backward raised, for the test
            state.state_dict()  # every bucket's job done, as for a non-finite step
            return {"raised": f"{type(e).__name__}: {e}", "iteration": it}
        opt.step()
    return {"raised": None}


@pytest.mark.parametrize("overlap", [False, True])
def test_a_bucket_it_cannot_compress_fails_backward_on_every_rank(overlap):
    # A planning error (here a float64 bucket) goes through the bucket's
    # future like the jobs' own errors: backward raises, nothing hangs.
    for o in run_world(_float64, 2, overlap):
        assert o["raised"] is not None and "float32" in o["raised"] and o["iteration"] == 2, o


# -- configuration agreement -----------------------------------------------------------------------------------

def _mismatched(rank, world, key, mine):
    ddp, _ = ddp_with_hook(mlp(), method="sketched", start_iter=2, **{key: mine[rank]})
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    try:
        train(ddp, opt, 1, rank)
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return None


@pytest.mark.parametrize("key, values", [("compression", (10.0, 20.0)),
                                         ("overlap_buckets", (True, False))])  # it orders the collectives
def test_a_mismatched_configuration_is_refused_on_every_rank(key, values):
    for message in run_world(_mismatched, 2, key, values):
        assert message is not None and "disagree" in message and key in message, message


# -- checkpoints -----------------------------------------------------------------------------------------------

def _resume(rank, world, method, overlap_after):
    options = dict(method=method, compression=10.0, seed=5, start_iter=2, momentum=0.9)
    ddp, state = ddp_with_hook(mlp(), **options)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    train(ddp, opt, 5, rank)
    saved = {"model": {k: v.clone() for k, v in ddp.module.state_dict().items()},
             "opt": opt.state_dict(), "hook": state.state_dict()}
    saved = torch.load(_roundtrip(saved))  # through bytes, as a checkpoint file would
    train(ddp, opt, 4, rank, first=5)
    straight = flat_params(ddp.module)

    model = mlp()
    model.load_state_dict(saved["model"])
    ddp2, state2 = ddp_with_hook(model, **options, overlap_buckets=overlap_after)
    opt2 = torch.optim.SGD(ddp2.parameters(), lr=0.05)
    opt2.load_state_dict(saved["opt"])
    state2.load_state_dict(saved["hook"])
    train(ddp2, opt2, 4, rank, first=5)
    wrong = st.SketchState(None, **dict(options, compression=20.0))
    try:
        wrong.load_state_dict(saved["hook"])
        refused = None
    except ValueError as e:
        refused = str(e)
    return {"straight": straight, "resumed": flat_params(ddp2.module), "refused": refused}


def _roundtrip(obj):
    import io
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    return buf


@pytest.mark.parametrize("method, overlap_after", [("sketched", False), ("fetchsgd", False), ("local-topk", False),
                                                   ("sketched", True)])
def test_state_dict_round_trip_continues_bit_identically(method, overlap_after):
    # The resumed job's first iteration has DDP's one bucket of every
    # parameter, carried as the saved buckets' parts; overlap_after: the
    # resumed job overlaps its buckets, the straight one did not.
    for r, o in enumerate(run_world(_resume, 2, method, overlap_after)):
        assert np.array_equal(o["straight"], o["resumed"]), f"rank {r} ({method})"
        assert o["refused"] is not None and "compression" in o["refused"]


# -- carry_step: every round kind over gloo, gTop-k and the root topologies included -----------------------------

CARRIED = [("sketched", {"topology": "root", "root": 1}), ("fetchsgd", {"topology": "root"}), ("gtopk", {}),
           ("local-topk", {}), ("sketched", {}), ("sketched", {"slices": 3}), ("global-sketch", {"slices": 3}),
           ("fetchsgd", {"slices": 3})]


def _carried(rank, world, configs, grads):
    out = []
    for o in configs:
        agg = sketchsgd.Aggregator(rank, world, o)
        updates = np.empty((grads.shape[0], o["dimension"]), np.float32)
        for s in range(grads.shape[0]):
            st.carry_step(agg, torch.from_numpy(grads[s, rank].copy()))
            agg.write_update(updates[s])
        out.append(updates)
    return out


@pytest.mark.parametrize("world", [2, 3])
def test_carry_step_carries_every_round_kind_bit_identically(world):
    """Integer-valued gradients make every float sum exact in any order, so
    gloo's reduce, broadcast and send/recv tree give sketchsgd's bits."""
    d, steps = 3000, 4
    grads = np.random.default_rng(SEED + 5).integers(-8, 9, (steps, world, d)).astype(np.float32)
    configs = [dict({"method": method, "dimension": d, "seed": 9, "k": 30, "average": False, "dense": [(0, 30)],
                     "nonfinite": "skip"}, **({"rows": 3, "cols": 500, "candidates_factor": 2}
                                              if method in ("sketched", "fetchsgd", "global-sketch") else {}), **extra)
               for method, extra in CARRIED]
    results = run_world(_carried, world, configs, grads)
    for i, o in enumerate(configs):
        expected = sketchsgd.inproc_steps(o, world, grads)
        for r in range(world):
            assert np.array_equal(results[r][i], expected[:, r]), f"{CARRIED[i]} W={world} rank {r}"


def test_sliced_tables_are_marked_overlap_but_the_last():
    """A sliced sketch's tables may be in flight while the next is sketched
    (carry_step leaves them so); the round after the last one reads them."""
    agg = sketchsgd.Aggregator(0, 1, {"method": "sketched", "dimension": 3000, "k": 30, "rows": 1, "cols": 600,
                                      "candidates_factor": 2, "slices": 3, "nonfinite": "unchecked"})
    agg.begin(np.ones(3000, np.float32))
    flags = []
    while (r := agg.next()) is not None:
        flags.append(r.overlap)
    assert flags == [True, True, False, False]  # three tables, then the candidates' exact sum


def _carry_a_16_bit_sum(rank, world):
    agg = sketchsgd.Aggregator(rank, world, {"method": "dense-bf16", "dimension": 100, "nonfinite": "unchecked"})
    try:
        st.carry_step(agg, torch.ones(100))
    except ValueError as e:
        return str(e)
    return None


def test_carry_step_refuses_a_16_bit_wire_it_would_sum_otherwise():
    for message in run_world(_carry_a_16_bit_sum, 2):
        assert message is not None and "bfloat16 wire" in message, message


def test_the_hook_refuses_gtopk_by_name():
    with pytest.raises(ValueError, match="carry_step"):
        st.SketchState(None, method="gtopk")


# -- buckets overlap: one bucket on the wire while another computes -------------------------------------------

def _train_overlapping(rank, world, method, slices, overlap):
    ddp, state = ddp_with_hook(mlp(), method=method, compression=10.0, seed=3, start_iter=2, momentum=0.9,
                               slices=slices, overlap_buckets=overlap)
    launches = []  # (the job, its bucket's place in the iteration, whether the round comes before its table's end)
    launch = state._launch_in_turn  # white box: the scheduler's one door to the wire

    def recording(job, op):
        # Counts (the non-finite check, the fingerprints) and a sliced table's slices but the last lead up to
        # the table. The job is kept: no other job gets its id.
        launches.append((job, job.index, op.tensor.dtype == torch.int64 or op.overlap))
        launch(job, op)
    state._launch_in_turn = recording
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    train(ddp, opt, 8, rank)
    stats = state.stats()
    return {"params": flat_params(ddp.module), "overlapped": stats["rounds_overlapped"],
            "rounds": stats["total"]["collectives"], "buckets": len(state.plans()),
            "order": _tables_ahead(launches)}


def _tables_ahead(launches):
    """For each pair of neighbouring buckets i, i+1 where bucket i has a round
    after its table: whether bucket i+1's table went out before that round."""
    main = {}  # job -> (bucket, positions of its rounds that do not lead up to the table)
    for at, (job, index, lead) in enumerate(launches):
        if not lead:
            main.setdefault(id(job), (index, []))[1].append(at)
    jobs = list(main.values())  # in order of their first main round
    return [jobs[n + 1][1][0] < rounds[1] for n, (index, rounds) in enumerate(jobs[:-1])
            if len(rounds) > 1 and jobs[n + 1][0] == index + 1]


@pytest.mark.parametrize("method, world", [("sketched", 2), ("fetchsgd", 3), ("local-topk", 2),
                                           ("sketched:slices", 3)])
def test_overlapping_buckets_changes_no_bit(method, world):
    """Neighbouring buckets' rounds interleave (bucket i+1's table before
    bucket i's second round): each bucket's own rounds are unchanged, so the
    parameters are the same bits as with one bucket after another."""
    name, _, sliced = method.partition(":")
    slices = 3 if sliced else 1
    on = run_world(_train_overlapping, world, name, slices, True)
    off = run_world(_train_overlapping, world, name, slices, False)
    for r in range(world):
        assert np.array_equal(on[r]["params"], off[r]["params"]), f"rank {r} ({method}, W={world}, seed {SEED})"
        assert on[r]["rounds"] == off[r]["rounds"]
        assert off[r]["overlapped"] == 0  # a bucket starts when the one before has ended
        assert on[r]["buckets"] >= 3 and on[r]["overlapped"] > 0, on[r]
        assert not any(off[r]["order"])
        assert all(on[r]["order"])  # the next bucket's table ahead of this one's second round
        if name != "local-topk":  # its one round is its table: no second round to go ahead of
            assert len(on[r]["order"]) >= 6, on[r]["order"]
