"""Benchmarks: each bench module imports and its core function works on a tiny size."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from advisor.advice import Latency, PlanResult, Stage
from advisor.hardware import get_link, get_target, load_catalog
from advisor.model import load_model, sample_inputs
from bench import common
from bench.bench_compression import fp16_device, plan_row
from bench.bench_plan_quality import (
    _context,
    advisor_choice,
    measure_oracle,
    oracle_totals,
    regrets,
    summarize,
)
from bench.bench_prediction import ape, collect
from bench.bench_scale import STEPS, time_planners
from bench.neurosurgeon import fit_layer_regression, neurosurgeon_choice
from bench.synthetic import chain_model, dag_model


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "edgedl-cache"))


@pytest.mark.parametrize(
    "name",
    [
        "bench_plan_quality",
        "bench_prediction",
        "bench_compression",
        "bench_scale",
        "bench_kb",
        "run_all",
    ],
)
def test_every_bench_module_imports_and_has_main(name):
    assert callable(importlib.import_module(f"bench.{name}").main)


@pytest.mark.parametrize("build", [chain_model, dag_model])
@pytest.mark.parametrize("n", [1, 7, 40])
def test_synthetic_models_have_n_nodes_and_run(build, n):
    m = build(n)
    assert len(m.graph.node) == n
    onnx.checker.check_model(m)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {"x": np.ones((1, 1024), np.float32)})
    assert y.shape == (1, 16) and np.all(np.isfinite(y))


def test_synthetic_chain_cuts_are_single_and_dag_cuts_cross_branches():
    chain = load_model(chain_model(30))
    dag = load_model(dag_model(30))
    assert all(len(c.tensors) == 1 for c in chain.cuts())
    assert any(len(c.tensors) == 2 for c in dag.cuts())
    with pytest.raises(ValueError, match="at least one node"):
        chain_model(0)


def test_regret_on_a_hand_made_cost_table():
    oracle = {"dev": 10.0, "cut": 8.0, "srv": 20.0}
    r = regrets(oracle, {"a": "cut", "b": "dev", "c": "srv"})
    assert r == pytest.approx({"a": 0.0, "b": 0.25, "c": 1.5})
    case = {
        "model": "m",
        "link": "l",
        "speed": 10.0,
        "oracle_best": "cut",
        "oracle_noise": 0.01,
        "regret": {"advisor": 0.0, "neurosurgeon": 0.25, "all_device": 0.25, "all_server": 1.5},
    }
    worse = {
        **case,
        "link": "l2",
        "oracle_best": "all-device",
        "regret": {**case["regret"], "advisor": 0.4},
    }
    s = summarize([case, worse])
    assert s["advisor"]["median"] == pytest.approx(0.2)
    assert s["advisor_worse_than_neurosurgeon"] == [("m", "l2", 10.0)]
    assert s["advisor_worse_beyond_noise"] == [("m", "l2", 10.0)]  # 15 points > max(5%, 1%)
    assert s["offload_cases"]["advisor"]["cases"] == 1
    assert not s["never_worse_than_neurosurgeon"]


def test_layer_regression_recovers_a_linear_cost():
    samples = [("Conv", [f, 100.0, 50.0], 1e-6 * f + 0.01) for f in (1e5, 2e5, 5e5, 1e6)]
    samples += [("Relu", [0.0, b, b], 1e-5 * b) for b in (100.0, 1000.0, 4000.0)]
    reg = fit_layer_regression(samples)
    pred = reg.predict(
        {
            "c": ("Conv", [3e5, 100.0, 50.0]),
            "r": ("Relu", [0.0, 2000.0, 2000.0]),
            "g": ("Gemm", [1e5, 10.0, 10.0]),
        }
    )
    assert pred["c"] == pytest.approx(0.31, rel=1e-3)
    assert pred["r"] == pytest.approx(0.02, rel=1e-2)
    assert pred["g"] >= 0  # unseen op type: the pooled model, never negative


def test_oracle_and_choices_on_a_tiny_dag(tmp_path):
    g = load_model(dag_model(9))
    feeds = sample_inputs(g)
    cuts = [c.head for c in g.cuts()]
    times = measure_oracle(g, cuts, feeds, rounds=3, warmup=1)
    full = frozenset(n.name for n in g.nodes)
    assert set(times) == {full, *cuts}
    assert all(len(v) >= 1 and all(a > 0 for a, _ in v) for v in times.values())
    link = get_link("ethernet", load_catalog())
    whole = oracle_totals(g, full, times, link, 10.0)
    server = oracle_totals(g, frozenset(), times, link, 10.0)
    assert len(whole) == len(server) and server[0] > whole[0] / 10  # transfer is added
    # the advisor's choice is the cheapest under its cost model among prefix cuts and ends
    host = get_target("host")
    dev = {n.name: 1.0 for n in g.nodes}
    ctx = _context(g, host, link, dev, 10.0, tmp_path)
    head, kind, pred = advisor_choice(ctx)
    from advisor.plans.costs import best, prefix_costs

    assert pred <= best(prefix_costs(g, dev, ctx.server_ms, link)).total_ms + 1e-9
    assert kind in ("baseline.device", "baseline.server", "partition.chain", "partition.dag")
    ns = neurosurgeon_choice(g, dev, get_link("3g", load_catalog()), 10.0)
    assert ns == full  # 3G: a 1 ms/node device beats a 150 ms half round trip


def _stage(name, pred, meas, method="sum of per-node predictions (host profile)"):
    return Stage(
        name=name,
        kind="compute",
        target="host",
        nodes=3,
        predicted=Latency(ms=pred, kind="predicted_target", method=method),
        measured_host=Latency(ms=meas, kind="measured_host", method="ORT"),
    )


def test_prediction_error_collects_real_predictions_only():
    good = PlanResult(
        id="baseline.device",
        kind="baseline.device",
        title="t",
        status="candidate",
        stages=[_stage("device compute", 1.2, 1.0)],
        predicted=Latency(ms=1.2, kind="predicted_target", method="sum"),
        measured_host=Latency(ms=1.0, kind="measured_host", method="m"),
        prediction_error=0.2,
    )
    int8 = PlanResult(
        id="quantize.static_int8",
        kind="quantize.static_int8",
        title="t",
        status="candidate",
        stages=[_stage("device compute", 0.5, 0.5, "host-measured int8 × 1")],
        predicted=Latency(ms=0.5, kind="predicted_target", method="sum"),
        measured_host=Latency(ms=0.5, kind="measured_host", method="m"),
        prediction_error=0.0,
    )
    advice = SimpleNamespace(
        plans=[good, int8],
        profile_self_check={"node_sum_ms": 1.2, "end_to_end_basic_ms": 1.1, "error": 0.09},
    )
    out = collect(advice)
    assert [r["plan"] for r in out["stages"]] == ["baseline.device"]
    assert out["stages"][0]["ape"] == pytest.approx(0.2)
    assert [r["plan"] for r in out["by_construction"]] == ["quantize.static_int8"]
    assert [r["plan"] for r in out["plans"]] == ["baseline.device"]
    assert ape(9.0, 10.0) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        ape(1.0, 0.0)


def test_compression_row_reads_the_paired_timing():
    base = PlanResult(
        id="baseline.device", kind="baseline.device", title="t", status="candidate", size_bytes=4000
    )
    plan = PlanResult(
        id="quantize.static_int8",
        kind="quantize.static_int8",
        title="t",
        status="rejected",
        size_bytes=1000,
        reasons=["measured 2.0× slower"],
        extra={
            "paired_timing": {
                "fp32_ms": 1.0,
                "plan_ms": 2.0,
                "ratio": 2.0,
                "spread": 0.03,
                "rounds": 7,
            }
        },
    )
    row = plan_row("m", plan, base, "host")
    assert row["speedup"] == pytest.approx(0.5)
    assert (row["size_bytes"], row["fp32_size_bytes"]) == (1000, 4000)
    assert row["reasons"] == ["measured 2.0× slower"]
    dev = fp16_device()
    assert dev is None or "fp16" in load_catalog().target(dev).precisions


def test_scale_times_every_planner_step(tmp_path):
    t = time_planners(dag_model(12), repeats=1, work_dir=tmp_path)
    assert set(t) == set(STEPS) and all(v >= 0 for v in t.values())
    assert common.loglog_slope([10, 100, 1000], [1, 10, 100]) == pytest.approx(1.0)
    assert common.growth_label(2.0) == "quadratic"


def test_write_section_replaces_in_place(tmp_path, monkeypatch):
    md = tmp_path / "BENCHMARKS.md"
    md.write_text("# B\n\nintro\n\n## s\n\n<!-- bench:s:start -->\nold\n<!-- bench:s:end -->\n")
    monkeypatch.setattr(common, "BENCHMARKS_MD", md)
    monkeypatch.setattr(common, "RESULTS_DIR", tmp_path / "results")
    common.write_section("s", "python -m bench.x", "| a |\n|---|\n| 1 |", {"x": 1})
    common.write_section("t", "python -m bench.y", "new section", {})
    text = md.read_text()
    assert "intro" in text and "old" not in text and "| 1 |" in text
    assert text.index("bench:s:start") < text.index("## t") and "python -m bench.y" in text
    assert (tmp_path / "results" / "s.json").exists()


def test_run_all_headline_reads_each_bench():
    from bench.run_all import headline

    assert headline({}) == []
    summary = summarize(
        [
            {
                "model": "m",
                "link": "l",
                "speed": 10.0,
                "oracle_best": "all-device",
                "oracle_noise": 0.0,
                "regret": {
                    "advisor": 0.0,
                    "neurosurgeon": 0.1,
                    "all_device": 0.0,
                    "all_server": 2.0,
                },
            }
        ]
    )
    rows = headline({"bench_plan_quality": {"summary": summary}})
    assert [r[-1] for r in rows] == ["met", "–", "met"]
