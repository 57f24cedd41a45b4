"""How much memory running a model needs, estimated from its shapes before anything is allocated.

One public function, :func:`estimate_memory`: the model's inputs (shapes as declared, or as
given), its weights, and every intermediate tensor and output that onnx shape inference can
size. The total counts every tensor alive at once (ONNX Runtime reuses buffers, so a real run
peaks lower): an upper bound, cheap to compute, and safe to refuse on. The agent refuses
(HTTP 413) a model or profile whose estimate is over its limit; the CLI can do the same.

>>> from onnx import TensorProto, helper
>>> node = helper.make_node("Relu", ["x"], ["y"], name="act")
>>> graph = helper.make_graph(
...     [node], "g",
...     [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 100_000, 100_000])],
...     [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, 100_000, 100_000])],
... )
>>> est = estimate_memory(helper.make_model(graph), {"x": (1, 3, 100_000, 100_000)})
>>> est.total_bytes, est.largest_name, est.largest_bytes
(240000000000, 'x', 120000000000)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from advisor.errors import ModelError, ShapeError

__all__ = ["MemoryEstimate", "estimate_memory"]

GiB = 1024**3
# initializers with more elements than this lose their data in the copy given to shape
# inference (only small integer tensors, such as Reshape's shape, are read as values)
_KEEP_VALUES_UP_TO = 4096


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes a run needs if every tensor is alive at once (an upper bound; predicted, not
    measured). ``unknown`` names tensors whose size shape inference could not fix."""

    total_bytes: int
    input_bytes: int
    weight_bytes: int
    activation_bytes: int  # intermediate tensors and outputs
    largest_name: str
    largest_bytes: int
    largest_shape: tuple[int, ...]
    unknown: tuple[str, ...] = ()

    def describe(self) -> str:
        """One line: the total, its parts and the largest tensor."""
        shape = "x".join(str(d) for d in self.largest_shape) or "scalar"
        text = (
            f"{_fmt_bytes(self.total_bytes)} estimated from the shapes (inputs "
            f"{_fmt_bytes(self.input_bytes)}, weights {_fmt_bytes(self.weight_bytes)}, "
            f"intermediates and outputs {_fmt_bytes(self.activation_bytes)}, all alive at "
            f"once); largest tensor {self.largest_name!r} ({shape}) "
            f"{_fmt_bytes(self.largest_bytes)}"
        )
        if self.unknown:
            text += f"; {len(self.unknown)} tensor(s) of unknown size not counted"
        return text


def _fmt_bytes(n: int) -> str:
    if n >= GiB:
        return f"{n / GiB:.1f} GiB ({n} bytes)"
    return f"{n / 1024**2:.1f} MiB ({n} bytes)"


def _itemsize(elem_type: int) -> int | None:
    """Bytes per element of an ONNX element type; None for strings and unknown types."""
    if elem_type == onnx.TensorProto.STRING:
        return None
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return None


def _size(shape: Sequence[int], elem_type: int) -> int | None:
    itemsize = _itemsize(elem_type)
    if itemsize is None or any(d < 0 for d in shape):
        return None
    return int(np.prod([int(d) for d in shape], dtype=object)) * itemsize


def _resolve_inputs(
    graph: onnx.GraphProto, given: Mapping[str, Sequence[int]]
) -> dict[str, tuple[int, ...] | None]:
    """Each graph input's shape: the given one, else the declared one with symbolic dims
    filled where another given input fixes the same name; None where still unknown."""
    inits = {i.name for i in graph.initializer}
    inputs = [vi for vi in graph.input if vi.name not in inits]
    names = {vi.name for vi in inputs}
    unknown = sorted(set(given) - names)
    if unknown:
        raise ShapeError(
            f"a shape was given for {unknown[0]!r}, but the model's inputs are "
            f"{', '.join(sorted(names))}"
        )
    params: dict[str, int] = {}
    for vi in inputs:
        if vi.name not in given:
            continue
        shape = tuple(given[vi.name])
        for axis, v in enumerate(shape):
            if not isinstance(v, int | np.integer) or v < 0:
                raise ShapeError(
                    f"the shape given for input {vi.name!r} has {v!r} at axis {axis}; sizes "
                    "must be integers >= 0, like 1x3x224x224"
                )
        declared = vi.type.tensor_type.shape.dim
        if len(declared) == len(shape):
            params.update(
                {d.dim_param: int(v) for d, v in zip(declared, shape, strict=True) if d.dim_param}
            )
    resolved: dict[str, tuple[int, ...] | None] = {}
    for vi in inputs:
        if vi.name in given:
            resolved[vi.name] = tuple(int(v) for v in given[vi.name])
            continue
        tensor_type = vi.type.tensor_type
        if not vi.type.HasField("tensor_type") or not tensor_type.HasField("shape"):
            resolved[vi.name] = None
            continue
        dims: list[int] = []
        for axis, dim in enumerate(tensor_type.shape.dim):
            if dim.WhichOneof("value") == "dim_value":
                if dim.dim_value < 0:
                    raise ModelError(
                        f"input {vi.name!r} declares size {dim.dim_value} at axis {axis}; sizes "
                        f"must be >= 0: fix the model's input shape or give input {vi.name!r} "
                        "a shape (--input-shape)"
                    )
                dims.append(dim.dim_value)
            elif dim.dim_param in params:
                dims.append(params[dim.dim_param])
            else:
                break
        else:
            resolved[vi.name] = tuple(dims)
            continue
        resolved[vi.name] = None
    return resolved


def _light_copy(
    model: onnx.ModelProto, shapes: Mapping[str, tuple[int, ...] | None]
) -> onnx.ModelProto:
    """A copy for shape inference: large weights without their data, the resolved input
    shapes written in, and no stale intermediate shapes."""
    light = onnx.ModelProto()
    light.CopyFrom(model)
    graph = light.graph
    for init in graph.initializer:
        if int(np.prod(list(init.dims), dtype=object)) > _KEEP_VALUES_UP_TO:
            for field in ("raw_data", "float_data", "double_data", "int32_data", "int64_data"):
                init.ClearField(field)
    for vi in graph.input:
        shape = shapes.get(vi.name)
        if shape is None or not vi.type.HasField("tensor_type"):
            continue
        tensor_type = vi.type.tensor_type
        tensor_type.ClearField("shape")
        for v in shape:
            tensor_type.shape.dim.add().dim_value = v
    del graph.value_info[:]
    for out in graph.output:  # re-inferred from the inputs; a declared one may be stale
        if out.type.HasField("tensor_type"):
            out.type.tensor_type.ClearField("shape")
    return light


def _concrete(vi: onnx.ValueInfoProto) -> tuple[tuple[int, ...], int] | None:
    if not vi.type.HasField("tensor_type") or not vi.type.tensor_type.HasField("shape"):
        return None
    dims = vi.type.tensor_type.shape.dim
    if not all(d.WhichOneof("value") == "dim_value" for d in dims):
        return None
    return tuple(d.dim_value for d in dims), vi.type.tensor_type.elem_type


def estimate_memory(
    model: onnx.ModelProto, input_shapes: Mapping[str, Sequence[int]] | None = None
) -> MemoryEstimate:
    """Estimate the bytes a run of ``model`` needs, from shapes alone (nothing allocated).

    ``input_shapes`` gives inputs' shapes (they win over the declared ones and fix the
    symbolic dimensions they share with other inputs). Tensors whose size stays unknown
    (symbolic, strings, inference failed) are listed in ``unknown``, not counted. Raises
    ModelError for a declared negative size and ShapeError for a bad given shape.
    """
    graph = model.graph
    shapes = _resolve_inputs(graph, dict(input_shapes or {}))
    sizes: dict[str, tuple[int, tuple[int, ...]]] = {}  # name -> (bytes, shape)
    unknown: list[str] = []
    input_types = {vi.name: vi.type.tensor_type.elem_type for vi in graph.input}
    input_bytes = 0
    for name, shape in shapes.items():
        size = None if shape is None else _size(shape, input_types[name])
        if size is None or shape is None:
            unknown.append(name)
            continue
        sizes[name] = (size, shape)
        input_bytes += size
    weight_bytes = 0
    for init in graph.initializer:
        shape = tuple(init.dims)
        size = _size(shape, init.data_type)
        if size is None:
            unknown.append(init.name)
            continue
        sizes[init.name] = (size, shape)
        weight_bytes += size
    try:
        inferred = onnx.shape_inference.infer_shapes(
            _light_copy(model, shapes), strict_mode=False, data_prop=True
        )
        known = {vi.name: vi for vi in (*inferred.graph.value_info, *inferred.graph.output)}
    except Exception:  # noqa: BLE001 - inference is best effort; what it cannot size is unknown
        known = {}
    activation_bytes = 0
    for node in graph.node:
        for name in node.output:
            if not name or name in sizes:
                continue
            found = _concrete(known[name]) if name in known else None
            size = None if found is None else _size(*found)
            if size is None or found is None:
                unknown.append(name)
                continue
            sizes[name] = (size, found[0])
            activation_bytes += size
    largest = max(sizes.items(), key=lambda kv: kv[1][0], default=("", (0, ())))
    return MemoryEstimate(
        total_bytes=input_bytes + weight_bytes + activation_bytes,
        input_bytes=input_bytes,
        weight_bytes=weight_bytes,
        activation_bytes=activation_bytes,
        largest_name=largest[0],
        largest_bytes=largest[1][0],
        largest_shape=largest[1][1],
        unknown=tuple(dict.fromkeys(unknown)),
    )
