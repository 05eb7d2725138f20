# SPDX-License-Identifier: Apache-2.0
"""sketchsgd: communication-efficient distributed SGD with Count Sketches.

The C++ core (header-only, include/sketchsgd) through a small extension:

* ``CountSketch``: accumulate, merge, estimate, top-k, serialize (float32);
* ``Aggregator``: every aggregation policy in split phase (sketched,
  global-sketch, fetchsgd, local-topk, true-topk, gtopk, dense; allreduce or
  root topology), whose rounds the caller carries with its own collectives,
  in place (``sketchsgd.torch.carry_step``: over torch.distributed);
* ``inproc_steps``: the same aggregator driven by sketchsgd's own
  collectives over in-process ranks (the reference);
* ``sketchsgd.torch``: ``SketchState`` and ``sketch_hook``, a
  DistributedDataParallel communication hook.

Arrays are float32 NumPy arrays or CPU tensors, used in place (never copied).
"""
from ._core import (Aggregator, ConfigMismatchError, CountSketch, Error, NonFiniteError, Round,
                    SerializationError, __version__, inproc_steps, top_k)
from .budget import BudgetError, Traffic, choose_sizes, gloo_allgather, gloo_allreduce

__all__ = ["Aggregator", "BudgetError", "ConfigMismatchError", "CountSketch", "Error", "NonFiniteError", "Round",
           "SerializationError", "Traffic", "__version__", "choose_sizes", "gloo_allgather", "gloo_allreduce",
           "inproc_steps", "top_k"]
