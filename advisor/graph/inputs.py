"""Model inputs: valid random samples and user-supplied .npz files.

Integer inputs cannot be random: token ids must stay inside the embedding table they
index, masks should be ones. The table size is read from the graph itself (a Gather whose
indices the input feeds, through casts and reshapes), not from names or the zoo.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from advisor.errors import InputDataError

if TYPE_CHECKING:
    from advisor.graph.model import ModelGraph, TensorSpec

#: ops that pass an index tensor through unchanged in value (for finding what it indexes)
_PASS_THROUGH = {
    "Cast", "Reshape", "Unsqueeze", "Squeeze", "Flatten", "Identity", "Expand", "Slice",
    "Transpose", "Tile", "Concat", "Split", "Gather",
}  # fmt: skip
_GATHERS = {"Gather", "GatherElements"}


def index_bound(
    model: onnx.ModelProto, name: str, shapes: dict[str, tuple[int, ...]]
) -> int | None:
    """Size of the axis that tensor `name` indexes in a Gather downstream, if any.

    >>> import onnx.helper as h
    >>> g = h.make_graph([h.make_node("Gather", ["emb", "ids"], ["e"])], "g", [], [])
    >>> index_bound(h.make_model(g), "ids", {"emb": (1000, 64)})
    1000
    """
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in model.graph.node:
        for i, t in enumerate(node.input):
            consumers.setdefault(t, []).append((node, i))
    bounds: list[int] = []
    frontier, seen = [name], {name}
    while frontier:
        tensor = frontier.pop()
        for node, i in consumers.get(tensor, []):
            if node.op_type in _GATHERS and i == 1:
                data = shapes.get(node.input[0])
                axis = next((a.i for a in node.attribute if a.name == "axis"), 0)
                if data:
                    bounds.append(data[axis % len(data)])
                continue
            if node.op_type in _PASS_THROUGH and (i == 0 or node.op_type == "Concat"):
                for out in node.output:
                    if out and out not in seen:
                        seen.add(out)
                        frontier.append(out)
    return min(bounds) if bounds else None


def _sample_one(
    spec: TensorSpec, shape: tuple[int, ...], bound: int | None, rng: np.random.Generator
) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    lower = spec.name.lower()
    if dtype.kind == "b":
        return np.ones(shape, dtype=dtype)
    if dtype.kind in "iu":
        if "mask" in lower:
            return np.ones(shape, dtype=dtype)
        if "token_type" in lower or "segment" in lower:
            return np.zeros(shape, dtype=dtype)
        if "position" in lower and shape:
            pos = np.broadcast_to(np.arange(shape[-1]), shape)
            return (pos % bound if bound else pos).astype(dtype)
        high = bound if bound else 4  # small non-negative ints when nothing bounds them
        return rng.integers(0, high, size=shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def feeds_for(
    model: onnx.ModelProto,
    specs: Sequence[TensorSpec],
    seed: int = 0,
    shapes: dict[str, tuple[int, ...]] | None = None,
) -> dict[str, np.ndarray]:
    """Random feeds for `specs` (input specs) of `model`; see `sample_inputs`."""
    from advisor.graph.model import tensor_specs

    known = {n: s.shape for n, s in tensor_specs(model).items()}
    rng = np.random.default_rng(seed)
    out = {}
    for spec in specs:
        shape = (shapes or {}).get(spec.name, spec.shape)
        bound = index_bound(model, spec.name, known) if np.dtype(spec.dtype).kind in "iu" else None
        out[spec.name] = _sample_one(spec, shape, bound, rng)
    return out


def sample_inputs(
    graph: ModelGraph, batch: int | None = None, seed: int = 0
) -> dict[str, np.ndarray]:
    """Valid random inputs for `graph`; `batch` resizes inputs whose batch was symbolic."""
    shapes = {}
    if batch is not None:
        if batch < 1:
            raise InputDataError(f"batch must be a positive integer, got {batch}")
        for spec in graph.inputs:
            if spec.name in graph.symbolic_batch:
                shapes[spec.name] = (batch, *spec.shape[1:])
    return feeds_for(graph.model, graph.inputs, seed=seed, shapes=shapes)


def load_npz(
    path: str | Path,
    graph: ModelGraph,
    notices: list[str] | None = None,
    max_bytes: int | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Inputs from an .npz keyed by input name (or 'x' for one input); labels 'y'/'labels'.

    The leading (batch) axis may hold any number of samples (at least one); every other axis
    must match. Array headers are checked before anything is loaded (no pickles, no header
    that claims more than the file holds, at most `max_bytes` in all: default the memory
    available now). A cast to the model's dtype adds a line to `notices`.
    """
    from advisor.graph.footprint import memory_limit
    from advisor.graph.npzfile import array_headers

    path = Path(path)
    array_headers(path, max_bytes if max_bytes is not None else memory_limit()[0])
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise InputDataError(f"{path.name} is not a valid .npz file: {exc}") from None
    labels = arrays.get("y", arrays.get("labels"))
    inputs: dict[str, np.ndarray] = {}
    for spec in graph.inputs:
        key = spec.name
        if key not in arrays and len(graph.inputs) == 1 and "x" in arrays:
            key = "x"
        if key not in arrays:
            raise InputDataError(
                f"{path.name} has no array for input {spec.name!r} (keys: "
                f"{', '.join(sorted(arrays)) or 'none'}); save it under that name"
            )
        inputs[spec.name] = _conform(arrays[key], spec, path.name, notices)
    counts = {name: a.shape[0] for name, a in inputs.items() if a.ndim}
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        raise InputDataError(
            f"{path.name}: the array for input {empty[0]!r} holds 0 samples (shape "
            f"{tuple(inputs[empty[0]].shape)}); give at least one sample"
        )
    if len(set(counts.values())) > 1:
        raise InputDataError(
            f"{path.name}: the inputs hold different numbers of samples ("
            + ", ".join(f"{k}: {n}" for k, n in counts.items())
            + "); every input needs one row per sample"
        )
    if labels is not None:
        labels = _check_labels(np.asarray(labels), path.name)
        n = labels.shape[0] if labels.ndim else 1
        if counts and n != next(iter(counts.values())):
            raise InputDataError(
                f"{path.name}: {n} labels for {next(iter(counts.values()))} samples; give one "
                "label per sample"
            )
    return inputs, labels


def _check_labels(labels: np.ndarray, file: str) -> np.ndarray:
    """Class labels: one integer per sample, 0 or more (the model's class count is checked
    against its output when accuracy is computed)."""
    if labels.ndim > 1 and not (labels.ndim == 2 and labels.shape[1] == 1):
        raise InputDataError(
            f"{file}: labels 'y' have shape {tuple(labels.shape)}; give one class index per "
            "sample, shape (N,) (one-hot labels: y.argmax(axis=1))"
        )
    if labels.dtype.kind == "f":
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise InputDataError(f"{file}: labels 'y' must be whole class indices")
        labels = labels.astype(np.int64)
    elif labels.dtype.kind not in "iub":
        raise InputDataError(f"{file}: labels 'y' are {labels.dtype}; give integer class indices")
    if labels.size and labels.min() < 0:
        raise InputDataError(
            f"{file}: labels 'y' hold negative class indices (min {labels.min()}); classes "
            "count from 0"
        )
    return labels


def _conform(
    array: np.ndarray, spec: TensorSpec, file: str, notices: list[str] | None = None
) -> np.ndarray:
    want = np.dtype(spec.dtype)
    if array.ndim != len(spec.shape) or tuple(array.shape[1:]) != tuple(spec.shape[1:]):
        expected = "x".join(["N", *map(str, spec.shape[1:])]) if spec.shape else "scalar"
        raise InputDataError(
            f"{file}: array for input {spec.name!r} has shape {tuple(array.shape)}, "
            f"the model needs {expected}"
        )
    if want.kind in "biuf" and array.dtype.kind not in "biuf":
        raise InputDataError(
            f"{file}: array for input {spec.name!r} is {array.dtype} (not real numbers); the "
            f"model needs {want}"
        )
    if array.dtype.kind == "f" and want.kind in "iub":
        raise InputDataError(
            f"{file}: array for input {spec.name!r} is {array.dtype}, the model needs {want}"
        )
    if array.dtype.kind in "fc" and array.size and not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InputDataError(
            f"{file}: array for input {spec.name!r} holds {bad} NaN or infinite value(s); "
            "every value must be finite"
        )
    if array.dtype != want and notices is not None:
        notices.append(
            f"{file}: array for input {spec.name!r} is {array.dtype}; cast to the model's "
            f"{want}"
            + (
                " (values may lose precision)"
                if array.dtype.itemsize > want.itemsize or array.dtype.kind != want.kind
                else ""
            )  # fmt: skip
        )
    return array.astype(want, copy=False)
