"""Synthetic chain and DAG ONNX models of exactly N nodes, built with onnx.helper.

Used by the scale benchmark: planner time against graph size, with no profiling. Both models
take a wide input `x[1, in_width]` that the first node projects down to `width` features, so
the cheapest cut under a slow link is a proper split (the planners then do their full work:
scan, min-cut and sub-model extraction), not an endpoint.

- `chain_model(n)`: MatMul → Add → Relu repeated; every cut crosses one tensor.
- `dag_model(n)`: residual blocks (MatMul → Relu → MatMul → Add with the block input) and
  branching blocks (two MatMuls from one tensor, joined by Add, then Relu), alternating; cuts
  inside a block cross two tensors.

>>> m = dag_model(12)
>>> len(m.graph.node)
12
"""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh
from onnx import TensorProto, numpy_helper

__all__ = ["chain_model", "dag_model"]

OPSET = 17


class _Builder:
    """Appends layer-coded nodes (`b3.matmul1`) and their small weights until N are made."""

    def __init__(self, n: int, in_width: int, width: int, seed: int):
        if n < 1:
            raise ValueError(f"a synthetic model needs at least one node (got n={n})")
        self.n, self.width = n, width
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self.x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, in_width])
        # the first node: project the wide input down (the cheap cut follows it)
        self.last = self.matmul("stem", "x", in_width)

    @property
    def left(self) -> int:
        return self.n - len(self.nodes)

    def _weight(self, name: str, shape: tuple[int, ...]) -> str:
        scale = 0.5 / np.sqrt(shape[0])  # keeps activations bounded through deep residuals
        arr = (self.rng.standard_normal(shape) * scale).astype(np.float32)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def node(self, op: str, name: str, inputs: list[str]) -> str:
        out = f"{name}.out"
        self.nodes.append(oh.make_node(op, inputs, [out], name))
        return out

    def matmul(self, name: str, x: str, fan_in: int | None = None) -> str:
        w = self._weight(f"{name}.weight", (fan_in or self.width, self.width))
        return self.node("MatMul", name, [x, w])

    def add_bias(self, name: str, x: str) -> str:
        b = self._weight(f"{name}.bias", (self.width,))
        return self.node("Add", name, [x, b])

    def model(self, name: str) -> onnx.ModelProto:
        y = oh.make_tensor_value_info(self.last, TensorProto.FLOAT, [1, self.width])
        graph = oh.make_graph(self.nodes, name, [self.x], [y], initializer=self.inits)
        model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", OPSET)])
        model.ir_version = 8  # opset 17's IR; helper's default (newest) is refused by older ORT
        onnx.checker.check_model(model)
        if len(model.graph.node) != self.n:  # a bug here would skew every figure: fail loudly
            raise RuntimeError(f"built {len(model.graph.node)} nodes, wanted {self.n}")
        return model


def chain_model(n: int, *, in_width: int = 1024, width: int = 16, seed: int = 0) -> onnx.ModelProto:
    """A straight chain of `n` nodes: stem MatMul, then (MatMul, Add, Relu) repeated."""
    b = _Builder(n, in_width, width, seed)
    i = 0
    while b.left:
        step = i % 3
        if step == 0:
            b.last = b.matmul(f"l{i}.matmul", b.last)
        elif step == 1:
            b.last = b.add_bias(f"l{i}.add", b.last)
        else:
            b.last = b.node("Relu", f"l{i}.relu", [b.last])
        i += 1
    return b.model(f"synthetic_chain_{n}")


def dag_model(n: int, *, in_width: int = 1024, width: int = 16, seed: int = 0) -> onnx.ModelProto:
    """`n` nodes of alternating residual and branching blocks (4 nodes each), Relu fill."""
    b = _Builder(n, in_width, width, seed)
    k = 0
    while b.left >= 4:
        x = b.last
        if k % 2 == 0:  # residual: x -> matmul -> relu -> matmul -> add(x)
            h = b.matmul(f"b{k}.matmul1", x)
            h = b.node("Relu", f"b{k}.relu", [h])
            h = b.matmul(f"b{k}.matmul2", h)
            b.last = b.node("Add", f"b{k}.add", [h, x])
        else:  # branching: two parallel matmuls from x, joined
            p = b.matmul(f"b{k}.branch_a", x)
            q = b.matmul(f"b{k}.branch_b", x)
            h = b.node("Add", f"b{k}.join", [p, q])
            b.last = b.node("Relu", f"b{k}.relu", [h])
        k += 1
    while b.left:
        b.last = b.node("Relu", f"tail{b.left}.relu", [b.last])
    return b.model(f"synthetic_dag_{n}")
