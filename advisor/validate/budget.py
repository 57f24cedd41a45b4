"""How many plans may be built at once: a byte budget for the builds that run together.

Building a plan (`advisor.validate.core.prepare`) holds, for a moment, several copies of its
models' weights: the bytes `onnx.save` serializes, ONNX Runtime's parse of the file and the
session's own tensors; a changed model predicted on a target from its own nodes is loaded
by the predictor too, which folds int8 weights back to float and copies the result a few
times (shape inference, its checks). On a 100 MB ResNet-50-class model, two such builds side
by side add 600 MB or more to the peak; on the zoo's models (a few MB) they add nothing worth
a core. `MemoryGate` lets builds run together while their estimates fit in the budget, and a
larger one alone; once a build's sessions are loaded it holds only their one copy.

>>> gate = MemoryGate(100)
>>> with gate.hold(60) as held:
...     held.shrink(20)
...     gate.used
20
>>> gate.used
0
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import onnx

from advisor.plans import Candidate, Compute

__all__ = [
    "BUILD_MEMORY",
    "COPIES",
    "PREDICT_COPIES",
    "WRITE_COPIES",
    "Held",
    "MemoryGate",
    "build_bytes",
    "loaded_bytes",
    "weight_bytes",
    "workers",
]

T = TypeVar("T")

#: bytes of concurrent builds (estimates): a ResNet-50-class model's builds run one at a
#: time, a few-MB model's on every core
BUILD_MEMORY = 256 * 2**20
#: copies of a model's weights one build holds at its peak (see the module docstring)
COPIES = 3
#: the same when a build only writes its artifacts (`schedule.build_all`: the bytes
#: serialized once; the sessions load later, every plan's together, for the shared window)
WRITE_COPIES = 1
#: copies of a changed model's weights, as float, the predictor holds at its peak (its graph
#: with int8 weights folded back to float, and that graph serialized once for its digest)
PREDICT_COPIES = 3


def workers(threads: int) -> int:
    """One worker per `threads` cores of this machine, at least one: how many builds, or
    evaluation inputs, run at once."""
    return max(1, (os.cpu_count() or 1) // max(1, threads))


def weight_bytes(model: onnx.ModelProto, as_float: bool = False) -> int:
    """The bytes of a model's initializers, from their shapes and types (nothing copied);
    `as_float`: 4 bytes each, as once folded to float.

    >>> from onnx import helper, TensorProto
    >>> w = helper.make_tensor("w", TensorProto.FLOAT, [4, 8], [0.0] * 32)
    >>> weight_bytes(helper.make_model(helper.make_graph([], "g", [], [], [w])))
    128
    """
    total = 0
    for t in model.graph.initializer:
        try:
            size = 4 if as_float else onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        except (KeyError, TypeError, ValueError):  # strings and unknown types: 4 bytes
            size = 4
        total += math.prod(t.dims) * size
    return total


def _models(cand: Candidate) -> dict[int, Compute]:
    """Each distinct model of the candidate's compute steps (a shared one counted once)."""
    return {id(s.model): s for s in cand.steps if isinstance(s, Compute)}


def loaded_bytes(cand: Candidate) -> int:
    """The weights its sessions hold: one copy of each distinct model's."""
    return sum(weight_bytes(s.model) for s in _models(cand).values())


def build_bytes(cand: Candidate, copies: int = COPIES) -> int:
    """The memory a build of `cand` is estimated to hold at its peak: `copies` × the weights
    of its models, and for a changed model on a target other than this host (predicted from
    its own nodes) `PREDICT_COPIES` × its weights as float."""
    total = copies * loaded_bytes(cand)
    for s in _models(cand).values():
        unchanged = s.nodes is not None and s.precision == "fp32"
        if not unchanged and s.target.id != "host":
            total += PREDICT_COPIES * weight_bytes(s.model, as_float=True)
    return total


class MemoryGate:
    """A byte budget that blocks `hold(n)` until `n` more bytes fit; a hold larger than the
    whole budget waits until nothing else is held and then runs alone."""

    def __init__(self, budget: int):
        self.budget = budget
        self.used = 0
        self.peak = 0  # the most bytes held at once (what the tests read)
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, n: int) -> Iterator[Held]:
        """Wait until `n` bytes fit, hold them for the block (`shrink` gives part back)."""
        with self._cond:
            self._cond.wait_for(lambda: self.used == 0 or self.used + n <= self.budget)
            self.used += n
            self.peak = max(self.peak, self.used)
        held = Held(self, n)
        try:
            yield held
        finally:
            held.shrink(0)

    def take_first(self, queue: list[T], cost: Callable[[T], int]) -> tuple[T, Held] | None:
        """Remove from `queue` the first item whose `cost` fits now and hold its bytes,
        waiting while none fits; None once `queue` is empty. Workers that share one queue
        this way never idle behind a large build while a smaller one would fit beside the
        builds running (a FIFO `hold` would).

        >>> gate, queue = MemoryGate(100), ["big", "mid", "small"]
        >>> sizes = {"big": 60, "mid": 60, "small": 20}
        >>> gate.take_first(queue, sizes.__getitem__)[0]
        'big'
        >>> gate.take_first(queue, sizes.__getitem__)[0], queue  # 'mid' waits; 'small' fits
        ('small', ['mid'])
        """
        with self._cond:

            def fits(x: T) -> bool:
                return self.used == 0 or self.used + cost(x) <= self.budget

            self._cond.wait_for(lambda: not queue or any(fits(x) for x in queue))
            if not queue:
                return None
            item = next(x for x in queue if fits(x))
            queue.remove(item)
            n = cost(item)
            self.used += n
            self.peak = max(self.peak, self.used)
            self._cond.notify_all()  # the queue changed: a waiter may now see it empty
        return item, Held(self, n)

    def _give_back(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


class Held:
    """Bytes held in a MemoryGate by one block."""

    def __init__(self, gate: MemoryGate, n: int):
        self.gate, self.n = gate, n

    def shrink(self, n: int) -> None:
        """Hold only `n` bytes from now on (no more than held already)."""
        n = min(n, self.n)
        self.gate._give_back(self.n - n)
        self.n = n
