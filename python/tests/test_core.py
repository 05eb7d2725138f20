# SPDX-License-Identifier: Apache-2.0
"""The extension on its own (no process group): CountSketch, and every
aggregator's split-phase form against sketchsgd's own collectives."""
import numpy as np
import pytest

import sketchsgd

METHODS = ["sketched", "global-sketch", "fetchsgd", "local-topk", "true-topk", "gtopk", "dense"]
#: The parameter-server topologies (a root's reduce and broadcasts) and gTop-k's merge tree.
ROOTED = [("sketched", {"topology": "root"}), ("sketched", {"topology": "root", "root": 1, "candidates_factor": 0}),
          ("fetchsgd", {"topology": "root", "root": 2}), ("gtopk", {})]
SEED = 20261201


def options(method, d=4000, **extra):
    o = {"method": method, "dimension": d, "seed": 7, "nonfinite": "skip", "average": True}
    if method != "dense":
        o.update({"k": 40, "momentum": 0.9, "dense": [(100, 50), (d - 10, 10)]})
    if method in ("sketched", "global-sketch", "fetchsgd"):
        o.update({"rows": 3, "cols": 600})
    if method in ("sketched", "global-sketch"):
        o["candidates_factor"] = 3
    o.update(extra)
    return o


def planted_gradients(steps, world, d, rng):
    """Noise plus a few heavy coordinates every step (what the sketches must find)."""
    g = rng.standard_normal((steps, world, d)).astype(np.float32)
    for s in range(steps):
        heavy = rng.choice(d, 10, replace=False)
        g[s][:, heavy] += (50 * rng.standard_normal(10)).astype(np.float32)
    return g


def merge_tree(rounds):
    """A merging reduce as sketchsgd's binomial tree runs it: level by level,
    each rank merges its child's block (as the child holds it by then)."""
    world, root = len(rounds), rounds[0].root
    mask = 1
    while mask < world:
        for v in range(0, world, 2 * mask):
            if v + mask < world:
                rounds[(v + root) % world].merge(rounds[(v + mask + root) % world].block.copy())
        mask *= 2


def carry(aggregators, gradients):
    """One step of W split-phase aggregators in lockstep, each round carried in
    NumPy as sketchsgd's collective would: sums in rank order (a reduce: the
    root's first, as the flat reduce adds), gathers, broadcasts, merge trees."""
    for a, g in zip(aggregators, gradients):
        a.begin(g)
    while True:
        rounds = [a.next() for a in aggregators]
        if rounds[0] is None:
            assert all(r is None for r in rounds)
            return
        first = rounds[0]
        if first.kind == "gather":
            blocks = np.concatenate([r.block for r in rounds])
            for r in rounds:
                r.gathered[:] = blocks
        elif first.kind == "broadcast":
            for r in rounds:
                r.block[:] = rounds[first.root].block
        elif first.merge is not None:
            merge_tree(rounds)
        elif first.kind == "reduce":
            at = rounds[first.root].values
            for r, x in enumerate(rounds):
                if r != first.root:
                    at += x.values
        else:
            name = "values" if first.values is not None else "counts"
            arrays = [getattr(r, name) for r in rounds]
            total = arrays[0].copy()
            for x in arrays[1:]:
                total += x  # rank order, as the collectives sum
            for x in arrays:
                x[:] = total


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("world", [2, 3])
def test_split_phase_equals_transport_driven(method, world):
    """Rounds carried by the caller give what sketchsgd's own collectives give.
    Here the caller sums in rank order and the collectives in their own
    order, so float results agree to rounding (the integer-valued test below
    and the gloo test in test_hook.py check the bits)."""
    rng = np.random.default_rng(SEED)
    d, steps = 4000, 6
    o = options(method, d)
    grads = planted_gradients(steps, world, d, rng)
    expected = sketchsgd.inproc_steps(o, world, grads)
    aggs = [sketchsgd.Aggregator(r, world, o) for r in range(world)]
    for s in range(steps):
        carry(aggs, grads[s])
        for r, a in enumerate(aggs):
            out = np.empty(d, np.float32)
            a.write_update(out)
            np.testing.assert_allclose(out, expected[s, r], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{method} W={world} step {s} rank {r} (seed {SEED})")
        assert all(np.array_equal(a.update()["indices"], aggs[0].update()["indices"]) for a in aggs)


@pytest.mark.parametrize("method, extra", ROOTED)
def test_rooted_rounds_equal_transport_driven(method, extra):
    """The root topologies and gTop-k in split phase: a root's reduce and
    broadcasts, a tree of merges; the same updates as sketchsgd's own collectives."""
    rng = np.random.default_rng(SEED + 4)
    world, d, steps = 3, 4000, 5
    o = options(method, d, **extra)
    grads = planted_gradients(steps, world, d, rng)
    expected = sketchsgd.inproc_steps(o, world, grads)
    aggs = [sketchsgd.Aggregator(r, world, o) for r in range(world)]
    out = np.empty(d, np.float32)
    for s in range(steps):
        carry(aggs, grads[s])
        for r, a in enumerate(aggs):
            a.write_update(out)
            np.testing.assert_allclose(out, expected[s, r], rtol=1e-5, atol=1e-5,
                                       err_msg=f"{method} {extra} step {s} rank {r} (seed {SEED + 4})")
    assert aggs[0].stats()["last_step"]["bytes_sent"] > 0


@pytest.mark.parametrize("method", ["sketched", "global-sketch", "fetchsgd", "local-topk", "gtopk"])
def test_integer_like_gradients_are_bit_identical(method):
    """With small-integer gradients every float sum is exact, so any summation
    order gives the same bits: split phase equals inproc exactly."""
    rng = np.random.default_rng(SEED + 1)
    world, d, steps = 3, 3000, 5
    o = options(method, d, momentum=0.0, average=False, dense=[(0, 30)])
    grads = rng.integers(-8, 9, (steps, world, d)).astype(np.float32)
    expected = sketchsgd.inproc_steps(o, world, grads)
    aggs = [sketchsgd.Aggregator(r, world, o) for r in range(world)]
    out = np.empty(d, np.float32)
    for s in range(steps):
        carry(aggs, grads[s])
        for r, a in enumerate(aggs):
            a.write_update(out)
            assert np.array_equal(out, expected[s, r]), f"{method} step {s} rank {r} (seed {SEED + 1})"


def test_save_load_continues_bit_identically():
    rng = np.random.default_rng(SEED + 2)
    world, d = 2, 3000
    o = options("sketched", d)
    grads = planted_gradients(6, world, d, rng)
    a = [sketchsgd.Aggregator(r, world, o) for r in range(world)]
    for s in range(3):
        carry(a, grads[s])
    saved = [x.save() for x in a]
    b = [sketchsgd.Aggregator(r, world, o) for r in range(world)]
    for x, blob in zip(b, saved):
        x.load(blob)
    for s in range(3, 6):
        carry(a, grads[s])
        carry(b, grads[s])
        for x, y in zip(a, b):
            assert np.array_equal(x.update()["values"], y.update()["values"])
    with pytest.raises(sketchsgd.ConfigMismatchError):
        sketchsgd.Aggregator(1, world, o).load(saved[0])  # another rank's state
    with pytest.raises(sketchsgd.ConfigMismatchError):
        sketchsgd.Aggregator(0, world, options("sketched", d, k=41)).load(saved[0])
    with pytest.raises(sketchsgd.SerializationError):
        sketchsgd.Aggregator(0, world, o).load(saved[0][:-3])


def test_nonfinite_policies():
    world, d = 2, 2000
    grads = np.ones((1, world, d), np.float32)
    grads[0, 1, 17] = np.nan
    skip = [sketchsgd.Aggregator(r, world, options("sketched", d, dense=[])) for r in range(world)]
    carry(skip, grads[0])
    assert all(a.update()["skipped"] for a in skip)
    assert all(a.stats()["steps"] == 1 and a.stats()["skipped_steps"] == 1 for a in skip)
    out = np.full(d, 5, np.float32)
    skip[0].write_update(out)
    assert not out.any()
    throw = [sketchsgd.Aggregator(r, world, options("sketched", d, dense=[], nonfinite="throw")) for r in range(world)]
    for a, g in zip(throw, grads[0]):
        a.begin(g)
    check = [a.next() for a in throw]
    total = check[0].counts + check[1].counts
    for r in check:
        r.counts[:] = total
    for a in throw:  # every rank raises, not only the one with the NaN
        with pytest.raises(sketchsgd.NonFiniteError):
            a.next()
        assert not a.in_step


def test_fingerprints_refuse_a_mismatch():
    a = sketchsgd.Aggregator(0, 2, options("sketched"))
    b = sketchsgd.Aggregator(1, 2, options("sketched", cols=601))
    a.check_fingerprints([a.fingerprint, a.fingerprint])
    with pytest.raises(sketchsgd.ConfigMismatchError):
        a.check_fingerprints([a.fingerprint, b.fingerprint])


@pytest.mark.parametrize("bad, message", [
    ({"method": "nope", "dimension": 10}, "unknown method"),
    ({"method": "dense", "dimension": 10, "colz": 3}, "unknown aggregator option 'colz'"),
    ({"method": "sketched", "dimension": 100, "rows": 1, "cols": 10, "k": 101}, "k"),
    ({"method": "dense", "dimension": 0}, "dimension"),
    ({"method": "sketched", "dimension": 100, "cols": 10, "k": 5, "topology": "ring"}, "topology must be"),
    ({"method": "fetchsgd", "dimension": 100, "cols": 10, "k": 5, "topology": "root", "root": 2}, "root"),
])
def test_bad_options_are_refused_by_name(bad, message):
    with pytest.raises((ValueError, sketchsgd.Error), match=message):
        sketchsgd.Aggregator(0, 2, bad)


def test_wrong_arrays_are_refused_not_copied():
    a = sketchsgd.Aggregator(0, 1, options("dense", 100))
    with pytest.raises(TypeError):
        a.begin(np.zeros(100, np.float64))  # would need a copy
    with pytest.raises(ValueError, match="100"):
        a.begin(np.zeros(99, np.float32))


def test_count_sketch_is_linear_and_finds_planted_spikes():
    rng = np.random.default_rng(SEED + 3)
    d, rows, cols = 100_000, 5, 2000
    x = rng.standard_normal(d).astype(np.float32)
    spikes = rng.choice(d, 20, replace=False)
    x[spikes] = 1000.0 * np.sign(rng.standard_normal(20)).astype(np.float32)
    a, b, both = (sketchsgd.CountSketch(rows, cols, seed=3) for _ in range(3))
    half = d // 2
    a.accumulate(x[:half])
    b.accumulate(x[half:], offset=half)
    both.accumulate(x, threads=2)
    a.merge(b)
    np.testing.assert_allclose(a.table, both.table, rtol=1e-5, atol=1e-3)
    indices, values = both.top_k(d, 20)
    # With c = 2000 columns a spike of 1000 against ||x||_2 ~ 316 noise is
    # estimated within a few sqrt(d / c) ~ 7: every spike is among the top 20.
    assert set(indices.tolist()) == set(spikes.tolist()), f"seed {SEED + 3}"
    assert np.all(np.abs(values) > 900)
    again = sketchsgd.CountSketch.deserialize(both.serialize())
    assert again == both
    with pytest.raises(sketchsgd.SerializationError):
        sketchsgd.CountSketch.deserialize(both.serialize()[:-1])
    with pytest.raises(sketchsgd.ConfigMismatchError):
        a.merge(sketchsgd.CountSketch(rows, cols, seed=4))


def test_count_sketch_table_is_a_view():
    s = sketchsgd.CountSketch(2, 8, seed=1)
    s.table[:] = 1.0  # what an in-place allreduce does
    assert s.estimate(3) in (1.0, -1.0)
    s.zero()
    assert not s.table.any()


def test_cpu_tensors_are_used_in_place():
    torch = pytest.importorskip("torch")
    d = 500
    g = torch.arange(d, dtype=torch.float32) - 250.0
    a = sketchsgd.Aggregator(0, 1, options("dense", d))
    a.begin(g)  # a tensor, no .numpy()
    while a.next() is not None:
        pass
    out = torch.full((d,), 7.0)
    a.write_update(out)  # written through into the tensor's memory
    assert torch.equal(out, g)
    p = torch.nn.Parameter(torch.ones(d))  # requires_grad: read through .detach()
    s, t = sketchsgd.CountSketch(2, 64, seed=1), sketchsgd.CountSketch(2, 64, seed=1)
    s.accumulate(p)
    t.accumulate(np.ones(d, np.float32))
    assert s == t
    assert set(sketchsgd.top_k(g, 3)[0].tolist()) == {0, 1, 499}  # |-250|, then |-249| and |249|
    with pytest.raises(TypeError, match="float32"):
        a.write_update(torch.zeros(d, dtype=torch.float64))
    with pytest.raises(TypeError, match="float32"):
        s.accumulate(torch.ones(2 * d)[::2])  # strided: would need a copy
