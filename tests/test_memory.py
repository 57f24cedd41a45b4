"""Advice in seconds and in a bounded memory (issue 13): sub-models released once built, no
ONNX Runtime session outliving advise(), builds bounded by a byte budget, each artifact read
once for its digest, the baselines' evaluation taken from the FP32 reference, and no heavy
library imported by `edgedl` where it is not needed."""

from __future__ import annotations

import gc
import importlib.metadata
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import onnx
import onnxruntime as ort
import pytest
from conftest import make_chain_model

import advisor.validate.schedule as schedule
from advisor import AdviceRequest, advise
from advisor.measure import policy
from advisor.measure.heap import release_freed, rss_bytes
from advisor.validate.budget import (
    COPIES,
    PREDICT_COPIES,
    WRITE_COPIES,
    MemoryGate,
    build_bytes,
    loaded_bytes,
    weight_bytes,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture()
def chain_file(tmp_path: Path, monkeypatch) -> str:
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "chain.onnx"
    onnx.save(make_chain_model(), path)
    return str(path)


def _request(path: str, tmp_path: Path, **kw) -> AdviceRequest:
    return AdviceRequest(
        model=path,
        device=kw.pop("device", "host"),
        edge="host",
        link="wifi",
        latency_ms=kw.pop("latency_ms", 1000.0),
        plans=["baseline.device", "baseline.server", "quantize.dynamic_int8"],
        measurement="quick",
        out_dir=str(tmp_path / "out"),
        **kw,
    )


def _spy_prepare(monkeypatch) -> list:
    """Every Prepared that validation builds (one plan at a time, or built then evaluated),
    kept for the test to inspect afterwards."""
    seen: list = []

    def spy(real):
        def spied(*args, **kwargs):
            prep = real(*args, **kwargs)
            seen.append(prep)
            return prep

        return spied

    monkeypatch.setattr(schedule, "prepare", spy(schedule.prepare))
    monkeypatch.setattr(schedule, "evaluate", spy(schedule.evaluate))
    return seen


# --- sub-models and sessions released --------------------------------------------------------


def test_sub_models_are_released_once_built_and_predicted_before(chain_file, tmp_path, monkeypatch):
    seen = _spy_prepare(monkeypatch)
    advice = advise(_request(chain_file, tmp_path, device="rpi4", latency_ms=10_000.0))
    assert {p.plan_id for p in seen} >= {"baseline.device", "quantize.dynamic_int8"}
    for prep in seen:
        steps = [s for s in prep.cand.steps if hasattr(s, "model")]
        assert steps and all(s.model.ByteSize() == 0 for s in steps)  # the protos are gone
        assert all(Path(a).stat().st_size > 0 for a in prep.artifacts)  # the files hold them
    q = next(p for p in seen if p.plan_id == "quantize.dynamic_int8")
    assert q.own[0] is not None  # predicted from its own int8 model before the release
    stage = advice.plan("quantize.dynamic_int8").stages[0]
    assert stage.predicted.method == q.own[0][1]
    assert stage.predicted.method.startswith("the int8 model's own")
    assert stage.predicted.ms == q.own[0][0]


def test_no_session_outlives_advise(chain_file, tmp_path):
    advise(_request(chain_file, tmp_path))
    gc.collect()
    alive = [o for o in gc.get_objects() if type(o) is ort.InferenceSession]
    assert alive == []


def test_both_baselines_take_their_evaluation_from_the_fp32_reference(
    chain_file, tmp_path, monkeypatch
):
    import advisor.validate.core as core

    runs: list = []
    real = core.run_eval
    monkeypatch.setattr(core, "run_eval", lambda cand, *a: runs.append(cand.kind) or real(cand, *a))
    seen = _spy_prepare(monkeypatch)
    advice = advise(_request(chain_file, tmp_path, validate_all=True))
    assert "baseline.device" not in runs and "baseline.server" not in runs
    assert runs == ["quantize.dynamic_int8"]
    base = next(p for p in seen if p.plan_id == "baseline.device")
    assert base.fid.max_abs_error == 0.0  # the reference against itself
    assert advice.plan("baseline.server").fidelity.max_abs_error == 0.0


# --- the memory bound ------------------------------------------------------------------------


def test_a_gate_lets_builds_that_fit_run_together_and_a_larger_one_alone():
    gate = MemoryGate(100)
    order: list[str] = []
    inside = threading.Event()
    leave = threading.Event()

    def first():
        with gate.hold(60):
            order.append("first in")
            inside.set()
            leave.wait(5)
            order.append("first out")

    def second():
        inside.wait(5)
        with gate.hold(60):  # 60 + 60 > 100: waits for the first to leave
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    inside.wait(5)
    time.sleep(0.05)
    assert order == ["first in"] and gate.used == 60
    leave.set()
    for t in threads:
        t.join(5)
    assert order == ["first in", "first out", "second in"] and gate.peak == 60
    with gate.hold(40), gate.hold(40):  # fits: held together
        assert gate.used == 80
    with gate.hold(150):  # larger than the budget: runs alone, never forever blocked
        assert gate.used == 150
    assert gate.used == 0 and gate.peak == 150


def test_build_bytes_count_each_model_once_and_the_predictor_of_a_changed_model():
    from advisor.plans import Candidate, Compute
    from advisor.targets.catalog import get_target, load_catalog

    model = make_chain_model()
    w = weight_bytes(model)
    assert w == sum(onnx.numpy_helper.to_array(t).nbytes for t in model.graph.initializer)
    host, rpi4 = (get_target(t, load_catalog()) for t in ("host", "rpi4"))
    twice = [Compute("a", "device", host, model), Compute("b", "edge", host, model)]
    assert build_bytes(Candidate("k", "t", list(twice))) == COPIES * w
    assert loaded_bytes(Candidate("k", "t", list(twice))) == w
    # a changed model on a target is loaded by the predictor too (as float)
    on_target = Candidate("k", "t", [Compute("a", "device", rpi4, model, precision="int8")])
    assert build_bytes(on_target) == COPIES * w + PREDICT_COPIES * weight_bytes(model, True)
    nodes = frozenset(n.name for n in model.graph.node)  # an unchanged FP32 part: node by node
    fp32 = Candidate("k", "t", [Compute("a", "device", rpi4, model, nodes=nodes)])
    assert build_bytes(fp32) == COPIES * w


def test_builds_are_bounded_by_the_memory_budget(chain_file, tmp_path, monkeypatch):
    gates: list[MemoryGate] = []

    class Recording(MemoryGate):
        def __init__(self, budget: int):
            super().__init__(budget)
            gates.append(self)

    monkeypatch.setattr(schedule, "MemoryGate", Recording)
    monkeypatch.setattr(schedule, "BUILD_MEMORY", 1)  # every build is over it
    advise(_request(chain_file, tmp_path, validate_all=True))
    w = weight_bytes(make_chain_model())  # the FP32 model: the largest build and sessions
    # a build only writes (every plan's sessions load later, together): raised to the
    # largest write beside the largest plan's weights, and never past it
    assert gates and gates[0].budget == WRITE_COPIES * w + w
    assert WRITE_COPIES * w <= gates[0].peak <= gates[0].budget < COPIES * w
    monkeypatch.setattr(schedule, "BUILD_MEMORY", 100 * w)
    advise(_request(chain_file, tmp_path, validate_all=True))
    assert gates[1].budget == 100 * w and gates[1].peak <= 100 * w


def test_freed_heap_goes_back_and_rss_is_read():
    assert release_freed() in (True, False)
    assert rss_bytes() > 10 * 2**20


# --- each artifact read once for its digest ----------------------------------------------------


def test_file_digest_reads_a_file_once_per_version(tmp_path, monkeypatch):
    path = tmp_path / "m.onnx"
    path.write_bytes(b"one")
    reads: list[str] = []
    real = policy.hashlib.file_digest
    monkeypatch.setattr(policy.hashlib, "file_digest", lambda f, h: reads.append(h) or real(f, h))
    first = policy.file_digest(path)
    assert policy.file_digest(str(path)) == first and len(reads) == 1
    path.write_bytes(b"two, longer")  # a new version: read again, a new digest
    assert policy.file_digest(path) != first and len(reads) == 2


# --- the process start -------------------------------------------------------------------------


HEAVY = (
    "torch", "streamlit", "sklearn", "ray", "fastapi", "uvicorn", "altair", "torch_pruning",
    "pandas",
)  # fmt: skip


def test_the_cli_and_the_advise_path_import_no_heavy_library():
    code = (
        "import sys; from app.cli import cli; import app.commands.advise, advisor.pipeline; "
        "import advisor.validate.schedule, advisor.runs; "
        f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_the_run_store_works_without_importing_pandas(tmp_path):
    code = (
        "import sys; from advisor.runs import RunStore, sqlite_utils; "
        f"db = sqlite_utils.Database({str(tmp_path / 'r.sqlite')!r}); "
        "db['t'].insert({'a': 1}); print(db['t'].count, 'pandas' in sys.modules); "
        "import pandas; print(pandas.__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "False", "pandas"]  # and pandas imports later as usual


def test_ml_dtypes_is_a_release_that_imports_fast():
    major, minor = (int(x) for x in importlib.metadata.version("ml_dtypes").split(".")[:2])
    assert (major, minor) < (0, 7)  # 0.7.0 spends ~0.6 s in its import (pyproject.toml)


# --- shape inference without the weights' bytes ------------------------------------------------


def test_shape_inference_leaves_large_weights_out_and_infers_the_same_shapes():
    from advisor.graph import repair
    from advisor.graph.shell import weightless

    model = make_chain_model(channels=2048)  # fc.w: 10 x 32768 floats, 1.3 MB
    assert weightless(model) is not None  # the large weight goes in as dims only
    shell = weightless(model)
    assert all(len(t.raw_data) + len(t.float_data) == 0 for t in shell.graph.initializer
               if t.name == "fc.w")  # fmt: skip
    ours = onnx.ModelProto()
    ours.CopyFrom(model)
    repair.infer_shapes(ours)
    full = onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    assert ours.SerializeToString() == full.SerializeToString()  # the very same model
    assert weightless(make_chain_model()) is None  # nothing large: the model itself


def test_extracted_models_are_checked_without_their_weights_and_still_refused_when_broken():
    from advisor.graph.shell import check_extracted

    model = make_chain_model(channels=2048)  # a 1.3 MB weight: checked as an empty tensor
    check_extracted(model)
    for breakage in ("op", "input"):
        bad = onnx.ModelProto()
        bad.CopyFrom(model)
        if breakage == "op":
            bad.graph.node[1].op_type = "Frobnicate"
        else:
            bad.graph.node[1].input[0] = "nowhere"
        with pytest.raises(onnx.checker.ValidationError):
            check_extracted(bad)
    assert len(model.graph.initializer[2].raw_data) > 1_000_000  # the model itself untouched


def test_a_model_is_serialized_once_and_past_the_limit_loaded_from_external_data(monkeypatch):
    from advisor.measure import timing

    model = make_chain_model()
    assert timing.serialized(model) == model.SerializeToString()
    assert timing.session_source(model) == model.SerializeToString()
    monkeypatch.setattr(timing, "_PROTO_LIMIT", 16)  # as if past protobuf's 2 GB
    assert timing.serialized(model) is None and timing.session_source(model) is model
    sess = timing.make_session(model)  # through a file with external data
    assert sess._edgedl_tmp is not None and [o.name for o in sess.get_outputs()] == ["y"]


def test_walking_the_plans_after_the_window_runs_no_stage_again(chain_file, tmp_path, monkeypatch):
    import advisor.validate.core as core

    during: list[int] = []
    real_measure, real_run = core.measure, ort.InferenceSession.run

    def measure(*a, **k):
        during.append(0)
        try:
            return real_measure(*a, **k)
        finally:
            during.pop()

    calls: list[str] = []

    def run(self, *a, **k):
        if during:
            calls.append("run")
        return real_run(self, *a, **k)

    monkeypatch.setattr(schedule, "measure", measure)
    monkeypatch.setattr(ort.InferenceSession, "run", run)
    advice = advise(_request(chain_file, tmp_path, validate_all=True))
    assert calls == []  # every stage's outputs came from the window's warm-up run
    assert all(p.measured_host is not None for p in advice.plans if p.status != "skipped")
