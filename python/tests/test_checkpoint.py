# SPDX-License-Identifier: Apache-2.0
"""Checkpoints of every rank (sketchsgd.torch.save_checkpoint and
load_checkpoint): a job under torch.distributed.run --max-restarts 1 whose
rank 1 is killed (SIGKILL) mid-run restarts from the files and ends
bit-identical to the uninterrupted job; the ranks restart from a step they
all have; a restart at another world size resumes with the hook's state
re-divided (error memories summed and split evenly: their sum kept), also
3 -> 2 -> 3 from the newest files; and torch.distributed.run with elastic
membership (three agents, one SIGKILLed, one joining later) takes a job
from 3 workers to 2 and back to 3 through those files."""

import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import torch

import sketchsgd.torch as st
from sketchsgd.local import free_port
from test_hook import flat_params, mlp, run_world, small_buckets, train

STEPS = 12
EVERY = 2
KILL_AT = 7  # rank 1 dies before this step's backward, on the first attempt (one checkpoint step behind)

WORKER = r"""
import os, signal, sys
import numpy as np, torch, torch.distributed as dist
sys.path.insert(0, os.environ["TESTS"])
import sketchsgd.torch as st
from test_hook import batch, flat_params, mlp, small_buckets
from torch import nn
folder, out, steps, every, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank = dist.get_rank()
ddp = small_buckets(mlp(), 0.001)
opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)
state = st.attach(ddp, opt, method="fetchsgd", compression=10.0, seed=5, start_iter=3)
resumed = st.load_checkpoint(folder, ddp, opt, state)
first = 0 if resumed is None else resumed["extra"]["next_step"]
attempt = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
print(f"rank {rank} attempt {attempt} starts at step {first}", file=sys.stderr, flush=True)
for it in range(first, steps):
    x, y = batch(rank, it)
    loss = nn.functional.cross_entropy(ddp(x), y)
    opt.zero_grad()
    if it == kill_at and rank == 1 and attempt == 0:
        print(f"rank 1 attempt 0 kills itself at step {it}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    loss.backward()
    opt.step()
    if (it + 1) % every == 0:
        st.save_checkpoint(folder, ddp, opt, state, extra={"next_step": it + 1})
np.save(f"{out}.rank{rank}.npy", flat_params(ddp.module))
dist.destroy_process_group()
"""

TESTS = str(pathlib.Path(__file__).resolve().parent)


def _env(**more):
    return dict(os.environ, TESTS=TESTS, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
        [TESTS] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]), **more)


def _uninterrupted(tmp: pathlib.Path):
    port = free_port()
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp / "plain"), str(tmp / "plain"), str(STEPS),
                               str(EVERY), "-1"],
                              env=_env(RANK=str(r), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
    return [np.load(tmp / f"plain.rank{r}.npy") for r in range(2)]


def test_a_rank_killed_mid_run_restarts_bit_identically(tmp_path):
    expected = _uninterrupted(tmp_path)
    assert np.array_equal(expected[0], expected[1])
    worker = tmp_path / "worker.py"
    worker.write_text(WORKER)
    run = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--redirects", "1", "--tee", "1", "--nproc_per_node", "2",
         "--max_restarts", "1", "--monitor_interval", "1", "--master_port", str(free_port()), str(worker),
         str(tmp_path / "ckpt"), str(tmp_path / "killed"), str(STEPS), str(EVERY), str(KILL_AT)],
        capture_output=True, text=True, timeout=240, env=_env())
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    # The first attempt died (rank 1 by SIGKILL; torch.distributed.run reports whichever rank it saw fail
    # first, rank 0's lost connection or rank 1's signal), the second resumed from the last step both ranks
    # had saved.
    assert f"rank 1 attempt 0 kills itself at step {KILL_AT}" in log, log[-4000:]
    assert log.count("attempt 0 starts at step 0") == 2 and log.count("attempt 1 starts at step 6") == 2, log[-4000:]
    assert "attempt 2" not in log, log[-4000:]
    for r in range(2):
        assert np.array_equal(np.load(tmp_path / f"killed.rank{r}.npy"), expected[r]), f"rank {r} differs"
    # Each rank keeps its two newest files.
    names = sorted(os.listdir(tmp_path / "ckpt"))
    assert names == [f"rank{r}-of-2.iter{i}.pt" for r in range(2) for i in (10, 12)], names


def _steps_and_sizes(rank, world, folder, phase):
    ddp = small_buckets(mlp(), 0.001)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    state = st.attach(ddp, opt, method="sketched", compression=10.0, seed=3, start_iter=2)
    if phase == "save":
        for it in range(4):
            train(ddp, opt, 1, rank, first=it)
            st.save_checkpoint(folder, ddp, opt, state, extra={"next_step": it + 1})
        if rank == 1:  # as if rank 1 died while writing step 4: ranks 0 and 1 have 3 in common
            os.remove(os.path.join(folder, "rank1-of-2.iter4.pt"))
        return None
    try:
        got = st.load_checkpoint(folder, ddp, opt, state)
        return {"iter": state.iter, "next_step": got["extra"]["next_step"], "params": flat_params(ddp.module),
                "resized_from": got.get("resized_from")}
    except (ValueError, RuntimeError) as e:
        return f"{type(e).__name__}: {e}"


def test_ranks_restart_from_a_common_step_and_at_another_world_size(tmp_path):
    folder = str(tmp_path / "ckpt")
    run_world(_steps_and_sizes, 2, folder, "save")
    loaded = run_world(_steps_and_sizes, 2, folder, "load")
    assert [o["iter"] for o in loaded] == [3, 3] and [o["next_step"] for o in loaded] == [3, 3], loaded
    assert np.array_equal(loaded[0]["params"], loaded[1]["params"])
    assert [o["resized_from"] for o in loaded] == [None, None]
    for world in (1, 3):  # the newest step both old ranks saved, re-divided
        for o in run_world(_steps_and_sizes, world, folder, "load"):
            assert o["resized_from"] == 2 and o["iter"] == 3 and o["next_step"] == 3, o
            assert np.array_equal(o["params"], loaded[0]["params"])
    # No checkpoint at all: a fresh start, on every rank.
    fresh = run_world(_fresh, 2, str(tmp_path / "empty"))
    assert fresh == [None, None]


def _fresh(rank, world, folder):
    ddp = small_buckets(mlp(), 0.001)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05)
    return st.load_checkpoint(folder, ddp, opt, st.attach(ddp, opt, start_iter=2))


# -- another world size: the hook's state re-divided -------------------------------------------------------------

def _sections(blob: bytes):
    """The float32 sections of an Aggregator.save() state (docs/serialization.md)."""
    out, at = [], 40
    while at < len(blob):
        count = int(np.frombuffer(blob, np.uint64, 1, at)[0])
        out.append(np.frombuffer(blob, np.float32, count, at + 16).astype(np.float64))
        at += 16 + 4 * count
    return out


def _elastic(rank, world, folder, phase, method):
    ddp = small_buckets(mlp(), 0.001)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
    state = st.attach(ddp, opt, method=method, compression=10.0, seed=3, start_iter=2)
    if phase == "save":
        train(ddp, opt, 5, rank)
        st.save_checkpoint(folder, ddp, opt, state)
        return {i: p.aggregator.save() for i, p in state._plans.items() if p.aggregator is not None}
    got = st.load_checkpoint(folder, ddp, opt, state)
    saved = {i: p.aggregator.save() for i, p in state._plans.items() if p.aggregator is not None}
    resumed_at = state.iter
    train(ddp, opt, 3, rank, first=5)
    if phase == "carry":  # go on and save at this size too
        st.save_checkpoint(folder, ddp, opt, state)
    return {"resized_from": got.get("resized_from"), "resumed_at": resumed_at, "iter": state.iter, "saved": saved,
            "params": flat_params(ddp.module)}


@pytest.mark.parametrize("method", ["sketched", "fetchsgd"])
@pytest.mark.parametrize("worlds", [(3, 2), (2, 3)])
def test_another_world_size_keeps_the_error_memories_sum_and_goes_on(tmp_path, worlds, method):
    old_world, new_world = worlds
    folder = str(tmp_path / "ckpt")
    before = run_world(_elastic, old_world, folder, "save", method)
    after = run_world(_elastic, new_world, folder, "load", method)
    for o in after:
        assert o["resized_from"] == old_world and o["iter"] == 8 and np.all(np.isfinite(o["params"])), o["iter"]
        assert np.array_equal(o["params"], after[0]["params"])  # the new ranks stay identical
    assert set(after[0]["saved"]) == set(before[0]) and before[0]
    for bucket in before[0]:
        old = [_sections(b[bucket]) for b in before]
        new = [_sections(o["saved"][bucket]) for o in after]
        for s in range(len(old[0])):
            if method == "sketched" and s < 2:  # u, v: each rank's own; their sum kept
                want, got = sum(x[s] for x in old), sum(x[s] for x in new)
                assert np.abs(want).max() > 0
                assert np.allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max()), (bucket, s)
            else:  # the same on every rank (FetchSGD's sketches, dense momentum): taken as it is
                assert all(np.array_equal(x[s], old[0][s]) for x in new), (bucket, s)


def test_a_world_that_shrank_and_grew_back_resumes_from_the_newest_files(tmp_path):
    # 3 ranks save after 5 steps; 2 ranks resume from them and save after 8; 3 ranks again must resume from the
    # 2 ranks' newer files (re-divided), not from their own world's older ones.
    folder = str(tmp_path / "ckpt")
    run_world(_elastic, 3, folder, "save", "sketched")
    shrunk = run_world(_elastic, 2, folder, "carry", "sketched")
    assert [(o["resized_from"], o["resumed_at"], o["iter"]) for o in shrunk] == [(3, 5, 8)] * 2
    grown = run_world(_elastic, 3, folder, "load", "sketched")
    for o in grown:
        assert o["resized_from"] == 2 and o["resumed_at"] == 8, (o["resized_from"], o["resumed_at"])
        assert np.array_equal(o["params"], grown[0]["params"])


# -- torch.distributed.run with elastic membership: 3 -> 2 -> 3 workers -------------------------------------------

ELASTIC_WORKER = r"""
import os, sys, time
import numpy as np, torch, torch.distributed as dist
sys.path.insert(0, os.environ["TESTS"])
import sketchsgd.torch as st
from test_hook import batch, flat_params, mlp, small_buckets
from torch import nn
folder, out, steps, kill_at, grow_at = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
torch.set_num_threads(1)
dist.init_process_group("gloo")
rank, world = dist.get_rank(), dist.get_world_size()
ddp = small_buckets(mlp(), 0.001)
opt = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
state = st.attach(ddp, opt, method="sketched", compression=10.0, seed=5, start_iter=2)
resumed = st.load_checkpoint(folder, ddp, opt, state)
it = 0 if resumed is None else resumed["extra"]["next_step"]
print(f"world {world} rank {rank} starts at step {it} resized_from {None if resumed is None else resumed.get('resized_from')}",
      file=sys.stderr, flush=True)
def hold(why):  # wait, in collectives, until this world ends: a peer dies, or the agent restarts us
    print(f"world {world} rank {rank} holds at step {it}: {why}", file=sys.stderr, flush=True)
    for _ in range(600):
        dist.barrier()
        time.sleep(0.2)
    raise SystemExit("held too long")
while it < steps:
    if world == 3 and resumed is None and it == kill_at:
        hold("waiting to lose a worker")
    if world == 2 and it == grow_at:
        hold("waiting for a worker to join")
    x, y = batch(rank, it)
    loss = nn.functional.cross_entropy(ddp(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    it += 1
    st.save_checkpoint(folder, ddp, opt, state, extra={"next_step": it})
np.save(f"{out}.rank{rank}.npy", flat_params(ddp.module))
print(f"world {world} rank {rank} done", file=sys.stderr, flush=True)
dist.destroy_process_group()
"""


def test_torchrun_elastic_3_to_2_to_3_resumes_with_the_memories_redivided(tmp_path):
    import signal
    import time
    from datetime import timedelta
    worker = tmp_path / "elastic_worker.py"
    worker.write_text(ELASTIC_WORKER)
    port = free_port()
    # The rendezvous store lives here, not in an agent, so that any agent can be killed.
    store = torch.distributed.TCPStore("127.0.0.1", port, None, True, timedelta(seconds=300), wait_for_workers=False)
    logs = []

    def agent(name):
        log = open(tmp_path / f"{name}.log", "w")
        logs.append(tmp_path / f"{name}.log")
        return subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--redirects", "2", "--tee", "2",  # stderr; 0 (the default) and 3 fail on Python 3.11
             "--nnodes", "2:3", "--nproc_per_node", "1",
             "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}", "--rdzv_id", "sketchsgd-elastic",
             "--rdzv_conf", "is_host=false,last_call_timeout=5,join_timeout=120", "--max_restarts", "3", "--monitor_interval", "1",
             str(worker), str(tmp_path / "ckpt"), str(tmp_path / "final"), "24", "6", "12"],
            stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)

    def text():
        return "".join(p.read_text() for p in logs)

    def wait_for(what, count, limit):
        deadline = time.monotonic() + limit
        while text().count(what) < count:
            assert time.monotonic() < deadline, f"no {count} x '{what}' within {limit} s:\n" + text()[-6000:]
            time.sleep(0.2)

    agents = [agent(f"agent{i}") for i in range(3)]
    try:
        wait_for("holds at step 6: waiting to lose a worker", 3, 90)
        os.killpg(agents[2].pid, signal.SIGKILL)  # the third agent and its worker
        agents[2].wait()
        wait_for("holds at step 12: waiting for a worker to join", 2, 90)
        agents.append(agent("agent3"))
        for a in (agents[0], agents[1], agents[3]):
            assert a.wait(timeout=240) == 0, text()[-6000:]
    finally:
        for a in agents:
            if a.poll() is None:
                os.killpg(a.pid, signal.SIGKILL)
    del store
    log = text()
    assert log.count("starts at step 0 resized_from None") == 3, log[-6000:]
    assert log.count("world 2 rank 0 starts at step 6 resized_from 3") == 1, log[-6000:]
    assert log.count("starts at step 6 resized_from 3") == 2, log[-6000:]
    assert log.count("starts at step 12 resized_from 2") == 3, log[-6000:]
    assert log.count(" done") == 3, log[-6000:]
    final = [np.load(tmp_path / f"final.rank{r}.npy") for r in range(3)]
    assert all(np.isfinite(f).all() for f in final)
    assert np.array_equal(final[1], final[0]) and np.array_equal(final[2], final[0])
