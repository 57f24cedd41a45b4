"""The bundled zoo: manifest, files, measured accuracy, architectures, and `edgedl zoo`."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from advisor.errors import CatalogError, UnknownIdError
from advisor.model import load_model, load_npz
from advisor.zoo.manifest import (
    ZOO_DIR,
    digits_split,
    get_zoo,
    list_zoo,
    torch_model,
    training_data,
)

IDS = ["digits_cnn", "resnet_style", "mobilenetv2_style", "transformer_encoder", "digits_multiexit"]


def test_manifest_lists_the_models_and_their_files_match():
    models = list_zoo()
    assert [m.id for m in models] == IDS
    total = 0
    for m in models:
        data = m.path.read_bytes()
        assert hashlib.sha256(data).hexdigest() == m.sha256, f"{m.id}: rebuild with `make zoo`"
        assert len(data) == m.file_bytes < 5_000_000
        total += len(data)
    assert total < 12_000_000


def test_digits_accuracy_is_recomputed_from_the_held_out_split():
    entry = get_zoo("digits_cnn")
    assert entry.trained and entry.labelled_data is not None
    with np.load(entry.labelled_data) as data:
        x, y = data["x"], data["y"]
    assert x.dtype == np.float32 and x.shape[1:] == (1, 8, 8) and y.dtype == np.int64
    assert np.bincount(y).min() >= 30  # stratified: every digit is in the test split
    sess = ort.InferenceSession(str(entry.path), providers=["CPUExecutionProvider"])
    accuracy = float((sess.run(None, {"x": x})[0].argmax(1) == y).mean())
    assert accuracy == pytest.approx(entry.accuracy, abs=1e-9)
    assert accuracy > 0.9
    # the same data through the advisor's loaders (batch dim fixed to 1 at load)
    graph = load_model("zoo:digits_cnn")
    inputs, labels = load_npz(entry.labelled_data, graph)
    one = ort.InferenceSession(graph.model.SerializeToString(), providers=["CPUExecutionProvider"])
    preds = [one.run(None, {"x": inputs["x"][i : i + 1]})[0].argmax() for i in range(40)]
    assert np.mean(np.array(preds) == labels[:40]) > 0.85


def test_calibration_set_fits_the_model():
    entry = get_zoo("zoo:digits_cnn")
    inputs, labels = load_npz(entry.calibration_data, load_model(entry.path))
    assert inputs["x"].shape[0] >= 100 and labels is None


def test_untrained_models_say_so():
    for m in map(get_zoo, ["resnet_style", "mobilenetv2_style", "transformer_encoder"]):
        assert not m.trained and m.accuracy is None and "untrained" in m.notes


def test_architectures_are_what_they_claim():
    resnet = load_model("zoo:resnet_style")
    assert resnet.inputs[0].shape == (1, 3, 224, 224)
    adds = [n for n in resnet.nodes if n.op_type == "Add"]
    assert len(adds) == 8  # one skip per basic block
    assert sum(c.multi for c in resnet.cuts()) >= 16

    mobile = load_model("zoo:mobilenetv2_style")
    depthwise = [
        n for n in mobile.model.graph.node
        if n.op_type == "Conv" and any(a.name == "group" and a.i > 1 for a in n.attribute)
    ]  # fmt: skip
    assert len(depthwise) == 17  # one per inverted residual block
    assert any(n.op_type == "Add" for n in mobile.nodes)

    enc = load_model("zoo:transformer_encoder")
    assert [(s.name, s.dtype, s.shape) for s in enc.inputs] == [
        ("input_ids", "int64", (1, 128)),
        ("attention_mask", "int64", (1, 128)),
    ]
    assert sum(n.op_type == "Softmax" for n in enc.nodes) == 2
    assert any(n.layer.startswith("layers.1.attn") for n in enc.nodes)


def test_shipped_split_is_the_reproducible_one():
    x_train, y_train, x_test, y_test = digits_split()
    with np.load(get_zoo("digits_cnn").labelled_data) as data:
        np.testing.assert_array_equal(data["x"], x_test)
        np.testing.assert_array_equal(data["y"], y_test)
    x, y = training_data("digits_cnn")
    assert len(x) + len(x_test) == 1797 and (y == y_train).all()
    with pytest.raises(CatalogError, match="untrained"):
        training_data("resnet_style")


def test_digits_torch_model_matches_the_onnx_file():
    torch = pytest.importorskip("torch")
    entry = get_zoo("digits_cnn")
    net = torch_model(entry)
    assert not net.training
    with np.load(entry.labelled_data) as data:
        x = data["x"][:16]
    sess = ort.InferenceSession(str(entry.path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], expected, atol=1e-4)


def test_unknown_id_lists_the_known_ones():
    with pytest.raises(UnknownIdError, match="known ids: digits_cnn, resnet_style"):
        get_zoo("zoo:nope")


def test_broken_manifest_is_a_catalog_error(tmp_path):
    with pytest.raises(CatalogError, match="make zoo"):
        list_zoo(tmp_path)
    manifest = json.loads((ZOO_DIR / "zoo.json").read_text())
    manifest["models"][0]["colour"] = "blue"
    (tmp_path / "zoo.json").write_text(json.dumps(manifest))
    with pytest.raises(CatalogError, match="malformed"):
        list_zoo(tmp_path)


def test_cli_zoo_list_and_show():
    from app.commands.zoo import zoo

    runner = CliRunner()
    result = runner.invoke(zoo, ["list", "--json"])
    assert result.exit_code == 0, result.output
    listed = json.loads(result.output)
    assert [m["id"] for m in listed] == IDS
    digits = listed[0]
    assert digits["accuracy"] == get_zoo("digits_cnn").accuracy and digits["trained"]
    table = runner.invoke(zoo, ["list"]).output
    assert "digits_cnn" in table and "untrained" in table

    shown = json.loads(runner.invoke(zoo, ["show", "resnet_style", "--json"]).output)
    assert shown["graph"]["multi_tensor_cuts"] >= 16
    assert shown["graph"]["loaded_inputs"][0]["shape"] == [1, 3, 224, 224]
    assert "resnet_style" in runner.invoke(zoo, ["show", "resnet_style"]).output


def test_cli_unknown_zoo_id_exits_2():
    from app.cli import cli

    result = CliRunner().invoke(cli, ["zoo", "show", "nope"])
    assert result.exit_code == 2
    assert "unknown zoo model 'nope'" in result.output
