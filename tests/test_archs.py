"""bench/archs.py rebuilds the published architectures faithfully: parameter and MAC counts
match the figures usually quoted for them, and a small one exports to a runnable ONNX file."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bench import archs


@pytest.mark.parametrize("name", sorted(archs.ARCHS))
def test_params_and_macs_match_reference(name):
    spec = archs.ARCHS[name]
    model = archs.build(name, device="meta")  # no weights allocated: fast even for BERT-Large
    params = archs.count_params(model)
    assert params == pytest.approx(spec.ref_params, rel=spec.rel_tol), spec.ref_source
    if spec.ref_macs is not None:
        macs = archs.count_macs(model, archs.example_input(name, device="meta"))
        assert macs == pytest.approx(spec.ref_macs, rel=spec.rel_tol), spec.ref_source


def test_well_known_counts():
    # The anchors, independent of the registry's own reference figures.
    r50 = archs.build("resnet50", device="meta")
    assert archs.count_params(r50) == 25_557_032
    assert archs.count_macs(r50, archs.example_input("resnet50", device="meta")) == pytest.approx(
        4.1e9, rel=0.01
    )
    mv2 = archs.build("mobilenet_v2", device="meta")
    assert archs.count_params(mv2) == 3_504_872
    assert archs.count_macs(
        mv2, archs.example_input("mobilenet_v2", device="meta")
    ) == pytest.approx(0.30e9, rel=0.01)


def test_build_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = archs.build("squeezenet1_1")
    after = torch.rand(1)
    b = archs.build("squeezenet1_1")
    c = archs.build("squeezenet1_1", seed=1)
    assert torch.equal(before, after)
    sa, sb, sc = (next(m.parameters()) for m in (a, b, c))
    assert torch.equal(sa, sb) and not torch.equal(sa, sc)
    assert not a.training


def test_unknown_name_lists_known():
    with pytest.raises(KeyError, match="resnet50"):
        archs.build("resnet51")


def test_export_runs_in_onnx_runtime(tmp_path):
    path = archs.export_onnx("squeezenet1_1", tmp_path / "sq.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = archs.example_input("squeezenet1_1")
    (got,) = sess.run(None, {"input": x.numpy()})
    with torch.no_grad():
        want = archs.build("squeezenet1_1")(x).numpy()
    assert got.shape == (1, 1000)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
