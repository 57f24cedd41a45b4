"""Concrete input shapes: `fix_input_shapes` writes a value into every symbolic input dim.

Where a value comes from, first match wins: `--input-shape` (per input, checked against the
model's fixed dims) -> a dim name another given input already fixed -> the `--data` arrays
(when every array that has the dim agrees) -> 1 for a batch axis -> else a ShapeError that
shows the `--input-shape` to pass.
"""

from __future__ import annotations

import re

import numpy as np
import onnx

from advisor.errors import ModelError, ShapeError

__all__ = ["fix_input_shapes"]

_MAX_DIM = 2**40  # any larger dim would not fit in memory; ONNX stores dims as int64
_BATCH_NAME = re.compile(r"^(n|b|bs|batch.*|.*_batch|.*batch_size.*|unk__\d+|s\d+)$", re.I)


def _fmt(dims: list[str]) -> str:
    return "x".join(dims)


def fix_input_shapes(
    model: onnx.ModelProto,
    given: dict[str, tuple[int, ...]],
    data: dict[str, tuple[int, ...]] | None = None,
) -> tuple[list[str], list[str]]:
    """Write concrete input dims in place; return (notices, inputs whose batch was defaulted).

    `given` (--input-shape) wins; a symbolic dim still open takes its value from `data` (the
    shapes of the --data arrays, by input name) when every array that has it agrees; a batch
    axis stays 1 (the data's rows are samples).

    >>> import onnx.helper as h
    >>> ids = h.make_tensor_value_info("ids", onnx.TensorProto.INT64, ["batch", "seq"])
    >>> m = h.make_model(h.make_graph([], "g", [ids], []))
    >>> notices, batch = fix_input_shapes(m, {}, {"ids": (5, 32)})
    >>> [d.dim_value for d in m.graph.input[0].type.tensor_type.shape.dim], batch
    ([1, 32], ['ids'])
    """
    inits = {i.name for i in model.graph.initializer}
    inputs = [vi for vi in model.graph.input if vi.name not in inits]
    names = [vi.name for vi in inputs]
    for name in given:
        if name not in names:
            raise ShapeError(
                f"--input-shape names {name!r}, but the model's inputs are {', '.join(names)}"
            )
    params: dict[str, int] = {}  # symbolic dim name -> value, shared across inputs
    for vi in inputs:
        if not vi.type.HasField("tensor_type"):
            raise ModelError(f"input {vi.name!r} is not a tensor; only tensor inputs are supported")
        if vi.name in given:
            params.update(_check_given(vi, given[vi.name]))
    data = dict(data or {})
    if len(names) == 1 and names[0] not in data and "x" in data:
        data[names[0]] = data["x"]  # one input: its array may be saved as 'x'
    from_data, notices = _dims_from_data([vi for vi in inputs if vi.name not in given], data)
    batch: list[str] = []
    for vi in inputs:
        tensor_type = vi.type.tensor_type
        if vi.name in given:
            tensor_type.ClearField("shape")
            for v in given[vi.name]:
                tensor_type.shape.dim.add().dim_value = int(v)
            continue
        if not tensor_type.HasField("shape"):
            raise ShapeError(
                f"input {vi.name!r} has no shape; pass --input-shape {vi.name}=1x3x224x224 "
                "with its real dimensions"
            )
        dims = tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            kind = dim.WhichOneof("value")
            if kind == "dim_value":
                _check_fixed(vi.name, axis, dim.dim_value)
                continue
            param = dim.dim_param if kind == "dim_param" else ""
            if param in params:
                dim.dim_value = params[param]
            elif (vi.name, axis) in from_data:
                dim.dim_value = from_data[vi.name, axis]
            elif _is_batch(dims, axis):
                dim.dim_value = 1
                batch.append(vi.name)
                notices.append(
                    f"batch dimension {param or '?'!r} of input {vi.name!r} set to 1 "
                    f"(pass --input-shape {vi.name}=... to choose another)"
                )
            else:
                raise _symbolic_error(vi, axis, param)
    return notices, batch


def _is_batch(dims, axis: int) -> bool:
    """A symbolic first axis of a rank >= 2 input, or one named like a batch."""
    param = dims[axis].dim_param if dims[axis].WhichOneof("value") == "dim_param" else ""
    return axis == 0 and (len(dims) >= 2 or bool(_BATCH_NAME.match(param)))


def _check_fixed(name: str, axis: int, value: int) -> None:
    if value <= 0:
        raise ShapeError(
            f"input {name!r} has a dimension of size {value} (axis {axis}): "
            + ("there is nothing to run" if value == 0 else "sizes cannot be negative")
            + f"; pass --input-shape {name}=... with its real dimensions"
        )


def _symbolic_error(vi: onnx.ValueInfoProto, axis: int, param: str) -> ShapeError:
    dims = vi.type.tensor_type.shape.dim
    example = [
        str(d.dim_value)
        if d.WhichOneof("value") == "dim_value"
        else ("1" if i == 0 and len(dims) >= 2 else f"<{d.dim_param or '?'}>")
        for i, d in enumerate(dims)
    ]
    return ShapeError(
        f"input {vi.name!r} has symbolic dimension {param or '?'!r} (axis {axis}) "
        f"and no value was given; pass --input-shape {vi.name}={_fmt(example)} "
        f"or give --data with arrays of that shape "
        f"(Python: input_shapes={{{vi.name!r}: (...)}})"
    )


def _dims_from_data(
    inputs: list[onnx.ValueInfoProto], data: dict[str, tuple[int, ...]]
) -> tuple[dict[tuple[str, int], int], list[str]]:
    """{(input, axis): value} for the symbolic non-batch dims that the --data arrays fix, and
    the notices; a dim name shared by inputs whose arrays disagree is refused."""
    seen: dict[str, tuple[int, str]] = {}  # dim name -> (value, input it came from)
    out: dict[tuple[str, int], int] = {}
    for vi in inputs:
        shape = data.get(vi.name)
        dims = vi.type.tensor_type.shape.dim if vi.type.tensor_type.HasField("shape") else []
        if shape is None or len(shape) != len(dims):
            continue  # no array, or one of another rank (refused with the data's own check)
        for axis, dim in enumerate(dims):
            if dim.WhichOneof("value") == "dim_value" or _is_batch(dims, axis):
                continue
            param, value = dim.dim_param, int(shape[axis])
            if value <= 0:
                continue  # an empty axis fixes nothing; the data's check refuses it
            if param and param in seen and seen[param][0] != value:
                raise ShapeError(
                    f"--data arrays disagree on symbolic dimension {param!r}: "
                    f"{seen[param][1]!r} has {seen[param][0]}, {vi.name!r} has {value}; give "
                    f"arrays of one size, or pass --input-shape {vi.name}=..."
                )
            if param:
                seen.setdefault(param, (value, vi.name))
            out[vi.name, axis] = value
    notices = [
        f"symbolic dimension {p!r} set to {v} from the --data arrays (input {src!r}); "
        "--input-shape overrides it"
        for p, (v, src) in seen.items()
    ]
    unnamed = sorted({n for (n, a) in out if not _param_of(inputs, n, a)})
    notices += [f"unnamed symbolic dimension(s) of input {n!r} set from the --data arrays"
                for n in unnamed]  # fmt: skip
    return out, notices


def _param_of(inputs: list[onnx.ValueInfoProto], name: str, axis: int) -> str:
    vi = next(v for v in inputs if v.name == name)
    return vi.type.tensor_type.shape.dim[axis].dim_param


def _check_given(vi: onnx.ValueInfoProto, shape: tuple[int, ...]) -> dict[str, int]:
    values = tuple(shape)
    if not values or any(
        not isinstance(v, int | np.integer) or not 0 < v <= _MAX_DIM for v in values
    ):
        raise ShapeError(
            f"--input-shape for {vi.name!r} must be positive integers like 1x3x224x224 "
            f"(each at most 2**40), got {'x'.join(map(str, values))}"
        )
    tensor_type = vi.type.tensor_type
    if not tensor_type.HasField("shape"):
        return {}
    dims = tensor_type.shape.dim
    if len(dims) != len(values):
        raise ShapeError(
            f"input {vi.name!r} has rank {len(dims)}, but --input-shape gave "
            f"{_fmt([str(v) for v in values])} (rank {len(values)})"
        )
    params: dict[str, int] = {}
    for axis, (dim, v) in enumerate(zip(dims, values, strict=True)):
        # a size of 0 is what some exporters write for "unknown": the given value fills it
        if dim.WhichOneof("value") == "dim_value" and dim.dim_value not in (0, v):
            raise ShapeError(
                f"input {vi.name!r} has fixed size {dim.dim_value} at axis {axis}, but "
                f"--input-shape gave {v}"
            )
        if dim.WhichOneof("value") == "dim_param":
            params[dim.dim_param] = int(v)
    return params
