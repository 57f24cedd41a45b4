"""A sweep's cells share their model's work, counted (not timed): advising several cells of
one model with one MeasurementMemo loads and profiles the model once, opens one ORT session
and runs the evaluation set once per distinct artifact, converts and cuts the model once
per distinct input, and gives the same plans, artifact bytes, fidelity and predictions as
advising each cell on its own."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pytest

from advisor import AdviceRequest, advise
from advisor.measure.memo import MeasurementMemo

PLANS = [
    "baseline.device",
    "quantize.dynamic_int8",
    "convert.fp16",
    "partition.chain",
    "partition.dag",
]
# 2 devices with fp16 × 2 links × 2 latency targets (one no plan meets) = 8 cells
CELLS = [
    (device, link, latency)
    for device in ("jetson_nano", "snapdragon_778g")
    for link in ("wifi", "4g")
    for latency in (0.001, 50.0)
]
COUNTED = [
    ("advisor.graph.prepare", "load_for_advice"),
    ("advisor.measure.profile", "profile_model"),
    ("onnxruntime.transformers.float16", "convert_float_to_float16"),
    ("advisor.plans.partition_dag", "min_cut_head"),
    ("advisor.validate.core", "run_eval"),
]


def _request(cell: tuple[str, str, float], out: Path) -> AdviceRequest:
    device, link, latency = cell
    return AdviceRequest(
        model="digits_cnn",
        device=device,
        edge="edge_t4",
        link=link,
        latency_ms=latency,
        runs=3,
        plans=PLANS,
        out_dir=str(out / f"{device}-{link}-{latency:g}"),
    )


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The 8 cells advised with one memo, then each on its own; calls counted per phase."""
    import importlib

    calls: Counter[str] = Counter()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.mktemp("sharing-cache")))
        for module, name in COUNTED:
            mod = importlib.import_module(module)
            real = getattr(mod, name)

            def counted(*args, _real=real, _name=name, **kwargs):
                calls[_name] += 1
                return _real(*args, **kwargs)

            mp.setattr(mod, name, counted)
        out = tmp_path_factory.mktemp("sharing-out")
        memo = MeasurementMemo()
        shared = [advise(_request(c, out / "shared"), memo=memo) for c in CELLS]
        shared_calls = Counter(calls)
        calls.clear()
        alone = [advise(_request(c, out / "alone")) for c in CELLS]
        built = {_digest(str(f)) for f in (out / "shared").rglob("*.onnx")}
        yield shared, alone, memo, shared_calls, Counter(calls), built


def _digest(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_a_model_is_loaded_and_profiled_once_per_sweep_not_once_per_cell(runs):
    _, _, memo, shared, alone, _ = runs
    assert shared["load_for_advice"] == 1 and alone["load_for_advice"] == len(CELLS)
    assert shared["profile_model"] == 1 and alone["profile_model"] == len(CELLS)
    assert memo.loads == 1 and len(memo.hosts) == 1


def test_conversions_and_cuts_are_built_once_per_distinct_input(runs):
    _, _, _, shared, alone, _ = runs
    # FP16 conversion depends on the model alone; both devices list fp16
    assert shared["convert_float_to_float16"] == 1
    assert alone["convert_float_to_float16"] == len(CELLS)
    # the min cut depends on the device's and server's figures and the link, not on the
    # latency target: one per (device, link)
    pairs = {(d, link) for d, link, _ in CELLS}
    assert shared["min_cut_head"] == len(pairs) and alone["min_cut_head"] == len(CELLS)


def test_each_distinct_artifact_gets_one_session_and_one_evaluation_run(runs):
    _, _, memo, calls, alone_calls, built = runs
    # every artifact any cell wrote (one per plan here) got one session and one run on the
    # evaluation set, whichever cell built it first
    assert memo.sessions_made == len(built)
    # ...except the FP32 model's, whose outputs are its reference (seed_reference_run)
    assert calls["run_eval"] == memo.misses == len(built) - 1
    # on its own, every cell runs every plan it built but the FP32 model (its reference)
    assert alone_calls["run_eval"] == memo.hits + memo.misses - len(CELLS)
    assert memo.hits >= len(built) * (len(CELLS) - 1) - len(built)


def test_shared_work_gives_what_each_cell_computes_on_its_own(runs):
    shared, alone, _, _, _, _ = runs
    for s, a in zip(shared, alone, strict=True):
        assert [p.id for p in s.plans] == [p.id for p in a.plans]
        for ps, pa in zip(s.plans, a.plans, strict=True):
            # the same artifact bytes, the same outputs, the same predicted_target figures
            assert [_digest(f) for f in ps.artifacts] == [_digest(f) for f in pa.artifacts]
            assert ps.fidelity == pa.fidelity
            assert (ps.predicted is None) == (pa.predicted is None)
            if ps.predicted is not None and pa.predicted is not None:
                assert ps.predicted.ms == pytest.approx(pa.predicted.ms, rel=1e-9)
            # each cell's own artifacts, in its own folder
            assert all(s.request.out_dir in f for f in ps.artifacts)


def test_plan_context_once_builds_once_per_key_when_shared(monkeypatch):
    import advisor.plans
    from advisor.graph.load import load_model
    from advisor.plans import PlanContext

    built: list[int] = []

    def build() -> int:
        built.append(1)
        return len(built)

    def context(shared: dict | None) -> PlanContext:
        ctx = PlanContext.__new__(PlanContext)  # only what `once` reads
        ctx.graph, ctx.shared = load_model("zoo:digits_cnn"), shared
        return ctx

    ctx = context(None)
    assert [ctx.once(("k",), build) for _ in range(2)] == [1, 2]  # not shared: every time
    ctx = context({})
    assert [ctx.once(("k",), build), ctx.once(("k",), build), ctx.once(("j",), build)] == [3, 3, 4]
    monkeypatch.setattr(advisor.plans, "SHARE_LIMIT_BYTES", 0)  # a model over the limit
    ctx = context({})
    assert [ctx.once(("k",), build) for _ in range(2)] == [5, 6] and ctx.shared == {}


def test_the_sweep_task_records_what_it_did_once(tmp_path, monkeypatch):
    """advise_cells (the body of a Ray timing task) reports the memo's counts with each cell:
    after the last of a model's cells, still one model load and one host profile."""
    from advisor.sweep.run import advise_cells

    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    cells = [
        {
            "key": f"cell{i}",
            "cell": {"model": "digits_cnn", "device": d},
            "request": _request((d, link, lat), tmp_path).model_dump(
                include={"model", "device", "edge", "link", "latency_ms", "runs", "plans"}
            ),
        }
        for i, (d, link, lat) in enumerate(CELLS[:4])
    ]
    done = [e for e in advise_cells(cells, {"threads": 1}) if e["event"] == "done"]
    assert [e["error"] for e in done] == [None] * 4
    import ray

    assert not ray.is_initialized()  # called directly, outside Ray: no Ray was started
    first, last = done[0]["record"]["shared"], done[-1]["record"]["shared"]
    assert first["models_loaded"] == last["models_loaded"] == 1
    assert first["host_profiles"] == last["host_profiles"] == 1
    assert last["evaluation_runs_reused"] > 0


def test_a_memo_keeps_sessions_only_within_its_byte_budget(tmp_path):
    """Sessions are kept (and their outputs reused) up to the memo's session budget;
    past it each call loads its own, as without a memo, with the same outputs."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], "relu")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    path = tmp_path / "relu.onnx"
    onnx.save(model, path)
    feeds = {"x": np.array([[-1, 2, -3, 4]], np.float32)}
    want = np.maximum(feeds["x"], 0)
    kept = MeasurementMemo()
    outs = [kept.run("relu", str(path), 1, feeds)[1][0] for _ in range(3)]
    assert kept.sessions_made == 1 and kept.session_bytes == path.stat().st_size
    over = MeasurementMemo(session_budget=0)  # one advise call's own memo keeps none
    outs += [over.run("relu", str(path), 1, feeds)[1][0] for _ in range(3)]
    assert over.sessions_made == 3 and not over.sessions and over.session_bytes == 0
    for out in outs:
        np.testing.assert_array_equal(out, want)


def test_a_host_cell_re_times_what_a_cell_on_another_target_settled_at_the_floor(
    tmp_path, monkeypatch
):
    """The shared window settles a stage whose tier is another machine at the floor of
    rounds; a later cell of the same sweep whose device is this host reads that stage's
    figure, so it times it again by the full rule, not reusing the floor figure. (Figures
    here never settle by precision, so the floor and the cap are what stop them.)"""
    import advisor.validate.guard as guard
    from advisor.validate.guard import INFORMATIVE_MARK

    real = guard.stop_reason

    def no_precision(samples, rule, threshold):
        why = real(samples, rule, threshold)
        return why if threshold is not None or why.startswith("cap") else ""

    monkeypatch.setattr(guard, "stop_reason", no_precision)

    def request(device: str) -> AdviceRequest:
        return AdviceRequest(model="digits_cnn", device=device, edge="edge_t4", link="wifi",
                             latency_ms=50.0, plans=["baseline.device"],
                             out_dir=str(tmp_path / device))  # fmt: skip

    memo = MeasurementMemo()
    elsewhere = advise(request("rpi4"), memo=memo)
    here = advise(request("host"), memo=memo)

    def method(advice) -> str:
        plan = next(p for p in advice.plans if p.id == "baseline.device")
        return plan.stages[0].measured_host.method

    assert INFORMATIVE_MARK in method(elsewhere) and "median of 3 round" in method(elsewhere)
    assert INFORMATIVE_MARK not in method(here) and "median of 5 round" in method(here)
