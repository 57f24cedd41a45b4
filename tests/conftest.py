"""Shared fixtures: tiny models built with onnx.helper, layer-coded node names.

Builders are plain functions (call them with other sizes); the fixtures return fresh
ModelProtos. `onnx_file(model)` saves one into the test's tmp folder.

    chain_model          conv -> relu -> pool -> flatten -> fc -> softmax, input x[1,3,8,8]
    residual_model       stem, a basic block whose add reads the stem output (skip), head
    symbolic_batch_model x[batch,16] -> MatMul -> Relu (batch symbolic)
    symbolic_seq_model   x[batch,seq,16] (seq symbolic: needs an input shape)
    int64_model          input_ids/attention_mask int64 [1,6] -> embedding Gather -> pooled logits
    if_model             an If node whose branches read outer-scope tensors
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from onnx import TensorProto, numpy_helper

OPSET = 17


def _w(name: str, shape: Sequence[int], seed: int) -> TensorProto:
    rng = np.random.default_rng(seed)
    return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)


def _model(nodes, name, inputs, outputs, inits) -> onnx.ModelProto:
    graph = oh.make_graph(nodes, name, inputs, outputs, initializer=inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def make_chain_model(channels: int = 4, classes: int = 10) -> onnx.ModelProto:
    """x[1,3,8,8] -> conv1 -> relu1 -> pool1 -> flatten -> fc -> softmax -> y[1,classes]."""
    c = channels
    nodes = [
        oh.make_node("Conv", ["x", "conv1.w", "conv1.b"], ["c1"], "conv1", pads=[1, 1, 1, 1]),
        oh.make_node("Relu", ["c1"], ["r1"], "relu1"),
        oh.make_node("MaxPool", ["r1"], ["p1"], "pool1", kernel_shape=[2, 2], strides=[2, 2]),
        oh.make_node("Flatten", ["p1"], ["f"], "flatten"),
        oh.make_node("Gemm", ["f", "fc.w", "fc.b"], ["logits"], "fc", transB=1),
        oh.make_node("Softmax", ["logits"], ["y"], "softmax", axis=1),
    ]
    inits = [
        _w("conv1.w", (c, 3, 3, 3), 1),
        _w("conv1.b", (c,), 2),
        _w("fc.w", (classes, c * 16), 3),
        _w("fc.b", (classes,), 4),
    ]
    return _model(
        nodes,
        "chain",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])],
        inits,
    )


def make_residual_model(channels: int = 4, classes: int = 5) -> onnx.ModelProto:
    """A stem, one basic block whose Add reads the stem output (a skip), and a head."""
    c = channels
    pads = [1, 1, 1, 1]
    nodes = [
        oh.make_node("Conv", ["x", "stem.w"], ["s"], "stem.conv", pads=pads),
        oh.make_node("Relu", ["s"], ["s_act"], "stem.relu"),
        oh.make_node("Conv", ["s_act", "block.w1"], ["b1"], "block.conv1", pads=pads),
        oh.make_node("Relu", ["b1"], ["b1_act"], "block.relu1"),
        oh.make_node("Conv", ["b1_act", "block.w2"], ["b2"], "block.conv2", pads=pads),
        oh.make_node("Add", ["b2", "s_act"], ["sum"], "block.add"),
        oh.make_node("Relu", ["sum"], ["out"], "block.relu2"),
        oh.make_node("GlobalAveragePool", ["out"], ["gap"], "head.pool"),
        oh.make_node("Flatten", ["gap"], ["feat"], "head.flatten"),
        oh.make_node("Gemm", ["feat", "head.w", "head.b"], ["y"], "head.fc", transB=1),
    ]
    inits = [
        _w("stem.w", (c, 3, 3, 3), 11),
        _w("block.w1", (c, c, 3, 3), 12),
        _w("block.w2", (c, c, 3, 3), 13),
        _w("head.w", (classes, c), 14),
        _w("head.b", (classes,), 15),
    ]
    return _model(
        nodes,
        "residual",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, classes])],
        inits,
    )


def make_symbolic_model(dims: Sequence[int | str] = ("batch", 16), out: int = 8) -> onnx.ModelProto:
    """x[dims] -> MatMul W[dims[-1], out] -> Relu -> y; string dims are symbolic."""
    lead = list(dims[:-1])
    nodes = [
        oh.make_node("MatMul", ["x", "fc.w"], ["h"], "fc"),
        oh.make_node("Relu", ["h"], ["y"], "relu"),
    ]
    return _model(
        nodes,
        "symbolic",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [*lead, out])],
        [_w("fc.w", (int(dims[-1]), out), 21)],
    )


def make_int64_model(
    seq: int | str = 6, vocab: int = 50, dim: int = 8, classes: int = 3, batch: int | str = 1
) -> onnx.ModelProto:
    """Token ids + attention mask (int64) -> embedding Gather -> masked sum -> logits."""
    i64 = TensorProto.INT64
    nodes = [
        oh.make_node("Gather", ["emb.w", "input_ids"], ["e"], "embed"),
        oh.make_node("Cast", ["attention_mask"], ["m"], "mask.cast", to=TensorProto.FLOAT),
        oh.make_node("Unsqueeze", ["m", "axes_last"], ["m3"], "mask.unsqueeze"),
        oh.make_node("Mul", ["e", "m3"], ["em"], "mask.apply"),
        oh.make_node("ReduceSum", ["em", "axes_seq"], ["pooled"], "pool", keepdims=0),
        oh.make_node("MatMul", ["pooled", "cls.w"], ["logits"], "classifier"),
    ]
    inits = [
        _w("emb.w", (vocab, dim), 31),
        _w("cls.w", (dim, classes), 32),
        numpy_helper.from_array(np.array([-1], np.int64), "axes_last"),
        numpy_helper.from_array(np.array([1], np.int64), "axes_seq"),
    ]
    return _model(
        nodes,
        "int64_inputs",
        [
            oh.make_tensor_value_info("input_ids", i64, [batch, seq]),
            oh.make_tensor_value_info("attention_mask", i64, [batch, seq]),
        ],
        [oh.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        inits,
    )


def make_if_model() -> onnx.ModelProto:
    """x[1,4] -> relu -> sum > 0 ? (r + x) : (r * x) -> neg; branches read outer r and x."""
    f = TensorProto.FLOAT
    then_g = oh.make_graph(
        [oh.make_node("Add", ["r", "x"], ["t_out"], "then.add")],
        "then", [], [oh.make_tensor_value_info("t_out", f, [1, 4])],
    )  # fmt: skip
    else_g = oh.make_graph(
        [oh.make_node("Mul", ["r", "x"], ["e_out"], "else.mul")],
        "else", [], [oh.make_tensor_value_info("e_out", f, [1, 4])],
    )  # fmt: skip
    nodes = [
        oh.make_node("Relu", ["x"], ["r"], "relu"),
        oh.make_node("ReduceSum", ["r"], ["s"], "sum", keepdims=0),
        oh.make_node("Greater", ["s", "zero"], ["cond"], "greater"),
        oh.make_node("If", ["cond"], ["branch"], "if", then_branch=then_g, else_branch=else_g),
        oh.make_node("Neg", ["branch"], ["y"], "neg"),
    ]
    return _model(
        nodes,
        "if_model",
        [oh.make_tensor_value_info("x", f, [1, 4])],
        [oh.make_tensor_value_info("y", f, [1, 4])],
        [numpy_helper.from_array(np.array(0.0, np.float32), "zero")],
    )


def save_with_external_data(
    model: onnx.ModelProto, folder: Path, name: str = "model.onnx", location: str = "model.data"
) -> Path:
    """Save a copy of `model` with every initializer in one external file next to it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    copy = onnx.ModelProto()
    copy.CopyFrom(model)  # onnx.save_model moves the data out of the proto it is given
    onnx.save_model(
        copy, path, save_as_external_data=True, all_tensors_to_one_file=True,
        location=location, size_threshold=0,
    )  # fmt: skip
    return path


@pytest.fixture
def chain_model() -> onnx.ModelProto:
    return make_chain_model()


@pytest.fixture
def residual_model() -> onnx.ModelProto:
    return make_residual_model()


@pytest.fixture
def symbolic_batch_model() -> onnx.ModelProto:
    return make_symbolic_model(("batch", 16))


@pytest.fixture
def symbolic_seq_model() -> onnx.ModelProto:
    return make_symbolic_model(("batch", "seq", 16))


@pytest.fixture
def int64_model() -> onnx.ModelProto:
    return make_int64_model()


@pytest.fixture
def if_model() -> onnx.ModelProto:
    return make_if_model()


@pytest.fixture
def onnx_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: onnx_file(model, name='model.onnx') -> path of the saved file."""

    def save(model: onnx.ModelProto, name: str = "model.onnx") -> Path:
        path = tmp_path / name
        onnx.save_model(model, path)
        return path

    return save
