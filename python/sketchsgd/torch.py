# SPDX-License-Identifier: Apache-2.0
"""A DistributedDataParallel communication hook that compresses gradients with
sketchsgd's aggregators (Count Sketches and the top-k baselines).

    import sketchsgd.torch
    optimizer = torch.optim.SGD(ddp_model.parameters(), lr=0.05, momentum=0.9)
    state = sketchsgd.torch.attach(ddp_model, optimizer, method="sketched",
                                   compression=10.0, seed=42)

``attach`` moves the optimizer's momentum, Nesterov and weight decay into
the hook (momentum must act before compression, on the error memory) and
leaves the optimizer plain SGD. The manual path is

    state = sketchsgd.torch.SketchState(None, method="sketched", compression=10.0,
                                        seed=42, momentum=0.9)
    ddp_model.register_comm_hook(state, sketchsgd.torch.sketch_hook)
    optimizer = torch.optim.SGD(ddp_model.parameters(), lr=0.05)  # no momentum here

and momentum left in ``torch.optim.SGD`` there (as PowerSGD's users do) is
a trap: the hook warns (MomentumWarning) when it finds it.

Conventions follow PowerSGD's hook (torch.distributed.algorithms.
ddp_comm_hooks.powerSGD_hook): plain allreduce for the first ``start_iter``
iterations, per-bucket state keyed by the bucket's index, error feedback kept
in the state, momentum correction as an option (``momentum``: then run plain
SGD), checkpoints with ``state_dict``/``load_state_dict``.

Each compressed bucket is one split-phase step of a C++ aggregator
(``sketchsgd.Aggregator``): its rounds (the non-finite check, the sketch
table, the second round, the dense coordinates) are carried by the process
group's own ``allreduce``/``allgather`` futures, on the aggregator's memory
in place. The result written back into the bucket is the aggregated
gradient, averaged over the ranks, identical on every rank. Buckets go one
after another, or with ``overlap_buckets`` interleaved in a fixed order,
the same on every rank.
"""
import atexit
import collections
import functools
import gc
import json
import logging
import threading
import time
import warnings
import weakref
from typing import Any, Callable, Dict, Generator, List, Optional, Tuple

import torch
import torch.distributed as dist

from . import _core
from .budget import BudgetError, Traffic, choose_sizes, gloo_allgather, gloo_allreduce

__all__ = ["SketchState", "sketch_hook", "carry_step", "attach", "MomentumWarning", "METHODS", "save_checkpoint",
           "load_checkpoint", "pending_callbacks", "wait_for_callbacks"]

logger = logging.getLogger(__name__)

#: The methods the hook offers (the C++ aggregations).
METHODS = ("sketched", "global-sketch", "fetchsgd", "local-topk", "true-topk", "dense")

_NONFINITE = {"throw": "throw", "throw_error": "throw", "skip": "skip", "skip_step": "skip",
              "unchecked": "unchecked"}
_CONFIG_BLOCK = 4096  # bytes of the configuration every rank exchanges once (a fixed size)
_BUCKET_DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what the aggregators read in place


class MomentumWarning(UserWarning):
    """torch.optim.SGD has momentum on parameters the hook compresses (see ``attach``)."""


class _Counters:
    """Traffic of one phase, as gloo moves it (see sketchsgd.budget)."""

    __slots__ = ("bytes_sent", "wire_bytes", "collectives")

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.wire_bytes = 0
        self.collectives = 0

    def add(self, t: Traffic) -> None:
        self.bytes_sent += t.bytes_sent
        self.wire_bytes += t.wire_bytes
        self.collectives += 1

    def as_dict(self) -> Dict[str, int]:
        return {"bytes_sent": self.bytes_sent, "wire_bytes": self.wire_bytes, "collectives": self.collectives}

    def load(self, d: Dict[str, int]) -> None:
        self.bytes_sent, self.wire_bytes, self.collectives = d["bytes_sent"], d["wire_bytes"], d["collectives"]


class _Plan:
    """One bucket's configuration and aggregator (None: sent by plain allreduce)."""

    def __init__(self, index: int, signature: Tuple, options: Optional[dict], reason: str = "") -> None:
        self.index = index
        self.signature = signature
        self.options = options
        self.reason = reason
        self.aggregator: Optional[_core.Aggregator] = None
        self.verified = False

    def describe(self) -> dict:
        d = {"bucket": self.index, "dimension": sum(n for _, n, _ in self.signature)}
        if self.options is None:
            d["allreduce"] = self.reason
        else:
            d.update({key: self.options[key] for key in ("method", "rows", "cols", "k", "candidates_factor")
                      if key in self.options})
            d["dense"] = sum(length for _, length in self.options.get("dense", []))
        return d


def _offsets(signature: Tuple) -> Dict[int, Tuple[int, int]]:
    """Where each parameter's gradient sits in a bucket: position -> (offset, numel)."""
    out, at = {}, 0
    for position, n, _ in signature:
        out[position] = (at, n)
        at += n
    return out


def _raise(error: BaseException) -> Generator:
    raise error


# -- the callbacks gloo's threads run, and the interpreter's exit ------------------------------------------------
#
# Each round's continuation runs as a callback on one of gloo's worker threads
# (threads Python did not create). Once it completes the bucket's future,
# DDP's backward returns on the main thread, which may then reach the
# interpreter's finalization while that gloo thread still has to take the
# GIL twice: to return from ``set_result``/``set_exception`` (torch releases
# the GIL while it marks a future complete) and when torch drops the callback
# (it takes the GIL to decref it). A thread that asks for the GIL once
# finalization has begun is ended with pthread_exit, whose unwinding through
# torch's noexcept frames calls std::terminate ("terminate called without an
# active exception": SIGABRT). It happened at the end of a run as after an
# error (then the main thread has little left to do before it exits).
#
# _CALLBACKS holds a weak reference to every callback handed to a future and
# not yet dropped; each one removes itself (set.discard: a C call, no Python
# code runs after it on that thread) when torch drops the callback, which is
# the last time that thread takes the GIL for it. An atexit function (atexit
# runs before finalization begins) waits until the set is empty.
_CALLBACKS: set = set()
_EXIT_WAIT_S = 60.0


def _on_done(future: torch.futures.Future, callback: Callable[[torch.futures.Future], None]) -> None:
    """``future.add_done_callback(callback)``, with the callback tracked until
    torch drops it (add_done_callback, unlike ``then``, makes no child future,
    whose value would be one more Python object released after the fact)."""
    _CALLBACKS.add(weakref.ref(callback, _CALLBACKS.discard))
    future.add_done_callback(callback)


def pending_callbacks() -> int:
    """How many of the hook's callbacks gloo's threads have yet to run, or to let go of."""
    return len(_CALLBACKS)


def wait_for_callbacks(timeout: float = _EXIT_WAIT_S) -> bool:
    """Waits (releasing the GIL) until gloo's threads have run and dropped every
    callback of the hook; False if ``timeout`` seconds passed first. Runs at
    exit (atexit), so that no gloo thread needs the GIL once the interpreter
    finalizes."""
    deadline = time.monotonic() + timeout
    while _CALLBACKS:
        if time.monotonic() >= deadline:
            logger.warning("sketchsgd.torch: %d hook callbacks still pending after %.0f s "
                           "(a collective that never completed?)", len(_CALLBACKS), timeout)
            return False
        time.sleep(0.0005)
    return True


atexit.register(wait_for_callbacks)


def _mix(seed: int, index: int) -> int:
    """A per-bucket sketch seed (64 bits), the same on every rank."""
    return (seed * 0x9E3779B97F4A7C15 + index * 0xBF58476D1CE4E5B9 + 1) & 0xFFFFFFFFFFFFFFFF


def _parse_decay(weight_decay: Any) -> Tuple[Any, Optional[Dict[int, float]], list]:
    """SketchState's weight_decay: (what config() shows, id(parameter) -> decay
    or None for one decay everywhere, the parameters to keep alive)."""
    if isinstance(weight_decay, (int, float)):
        if not float(weight_decay) >= 0.0:
            raise ValueError(f"weight_decay must be non-negative, got {weight_decay}")
        return float(weight_decay), None, []
    by_id: Dict[int, float] = {}
    params: list = []
    counts: Dict[float, int] = collections.Counter()
    try:
        pairs = [(float(decay), list(group)) for decay, group in weight_decay]
    except (TypeError, ValueError) as e:
        raise TypeError("weight_decay is a float or a list of (decay, parameters) pairs; "
                        f"got {type(weight_decay).__name__}") from e
    for decay, group in pairs:
        if not decay >= 0.0:
            raise ValueError(f"weight_decay must be non-negative, got {decay}")
        for p in group:
            if not isinstance(p, torch.Tensor):
                raise TypeError(f"weight_decay: a group holds a {type(p).__name__}, not a parameter")
            if id(p) in by_id:
                raise ValueError("weight_decay: a parameter appears in two groups")
            by_id[id(p)] = decay
            params.append(p)
            counts[decay] += 1
    # What ranks compare (and checkpoints keep): each decay with its number of parameters.
    return sorted(counts.items()), by_id, params


def _sgd_momentum(params: List[torch.Tensor]) -> float:
    """The momentum of a torch.optim.SGD that optimizes any of ``params`` (0.0 if
    none is found). The hook does not see the optimizer; this looks through
    the interpreter's objects, twice a run (at the first step and when
    compression starts)."""
    ids = {id(p) for p in params}
    for obj in gc.get_objects():
        if isinstance(obj, torch.optim.SGD):
            for group in obj.param_groups:
                if group.get("momentum", 0.0) and any(id(p) in ids for p in group["params"]):
                    return float(group["momentum"])
    return 0.0


class _Round:
    """A collective a job asks for: an allreduce of ``tensor``, or an
    allgather of it into ``outputs``. ``overlap``: the job computes on while
    it is carried (a sliced sketch's table). ``lead``: it only leads up to the
    job's main round (the fingerprint exchange, the non-finite check, a sliced
    table's slices before the last), so the job's first turn goes on past it
    (see "carrying the jobs")."""

    __slots__ = ("kind", "tensor", "counters", "outputs", "overlap", "lead")

    def __init__(self, kind: str, tensor: torch.Tensor, counters: _Counters, outputs: Optional[list] = None,
                 overlap: bool = False, lead: bool = False) -> None:
        self.kind, self.tensor, self.counters, self.outputs = kind, tensor, counters, outputs
        self.overlap, self.lead = overlap, lead


class _Job:
    """One bucket's work in an iteration: ``make()`` gives its generator of
    rounds; it computes when it can and launches a round in its turn (see
    "carrying the jobs")."""

    __slots__ = ("index", "make", "result", "last", "steps", "started", "first_over", "pending", "in_flight",
                 "outcome")

    def __init__(self, index: int, make: Callable[[], Generator], result: torch.futures.Future, last: bool) -> None:
        self.index, self.make, self.result, self.last = index, make, result, last
        self.steps: Optional[Generator] = None
        self.started = False
        self.first_over = False  # its first turn's rounds launched (up to its first one not marked lead)
        self.pending: Optional[_Round] = None  # a round computed, waiting for its turn
        self.in_flight = 0  # its rounds on the wire
        self.outcome: Optional[tuple] = None  # ("value", v) or ("error", e) once the generator has ended


class SketchState:
    """State of the sketch communication hook; one per DDP model.

    Args:
        process_group: the group to communicate in (None: the default group).
        method: "sketched" (Sketched-SGD: sketch allreduce + exact second round),
            "global-sketch" (gs-SGD; P = 0 unless ``candidates_factor``),
            "fetchsgd" (momentum and error in sketch space), "local-topk"
            (DGC-style allgather of each rank's top k), "true-topk" (dense
            traffic, the accuracy bound of top-k) or "dense" (a plain
            allreduce through the aggregator: for checks).
        compression: target X: each bucket's sizes are the largest whose bytes
            per step, every round counted, fit 1/X of a plain gloo allreduce of
            the bucket (as the C++ trainers choose them). None: give
            ``cols`` and ``k``.
        seed: the sketch hashes' seed (each bucket derives its own).
        start_iter: iterations of plain allreduce before compression starts
            (at least 2: DDP rebuilds its buckets after the first iteration).
        rows, cols, k, candidates_factor: explicit sizes; each one given
            overrides what ``compression`` picks (rows and candidates_factor
            also shape that choice: defaults 1 and 4, 0 for global-sketch).
        cols_per_k: columns per selected coordinate under ``compression`` (19).
        momentum: momentum correction: local momentum before compression (in
            sketch space for FetchSGD, rho), masked where updates are applied;
            run plain SGD (no momentum) with it. Warm-up steps (and the
            "dense" method, and buckets sent by plain allreduce) apply the
            same momentum to the averaged gradient as torch.optim.SGD does,
            so the user's optimizer stays plain SGD throughout.
        nesterov: Nesterov's form of that momentum.
        weight_decay: L2 decay added to the gradient before the momentum, as
            torch.optim.SGD adds it (``grad + weight_decay * param``): a float
            for every parameter, or a list of ``(decay, parameters)`` pairs
            (parameters in none get 0). Compressed buckets add it to each
            rank's gradient before compression; warm-up, "dense" and plain
            allreduce buckets to the averaged gradient.
        error_feedback: keep what compression left out and send it later.
        mask_momentum: zero the momentum, not only the error, where applied.
        dense_vectors: send gradients of 1-d and 0-d parameters (biases, norms)
            uncompressed, allreduced every step (like PowerSGD's vectors).
        nonfinite: a NaN or Inf in any rank's bucket: "throw" (backward
            raises on every rank once the step's buckets are done: a
            RuntimeError carrying sketchsgd.NonFiniteError's message, as
            torch 1.13's DDP passes a hook's error on), "skip" (every rank
            gets a zero gradient for that bucket, and no state changes) or
            "unchecked" (no check round).
        threads: CPU threads of the aggregator's compute (default:
            torch.get_num_threads()); results do not depend on it.
        slices: sketched, global-sketch and fetchsgd: one sketch per slice of a
            bucket's coordinates, each slice's table allreduced while the next
            is sketched (``sketched_sgd_options::slices``: the same bytes, an
            estimator per slice; 1, the default: one sketch).
        overlap_buckets: buckets do not wait for each other: each is
            compressed when DDP hands it over, and bucket i+1's sketch table
            (with the rounds that lead up to it: the non-finite check) goes
            out before bucket i's second round. False (the default):
            each bucket starts when the one before has ended. The same
            results either way; the order of the collectives differs, so
            every rank must agree (checked at the first call; read at each
            iteration's first bucket). It pays only where the hook's compute
            between rounds is comparable to their wire time (docs/python.md,
            "Overlapping buckets": 1.05-1.14x for small steps on 100-200
            Mbit/s links on a 2-vCPU machine, within noise elsewhere).

    The state reports what this rank sent: ``stats()`` (bytes as gloo sends
    them: payload, and with TCP's preambles), ``compression()`` (a plain
    allreduce's bytes over ours, on the compressed steps) and ``plans()``
    (each bucket's sizes).
    """

    def __init__(self, process_group: Optional[dist.ProcessGroup] = None, method: str = "sketched",
                 compression: Optional[float] = 10.0, seed: int = 42, start_iter: int = 10, *,
                 rows: Optional[int] = None, cols: Optional[int] = None, k: Optional[int] = None,
                 candidates_factor: Optional[int] = None, cols_per_k: float = 19.0, momentum: float = 0.0,
                 nesterov: bool = False, weight_decay: Any = 0.0, error_feedback: bool = True,
                 mask_momentum: bool = True,
                 dense_vectors: bool = True, nonfinite: str = "throw", threads: Optional[int] = None,
                 slices: int = 1, overlap_buckets: bool = False) -> None:
        if method not in METHODS:
            hint = (" (gTop-k's merge tree is point-to-point, and gloo's send/recv give no futures to chain in "
                    "torch 1.13: carry its rounds with sketchsgd.torch.carry_step)" if method == "gtopk" else "")
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}{hint}")
        if nonfinite not in _NONFINITE:
            raise ValueError(f"nonfinite must be 'throw', 'skip' or 'unchecked'; got {nonfinite!r}")
        if start_iter < 2:
            raise ValueError("start_iter must be at least 2: DDP rebuilds its buckets after the first iteration, "
                             "and per-bucket state must not be created before that")
        if compression is None and method not in ("dense",) and (k is None or
                                                                  (cols is None and method in
                                                                   ("sketched", "global-sketch", "fetchsgd"))):
            raise ValueError("without compression, give k (and cols for the sketch methods)")
        if compression is not None and not compression > 0:
            raise ValueError(f"compression must be positive, got {compression}")
        if int(slices) != slices or slices < 1:
            raise ValueError(f"slices must be a positive integer, got {slices}")
        if slices > 1 and method not in ("sketched", "global-sketch", "fetchsgd"):
            raise ValueError(f"slices apply to the sketch methods (sketched, global-sketch, fetchsgd), not {method!r}")
        if not 0.0 <= float(momentum) < 1.0:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and float(momentum) == 0.0:
            raise ValueError("nesterov needs a momentum")
        decay_config, decay_by_id, decay_params = _parse_decay(weight_decay)
        self.process_group = process_group
        self.method = method
        self.compression_target = None if compression is None else float(compression)
        self.seed = int(seed)
        self.start_iter = int(start_iter)
        self.rows = rows
        self.cols = cols
        self.k = k
        self.candidates_factor = candidates_factor
        self.cols_per_k = float(cols_per_k)
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        #: The weight decay as given: a float, or [(decay, parameters), ...].
        self.weight_decay = weight_decay if decay_by_id is not None else float(weight_decay)
        self._decay_config = decay_config
        self._decay_by_id = decay_by_id  # id(parameter) -> decay; None: self.weight_decay for every one
        self._decay_params = decay_params  # keeps those ids valid
        self.error_feedback = bool(error_feedback)
        self.mask_momentum = bool(mask_momentum)
        self.dense_vectors = bool(dense_vectors)
        self.nonfinite = _NONFINITE[nonfinite]
        self.threads = int(threads) if threads is not None else max(1, torch.get_num_threads())
        self.slices = int(slices)
        self.overlap_buckets = bool(overlap_buckets)
        #: Iterations seen (the last bucket of an iteration increments it), as PowerSGD's ``iter``.
        self.iter = 0
        self._plans: Dict[int, _Plan] = {}
        self._positions: Dict[int, int] = {}  # id(parameter) -> its position (see _signature)
        self._params: Dict[int, torch.Tensor] = {}  # position -> the parameter
        # The momentum the hook applies itself (warm-up, "dense", plain
        # allreduce buckets): one buffer per parameter position, like
        # torch.optim.SGD's, so it survives DDP's bucket rebuild.
        self._warm_momentum: Dict[int, torch.Tensor] = {}
        self._momentum_checked: set = set()
        self._agreed = False
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # notified when the last job of a step is done
        self._jobs: List[_Job] = []  # this iteration's, in DDP's order
        self._turn: Optional[Tuple[int, str]] = None  # whose round may go out next (see _next_turn)
        self._pipelined = True  # this iteration's order of turns (overlap_buckets when it began)
        self._busy = False
        self._held: List[Tuple[torch.futures.Future, BaseException]] = []  # failed jobs' futures, see _settle_locked
        self._in_flight = 0  # rounds on the wire
        self._overlapped = 0  # rounds launched while another bucket's round was on the wire
        self._warned: set = set()
        # Every collective's Work and tensors stay referenced here for a full
        # iteration and are dropped by the thread that calls the hook: never
        # by a gloo worker thread, whose last reference to a Python-created
        # tensor or callback would need the GIL (torch 1.13 can then deadlock
        # or abort when the process group is destroyed at exit).
        self._refs_current: List[tuple] = []
        self._refs_previous: List[tuple] = []
        self._refs_iter = -1
        self._setup = _Counters()
        self._warmup = _Counters()
        self._compressed = _Counters()
        self._dense_equivalent = 0  # bytes a plain allreduce of the compressed buckets would have sent
        self._compressed_steps = 0  # bucket steps through an aggregator
        self._skipped = 0

    # -- configuration ---------------------------------------------------------------------------------------

    def config(self) -> Dict[str, Any]:
        """Everything every rank must agree on (what the first hook call compares)."""
        return {"method": self.method, "compression": self.compression_target, "seed": self.seed,
                "start_iter": self.start_iter, "rows": self.rows, "cols": self.cols, "k": self.k,
                "candidates_factor": self.candidates_factor, "cols_per_k": self.cols_per_k,
                "momentum": self.momentum, "nesterov": self.nesterov, "weight_decay": self._decay_config,
                "error_feedback": self.error_feedback,
                "mask_momentum": self.mask_momentum, "dense_vectors": self.dense_vectors,
                "nonfinite": self.nonfinite, "version": 1, **({"slices": self.slices} if self.slices != 1 else {})}

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.process_group)

    @property
    def rank(self) -> int:
        return dist.get_rank(self.process_group)

    def _agree(self) -> None:
        """One allgather of a fixed-size block (the configuration as JSON):
        refuses a mismatch on every rank before any sized collective."""
        text = json.dumps(dict(self.config(), overlap_buckets=self.overlap_buckets), sort_keys=True).encode()
        if len(text) > _CONFIG_BLOCK:
            raise ValueError("SketchState: configuration too long to exchange")
        mine = torch.zeros(_CONFIG_BLOCK, dtype=torch.uint8)
        mine[: len(text)] = torch.frombuffer(bytearray(text), dtype=torch.uint8)
        world = self.world_size
        everyone = [torch.empty(_CONFIG_BLOCK, dtype=torch.uint8) for _ in range(world)]
        dist.all_gather(everyone, mine, group=self.process_group)
        self._setup.add(gloo_allgather(_CONFIG_BLOCK, world))
        configs = [json.loads(bytes(t.numpy()).rstrip(b"\0").decode()) for t in everyone]
        for r, c in enumerate(configs):
            if c != configs[0]:
                diffs = ", ".join(f"{key}: rank 0 has {configs[0].get(key)!r}, rank {r} has {c.get(key)!r}"
                                  for key in sorted(set(c) | set(configs[0])) if c.get(key) != configs[0].get(key))
                raise _core.ConfigMismatchError(
                    f"SketchState: ranks disagree on the hook's configuration ({diffs}); nothing was sent")
        self._agreed = True

    def _make_plan(self, index: int, signature: Tuple) -> _Plan:
        d = sum(n for _, n, _ in signature)
        dense: List[Tuple[int, int]] = []
        if self.dense_vectors and self.method != "dense":
            at = 0
            for _, n, dim in signature:
                if dim <= 1 and n > 0:
                    if dense and dense[-1][0] + dense[-1][1] == at:
                        dense[-1] = (dense[-1][0], dense[-1][1] + n)
                    else:
                        dense.append((at, n))
                at += n
        dense_count = sum(n for _, n in dense)
        if d - dense_count <= 0:
            return _Plan(index, signature, None, "no compressible coordinates")
        sizes = {"rows": self.rows or 1, "cols": self.cols, "k": self.k,
                 "candidates_factor": (self.candidates_factor if self.candidates_factor is not None
                                       else (0 if self.method == "global-sketch" else 4))}
        if self.compression_target is not None and self.method != "dense":
            try:
                chosen = choose_sizes(self.method, d, dense_count, self.world_size, self.compression_target,
                                      rows=sizes["rows"], candidates_factor=sizes["candidates_factor"],
                                      cols_per_k=self.cols_per_k, nonfinite_check=self.nonfinite != "unchecked")
            except BudgetError as e:
                return _Plan(index, signature, None, str(e))
            sizes["cols"] = self.cols if self.cols is not None else chosen["cols"]
            sizes["k"] = self.k if self.k is not None else chosen["k"]
        options = {"method": self.method, "dimension": d, "seed": _mix(self.seed, index),
                   "nonfinite": self.nonfinite, "average": True, "threads": self.threads}
        if self.method != "dense":
            options.update({"k": min(int(sizes["k"]), d - dense_count), "dense": dense,
                            "momentum": self.momentum, "mask_momentum": self.mask_momentum})
            if self.method in ("sketched", "global-sketch", "fetchsgd"):
                options.update({"rows": int(sizes["rows"]), "cols": int(sizes["cols"])})
                if self.slices > 1:  # no more slices than columns or coordinates
                    options["slices"] = min(self.slices, int(sizes["cols"]), d - dense_count)
            if self.method in ("sketched", "global-sketch"):
                options["candidates_factor"] = int(sizes["candidates_factor"])
            if self.method != "fetchsgd":
                options.update({"nesterov": self.nesterov, "error_feedback": self.error_feedback})
        plan = _Plan(index, signature, options)
        plan.aggregator = _core.Aggregator(self.rank, self.world_size, options)
        return plan

    # -- the hook ----------------------------------------------------------------------------------------------

    def hook(self, bucket: dist.GradBucket) -> torch.futures.Future:
        """What ``sketch_hook`` runs: see the module's documentation."""
        if not self._agreed:
            self._agree()
        buffer = bucket.buffer()
        index = bucket.index()
        if self._refs_iter != self.iter:  # a new iteration: the one before last is long done
            with self._lock:
                dropped = self._refs_previous
                self._refs_previous, self._refs_current = self._refs_current, []
            dropped.clear()  # the works die here, outside the lock
            self._refs_iter = self.iter
        signature = self._signature(bucket)  # also in warm-up: numbers the parameters in the model's order
        compressed = self.iter >= self.start_iter
        if self.iter in (0, self.start_iter) and self.iter not in self._momentum_checked:
            self._momentum_checked.add(self.iter)
            self._check_optimizer_momentum()
        last = bucket.is_last()
        if last:
            self.iter += 1
        try:
            job = self._job(buffer, index, signature, compressed)
        except Exception as e:  # noqa: BLE001 - through the future, like the jobs' own errors (see _settle_locked)
            job = functools.partial(_raise, e)
        future = self._submit(job, last)
        if last:
            # Every bucket of the step is in the queue; wait (the GIL released)
            # until the last one's collectives are done. Nothing is lost: the
            # gradients are all computed, and DDP would wait for the futures
            # next. What is gained: DDP's own collectives after the last
            # bucket (find_unused_parameters' and static_graph's
            # local-used-map allreduce, the next forward's broadcasts) are
            # issued by this thread after every collective of the hook's, in
            # the same order on every rank. Issued while the hook's rounds
            # still went out from gloo's threads, they took another place in
            # the group's sequence on each rank.
            with self._idle:
                while self._busy:
                    self._idle.wait()
        return future

    def _check_optimizer_momentum(self) -> None:
        """Warns if a torch.optim.SGD with momentum optimizes the parameters
        this hook has seen (at the first step, and when compression starts)."""
        found = _sgd_momentum(list(self._params.values()))
        if found == 0.0 or self.method == "dense" and self.momentum == 0.0:
            return
        when = ("compression starts now" if self.iter == self.start_iter and self.iter > 0 else
                f"compression starts at iteration {self.start_iter}")
        if self.momentum == 0.0:
            why = ("momentum applied after compression, as PowerSGD's users apply it, is not momentum "
                   "correction: the error memory gets no momentum and the update lags (issue 27 measured "
                   "16 points lost for Sketched-SGD at 10x, and FetchSGD diverging)")
        else:
            why = f"the hook has momentum {self.momentum} too, so momentum is applied twice"
        self._warn(("momentum", self.iter),
                   f"sketchsgd.torch: torch.optim.SGD has momentum {found} on the parameters this hook "
                   f"compresses ({when}); {why}. Use sketchsgd.torch.attach(ddp_model, optimizer, ...), which "
                   f"moves the optimizer's momentum into the hook, or give the hook momentum={found} and the "
                   "optimizer momentum=0.", category=MomentumWarning)

    def _job(self, buffer: torch.Tensor, index: int, signature: Tuple,
             compressed: bool) -> Callable[[], Generator]:
        """What to do with this bucket this iteration (building its plan the first time)."""
        if not compressed:
            return lambda: self._allreduce_job(buffer, signature, self._warmup)
        plan = self._plans.get(index)
        if plan is None:
            if buffer.dtype not in _BUCKET_DTYPES or buffer.device.type != "cpu":
                raise TypeError(f"sketch_hook: bucket {index} holds {buffer.dtype} on {buffer.device}; "
                                "this build compresses float32, bfloat16 and float16 CPU buckets (gloo)")
            plan = self._make_plan(index, signature)
            self._plans[index] = plan
            if plan.options is None:
                self._warn(("fallback", index), f"sketch_hook: bucket {index} is sent by plain allreduce "
                                                f"({plan.reason})")
        if plan.signature != signature:
            parts = self._covering(signature)
            if parts:  # DDP's first layout after a resume: each saved bucket's part, through its own state
                return lambda: self._split_job(buffer, signature, parts)
            self._warn(("layout", index), f"sketch_hook: bucket {index}'s layout differs from the one its state "
                                          "was built for (DDP rebuilt its buckets?); plain allreduce this step")
            return lambda: self._allreduce_job(buffer, signature, self._warmup)
        if plan.aggregator is None:
            return lambda: self._allreduce_job(buffer, signature, self._compressed, dense_equivalent=True)
        return lambda: self._compressed_job(buffer, plan)

    def _signature(self, bucket: dist.GradBucket) -> Tuple[Tuple[int, int, int], ...]:
        """The bucket's layout: (position, numel, dim) of each gradient, in
        order. Positions number the parameters in the order the hook first
        sees them: DDP's first iteration has one bucket of all parameters in
        the model's order, so a resumed job numbers them as the saved one did."""
        out = []
        for p, g in zip(bucket.parameters(), bucket.gradients()):
            position = self._positions.setdefault(id(p), len(self._positions))
            self._params[position] = p
            out.append((position, int(g.numel()), int(g.dim())))
        return tuple(out)

    def _covering(self, signature: Tuple) -> Optional[List[_Plan]]:
        """The plans whose parameters make up this bucket exactly (None if there are none such)."""
        owner = {position: plan for plan in self._plans.values() for position, _, _ in plan.signature}
        parts = {id(owner[p]): owner[p] for p, _, _ in signature if p in owner}
        covered = {p for plan in parts.values() for p, _, _ in plan.signature}
        if not parts or covered != {p for p, _, _ in signature}:
            return None
        return sorted(parts.values(), key=lambda plan: plan.index)

    def _split_job(self, buffer: torch.Tensor, signature: Tuple, parts: List[_Plan]) -> Generator:
        """A bucket made of several saved buckets: each part gathered in its
        own layout, aggregated by its own state, and written back."""
        where = _offsets(signature)
        for plan in parts:
            slices = [buffer[where[p][0]:where[p][0] + n] for p, n, _ in plan.signature]
            piece = torch.cat(slices)
            if plan.aggregator is None:
                yield from self._allreduce_job(piece, plan.signature, self._compressed, dense_equivalent=True)
            else:
                yield from self._compressed_job(piece, plan)
            at = 0
            for s in slices:
                s.copy_(piece[at:at + s.numel()])
                at += s.numel()
        return buffer

    def _warn(self, key, message: str, category=RuntimeWarning) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, category, stacklevel=4)

    def _decay_of(self, position: int) -> float:
        if self._decay_by_id is None:
            return self.weight_decay
        return self._decay_by_id.get(id(self._params[position]), 0.0)

    def _add_decay(self, buffer: torch.Tensor, signature: Tuple) -> None:
        """buffer += weight_decay * parameters, as torch.optim.SGD adds it."""
        if self._decay_config == 0.0:
            return
        at = 0
        for position, n, _ in signature:
            decay = self._decay_of(position)
            if decay != 0.0:
                buffer[at:at + n].add_(self._params[position].detach().reshape(-1), alpha=decay)
            at += n

    def _add_momentum(self, buffer: torch.Tensor, signature: Tuple) -> None:
        """The hook's own momentum on an averaged gradient, per parameter, as
        torch.optim.SGD applies it (buffer = gradient the first time)."""
        if self.momentum == 0.0:
            return
        at = 0
        for position, n, _ in signature:
            g = buffer[at:at + n]
            at += n
            m = self._warm_momentum.get(position)
            if m is None or m.numel() != n:  # torch.optim.SGD's first step: the buffer is the gradient
                m = self._warm_momentum[position] = g.to(torch.float32, copy=True)  # float32 for 16-bit too
            else:
                m.mul_(self.momentum).add_(g)
            if self.nesterov:
                g.add_(m, alpha=self.momentum)
            else:
                g.copy_(m)

    def _allreduce_job(self, buffer: torch.Tensor, signature: Tuple, counters: _Counters,
                       dense_equivalent: bool = False) -> Generator:
        """Plain allreduce (DDP's default: divide by W, then sum), then the
        hook's weight decay and momentum if any."""
        buffer.div_(self.world_size)
        if buffer.dtype == torch.bfloat16:  # gloo cannot sum bfloat16: a float32 copy (warm-up, fallback only)
            wide = buffer.float()
            yield _Round("allreduce", wide, counters)
            buffer.copy_(wide)
        else:
            yield _Round("allreduce", buffer, counters)
        if dense_equivalent:
            with self._lock:
                self._dense_equivalent += gloo_allreduce(buffer.numel() * buffer.element_size(),
                                                         buffer.element_size(), self.world_size,
                                                         self.rank).bytes_sent
        self._add_decay(buffer, signature)
        self._add_momentum(buffer, signature)
        return buffer

    def _compressed_job(self, buffer: torch.Tensor, plan: _Plan) -> Generator:
        agg = plan.aggregator
        world = self.world_size
        if not plan.verified:  # the C++ fingerprint (sizes, seeds, d, W, ...), 8 bytes per rank
            mine = torch.tensor([agg.fingerprint], dtype=torch.int64)
            everyone = [torch.empty(1, dtype=torch.int64) for _ in range(world)]
            yield _Round("allgather", mine, self._setup, outputs=everyone, lead=True)
            agg.check_fingerprints([int(t.item()) for t in everyone])
            plan.verified = True
        gradient = buffer  # the bucket itself, of any dtype in _BUCKET_DTYPES: never copied
        dense = self.method == "dense"
        if not dense:
            self._add_decay(buffer, plan.signature)  # before compression: the momentum inside takes it in
        agg.begin(gradient)
        while True:
            r = agg.next()
            if r is None:
                break
            if r.kind == "sum":  # the non-finite check (counts) and a sliced table's slices but the last: lead
                yield _Round("allreduce", torch.from_numpy(r.values if r.values is not None else r.counts),
                             self._compressed, overlap=r.overlap, lead=r.values is None or r.overlap)
            elif r.kind != "gather":  # the hook's methods have no root (carry_step carries every kind)
                raise RuntimeError(f"sketch_hook: a {r.kind} round, which the hook does not carry")
            else:
                n = r.nbytes
                gathered = torch.from_numpy(r.gathered)
                yield _Round("allgather", torch.from_numpy(r.block), self._compressed,
                             outputs=[gathered[i * n:(i + 1) * n] for i in range(world)])
        agg.write_update(gradient)
        skipped = agg.update()["skipped"]
        if dense and not skipped:  # the dense aggregation keeps no momentum: the hook's, as in warm-up
            self._add_decay(buffer, plan.signature)
            self._add_momentum(buffer, plan.signature)
        with self._lock:
            self._dense_equivalent += gloo_allreduce(buffer.numel() * buffer.element_size(), buffer.element_size(),
                                                     world, self.rank).bytes_sent
            self._compressed_steps += 1
            if skipped:
                self._skipped += 1
        return buffer

    # -- carrying the jobs ------------------------------------------------------------------------------------
    #
    # Every rank must issue the same collectives in the same order (gloo
    # matches them by order), whenever its buckets arrive and however long its
    # compute takes. So a job computes as soon as it can (its first round when
    # it starts, each next one when the round before completes) but launches a
    # round only in its turn, and the turns follow a fixed order of the
    # iteration's jobs. first(i) is job i's first main round (its sketch
    # table, or its plain allreduce) with the rounds that lead up to it (the
    # fingerprint exchange, the non-finite check, a sliced table's slices
    # before the last); none if it ends before.
    # rest(i) is its others, over once it has ended. With overlap_buckets
    # every job starts when DDP hands over its bucket, and
    #     first(0), first(1), rest(0), first(2), rest(1), ..., first(n), rest(n-1), rest(n):
    # bucket i+1's table is on the wire while bucket i recovers, and bucket
    # i's second round while bucket i+2 is sketched.
    # Without it a job starts in its first turn, and
    #     first(0), rest(0), first(1), rest(1), ...
    # A job's future is completed in its rest turn, so in DDP's order.

    def _submit(self, make: Callable[[], Generator], last: bool) -> torch.futures.Future:
        with self._lock:
            if self._turn is None:  # the iteration's first job: its order of turns is fixed now
                self._pipelined = self.overlap_buckets
                self._turn = (0, "first")
                self._busy = True
            job = _Job(len(self._jobs), make, torch.futures.Future(), last)
            self._jobs.append(job)
            job.started = self._pipelined or self._turn == (job.index, "first")
        if job.started:
            self._run(job)
        return job.result

    def _next_turn(self, turn: Tuple[int, str]) -> Optional[Tuple[int, str]]:
        """The turn after ``turn`` (None: the iteration is over); under the lock."""
        i, part = turn
        jobs = self._jobs
        if not self._pipelined:
            if part == "first":
                return (i, "rest")
            return None if jobs[i].last else (i + 1, "first")
        if part == "first":
            if i > 0:
                return (i - 1, "rest")
            return (0, "rest") if jobs[0].last else (1, "first")
        if jobs[i].last:
            return None
        return (i + 1, "rest") if jobs[i + 1].last else (i + 2, "first")

    def _advance_locked(self) -> tuple:
        """Moves the turn past every turn already taken; returns what to do
        outside the lock (_follow): the next launch or start, the futures to
        complete, whether the iteration is over."""
        settle: list = []
        action = None
        while self._turn is not None:
            i, part = self._turn
            job = self._jobs[i] if i < len(self._jobs) else None
            if job is None:
                break  # DDP has not handed over that bucket yet
            if part == "first" and not job.first_over and job.outcome is None or part == "rest" and job.outcome is None:
                if job.pending is not None:
                    action, job.pending = ("launch", job, job.pending), None
                elif not job.started:
                    job.started = True
                    action = ("start", job, None)
                break
            if part == "rest":
                settle += self._settle_locked(job)
            self._turn = self._next_turn(self._turn)
        idle = self._turn is None
        if idle:
            self._jobs = []
            self._busy = False
        return action, settle, idle

    def _settle_locked(self, job: _Job) -> list:
        """The futures to complete once ``job`` has ended. A failed job's is
        held until the iteration's last job has ended: backward then raises
        only after every bucket's collectives have run, so every rank stands
        at the same point, and no job of the step still runs on a gloo thread
        while the caller handles the error (one that launched a collective on
        a group the caller had just destroyed aborted the process)."""
        kind, x = job.outcome
        error = x if kind == "error" else None
        if error is not None:
            error.__traceback__ = None  # the frames would keep this step's buffers (and a cycle) alive
            if not job.last:
                self._held.append((job.result, error))
                return []
        settle = [(f, None, e) for f, e in self._held] + [(job.result, None if error else x, error)]
        self._held = []
        return settle

    def _follow(self, step: tuple) -> None:
        """Does what moving the turn released: completes the futures (the
        iteration's state idle first: DDP may finish backward, and the caller
        take a state_dict, as soon as the last one is set), then launches or
        starts the next turn's job on this thread."""
        action, settle, idle = step
        for future, value, error in settle:
            if error is None:
                future.set_result(value)
            else:
                future.set_exception(error)
        if idle:
            with self._idle:
                self._idle.notify_all()
        if action is not None:
            kind, job, op = action
            if kind == "launch":
                self._launch_in_turn(job, op)
            else:
                self._run(job)

    @staticmethod
    def _compute(job: _Job) -> tuple:
        """Runs the job to its next round: ("op", round), or its end ("value", v) or ("error", e)."""
        try:
            if job.steps is None:
                job.steps = job.make()
            return ("op", job.steps.send(None))
        except StopIteration as stop:
            return ("value", stop.value)
        except BaseException as e:  # noqa: BLE001 - handed to DDP through the future
            if job.steps is not None:
                job.steps.close()
            return ("error", e)

    def _run(self, job: _Job, done: Optional[torch.futures.Future] = None, ready: Optional[tuple] = None) -> None:
        """Runs the job on once ``done`` (its round before, if any) has
        completed: to ``ready`` if it was computed while ``done`` was in
        flight, else to its next round; offers that round, or ends the job."""
        if done is not None:
            with self._lock:
                self._in_flight -= 1
                job.in_flight -= 1
            try:
                done.wait()  # completed (this is its callback): raises if the collective failed
            except BaseException as e:  # noqa: BLE001 - handed to DDP through the future
                if job.steps is not None:
                    job.steps.close()
                ready = ("error", e)
        if ready is None:
            ready = self._compute(job)
        if ready[0] != "op":
            with self._lock:
                job.outcome = ready
                step = self._advance_locked()
            self._follow(step)
            return
        with self._lock:
            if self._turn != (job.index, "rest" if job.first_over else "first"):
                job.pending = ready[1]  # launched when its turn comes (_advance_locked)
                return
        self._launch_in_turn(job, ready[1])

    def _launch_in_turn(self, job: _Job, op: _Round) -> None:
        """Launches ``op`` (it is the job's turn), then whatever the turns it
        passes release. A round marked overlap (a sliced sketch's table) stays
        in flight while the job computes its next round."""
        try:
            fut = self._launch(op)
        except BaseException as e:  # noqa: BLE001 - handed to DDP through the future
            job.steps.close()
            self._run(job, ready=("error", e))
            return
        with self._lock:
            job.first_over = job.first_over or not op.lead
            if self._in_flight > job.in_flight:
                self._overlapped += 1
            self._in_flight += 1
            job.in_flight += 1
            step = self._advance_locked()
        self._follow(step)
        if not op.overlap:
            _on_done(fut, lambda f: self._run(job, f))
            return
        ready = self._compute(job)  # while the overlapped round is carried
        _on_done(fut, lambda f: self._run(job, f, ready))

    def _launch(self, op: _Round) -> torch.futures.Future:
        world, rank = self.world_size, self.rank
        tensor, counters = op.tensor, op.counters
        if op.kind == "allreduce":
            traffic = gloo_allreduce(tensor.numel() * tensor.element_size(), tensor.element_size(), world, rank)
            work = dist.all_reduce(tensor, group=self.process_group, async_op=True)
        else:
            traffic = gloo_allgather(tensor.numel() * tensor.element_size(), world)
            work = dist.all_gather(op.outputs, tensor, group=self.process_group, async_op=True)
        fut = work.get_future()
        with self._lock:
            counters.add(traffic)
            self._refs_current.append((work, fut, op))
        return fut

    # -- reports -----------------------------------------------------------------------------------------------

    def stats(self) -> Dict[str, Any]:
        """What this rank sent, as gloo sends it (see sketchsgd.budget): per phase
        (setup: the configuration checks; warmup: plain allreduce steps;
        compressed: everything after start_iter), ``bytes_sent`` (payload),
        ``wire_bytes`` (with gloo's TCP preambles: what the process writes to
        its sockets), ``collectives``; plus ``dense_equivalent_bytes`` (a plain
        allreduce of the compressed steps' buckets), ``compression``, the
        iterations, ``rounds_overlapped`` (rounds launched while another
        bucket's round was on the wire: see ``overlap_buckets``) and the
        aggregators' own figures (time per phase)."""
        with self._lock:
            total = _Counters()
            for c in (self._setup, self._warmup, self._compressed):
                total.bytes_sent += c.bytes_sent
                total.wire_bytes += c.wire_bytes
                total.collectives += c.collectives
            return {"iterations": self.iter, "setup": self._setup.as_dict(), "warmup": self._warmup.as_dict(),
                    "compressed": self._compressed.as_dict(), "total": total.as_dict(),
                    "dense_equivalent_bytes": self._dense_equivalent, "compression": self._compression_locked(),
                    "bucket_steps": self._compressed_steps, "skipped_bucket_steps": self._skipped,
                    "rounds_overlapped": self._overlapped,
                    "aggregators": {i: p.aggregator.stats() for i, p in self._plans.items()
                                    if p.aggregator is not None}}

    def _compression_locked(self) -> float:
        sent = self._compressed.bytes_sent
        return self._dense_equivalent / sent if sent else 0.0

    def compression(self) -> float:
        """Achieved compression on the compressed steps: a plain allreduce's bytes over the bytes sent."""
        with self._lock:
            return self._compression_locked()

    def bytes_sent(self) -> int:
        """Payload bytes this rank sent in all, setup, warm-up and compressed steps."""
        return self.stats()["total"]["bytes_sent"]

    def plans(self) -> List[dict]:
        """Each bucket's sizes (or why it is sent by plain allreduce)."""
        return [self._plans[i].describe() for i in sorted(self._plans)]

    # -- checkpoints -------------------------------------------------------------------------------------------

    def state_dict(self) -> Dict[str, Any]:
        """This rank's state (error memories, sketches, warm-up momentum, the
        iteration count, the traffic so far). Save it on every rank, with the
        model and the optimizer, between iterations."""
        with self._lock:
            if self._busy:
                raise RuntimeError("SketchState.state_dict: a step is in progress")
        return {
            "version": 2,
            "config": self.config(),
            "world": self.world_size,
            "rank": self.rank,
            "iter": self.iter,
            "buckets": {i: {"signature": [list(s) for s in p.signature], "options": p.options, "reason": p.reason,
                            "aggregator": None if p.aggregator is None else p.aggregator.save()}
                        for i, p in self._plans.items()},
            # version 2: keyed by parameter position (version 1: by bucket index)
            "warmup_momentum": {i: m.clone() for i, m in self._warm_momentum.items()},
            "traffic": {"setup": self._setup.as_dict(), "warmup": self._warmup.as_dict(),
                        "compressed": self._compressed.as_dict(), "dense_equivalent": self._dense_equivalent,
                        "bucket_steps": self._compressed_steps, "skipped": self._skipped},
        }

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restores ``state_dict()``'s result on the same rank of a job with the
        same configuration and world size; training then continues
        bit-identically. Raises ValueError for another configuration and
        sketchsgd.ConfigMismatchError for another rank or world (nothing is
        changed then)."""
        version = state.get("version")
        if version not in (1, 2):
            raise ValueError(f"SketchState.load_state_dict: unknown version {version!r}")
        self._check_config(state, "load_state_dict")
        if state["world"] != self.world_size or state["rank"] != self.rank:
            raise _core.ConfigMismatchError(
                f"SketchState.load_state_dict: saved by rank {state['rank']} of {state['world']}, "
                f"loading on rank {self.rank} of {self.world_size}")
        warm = {int(i): m for i, m in state["warmup_momentum"].items()}
        if version == 1 and warm:  # per bucket then: split by the saved buckets' layouts
            by_position = {}
            for i, m in warm.items():
                b = state["buckets"].get(i, state["buckets"].get(str(i)))
                if b is None or sum(n for _, n, _ in b["signature"]) != m.numel():
                    raise ValueError("SketchState.load_state_dict: a version 1 checkpoint taken during warm-up "
                                     "(its momentum is kept per bucket, and the buckets are unknown); "
                                     "take it again after start_iter, or restart the warm-up")
                at = 0
                for position, n, _ in b["signature"]:
                    by_position[int(position)] = m[at:at + n]
                    at += n
            warm = by_position
        plans = self._plans_of(state, lambda agg, i: agg.load(state["buckets"][i]["aggregator"]))
        self._adopt(state, plans, warm)

    def load_redivided(self, states: List[Dict[str, Any]]) -> None:
        """Restores the ``state_dict()`` of every rank of a job of another world
        size (a list in rank order) on this rank: each bucket's error memories
        are summed over the saved ranks and divided evenly among this world,
        so their sum, the gradient mass not yet applied, is kept; what every
        rank holds alike (FetchSGD's sketches, warm-up momentum, the
        iteration) is taken from saved rank 0, as are the traffic counters.
        The buckets keep their saved sizes (chosen for the old world's
        allreduce bytes). Raises ValueError for another configuration or
        states that do not make up one world at one iteration, and what
        Aggregator.load_redivided raises; nothing is changed then."""
        world = len(states)
        if (world == 0 or [s.get("rank") for s in states] != list(range(world))
                or any(s.get("world") != world or s.get("version") != 2 for s in states)):
            raise ValueError("SketchState.load_redivided: expected the version 2 state_dict() of every rank of one "
                             f"world, in rank order; got ranks {[s.get('rank') for s in states]} of worlds "
                             f"{sorted({s.get('world') for s in states})}")
        if any(s["iter"] != states[0]["iter"] for s in states):
            raise ValueError("SketchState.load_redivided: the ranks saved at different iterations "
                             f"{[s['iter'] for s in states]}")
        for s in states:
            self._check_config(s, "load_redivided")
        first = states[0]
        plans = self._plans_of(first, lambda agg, i: agg.load_redivided(
            [s["buckets"][i]["aggregator"] for s in states]))
        self._adopt(first, plans, {int(i): m for i, m in first["warmup_momentum"].items()})

    def _check_config(self, state: Dict[str, Any], who: str) -> None:
        mine = self.config()
        saved = dict({"weight_decay": 0.0}, **state["config"])  # saved before weight_decay existed: none
        if saved != mine:
            diffs = ", ".join(f"{key}: saved {saved.get(key)!r}, here {mine.get(key)!r}"
                              for key in sorted(set(mine) | set(saved)) if mine.get(key) != saved.get(key))
            raise ValueError(f"SketchState.{who}: another configuration ({diffs})")

    def _plans_of(self, state: Dict[str, Any], restore: Callable) -> Dict[int, _Plan]:
        """The saved buckets' plans, each aggregator built here and restored by ``restore(aggregator, key)``."""
        plans: Dict[int, _Plan] = {}
        for i, b in state["buckets"].items():
            plan = _Plan(int(i), tuple(tuple(s) for s in b["signature"]), b["options"], b["reason"])
            if b["options"] is not None:
                plan.options = dict(b["options"], threads=self.threads)  # threads do not change results
                plan.aggregator = _core.Aggregator(self.rank, self.world_size, plan.options)
                restore(plan.aggregator, i)
            plans[int(i)] = plan
        return plans

    def _adopt(self, state: Dict[str, Any], plans: Dict[int, _Plan], warm: Dict[int, torch.Tensor]) -> None:
        self._plans = plans
        self._warm_momentum = {i: m.clone() for i, m in warm.items()}
        self.iter = int(state["iter"])
        t = state["traffic"]
        self._setup.load(t["setup"])
        self._warmup.load(t["warmup"])
        self._compressed.load(t["compressed"])
        self._dense_equivalent = t["dense_equivalent"]
        self._compressed_steps = t["bucket_steps"]
        self._skipped = t["skipped"]
        self._agreed = False  # ranks check again at the next hook call


def carry_step(aggregator: _core.Aggregator, gradient: Any, group: Optional[dist.ProcessGroup] = None) -> None:
    """One split-phase step of ``aggregator`` on this rank's ``gradient`` (a float32
    or float16 array, or a float32, bfloat16 or float16 CPU tensor, used in
    place: 16-bit values are read as float, never copied), every round carried at once over
    torch.distributed: a sum by all_reduce, a gather by all_gather, a reduce by
    reduce (a merging one, gTop-k's, by sketchsgd's binomial tree of send and
    recv), a broadcast by broadcast. Every method and topology; afterwards
    ``aggregator.update()`` holds the aggregated gradient, the same on every rank.
    A sum marked ``overlap`` (a sliced sketch's table) is left in flight while
    the aggregator computes its next round, and waited for before that round."""
    world, rank = dist.get_world_size(group), dist.get_rank(group)
    peer = (lambda r: r) if group is None else functools.partial(dist.distributed_c10d._get_global_rank, group)
    in_flight = None
    aggregator.begin(gradient)
    while (r := aggregator.next()) is not None:
        if in_flight is not None:
            in_flight.wait()
            in_flight = None
        if r.kind == "sum" and r.wire != "native":
            raise ValueError(f"carry_step: a sum on a {r.wire} wire (dense-bf16/fp16) is sketchsgd's 16-bit ring, "
                             "summed in float32 and rounded once per hop; torch.distributed's all_reduce would give "
                             "other bits (gloo refuses bfloat16): carry it with sketchsgd's collectives")
        if r.kind == "sum":
            work = dist.all_reduce(torch.from_numpy(r.values if r.values is not None else r.counts), group=group,
                                   async_op=r.overlap)
            in_flight = work if r.overlap else None
        elif r.kind == "gather":
            out = torch.from_numpy(r.gathered)
            dist.all_gather([out[i * r.nbytes:(i + 1) * r.nbytes] for i in range(world)], torch.from_numpy(r.block),
                            group=group)
        elif r.kind == "broadcast":
            dist.broadcast(torch.from_numpy(r.block), src=peer(r.root), group=group)
        elif r.merge is None:
            dist.reduce(torch.from_numpy(r.values), dst=peer(r.root), group=group)
        else:  # the tree towards the root: merge each child's block, then send this rank's up
            block, incoming = torch.from_numpy(r.block), torch.empty(r.nbytes, dtype=torch.uint8)
            vrank, mask = (rank - r.root) % world, 1
            while mask < world and not vrank & mask:
                if vrank + mask < world:
                    dist.recv(incoming, src=peer((vrank + mask + r.root) % world), group=group)
                    r.merge(incoming.numpy())
                mask <<= 1
            if mask < world:
                dist.send(block, dst=peer((vrank - mask + r.root) % world), group=group)


def sketch_hook(state: SketchState, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:
    """The communication hook: ``ddp_model.register_comm_hook(state, sketch_hook)``.

    For the first ``state.start_iter`` iterations a plain allreduce (averaged);
    then each bucket is aggregated by the state's method, its rounds carried by
    the process group's futures, and the bucket comes back holding the
    aggregated gradient (averaged over ranks), identical on every rank."""
    return state.hook(bucket)


_ADAM_LIKE = tuple(getattr(torch.optim, name) for name in ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "SparseAdam")
                   if hasattr(torch.optim, name))


def attach(ddp_model: torch.nn.parallel.DistributedDataParallel, optimizer: torch.optim.Optimizer,
           method: str = "sketched", **hook_options: Any) -> SketchState:
    """Registers the sketch hook on ``ddp_model`` and moves ``optimizer``'s
    momentum, Nesterov and weight decay into it; returns the hook's state.

    The optimizer must be a ``torch.optim.SGD`` over ``ddp_model``'s
    parameters, not yet stepped with momentum, whose param groups share one
    momentum and one Nesterov setting (learning rates may differ, and so may
    weight decays: each group's is applied to its parameters), with
    ``dampening=0`` and ``maximize=False``. Its groups are then left with
    ``momentum=0``, ``nesterov=False``, ``weight_decay=0``: plain SGD, whose
    learning rate (and any scheduler of it) still applies. The result is
    the documented manual path, bit for bit::

        state = SketchState(process_group, method, momentum=m, nesterov=n, weight_decay=wd, **hook_options)
        ddp_model.register_comm_hook(state, sketch_hook)  # and SGD without momentum or decay

    Why: the hook's error feedback needs momentum before compression
    (momentum correction); momentum left in the optimizer acts after it, on
    the sparse update, as PowerSGD's users keep it: issue 27 measured
    Sketched-SGD 16 points below allreduce at 10x that way, and FetchSGD
    diverging.

    Raises TypeError (not a DDP model, not SGD: Adam's moments cannot move
    into the hook), ValueError (what this SGD has that the hook cannot take,
    or momentum/nesterov/weight_decay among ``hook_options``: they come
    from the optimizer) or RuntimeError (a hook already registered); the
    model and the optimizer are then unchanged. ``hook_options`` are
    SketchState's (process_group, compression, seed, start_iter, ...).
    """
    if not isinstance(ddp_model, torch.nn.parallel.DistributedDataParallel):
        raise TypeError("sketchsgd.torch.attach: ddp_model must be a torch.nn.parallel.DistributedDataParallel, "
                        f"got {type(ddp_model).__name__}")
    given = sorted(key for key in ("momentum", "nesterov", "weight_decay") if key in hook_options)
    if given:
        raise ValueError(f"sketchsgd.torch.attach: {', '.join(given)} come from the optimizer (set them in "
                         "torch.optim.SGD); to set them yourself, use SketchState and register_comm_hook")
    if getattr(ddp_model, "_sketchsgd_state", None) is not None:
        raise RuntimeError("sketchsgd.torch.attach: this DDP model already has the sketch hook; a model takes a "
                           "communication hook once")
    name = type(optimizer).__name__
    if isinstance(optimizer, _ADAM_LIKE):
        raise TypeError(f"sketchsgd.torch.attach: {name}'s first and second moments cannot move into the hook "
                        "(its momentum acts before compression, on the error memory; per-coordinate second "
                        "moments have no such place). Use torch.optim.SGD, whose momentum attach moves into the "
                        f"hook, or keep {name} after compression: register the hook yourself with "
                        "SketchState(..., momentum=0.0) and ddp_model.register_comm_hook")
    if not isinstance(optimizer, torch.optim.SGD):
        raise TypeError(f"sketchsgd.torch.attach takes torch.optim.SGD (its momentum, Nesterov and weight decay "
                        f"move into the hook), not {name}; to keep {name} after compression, register the hook "
                        "yourself with SketchState(..., momentum=0.0) and ddp_model.register_comm_hook")
    groups = optimizer.param_groups
    momenta = sorted({float(g["momentum"]) for g in groups})
    if len(momenta) > 1:
        raise ValueError(f"sketchsgd.torch.attach: the optimizer's param groups differ in momentum ({momenta}); "
                         "the hook keeps one momentum: give every group the same")
    momentum = momenta[0] if momenta else 0.0
    nesterovs = {bool(g["nesterov"]) for g in groups}
    if len(nesterovs) > 1:
        raise ValueError("sketchsgd.torch.attach: the optimizer's param groups differ in nesterov; the hook "
                         "keeps one momentum: give every group the same")
    nesterov = nesterovs.pop() if nesterovs else False
    for i, g in enumerate(groups):
        if g.get("maximize", False):
            raise ValueError(f"sketchsgd.torch.attach: param group {i} has maximize=True, which the hook does "
                             "not take (negate the loss instead)")
        if momentum != 0.0 and float(g.get("dampening", 0.0)) != 0.0:
            raise ValueError(f"sketchsgd.torch.attach: param group {i} has dampening {g['dampening']}; the "
                             "hook's momentum has none: use dampening=0")
    own = {id(p) for p in ddp_model.parameters()}
    outside = sum(1 for g in groups for p in g["params"] if id(p) not in own)
    if outside:
        raise ValueError(f"sketchsgd.torch.attach: the optimizer holds {outside} parameters that are not "
                         "ddp_model's; the hook sees only the model's gradients")
    if momentum != 0.0 and any(optimizer.state.get(p, {}).get("momentum_buffer") is not None
                               for g in groups for p in g["params"]):
        raise ValueError("sketchsgd.torch.attach: the optimizer already stepped with momentum (it holds momentum "
                         "buffers, which the hook cannot take over); attach first, before the first step")
    decays = {float(g["weight_decay"]) for g in groups}
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    if len(decays) <= 1 and (decays == {0.0} or not decays or in_optimizer == own):
        weight_decay: Any = decays.pop() if decays else 0.0
    else:
        weight_decay = [(float(g["weight_decay"]), list(g["params"])) for g in groups]
    state = SketchState(method=method, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                        **hook_options)
    ddp_model.register_comm_hook(state, sketch_hook)  # raises (changing nothing) if DDP has a hook already
    ddp_model._sketchsgd_state = state
    for g in groups:
        g["momentum"], g["nesterov"], g["weight_decay"] = 0.0, False, 0.0
    optimizer.defaults.update(momentum=0.0, nesterov=False, weight_decay=0.0)  # for groups added later
    return state


# -- checkpoints of every rank -----------------------------------------------------------------------------------
#
# One file per rank, in a folder every rank can write: rank<r>-of-<W>.iter<N>.pt holds that rank's model,
# optimizer and hook state after N optimizer steps (the hook's iteration). Each rank keeps its two newest
# files, so a rank killed while saving leaves the one before; loading takes the newest step that every rank
# has (agreed by one allgather), so the ranks always restart from the same step.

_CHECKPOINT_FORMAT = "sketchsgd.torch checkpoint"


def _checkpoint_files(folder: str) -> Dict[Tuple[int, int], Dict[int, str]]:
    """(world, rank) -> {iteration: path} of the checkpoint files in ``folder``."""
    import os
    import re
    out: Dict[Tuple[int, int], Dict[int, str]] = collections.defaultdict(dict)
    if not os.path.isdir(folder):
        return out
    for name in os.listdir(folder):
        m = re.fullmatch(r"rank(\d+)-of-(\d+)\.iter(\d+)\.pt", name)
        if m:
            out[(int(m.group(2)), int(m.group(1)))][int(m.group(3))] = os.path.join(folder, name)
    return out


def _complete_steps(files: Dict[Tuple[int, int], Dict[int, str]], world: int) -> List[Tuple[int, int]]:
    """(newest step, world) of each world but ``world`` whose every rank saved that step."""
    complete = []
    for old in sorted({w for w, _ in files if w != world}):
        steps = [set(files.get((old, r), {})) for r in range(old)]
        common = set.intersection(*steps) if steps else set()
        if common:
            complete.append((max(common), old))
    return complete


def _load_resized(folder: str, files: Dict[Tuple[int, int], Dict[int, str]], ddp_model: torch.nn.Module,
                  optimizer: torch.optim.Optimizer, state: SketchState) -> Dict[str, Any]:
    """load_checkpoint from the files of another world size (see there)."""
    complete = _complete_steps(files, state.world_size)
    if not complete:
        raise ValueError(f"sketchsgd.torch.load_checkpoint: the files in {folder} are of worlds "
                         f"{sorted({w for w, _ in files})}, and none has a step every one of its ranks saved; "
                         "restore the files or restart from scratch")
    step, old = max(complete)
    blobs = [torch.load(files[(old, r)][step], map_location="cpu") for r in range(old)]
    for r, blob in enumerate(blobs):
        if blob.get("format") != _CHECKPOINT_FORMAT or blob.get("rank") != r or blob.get("world") != old:
            raise RuntimeError(f"sketchsgd.torch.load_checkpoint: {files[(old, r)][step]} is not rank {r} of "
                               f"{old}'s checkpoint")
    state.load_redivided([b["hook"] for b in blobs])  # first: it checks everything before changing anything
    getattr(ddp_model, "module", ddp_model).load_state_dict(blobs[0]["model"])
    optimizer.load_state_dict(blobs[0]["optimizer"])
    return {"iter": blobs[0]["iter"], "extra": blobs[0]["extra"], "resized_from": old}


def save_checkpoint(folder: str, ddp_model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: SketchState, extra: Any = None) -> str:
    """Saves this rank's model, optimizer and hook state (and ``extra``, say a
    data loader's position) into ``folder`` as ``rank<r>-of-<W>.iter<N>.pt``;
    call it on every rank between steps. The file is written under another
    name and renamed, and the rank's older files but the newest one are
    removed after: a rank killed meanwhile leaves a complete file. Returns the path."""
    import os
    rank, world = state.rank, state.world_size
    blob = {"format": _CHECKPOINT_FORMAT, "version": 1, "world": world, "rank": rank, "iter": state.iter,
            "hook": state.state_dict(),  # first: raises if a step is in progress
            "model": getattr(ddp_model, "module", ddp_model).state_dict(), "optimizer": optimizer.state_dict(),
            "extra": extra}
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"rank{rank}-of-{world}.iter{state.iter}.pt")
    partial = path + ".partial"
    with open(partial, "wb") as f:
        torch.save(blob, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    mine = _checkpoint_files(folder).get((world, rank), {})
    for it in sorted(mine)[:-2]:  # keep the two newest: the other ranks may not have reached this one
        os.remove(mine[it])
    return path


def load_checkpoint(folder: str, ddp_model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: SketchState) -> Optional[Dict[str, Any]]:
    """Restores what ``save_checkpoint`` saved, on every rank (a collective:
    call it on all ranks, after ``attach`` or ``register_comm_hook`` and
    before the first step): the newest step every rank has a file of. The
    job then continues bit-identically. Returns ``{"iter": N, "extra": ...}``,
    or None when no rank has a checkpoint (a fresh start).

    When no rank has a file of this world size, or another world's ranks
    all saved a newer step than this world's newest common one (a job that
    went 3 -> 2 -> 3 workers), and every rank of that world left a file of
    that step (the newest such, on a folder every rank reads), the job
    resumes from those at this size: the model and the
    optimizer from old rank 0's file, the hook's state re-divided
    (``SketchState.load_redivided``: error memories summed and split evenly,
    their sum kept); the result then also holds ``"resized_from": W``, and
    ``extra`` is old rank 0's (re-shard your data yourself). Raises
    RuntimeError when the ranks have no step in common or a file is not
    this rank's, and ValueError when no world's files make up a step."""
    rank, world = state.rank, state.world_size
    files = _checkpoint_files(folder)
    mine = files.get((world, rank), {})
    other_worlds = sorted({w for w, _ in files if w != world})
    elsewhere = max((step for step, _ in _complete_steps(files, world)), default=-1)
    newest = sorted(mine)[-2:]
    # One allgather: whether files of another world exist, the newest step one
    # of them completed, and each rank's two newest steps (-1: none).
    row = torch.tensor([len(other_worlds), elsewhere] + [-1] * (2 - len(newest)) + newest, dtype=torch.int64)
    everyone = [torch.empty(4, dtype=torch.int64) for _ in range(world)]
    dist.all_gather(everyone, row, group=state.process_group)
    rows = [t.tolist() for t in everyone]
    if all(r[2] == r[3] == -1 for r in rows):
        if any(r[0] for r in rows):
            return _load_resized(folder, files, ddp_model, optimizer, state)
        return None
    common = set.intersection(*({i for i in r[2:] if i >= 0} for r in rows))
    # A world of another size that went on after this world's files (3 -> 2 -> 3)
    # holds the newer state: resume from it, never from this world's older files.
    if max(r[1] for r in rows) > max(common, default=-1):
        return _load_resized(folder, files, ddp_model, optimizer, state)
    if not common:
        raise RuntimeError(f"sketchsgd.torch.load_checkpoint: the ranks have no step in common in {folder} "
                           f"(each rank's newest two: {[r[1:] for r in rows]}); restart from scratch or restore "
                           "the files")
    step = max(common)
    blob = torch.load(mine[step], map_location="cpu")
    if blob.get("format") != _CHECKPOINT_FORMAT or blob.get("rank") != rank or blob.get("world") != world:
        raise RuntimeError(f"sketchsgd.torch.load_checkpoint: {mine[step]} is not rank {rank} of {world}'s "
                           "checkpoint")
    getattr(ddp_model, "module", ddp_model).load_state_dict(blob["model"])
    optimizer.load_state_dict(blob["optimizer"])
    state.load_state_dict(blob["hook"])
    return {"iter": blob["iter"], "extra": blob["extra"]}
