"""advisor.graph.model: loading every kind of source, shapes, costs, inputs, and bad input."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort
import pytest
from conftest import (
    make_chain_model,
    make_int64_model,
    make_symbolic_model,
    save_with_external_data,
)
from onnx import TensorProto

from advisor.errors import InputDataError, ModelError, ShapeError, UnknownIdError
from advisor.graph.flops import count_node
from advisor.model import layer_name, load_model, load_npz, sample_inputs


def _run(model: onnx.ModelProto, feeds: dict) -> list[np.ndarray]:
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


# --- loading and costs --------------------------------------------------------------------


def test_chain_from_file_has_shapes_and_costs(chain_model, onnx_file):
    g = load_model(onnx_file(chain_model))
    assert [s.shape for s in g.inputs] == [(1, 3, 8, 8)]
    assert [s.shape for s in g.outputs] == [(1, 10)]
    assert [n.name for n in g.nodes] == ["conv1", "relu1", "pool1", "flatten", "fc", "softmax"]
    conv = g.node("conv1")
    assert conv.macs == 1 * 4 * 8 * 8 * 3 * 3 * 3  # output elements x C_in x k x k
    assert conv.flops == 2 * conv.macs + 4 * 8 * 8  # plus the bias add
    assert conv.param_bytes == (4 * 3 * 3 * 3 + 4) * 4
    assert conv.input_bytes == 3 * 8 * 8 * 4 and conv.output_bytes == 4 * 8 * 8 * 4
    assert g.node("fc").macs == 4 * 16 * 10
    assert g.node("flatten").flops == 0
    assert g.tensor("p1").shape == (1, 4, 4, 4)
    assert g.total_params_bytes == sum(n.param_bytes for n in g.nodes)
    assert len(g.digest) == 64 and g.notices == ()


def test_unnamed_and_duplicate_nodes_get_unique_names():
    model = make_chain_model()
    model.graph.node[0].name = ""
    model.graph.node[1].name = "dup"
    model.graph.node[2].name = "dup"
    names = [n.name for n in load_model(model).nodes]
    assert names[0] == "Conv_0"
    assert len(set(names)) == len(names) and "dup" in names


@pytest.mark.parametrize(
    ("op", "attrs", "ins", "outs", "macs"),
    [
        ("Conv", {"group": 8}, [(1, 8, 10, 10), (8, 1, 3, 3)], [(1, 8, 10, 10)], 800 * 9),
        ("ConvTranspose", {}, [(1, 4, 5, 5), (4, 2, 2, 2)], [(1, 2, 10, 10)], 100 * 8),
        ("Gemm", {"transA": 1}, [(7, 3), (7, 5)], [(3, 5)], 15 * 7),
        ("MatMul", {}, [(2, 4, 6, 8), (2, 4, 8, 3)], [(2, 4, 6, 3)], 144 * 8),
        ("Einsum", {"equation": "bij,bjk->bik"}, [(2, 3, 4), (2, 4, 5)], [(2, 3, 5)], 120),
        ("MaxPool", {"kernel_shape": [2, 2]}, [(1, 4, 8, 8)], [(1, 4, 4, 4)], 0),
    ],
)
def test_cost_table(op, attrs, ins, outs, macs):
    cost = count_node(op, attrs, ins, outs)
    assert cost.macs == macs
    assert cost.flops == (2 * macs if macs else 4 * 4 * 4 * 4)


def test_unknown_op_counts_output_elements():
    assert count_node("SomeNewOp", {}, [(3, 4)], [(3, 4), (2,)]).flops == 14


def test_layer_names_come_from_torch_metadata():
    node = oh.make_node("Gemm", ["a", "fc.1.weight"], ["b"], "node_linear")
    onnx.helper.set_metadata_props(
        node, {"pkg.torch.onnx.name_scopes": "['', 'fc', 'fc.1', 'linear']"}
    )
    assert layer_name(node) == "fc.1"
    fused = oh.make_node("Conv", ["x", "layer1.conv.weight"], ["y"], "node_Conv_3")
    onnx.helper.set_metadata_props(
        fused,
        {
            "pkg.torch.onnx.name_scopes": "['', 'layer1.bn', '_native_batch_norm']",
            "pkg.onnxscript.rewriter.rule_name": "FuseBatchNormIntoConv",
        },
    )
    assert layer_name(fused) == "layer1.conv"
    assert layer_name(oh.make_node("Relu", ["a"], ["b"], "plain")) == "plain"


def test_torch_module_is_exported_with_module_paths(capfd):
    torch = pytest.importorskip("torch")

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
            self.head = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 16, 3))

        def forward(self, x):
            return self.head(torch.relu(self.conv(x)))

    net = Net().eval()
    x = torch.randn(1, 1, 4, 4)
    capfd.readouterr()
    g = load_model(net, example_inputs=x)
    # the exporter's progress lines would break `edgedl ... --json` on stdout
    assert capfd.readouterr().out == ""
    assert g.source == "torch:Net"
    layers = {n.layer for n in g.nodes}
    assert {"conv", "head.1"} <= layers
    got = _run(g.model, {g.inputs[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, net(x).detach().numpy(), atol=1e-5)
    with pytest.raises(ModelError, match="example_inputs"):
        load_model(net)


def test_zoo_sources_and_missing_paths(tmp_path):
    assert load_model("zoo:digits_cnn").source == "zoo:digits_cnn"
    assert load_model("digits_cnn").source == "zoo:digits_cnn"
    with pytest.raises(UnknownIdError, match="known ids"):
        load_model("no_such_model")
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "absent.onnx")
    with pytest.raises(ModelError, match="folder"):
        load_model(tmp_path)


def test_save_round_trip(tmp_path, residual_model):
    g = load_model(residual_model)
    again = load_model(g.save(tmp_path / "out" / "m.onnx"))
    assert again.digest == g.digest


# --- external data ------------------------------------------------------------------------


def test_external_data_is_loaded(tmp_path, chain_model):
    path = save_with_external_data(chain_model, tmp_path / "m")
    assert (tmp_path / "m" / "model.data").stat().st_size > 0
    g = load_model(path)
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(_run(g.model, {"x": x})[0], _run(chain_model, {"x": x})[0])


def _point_external_data(path, location: str) -> None:
    model = onnx.load(path, load_external_data=False)
    for init in model.graph.initializer:
        for entry in init.external_data:
            if entry.key == "location":
                entry.value = location
    onnx.save_model(model, path)


def test_missing_external_data_names_the_file(tmp_path, chain_model):
    path = save_with_external_data(chain_model, tmp_path, location="weights.bin")
    os.remove(tmp_path / "weights.bin")
    with pytest.raises(ModelError, match="external data file 'weights.bin'.*missing"):
        load_model(path)


@pytest.mark.parametrize("location", ["../outside.bin", "/etc/passwd", "sub/../../x.bin"])
def test_external_data_outside_the_folder_is_refused(tmp_path, chain_model, location):
    path = save_with_external_data(chain_model, tmp_path / "m")
    (tmp_path / "outside.bin").write_bytes((tmp_path / "m" / "model.data").read_bytes())
    _point_external_data(path, location)
    with pytest.raises(ModelError, match="path traversal"):
        load_model(path)


def test_external_data_symlink_escaping_the_folder_is_refused(tmp_path, chain_model):
    path = save_with_external_data(chain_model, tmp_path / "m")
    (tmp_path / "outside.bin").write_bytes((tmp_path / "m" / "model.data").read_bytes())
    (tmp_path / "m" / "link.bin").symlink_to(tmp_path / "outside.bin")
    _point_external_data(path, "link.bin")
    with pytest.raises(ModelError, match="path traversal"):
        load_model(path)


def test_truncated_external_data_is_reported(tmp_path, chain_model):
    path = save_with_external_data(chain_model, tmp_path)
    data = tmp_path / "model.data"
    data.write_bytes(data.read_bytes()[:100])
    with pytest.raises(ModelError, match="too short"):
        load_model(path)


# --- bad models ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["truncated", "random", "empty"])
def test_corrupt_files_are_not_valid_onnx(tmp_path, chain_model, kind):
    data = chain_model.SerializeToString()
    content = {
        "truncated": data[: len(data) // 2],
        "random": np.random.default_rng(0).bytes(512),
        "empty": b"",
    }[kind]
    path = tmp_path / "bad.onnx"
    path.write_bytes(content)
    with pytest.raises(ModelError, match="not a valid ONNX model"):
        load_model(path)


def _one_op_model(op: str, domain: str = "") -> onnx.ModelProto:
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    node = oh.make_node(op, ["x"], ["t"], "the_node", domain=domain)
    relu = oh.make_node("Relu", ["t"], ["y"], "relu")
    opsets = [oh.make_opsetid("", 17)] + ([oh.make_opsetid(domain, 1)] if domain else [])
    return oh.make_model(oh.make_graph([node, relu], "g", [x], [y]), opset_imports=opsets)


@pytest.mark.parametrize("domain", ["", "com.example"])
def test_unknown_op_is_named(domain):
    with pytest.raises(ModelError, match="operator 'Frobnicate'.*the_node"):
        load_model(_one_op_model("Frobnicate", domain))


def test_an_op_onnx_infers_but_runtime_lacks_is_named_by_the_load_check():
    """Every shape is known (declared), so only the load check after compacting (a session
    of the loader's bytes) can find that ONNX Runtime lacks the op."""
    model = _one_op_model("Frobnicate", "com.example")
    model.graph.value_info.append(oh.make_tensor_value_info("t", TensorProto.FLOAT, [1, 4]))
    with pytest.raises(ModelError, match="does not know operator 'Frobnicate'.*the_node"):
        load_model(model)


def test_the_loaders_bytes_serve_its_first_readers_until_released(chain_model):
    """load_model serializes the model once (to compact it); the digest and the first
    sessions read those bytes, which go once released."""
    import hashlib

    g = load_model(chain_model)
    data = g.serialized()
    assert data is not None and data == g.model.SerializeToString()
    g.release_bytes()
    assert g.serialized() is None
    assert g.digest == hashlib.sha256(data).hexdigest()
    assert load_model(chain_model, compact=False).serialized() is None


def test_releasing_the_model_keeps_the_per_node_view(chain_model):
    g = load_model(chain_model)
    digest, nodes, params = g.digest, g.nodes, g.total_params_bytes
    g.release_model()
    assert g.model.ByteSize() == 0 and g.serialized() is None
    assert (g.digest, g.nodes, g.total_params_bytes) == (digest, nodes, params)
    assert g.tensor(g.outputs[0].name) == g.outputs[0]


def test_runtime_contrib_op_loads_and_gets_shapes():
    # onnx's shape inference does not know com.microsoft ops; one ORT run fills the shape
    g = load_model(_one_op_model("Gelu", "com.microsoft"))
    assert g.tensor("t").shape == (1, 4)
    assert g.node("the_node").flops == 4 * 8


# --- shapes -------------------------------------------------------------------------------


def test_symbolic_batch_defaults_to_one_with_a_notice(symbolic_batch_model):
    g = load_model(symbolic_batch_model)
    assert g.inputs[0].shape == (1, 16) and g.outputs[0].shape == (1, 8)
    assert g.symbolic_batch == ("x",)
    assert "batch dimension 'batch' of input 'x' set to 1" in g.notices[0]
    assert sample_inputs(g, batch=3)["x"].shape == (3, 16)


def test_other_symbolic_dims_need_a_shape(symbolic_seq_model):
    with pytest.raises(ShapeError, match=r"'x'.*'seq'.*--input-shape x=1x<seq>x16"):
        load_model(symbolic_seq_model)
    g = load_model(symbolic_seq_model, input_shapes={"x": (2, 7, 16)})
    assert g.inputs[0].shape == (2, 7, 16) and g.outputs[0].shape == (2, 7, 8)
    assert g.notices == ()


def test_shared_symbolic_dims_take_the_given_value():
    model = make_int64_model(seq="seq", batch="batch")
    g = load_model(model, input_shapes={"input_ids": (1, 10)})
    assert [s.shape for s in g.inputs] == [(1, 10), (1, 10)]


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        ({"y": (1, 4, 16)}, "inputs are x"),
        ({"x": (1, 16)}, "rank 3"),
        ({"x": (1, 4, 15)}, "fixed size 16 at axis 2"),
        ({"x": (0, 4, 16)}, "positive integers"),
    ],
)
def test_bad_input_shapes(shapes, message):
    with pytest.raises(ShapeError, match=message):
        load_model(make_symbolic_model(("batch", "seq", 16)), input_shapes=shapes)


# --- inputs -------------------------------------------------------------------------------


def test_integer_inputs_get_valid_values(int64_model):
    g = load_model(int64_model)
    feeds = sample_inputs(g, seed=3)
    ids, mask = feeds["input_ids"], feeds["attention_mask"]
    assert ids.dtype == np.int64 and ids.min() >= 0 and ids.max() < 50
    assert (mask == 1).all()
    assert np.isfinite(_run(g.model, feeds)[0]).all()


def test_load_npz(tmp_path, chain_model, int64_model):
    chain = load_model(chain_model)
    x = np.zeros((5, 3, 8, 8), np.float32)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(5))
    inputs, labels = load_npz(tmp_path / "a.npz", chain)
    assert inputs["x"].shape == (5, 3, 8, 8) and list(labels) == [0, 1, 2, 3, 4]

    g = load_model(int64_model)
    ids = np.ones((2, 6), np.int32)
    np.savez(tmp_path / "b.npz", input_ids=ids, attention_mask=ids)
    inputs, labels = load_npz(tmp_path / "b.npz", g)
    assert inputs["input_ids"].dtype == np.int64 and labels is None
    # two inputs of different lengths, no labels: the message is about the inputs
    np.savez(tmp_path / "c.npz", input_ids=ids, attention_mask=np.ones((3, 6), np.int32))
    with pytest.raises(InputDataError, match="input_ids: 2, attention_mask: 3"):
        load_npz(tmp_path / "c.npz", g)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"x": np.zeros((5, 3, 8, 9), np.float32)}, r"shape \(5, 3, 8, 9\).*Nx3x8x8"),
        ({"images": np.zeros((5, 3, 8, 8), np.float32)}, "no array for input 'x'"),
        ({"x": np.zeros((5, 3, 8, 8), np.float32), "y": np.arange(4)}, "4 labels for 5"),
        ({"x": np.full((2, 3, 8, 8), np.nan, np.float32)}, "384 NaN or infinite"),
        ({"x": np.zeros((2, 3, 8, 8), np.float32), "y": np.array([0, -1])}, "negative class"),
        ({"x": np.zeros((2, 3, 8, 8), np.float32), "y": np.array([0.5, 1])}, "whole class"),
        ({"x": np.zeros((2, 3, 8, 8), np.float32), "y": np.array(["a", "b"])}, "integer class"),
    ],
)
def test_bad_npz(tmp_path, chain_model, arrays, message):
    np.savez(tmp_path / "d.npz", **arrays)
    with pytest.raises(InputDataError, match=message):
        load_npz(tmp_path / "d.npz", load_model(chain_model))


def test_npz_missing_or_corrupt(tmp_path, chain_model):
    g = load_model(chain_model)
    with pytest.raises(InputDataError, match="not found"):
        load_npz(tmp_path / "nope.npz", g)
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(InputDataError, match="not an .npz archive"):
        load_npz(tmp_path / "bad.npz", g)
    np.savez(tmp_path / "f.npz", x=np.zeros((1, 3, 8, 8), np.float64))
    assert load_npz(tmp_path / "f.npz", g)[0]["x"].dtype == np.float32
    int_model = load_model(make_int64_model())
    np.savez(tmp_path / "g.npz", input_ids=np.zeros((1, 6)), attention_mask=np.zeros((1, 6)))
    with pytest.raises(InputDataError, match="float64, the model needs int64"):
        load_npz(tmp_path / "g.npz", int_model)


def test_subnormal_weights_get_a_notice(tmp_path):
    """Weights in the subnormal range slow x86 CPUs down many times: load says so."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = np.full((4, 4), 1e-40, np.float32)
    w[0, 0] = 0.5
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [numpy_helper.from_array(w, "w")],
    )
    path = tmp_path / "sub.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    notices = load_model(str(path)).notices
    assert any("15 weight value(s) in 1 tensor(s) (w) are subnormal" in n for n in notices)
    assert not any("subnormal" in n for n in load_model("digits_cnn").notices)


def test_nodes_out_of_topological_order_are_sorted_with_a_notice(residual_model):
    """ORT's float16 converter appends its input Casts last; ORT runs such files, so loading
    one sorts the nodes (stably) instead of refusing it."""
    shuffled = onnx.ModelProto()
    shuffled.CopyFrom(residual_model)
    nodes = list(shuffled.graph.node)
    del shuffled.graph.node[:]
    shuffled.graph.node.extend([*nodes[1:], nodes[0]])  # the first node moved last
    g = load_model(shuffled)
    assert [n.op_type for n in g.model.graph.node] == [n.op_type for n in nodes]
    assert any("topological order" in n for n in g.notices)
    assert not any("topological order" in n for n in load_model(residual_model).notices)


def test_an_fp16_conversion_loads_without_an_fp32_subnormal_notice():
    from onnxruntime.transformers.float16 import convert_float_to_float16

    fp16 = convert_float_to_float16(load_model("digits_cnn").model, keep_io_types=True)
    g = load_model(fp16)
    assert g.precision == "fp16"
    assert not any("subnormal" in n for n in g.notices)
