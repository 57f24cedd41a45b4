"""Operator classes: the groups of ONNX ops that run at one attained rate on a machine.

A target's speed is measured or fitted per class (`advisor.measure.suite` times one model per
class and size; `advisor.targets.predict` reads a node's class to pick the rate). The classes:

    conv        Conv with a k x k kernel (k > 1), grouped or not, but not depthwise
    conv1x1     pointwise Conv (1 x 1 kernel)
    depthwise   Conv with one group per input channel
    dense       MatMul, Gemm, Einsum (and their quantized forms)
    elementwise arithmetic, activations, casts: memory-bound, one pass over the data
    norm        normalisations and Softmax: a few passes over the data
    pool        pooling and reductions
    other       data movement and shape ops (Reshape, Concat, Gather...): dispatch only

>>> op_class("Conv", {"group": 1}, [(1, 3, 8, 8), (16, 3, 3, 3)])
'conv'
>>> op_class("Conv", {"group": 32}, [(1, 32, 8, 8), (32, 1, 3, 3)])
'depthwise'
>>> op_class("MatMul", {}, [(1, 64), (64, 10)])
'dense'
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

__all__ = ["OpClass", "OP_CLASSES", "COMPUTE_CLASSES", "MEMORY_CLASSES", "op_class"]

OpClass = Literal["conv", "conv1x1", "depthwise", "dense", "elementwise", "norm", "pool", "other"]
OP_CLASSES: tuple[OpClass, ...] = (
    "conv",
    "conv1x1",
    "depthwise",
    "dense",
    "elementwise",
    "norm",
    "pool",
    "other",
)
#: classes whose time follows FLOPs; the others follow the bytes they move
COMPUTE_CLASSES: frozenset[str] = frozenset({"conv", "conv1x1", "depthwise", "dense"})
MEMORY_CLASSES: frozenset[str] = frozenset({"elementwise", "norm", "pool"})

_CONV = {"Conv", "ConvInteger", "QLinearConv", "ConvTranspose", "FusedConv"}
_DENSE = {"MatMul", "Gemm", "Einsum", "MatMulInteger", "QLinearMatMul", "FusedMatMul",
          "DynamicQuantizeMatMul", "MatMulNBits", "FusedGemm", "QGemm", "Attention",
          "MultiHeadAttention", "QAttention"}  # fmt: skip
_NORM = {"Softmax", "LogSoftmax", "LayerNormalization", "BatchNormalization",
         "InstanceNormalization", "GroupNormalization", "SimplifiedLayerNormalization",
         "SkipLayerNormalization", "LpNormalization", "RMSNormalization"}  # fmt: skip
_POOL = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
         "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL2",
         "ReduceL1", "ReduceLogSumExp", "ReduceSumSquare", "ArgMax", "ArgMin",
         "TopK"}  # fmt: skip
_OTHER = {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Transpose", "Concat", "Split",
          "Slice", "Gather", "GatherElements", "GatherND", "Shape", "Size", "Expand",
          "Identity", "Constant", "ConstantOfShape", "Range", "Tile", "Pad", "Resize",
          "ScatterND", "ScatterElements", "NonZero", "Where", "Cast", "CastLike",
          "DepthToSpace", "SpaceToDepth", "If", "Loop", "Scan", "Dropout",
          "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}  # fmt: skip


def op_class(
    op_type: str, attrs: Mapping[str, Any], input_shapes: Sequence[tuple[int, ...] | None]
) -> OpClass:
    """The class of one node from its op type, attributes and input shapes."""
    if op_type in _CONV:
        w = input_shapes[3] if op_type == "QLinearConv" and len(input_shapes) > 3 else None
        w = w or (input_shapes[1] if len(input_shapes) > 1 else None)
        group = int(attrs.get("group", 1) or 1)
        if w is not None and len(w) >= 3:
            channels_in = w[1] * group
            if group > 1 and group == channels_in:
                return "depthwise"
            if math.prod(w[2:]) == 1:
                return "conv1x1"
        return "conv"
    if op_type in _DENSE:
        return "dense"
    if op_type in _NORM:
        return "norm"
    if op_type in _POOL:
        return "pool"
    if op_type in _OTHER:
        return "other"
    return "elementwise"
