"""How much memory a model needs for an advice run, from its shapes alone, checked before
anything is allocated (the agent's per-request estimate is `advisor.graph.memory`).

A model that declares an input of 1×3×100000×100000 floats needs 112 GiB for that input
alone; allocating it dies with MemoryError deep inside numpy. `input_estimate` (the inputs
once their shapes are concrete) and `graph_estimate` (weights, inputs and every tensor one
run makes, without reuse: an upper bound) say so first, and `check_memory` refuses with the
estimate and the largest tensor when it is over the limit: `--max-memory`, else the memory
this machine has available now.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import onnx

from advisor.errors import ModelError

if TYPE_CHECKING:
    from advisor.graph.model import ModelGraph

__all__ = [
    "Footprint", "input_estimate", "graph_estimate", "check_memory", "memory_limit",
    "human_bytes",
]  # fmt: skip


@dataclass(frozen=True)
class Footprint:
    bytes: int
    largest: str  # name of the largest tensor
    largest_shape: tuple[int, ...]
    largest_bytes: int
    what: str  # what the estimate counts


def _itemsize(elem_type: int) -> int:
    try:
        return np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize
    except (KeyError, TypeError, ValueError):
        return 4


def _estimate(tensors: Iterable[tuple[str, tuple[int, ...], int]], what: str) -> Footprint:
    """(name, shape, bytes) of each tensor -> their total and the largest."""
    total, largest = 0, ("", tuple[int, ...](), 0)
    for name, shape, n in tensors:
        total += n
        if n > largest[2]:
            largest = (name, shape, n)
    return Footprint(total, largest[0], largest[1], largest[2], what)


def input_estimate(model: onnx.ModelProto) -> Footprint:
    """Bytes of one sample of every graph input whose dims are all concrete.

    >>> import onnx.helper as h
    >>> x = h.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 100000, 100000])
    >>> m = h.make_model(h.make_graph([], "g", [x], []))
    >>> e = input_estimate(m)
    >>> e.largest, round(e.bytes / 2**30)
    ('x', 112)
    """
    inits = {i.name for i in model.graph.initializer}
    tensors = []
    for vi in model.graph.input:
        t = vi.type.tensor_type
        if vi.name in inits or not vi.type.HasField("tensor_type") or not t.HasField("shape"):
            continue
        dims = [d.dim_value if d.WhichOneof("value") == "dim_value" else 1 for d in t.shape.dim]
        n = math.prod(max(0, d) for d in dims) * _itemsize(t.elem_type)
        tensors.append((vi.name, tuple(dims), n))
    return _estimate(tensors, "the model's inputs (one sample)")


def graph_estimate(graph: ModelGraph) -> Footprint:
    """Weights, inputs and every tensor one run makes, counted without reuse (an upper
    bound on what one ONNX Runtime session needs for one sample)."""
    from advisor.graph.model import tensor_specs

    specs = tensor_specs(graph.model).values()  # initializers included
    return _estimate(
        ((s.name, tuple(s.shape), s.nbytes) for s in specs),
        "weights, inputs and every intermediate tensor of one run",
    )


def memory_limit(max_memory: int | None = None) -> tuple[int, str]:
    """(bytes, where that limit comes from): `max_memory` when given, else available memory."""
    if max_memory is not None:
        return max_memory, "--max-memory"
    import psutil

    return int(psutil.virtual_memory().available), "this machine's available memory"


def human_bytes(n: int) -> str:
    """1.5 GiB, 3.2 MiB or 20.0 KiB.

    >>> human_bytes(3 * 2**30 // 2), human_bytes(20 * 2**10)
    ('1.5 GiB', '20.0 KiB')
    """
    for unit, size in (("GiB", 2**30), ("MiB", 2**20)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n / 2**10:,.1f} KiB"


def check_memory(est: Footprint, max_memory: int | None = None) -> None:
    """Raise ModelError when `est` is over the limit (see `memory_limit`)."""
    limit, source = memory_limit(max_memory)
    if est.bytes <= limit:
        return
    shape = "x".join(map(str, est.largest_shape)) or "scalar"
    raise ModelError(
        f"the model needs about {human_bytes(est.bytes)} ({est.what}; the largest tensor is "
        f"{est.largest!r}, {shape}, {human_bytes(est.largest_bytes)}), more than {source} "
        f"({human_bytes(limit)}); give smaller input dims with --input-shape, or raise "
        "--max-memory"
    )
