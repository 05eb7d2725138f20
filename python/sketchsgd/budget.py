# SPDX-License-Identifier: Apache-2.0
"""Bytes on the wire under gloo, and sketch sizes that fit a byte budget.

What torch.distributed's gloo backend sends for one collective, counted from
gloo's own algorithms (gloo/allreduce.cc, gloo/allgather.cc, the version
Debian 12's libgloo0 and PyTorch 1.13 use):

* allreduce: a ring. The buffer is cut into ``numSegments`` segments
  (``max(ceil(bytes / 1 MiB), 2 W)`` rounded up to a multiple of W, each
  ``ceil(bytes / numSegments)`` rounded up to the element size); a
  reduce-scatter sends every chunk but the rank's own, an allgather every
  chunk but its left neighbour's, a segment at a time; segments past the end
  are shorter or empty and not sent. About 2 (W-1)/W of the buffer per rank;
  exact per rank here (small buffers differ by rank).
* allgather: a ring in which each rank forwards every block but one, in two
  halves: (W-1) times the block per rank, 2 (W-1) sends.

Over TCP each send costs gloo two messages (a notification and the data, each
behind a 48-byte preamble) and each receive one 48-byte notification, which
``Traffic.wire_bytes`` adds: the bytes a rank's process writes to its sockets
(checked against /proc/self/io in the tests).
"""
from __future__ import annotations

import dataclasses
import math

GLOO_MAX_SEGMENT_BYTES = 1 << 20
GLOO_TCP_PREAMBLE_BYTES = 48

__all__ = [
    "Traffic",
    "gloo_allreduce",
    "gloo_allgather",
    "mean_allreduce_bytes",
    "choose_sizes",
    "BudgetError",
]


@dataclasses.dataclass(frozen=True)
class Traffic:
    """What one rank sends in some collectives."""

    bytes_sent: int = 0  #: payload bytes
    sends: int = 0  #: payload messages
    recvs: int = 0  #: receives posted

    @property
    def wire_bytes(self) -> int:
        """Payload plus gloo's TCP preambles and notifications."""
        return self.bytes_sent + GLOO_TCP_PREAMBLE_BYTES * (2 * self.sends + self.recvs)

    def __add__(self, other: "Traffic") -> "Traffic":
        return Traffic(self.bytes_sent + other.bytes_sent, self.sends + other.sends, self.recvs + other.recvs)


def _round_up(x: int, m: int) -> int:
    return (x + m - 1) // m * m


def gloo_allreduce(nbytes: int, element_size: int, world: int, rank: int) -> Traffic:
    """What rank `rank` sends in gloo's ring allreduce of `nbytes`."""
    if world <= 1 or nbytes <= 0:
        return Traffic()
    max_seg = element_size * max(1, GLOO_MAX_SEGMENT_BYTES // element_size)
    nseg = _round_up(max((nbytes + max_seg - 1) // max_seg, 2 * world), world)
    per_rank = nseg // world
    seg = _round_up((nbytes + nseg - 1) // nseg, element_size)
    sent = sends = recvs = 0
    for first in (rank + 1, rank):  # reduce-scatter, then allgather
        for i in range(nseg - per_rank):
            send_at = ((first * per_rank + i) * seg) % (nseg * seg)
            recv_at = (((first + 1) * per_rank + i) * seg) % (nseg * seg)
            if nbytes - send_at > 0:
                sent += min(seg, nbytes - send_at)
                sends += 1
            if nbytes - recv_at > 0:
                recvs += 1
    return Traffic(sent, sends, recvs)


def gloo_allgather(block_bytes: int, world: int) -> Traffic:
    """What each rank sends in gloo's ring allgather of `block_bytes` per rank."""
    if world <= 1 or block_bytes <= 0:
        return Traffic()
    n = 2 * (world - 1)
    return Traffic((world - 1) * block_bytes, n, n)


def mean_allreduce_bytes(nbytes: int, element_size: int, world: int) -> float:
    """gloo's allreduce bytes per rank, averaged over the ranks (the same on every rank)."""
    return sum(gloo_allreduce(nbytes, element_size, world, r).bytes_sent for r in range(world)) / max(world, 1)


class BudgetError(ValueError):
    """No configuration of the method fits the byte budget."""


def choose_sizes(method: str, dimension: int, dense: int, world: int, compression: float, *, rows: int = 1,
                 candidates_factor: int | None = None, cols_per_k: float = 19.0,
                 nonfinite_check: bool = True) -> dict:
    """Sketch and k for a target compression X, as the C++ Fashion-MNIST
    trainers choose them (examples/fashion_mnist/byte_budget.hpp): the largest
    k whose bytes per step, every round counted (the non-finite check, the
    dense coordinates, the table, the second round), fit 1/X of a plain
    allreduce of the d float32 values. Bytes are gloo's (mean over ranks).

    Sketched-SGD, and global-sketch SGD with P > 0: c = cols_per_k k columns
    per row and P k candidates (P = 4 by default; 0 for global-sketch);
    FetchSGD and global-sketch with P = 0: the widest table that fits,
    k = c / cols_per_k; local top-k: the largest k whose allgather of k
    (index, value) pairs fits; true top-k and dense move d values whatever k
    is (true top-k takes Sketched-SGD's k).

    Raises BudgetError when even k = 1 does not fit (the message says the
    highest compression that does).
    """
    if compression <= 0:
        raise ValueError(f"compression must be positive, got {compression}")
    if candidates_factor is None:
        candidates_factor = 0 if method == "global-sketch" else 4
    sparse = dimension - dense
    if sparse <= 0:
        raise BudgetError("no compressible coordinates")
    budget_of = lambda n, es=4: mean_allreduce_bytes(n, es, world)  # noqa: E731
    budget = budget_of(4 * dimension) / compression
    fixed = budget_of(4 * dense) + (budget_of(8, 8) if nonfinite_check else 0.0)
    sizing = "sketched" if method in ("true-topk", "dense") else method
    second_round = sizing == "sketched" or (sizing == "global-sketch" and candidates_factor > 0)

    def cols_for(k: int) -> int:
        return max(1, int(cols_per_k * k))

    def cost(k: int) -> float:
        if sizing == "local-topk":
            return fixed + (world - 1) * 8.0 * k
        table = budget_of(4 * rows * cols_for(k))
        extra = budget_of(4 * min(candidates_factor * k, sparse)) if second_round else 0.0
        return fixed + table + extra

    if world <= 1:
        k = max(1, min(sparse, int(sparse / (cols_per_k * compression)) or 1))
    else:
        if cost(1) > budget:
            most = budget_of(4 * dimension) / cost(1) if cost(1) > 0 else math.inf
            raise BudgetError(f"compression {compression:g} is too high for {method} with d = {dimension} and "
                              f"W = {world}; at most {math.floor(most * 10) / 10:g} (k = 1 already sends that much)")
        k = 1
        while k * 2 <= sparse and cost(k * 2) <= budget:
            k *= 2
        step = k // 2
        while step >= 1:
            if k + step <= sparse and cost(k + step) <= budget:
                k += step
            step //= 2
    return {"rows": rows, "cols": cols_for(k), "k": k, "candidates_factor": candidates_factor}
