"""Data that fixes shapes, calibration disjoint from evaluation, non-finite outputs, memory
estimates and a run store that cannot lose an advice (issue 16), through the CLI where the
behaviour is the user's."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from click.testing import CliRunner
from onnx import TensorProto, numpy_helper

from app.cli import cli


def _runner() -> CliRunner:
    """stdout and stderr apart: click >= 8.2 always, click 8.1 with mix_stderr=False."""
    try:
        return CliRunner(mix_stderr=False)  # type: ignore[call-arg]
    except TypeError:
        return CliRunner()


ZOO = Path(__file__).resolve().parent.parent / "data" / "zoo"
ADVISE = ["--device", "rpi4", "--link", "wifi", "--latency-ms", "50", "--runs", "3", "--quiet"]


def make_dynamic_transformer(vocab: int = 40, dim: int = 8, classes: int = 3, max_len: int = 64):
    """One self-attention layer over token ids, batch and sequence axes both symbolic: the
    position table is sliced by the runtime sequence length (Shape -> Range -> Gather)."""
    rng = np.random.default_rng(7)

    def w(name, *shape):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.3, name)

    def i64(name, v):
        return numpy_helper.from_array(np.array(v, np.int64), name)

    nodes = [
        oh.make_node("Gather", ["emb", "input_ids"], ["e"], "embed"),
        oh.make_node("Shape", ["input_ids"], ["shp"], "shape"),
        oh.make_node("Gather", ["shp", "one"], ["seq"], "seq_len"),
        oh.make_node("Range", ["zero", "seq", "one"], ["pos"], "positions"),
        oh.make_node("Gather", ["pos_table", "pos"], ["pe"], "pos_embed"),
        oh.make_node("Add", ["e", "pe"], ["h"], "add_pos"),
        oh.make_node("MatMul", ["h", "wq"], ["q"], "attn.q"),
        oh.make_node("MatMul", ["h", "wk"], ["k"], "attn.k"),
        oh.make_node("MatMul", ["h", "wv"], ["v"], "attn.v"),
        oh.make_node("Transpose", ["k"], ["kt"], "attn.kt", perm=[0, 2, 1]),
        oh.make_node("MatMul", ["q", "kt"], ["s"], "attn.scores"),
        oh.make_node("Cast", ["attention_mask"], ["mf"], "mask.cast", to=TensorProto.FLOAT),
        oh.make_node("Sub", ["mf", "fone"], ["mneg"], "mask.invert"),
        oh.make_node("Mul", ["mneg", "big"], ["madd"], "mask.scale"),
        oh.make_node("Unsqueeze", ["madd", "one_axis"], ["m3"], "mask.unsqueeze"),
        oh.make_node("Add", ["s", "m3"], ["sm"], "attn.mask"),
        oh.make_node("Softmax", ["sm"], ["a"], "attn.softmax", axis=-1),
        oh.make_node("MatMul", ["a", "v"], ["o"], "attn.out"),
        oh.make_node("ReduceMean", ["o"], ["pooled"], "pool", axes=[1], keepdims=0),
        oh.make_node("MatMul", ["pooled", "cls"], ["logits"], "classifier"),
    ]
    inits = [
        w("emb", vocab, dim), w("pos_table", max_len, dim), w("wq", dim, dim),
        w("wk", dim, dim), w("wv", dim, dim), w("cls", dim, classes),
        i64("zero", 0), i64("one", 1), i64("one_axis", [1]),
        numpy_helper.from_array(np.array(1.0, np.float32), "fone"),
        numpy_helper.from_array(np.array(1e4, np.float32), "big"),
    ]  # fmt: skip
    i64t = TensorProto.INT64
    graph = oh.make_graph(
        nodes,
        "dyn_transformer",
        [
            oh.make_tensor_value_info("input_ids", i64t, ["batch", "seq"]),
            oh.make_tensor_value_info("attention_mask", i64t, ["batch", "seq"]),
        ],
        [oh.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", classes])],
        inits,
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _advise(*args: str) -> tuple[int, str, str]:
    r = _runner().invoke(cli, ["advise", *args, *ADVISE])
    return r.exit_code, r.stdout, r.stderr


def test_dynamic_transformer_takes_its_shapes_from_data(tmp_path, cache):
    model = tmp_path / "t.onnx"
    onnx.save(make_dynamic_transformer(), model)
    ids = (np.arange(32, dtype=np.int64) % 40).reshape(1, 32)
    np.savez(tmp_path / "sample.npz", input_ids=ids, attention_mask=np.ones_like(ids))
    data = ["--data", str(tmp_path / "sample.npz"), "--out", str(tmp_path / "out")]
    code, out, err = _advise(str(model), *data, "--plan", "baseline.device", "--json")
    assert code in (0, 1), err
    advice = json.loads(out)
    assert advice["model"]["inputs"] == {"input_ids": [1, 32], "attention_mask": [1, 32]}
    assert any("'seq' set to 32 from the --data arrays" in n for n in advice["notices"])
    # without data the same model asks for a shape; --input-shape still wins over --data
    code, _, err = _advise(str(model), "--plan", "baseline.device")
    assert code == 2 and "--input-shape input_ids=1x<seq>" in err
    shapes = ["--input-shape", "input_ids=1x16", "--input-shape", "attention_mask=1x16"]
    code, _, err = _advise(str(model), *data, *shapes, "--plan", "baseline.device")
    assert code == 2 and "shape (1, 32), the model needs Nx16" in err, err


def test_digits_accuracy_is_measured_on_samples_disjoint_from_calibration(tmp_path, cache):
    data = ZOO / "digits_test.npz"
    total = int(np.load(data)["y"].shape[0])
    args = ["digits_cnn", "--data", str(data), "--plan", "quantize.static_int8", "--json"]
    code, out, err = _advise(*args, "--out", str(tmp_path / "out"))
    assert code in (0, 1), err
    advice = json.loads(out)
    counts = advice["samples"]
    assert counts["calibration"] == 64 and counts["evaluation"] == total - 64
    assert "held back" in counts["calibration_source"]
    note = next(n for n in advice["notices"] if n.startswith("calibrated on"))
    assert note.startswith(f"calibrated on 64, evaluated on {total - 64}")
    plan = next(p for p in advice["plans"] if p["id"] == "quantize.static_int8")
    assert plan["params"]["calibration_samples"] == 64
    assert plan["fidelity"]["samples"] == total - 64
    # the same split in Python: no evaluation sample is a calibration sample
    from advisor.graph.data import eval_data
    from advisor.model import load_model
    from advisor.zoo import get_zoo

    graph = load_model("digits_cnn")
    d = eval_data(graph, str(data), get_zoo("digits_cnn"), 512)

    def digest(s):
        return hashlib.sha1(s["x"].tobytes()).hexdigest()

    assert len(d.calib) == 64 and len(d.inputs) == total - 64 == len(d.labels)
    assert not {digest(s) for s in d.calib} & {digest(s) for s in d.inputs}
    assert np.array_equal(d.labels, np.load(data)["y"][64:])
    # with --calib-data every sample of --data is evaluated
    sep = eval_data(graph, str(data), get_zoo("digits_cnn"), 512, str(ZOO / "digits_calib.npz"))
    assert sep.counts.evaluation == total and "--calib-data" in sep.counts.calibration_source


def test_too_few_samples_to_split(tmp_path, cache):
    model = tmp_path / "t.onnx"
    onnx.save(make_dynamic_transformer(), model)
    ids = np.ones((2, 8), np.int64)
    np.savez(tmp_path / "two.npz", input_ids=ids, attention_mask=ids)
    args = [str(model), "--data", str(tmp_path / "two.npz"), "--out", str(tmp_path / "out")]
    code, _, err = _advise(*args, "--plan", "quantize.static_int8")
    assert code == 2
    assert "holds 2 sample(s), too few" in err and "--calib-data" in err
    code, out, err = _advise(*args, "--plan", "baseline.device")  # no calibration needed
    assert code in (0, 1), err
    assert "calibrated on 0, evaluated on 2" in out and "no plan asked for calibrates" in out
    code, out, err = _advise(*args)  # every plan: static INT8 skips, the rest run
    assert code in (0, 1), err
    assert "too few to hold back" in out and "calibrated on 0, evaluated on 2" in out


def test_nan_weights_are_never_recommended(tmp_path, cache):
    model = make_dynamic_transformer()
    for i, init in enumerate(model.graph.initializer):
        if init.name == "cls":
            nan = np.full(tuple(init.dims), np.nan, np.float32)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(nan, "cls"))
    onnx.save(model, tmp_path / "nan.onnx")
    shapes = ["--input-shape", "input_ids=1x8", "--input-shape", "attention_mask=1x8"]
    code, out, err = _advise(str(tmp_path / "nan.onnx"), *shapes, "--out", str(tmp_path / "o"))
    assert code == 2 and out == ""
    assert "output 'logits' holds 24 NaN or infinite value(s) of 24" in err


def test_nonfinite_allowed_compares_the_finite_samples(tmp_path, cache):
    x = oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1])
    y = oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1])
    g = oh.make_graph([oh.make_node("Log", ["x"], ["y"], "log")], "log", [x], [y])
    m = oh.make_model(g, opset_imports=[oh.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.save(m, tmp_path / "log.onnx")
    xs = np.array([1.0, -1.0, 2.0, 3.0, -5.0, 4.0, 5.0, 6.0, 7.0, 8.0], np.float32)
    np.savez(tmp_path / "d.npz", x=xs.reshape(10, 1))
    args = [str(tmp_path / "log.onnx"), "--data", str(tmp_path / "d.npz"), "--json"]
    code, out, err = _advise(*args, "--allow-nonfinite", "--plan", "baseline.device")
    assert code in (0, 1), err
    advice = json.loads(out)
    # no plan asked for calibrates, so none is held back: 10 evaluated, 2 (-1, -5) give NaN
    assert advice["samples"]["evaluation"] == 8 and advice["samples"]["nonfinite_dropped"] == 2
    assert advice["samples"]["calibration"] == 0
    assert advice["plans"][0]["fidelity"]["samples"] == 8
    assert any(n.startswith("--allow-nonfinite: ") for n in advice["notices"])


def test_memory_estimate_and_limit():
    from advisor.errors import ModelError
    from advisor.graph.footprint import check_memory, graph_estimate
    from advisor.model import load_model

    est = graph_estimate(load_model(make_dynamic_transformer(), input_shapes={
        "input_ids": (1, 16), "attention_mask": (1, 16)}))  # fmt: skip
    assert est.largest == "pos_table" and est.largest_bytes == 64 * 8 * 4
    check_memory(est, max_memory=est.bytes)  # at the limit: fine
    with pytest.raises(ModelError, match=r"largest tensor is 'pos_table', 64x8.*--max-memory"):
        check_memory(est, max_memory=est.bytes - 1)


def test_a_corrupt_run_store_never_loses_the_advice(tmp_path, cache):
    cache.mkdir(parents=True)
    (cache / "runs.sqlite").write_bytes(random.Random(0).randbytes(3000))
    report = tmp_path / "r.md"
    args = ["digits_cnn", "--plan", "baseline.device", "--report", str(report)]
    code, out, err = _advise(*args, "--out", str(tmp_path / "out"))
    assert code in (0, 1)
    assert "baseline.device" in out and report.is_file()
    assert f"warning: the run was not stored in {cache / 'runs.sqlite'}" in err


def test_report_db_missing_creates_nothing(tmp_path, cache):
    db = tmp_path / "none.sqlite"
    r = _runner().invoke(cli, ["report", "latest", "--db", str(db)])
    assert r.exit_code == 2 and "no runs database" in r.stderr
    assert not db.exists()
    r = _runner().invoke(cli, ["runs", "list"])
    assert r.exit_code == 0 and "no stored runs" in r.stdout
    assert not (cache / "runs.sqlite").exists()
