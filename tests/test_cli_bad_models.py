"""Issue 3's bad inputs through the real CLI: exit 2, one line that says what to do."""

from __future__ import annotations

import os
import random

import onnx
import onnx.helper as oh
import pytest
from click.testing import CliRunner
from conftest import make_chain_model, make_symbolic_model, save_with_external_data

from app.cli import cli


def _truncated(tmp):
    p = tmp / "m.onnx"
    onnx.save(make_chain_model(), p)
    p.write_bytes(p.read_bytes()[:200])
    return p


def _random_bytes(tmp):
    p = tmp / "m.onnx"
    p.write_bytes(random.Random(0).randbytes(4096))  # seeded: the same bytes every run
    return p


def _unknown_op(tmp):
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])
    g = oh.make_graph([oh.make_node("FrobnicateTensor", ["x"], ["y"], name="frob")], "g", [x], [y])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    m.ir_version = 8
    p = tmp / "m.onnx"
    onnx.save(m, p)
    return p


def _missing_external(tmp):
    p = save_with_external_data(make_chain_model(), tmp, location="weights.bin")
    os.remove(tmp / "weights.bin")
    return p


def _traversal(tmp):
    folder = tmp / "m"
    p = save_with_external_data(make_chain_model(), folder)
    (tmp / "outside.bin").write_bytes((folder / "model.data").read_bytes())
    model = onnx.load(p, load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = "../outside.bin"
    onnx.save_model(model, p)
    return p


def _symbolic(tmp):
    p = tmp / "m.onnx"
    onnx.save(make_symbolic_model(("batch", "seq", 16)), p)
    return p


def _relu(tmp, shape=(1, 4), opset=17, nodes=True):
    """A one-Relu model (or, nodes=False, a graph with no nodes) saved as m.onnx."""
    x = oh.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(shape))
    y = oh.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(shape))
    relu = [oh.make_node("Relu", ["x"], ["y"], name="r")] if nodes else []
    g = oh.make_graph(relu, "g", [x], [y] if nodes else [x])
    p = tmp / "m.onnx"
    onnx.save(oh.make_model(g, opset_imports=[oh.make_opsetid("", opset)]), p)
    return p


def _no_nodes(tmp):
    return _relu(tmp, nodes=False)


def _zero_dim(tmp):
    return _relu(tmp, shape=(0, 4))


def _future_opset(tmp):
    return _relu(tmp, opset=99)


def _torch_checkpoint(tmp):
    import torch

    p = tmp / "m.onnx"
    torch.save({"w": torch.zeros(2)}, p)
    return p


def _torch_legacy_checkpoint(tmp):
    import torch

    p = tmp / "m.onnx"
    torch.save({"w": torch.zeros(2)}, p, _use_new_zipfile_serialization=False)
    return p


CASES = [
    (_torch_checkpoint, "PyTorch checkpoint"),
    (_torch_legacy_checkpoint, "PyTorch checkpoint"),
    (_no_nodes, "has no nodes"),
    (_zero_dim, "dimension of size 0"),
    (_future_opset, "Opset 99"),  # ORT's reason survives, its C++ signature does not
    (_truncated, "not a valid ONNX model"),
    (_random_bytes, "not a valid ONNX model"),
    (_unknown_op, "FrobnicateTensor"),
    (_missing_external, "weights.bin"),
    (_traversal, "path traversal"),
    (_symbolic, "--input-shape"),
]


@pytest.mark.parametrize(("make", "message"), CASES, ids=[c[0].__name__ for c in CASES])
@pytest.mark.parametrize("command", ["profile", "advise"])
def test_bad_model_exits_2_with_one_line(tmp_path, monkeypatch, make, message, command):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    path = make(tmp_path)
    args = [command, str(path)]
    if command == "advise":
        args += ["--device", "rpi4", "--link", "wifi", "--latency-ms", "5", "--quiet"]
    r = CliRunner().invoke(cli, args)
    lines = r.output.strip().splitlines()
    assert r.exit_code == 2, r.output
    assert len(lines) == 1 and message in lines[0], r.output
    assert "Traceback" not in r.output
