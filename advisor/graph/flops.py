"""Per-node cost counting: MACs and FLOPs from an ONNX node and its concrete tensor shapes.

Why hand-written: no maintained counter is a dependency of this project (`onnx_tool` and
`onnx-opcounter` are not installed and each pulls in its own shape engine), and ONNX Runtime
does not report FLOPs. The counter below covers the ops that carry the work in CNNs and
Transformers; anything it does not know counts one FLOP per output element, which is the
right order of magnitude for the element-wise and attention-style ops that remain.

Conventions (the usual ones, as in fvcore/thop):
  - multiply-accumulate ops (Conv, ConvTranspose, Gemm, MatMul, Einsum and their quantized
    forms): FLOPs = 2 * MACs, plus one per output element for a bias;
  - element-wise ops: one FLOP per output element; normalizations and Softmax a few;
  - pure data movement (Reshape, Transpose, Concat, Gather, Slice, ...): zero.

>>> count_node("Gemm", {}, [(1, 512), (512, 10)], [(1, 10)])
Cost(macs=5120, flops=10240)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

Shape = tuple[int, ...]


class Cost(NamedTuple):
    macs: int
    flops: int


CounterFn = Callable[[Mapping[str, Any], Sequence[Shape | None], Sequence[Shape | None]], Cost]

#: op type -> counter; one registry, filled by the decorator below.
COUNTERS: dict[str, CounterFn] = {}


def _numel(shape: Shape | None) -> int:
    return math.prod(shape) if shape is not None else 0


def _register(*ops: str) -> Callable[[CounterFn], CounterFn]:
    def deco(fn: CounterFn) -> CounterFn:
        for op in ops:
            COUNTERS[op] = fn
        return fn

    return deco


def _per_output(k: int) -> CounterFn:
    def fn(attrs, ins, outs):
        return Cost(0, k * sum(_numel(o) for o in outs))

    return fn


def _zero(attrs, ins, outs):
    return Cost(0, 0)


def _get(seq: Sequence[Shape | None], i: int) -> Shape | None:
    return seq[i] if i < len(seq) else None


# --- multiply-accumulate ops --------------------------------------------------------------


def _conv_cost(attrs, x: Shape | None, w: Shape | None, y: Shape | None, bias: bool) -> Cost:
    if w is None or y is None:
        return Cost(0, _numel(y))
    # weight (C_out, C_in/group, k...): each output element needs C_in/group * prod(k) MACs
    macs = _numel(y) * math.prod(w[1:])
    return Cost(macs, 2 * macs + (_numel(y) if bias else 0))


@_register("Conv")
def _conv(attrs, ins, outs):
    return _conv_cost(attrs, _get(ins, 0), _get(ins, 1), _get(outs, 0), _get(ins, 2) is not None)


@_register("ConvInteger")
def _conv_integer(attrs, ins, outs):
    return _conv_cost(attrs, _get(ins, 0), _get(ins, 1), _get(outs, 0), False)


@_register("QLinearConv")
def _qlinear_conv(attrs, ins, outs):
    return _conv_cost(attrs, _get(ins, 0), _get(ins, 3), _get(outs, 0), _get(ins, 8) is not None)


@_register("ConvTranspose")
def _conv_transpose(attrs, ins, outs):
    x, w, y = _get(ins, 0), _get(ins, 1), _get(outs, 0)
    if x is None or w is None:
        return Cost(0, _numel(y))
    # weight (C_in, C_out/group, k...): every input element scatters into C_out/group * prod(k)
    macs = _numel(x) * math.prod(w[1:])
    return Cost(macs, 2 * macs + (_numel(y) if _get(ins, 2) is not None else 0))


@_register("Gemm")
def _gemm(attrs, ins, outs):
    a, y = _get(ins, 0), _get(outs, 0)
    if a is None or y is None or len(a) != 2:
        return Cost(0, _numel(y))
    k = a[0] if attrs.get("transA", 0) else a[1]
    macs = _numel(y) * k
    return Cost(macs, 2 * macs + (_numel(y) if _get(ins, 2) is not None else 0))


def _matmul_cost(a: Shape | None, y: Shape | None) -> Cost:
    if a is None or y is None or len(a) == 0:
        return Cost(0, _numel(y))
    macs = _numel(y) * a[-1]  # batched/broadcast: every output element is a K-long dot product
    return Cost(macs, 2 * macs)


@_register("MatMul", "MatMulInteger", "FusedMatMul")
def _matmul(attrs, ins, outs):
    return _matmul_cost(_get(ins, 0), _get(outs, 0))


@_register("QLinearMatMul")
def _qlinear_matmul(attrs, ins, outs):
    return _matmul_cost(_get(ins, 0), _get(outs, 0))


@_register("Einsum")
def _einsum(attrs, ins, outs):
    eq = attrs.get("equation", "")
    eq = eq.decode() if isinstance(eq, bytes) else eq
    lhs = eq.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for term, shape in zip(lhs, ins, strict=False):
        if shape is None or "..." in term or len(term) != len(shape):
            return Cost(0, _numel(_get(outs, 0)))
        sizes.update(zip(term, shape, strict=True))
    macs = math.prod(sizes.values()) if len(lhs) > 1 else 0
    return Cost(macs, 2 * macs if macs else _numel(_get(outs, 0)))


# --- pooling, normalization, reductions ---------------------------------------------------


@_register("MaxPool", "AveragePool", "LpPool")
def _pool(attrs, ins, outs):
    kernel = attrs.get("kernel_shape") or [1]
    return Cost(0, _numel(_get(outs, 0)) * math.prod(kernel))


@_register(
    "GlobalAveragePool",
    "GlobalMaxPool",
    "GlobalLpPool",
    "ReduceMean",
    "ReduceSum",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceSumSquare",
    "ReduceLogSumExp",
    "ArgMax",
    "ArgMin",
    "CumSum",
)
def _reduce(attrs, ins, outs):
    return Cost(0, _numel(_get(ins, 0)))


COUNTERS.update(
    {
        "BatchNormalization": _per_output(2),  # inference: scale and shift
        "InstanceNormalization": _per_output(5),
        "GroupNormalization": _per_output(5),
        "LayerNormalization": _per_output(5),  # mean, variance, normalize, scale, shift
        "SimplifiedLayerNormalization": _per_output(4),
        "SkipLayerNormalization": _per_output(6),
        "LpNormalization": _per_output(3),
        "Softmax": _per_output(3),  # exp, sum, divide
        "LogSoftmax": _per_output(4),
        "Hardmax": _per_output(1),
        "QuantizeLinear": _per_output(2),
        "DequantizeLinear": _per_output(2),
        "DynamicQuantizeLinear": _per_output(3),
        "Gelu": _per_output(8),
        "FastGelu": _per_output(8),
        "BiasGelu": _per_output(9),
    }
)

# pure data movement and shape bookkeeping: no arithmetic
for _op in (
    "Reshape Flatten Squeeze Unsqueeze Transpose Concat Split Slice Gather GatherElements "
    "GatherND Scatter ScatterElements ScatterND Expand Tile Pad Identity Shape Size Constant "
    "ConstantOfShape Range DepthToSpace SpaceToDepth NonZero Dropout Compress OneHot Trilu "
    "EyeLike ReverseSequence Optional OptionalGetElement OptionalHasElement"
).split():
    COUNTERS[_op] = _zero


def count_node(
    op_type: str,
    attrs: Mapping[str, Any],
    input_shapes: Sequence[Shape | None],
    output_shapes: Sequence[Shape | None],
) -> Cost:
    """Cost of one node; unknown ops (and If/Loop/Scan) count one FLOP per output element.

    Missing optional inputs are passed as None.
    """
    fn = COUNTERS.get(op_type)
    if fn is None:
        return Cost(0, sum(_numel(o) for o in output_shapes))
    return fn(attrs, list(input_shapes), list(output_shapes))
