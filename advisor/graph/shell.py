"""Weightless copies of a model: what shape inference and onnx.checker read without its
weights' bytes (handing them the model itself serializes every weight)."""

from __future__ import annotations

import numpy as np
import onnx

__all__ = ["check_extracted", "weightless"]

_SHELL_MIN_BYTES = 1 << 20  # initializers this large enter shape inference without their bytes


def check_extracted(model: onnx.ModelProto) -> None:
    """onnx.checker on a model extracted from one checked at load (a sub-model, an exit
    stage): ops, opsets, names, order; its large initializers enter as empty tensors of
    their type. Its weights are copies of tensors the load already checked, and handing the
    checker the model itself serializes every weight (0.1 s per 100 MB sub-model, ten of
    them for one ResNet-50 advise). Raises onnx.checker.ValidationError."""
    onnx.checker.check_model(weightless(model, empty=True) or model)


def weightless(model: onnx.ModelProto, empty: bool = False) -> onnx.ModelProto | None:
    """The model with each large initializer (1 MB or more: weights, never the small
    tensors a shape is computed from) reduced to its name, type and dims, for shape
    inference, which reads no weight's values: handing it the model itself serializes and
    parses every weight four times (~0.4 s and ~400 MB transient on a 100 MB model). None
    (infer on the model itself) when there is nothing to leave out, or when nodes hold
    subgraphs (inference writes their shapes inside them). `empty`: each of those is a
    zero-element tensor instead (what onnx.checker accepts as a tensor without data)."""
    g = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
           for n in g.node for a in n.attribute):  # fmt: skip
        return None
    big = {t.name for t in g.initializer if _nbytes(t) >= _SHELL_MIN_BYTES}
    if not big:
        return None
    shell = onnx.ModelProto()
    for field in ("ir_version", "producer_name", "producer_version", "domain", "model_version"):
        setattr(shell, field, getattr(model, field))
    shell.opset_import.extend(model.opset_import)
    shell.functions.extend(model.functions)
    sg = shell.graph
    sg.name = g.name
    sg.node.extend(g.node)
    sg.input.extend(g.input)
    sg.output.extend(g.output)
    sg.value_info.extend(g.value_info)
    for t in g.initializer:
        if t.name in big:
            dims = [0] if empty else list(t.dims)
            sg.initializer.append(onnx.TensorProto(name=t.name, data_type=t.data_type, dims=dims))
        else:
            sg.initializer.append(t)
    return shell


def _nbytes(t: onnx.TensorProto) -> int:
    """A tensor's size from its dims and type, without reading its data."""
    try:
        size = onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
    except (KeyError, TypeError, ValueError):
        return 0
    return int(np.prod(t.dims, dtype=np.int64)) * size
