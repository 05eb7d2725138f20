# SPDX-License-Identifier: Apache-2.0
"""Runs a function on W local processes joined by a gloo process group (for
tests, benchmarks and experiments on one machine, without a launcher)."""
import datetime
import multiprocessing
import os
import queue
import signal
import socket
import traceback
from typing import Any, Callable, List

__all__ = ["run_local", "LocalRunError", "free_port"]


class LocalRunError(RuntimeError):
    """A rank raised, or gave no result in time (the message has every rank's traceback)."""


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago (for a gloo rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(fn, rank, world, port, threads, results, args):
    import torch
    import torch.distributed as dist
    try:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        torch.set_num_threads(threads)
        dist.init_process_group("gloo", rank=rank, world_size=world, timeout=datetime.timedelta(seconds=60))
        try:
            out = fn(rank, world, *args)
        finally:
            dist.destroy_process_group()
        results.put((rank, None, out))
    except BaseException as e:  # noqa: BLE001 - reported to the caller
        results.put((rank, f"{type(e).__name__}: {e}\n{traceback.format_exc()}", None))


def run_local(fn: Callable[..., Any], world: int, *args: Any, timeout: float = 120.0, threads: int = 1) -> List[Any]:
    """Calls ``fn(rank, world, *args)`` in ``world`` forked processes, each in a
    gloo group over loopback with ``threads`` intra-op threads; returns the
    results (picklable) in rank order. Raises LocalRunError if a rank raises or
    none of the results arrives within ``timeout`` seconds (stragglers are killed)."""
    if world < 1:
        raise ValueError(f"world must be positive, got {world}")
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(fn, r, world, port, threads, results, args)) for r in range(world)]
    for p in procs:
        p.start()
    got = {}
    killed = []
    try:
        for _ in range(world):
            rank, error, out = results.get(timeout=timeout)
            got[rank] = (error, out)
    except queue.Empty:
        pass
    finally:
        for r, p in enumerate(procs):
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join()
                killed.append(r)
    missing = [r for r in range(world) if r not in got]
    errors = {r: e for r, (e, _) in got.items() if e is not None}
    # A rank that gave its result and then died by a signal (say SIGABRT on
    # the way out) is a failure too, not a pass.
    signalled = {r: _signal_name(-p.exitcode) for r, p in enumerate(procs)
                 if r not in killed and p.exitcode is not None and p.exitcode < 0}
    if missing or errors or signalled:
        raise LocalRunError(f"ranks {missing} gave no result within {timeout} s; errors: {errors}"
                            + (f"; died by a signal: {signalled}" if signalled else ""))
    return [got[r][1] for r in range(world)]


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
