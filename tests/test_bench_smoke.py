"""Benchmarks: each bench module imports and its core function works on a tiny size."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from advisor.advice import Latency, PlanResult, Stage
from advisor.model import load_model, sample_inputs
from advisor.targets.catalog import get_link, get_target, load_catalog
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
from bench.bench_prediction import _misses, ape, before_ms, collect
from bench.bench_prediction import summarize as summarize_prediction
from bench.bench_scale import STEPS, time_planners
from bench.common import median
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
        "bench_speed",
        "bench_kb",
        "bench_sweep",
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
        "paired_noise": 0.02,
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
    assert s["advisor_worse_beyond_noise"] == [("m", "l2", 10.0)]  # 15 points > max(5%, 2%)
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
    assert all(len(v) == 3 and any(v) for v in times.values())  # aligned by round
    assert all(t[0] > 0 for v in times.values() for t in v if t)
    link = get_link("ethernet", load_catalog())
    whole = oracle_totals(g, full, times, link, 10.0)
    server = oracle_totals(g, frozenset(), times, link, 10.0)
    assert len(whole) == len(server) and server[0] > whole[0] / 10  # transfer is added
    # the advisor's choice is the cheapest under its cost model among prefix cuts and ends
    host = get_target("host")
    dev = {n.name: 1.0 for n in g.nodes}
    ctx = _context(g, host, link, dev, 10.0, tmp_path, overhead_ms=0.5)
    assert (ctx.overhead("device"), ctx.overhead("server")) == pytest.approx((0.5, 0.05))
    head, kind, pred = advisor_choice(ctx)
    from advisor.plans.costs import best

    rows = ctx.costs()  # the per-call overhead counted once per side that computes
    assert rows[-1].total_ms == pytest.approx(len(g.nodes) + 0.5)
    assert pred <= best(rows).total_ms + 1e-9
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


def _plan(pid, stages, err, status="candidate"):
    total = sum(s.predicted.ms for s in stages)
    return PlanResult(
        id=pid,
        kind=pid,
        title="t",
        status=status,
        stages=stages,
        predicted=Latency(ms=total, kind="predicted_target", method="sum"),
        measured_host=Latency(ms=total, kind="measured_host", method="m"),
        prediction_error=err,
    )


def test_prediction_error_headline_is_per_plan_compute_only():
    # the advisor's host prediction: BASIC per-node ms x scale 0.5 + 0.01 ms per stage
    layers = [SimpleNamespace(host_ms=h, device_ms=h * 0.5) for h in (1.0, 1.0, 0.4)]
    uplink = Stage(
        name="uplink transfer",
        kind="transfer",
        target="ethernet",
        predicted=Latency(ms=50.0, kind="predicted_target", method="link model"),
    )
    split = _plan(
        "partition.chain",
        [_stage("device compute", 1.01, 1.0), uplink, _stage("edge compute", 0.21, 0.2)],
        err=0.001,  # advise()'s figure: diluted by the 50 ms transfer
    )
    int8 = _plan(
        "quantize.static_int8",
        [_stage("device compute", 0.5, 0.5, "host-measured int8 latency × fp32 roofline")],
        err=None,  # advise(): predicted from its own measurement, no independent check
    )
    skipped = _plan("prune.structured", [], err=None, status="skipped")
    advice = SimpleNamespace(
        plans=[split, int8, skipped],
        layers=layers,
        model=SimpleNamespace(nodes=3),
        calibration={"run_overhead_ms": 0.01},
        profile_self_check={"node_sum_ms": 2.4, "end_to_end_basic_ms": 2.3, "error": 0.04},
    )
    out = collect(advice)
    assert out["opt_scale"] == pytest.approx(0.5) and out["run_overhead_ms"] == 0.01
    assert [r["plan"] for r in out["stages"]] == ["partition.chain"] * 2
    assert [r["plan"] for r in out["by_construction"]] == ["quantize.static_int8"]
    assert out["derived_plans"] == ["quantize.static_int8"]
    (plan,) = out["plans"]
    assert plan["compute_stages"] == 2 and plan["measured_ms"] == pytest.approx(1.2)
    assert (plan["nodes"], out["model_nodes"]) == (6, 3)  # _stage: 3 nodes each
    assert plan["ape"] == pytest.approx(0.02 / 1.2)  # transfers left out of both sides
    assert plan["reported_ape"] == 0.001
    # before = the unscaled per-node sums: (1.01 - 0.01) / 0.5 + (0.21 - 0.01) / 0.5
    assert plan["before_ms"] == pytest.approx(2.4)
    assert plan["before_ape"] == pytest.approx(1.0)
    assert out["profile_all_ms"] == pytest.approx(0.5 * 2.4 + 0.01)
    res = summarize_prediction({"m": out})
    assert res["plan_error"]["n"] == 1 and res["median_target_met"] and res["p90_target_met"]
    assert res["stage_error"]["n"] == 2 and res["plan_error_before"]["median"] == 1.0
    assert before_ms(0.51, 0.01, 0.5) == pytest.approx(1.0)
    # a miss is explained per plan: a whole-model plan by measurement noise
    out["validation_all_ms"], out["repeat_noise"] = 1.0, 0.3
    whole = {**plan, "plan": "baseline.device", "compute_stages": 1, "nodes": 3, "ape": 0.5}
    text = _misses({"models": {"m": {**out, "plans": [plan, whole]}}})
    assert "m/partition.chain" not in text  # within 10%
    assert "m/baseline.device 50.0%" in text and "measurement noise (repeat noise 30.0%" in text
    assert ape(9.0, 10.0) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        ape(1.0, 0.0)


def test_repeats_take_medians_per_plan_and_keep_each_runs_error():
    from bench.bench_prediction import aggregate

    def rep(pred, meas, drift, nodes=3):
        row = {
            "plan": "baseline.device",
            "compute_stages": 1,
            "nodes": nodes,
            "predicted_ms": pred,
            "measured_ms": meas,
            "ape": ape(pred, meas),
            "before_ms": 2 * pred,
            "before_ape": ape(2 * pred, meas),
            "reported_ape": None,
        }
        stage = {**row, "stage": "device compute"}
        return {"plans": [row], "stages": [stage], "by_construction": [], "derived_plans": [],
                "run_overhead_ms": 0.01, "opt_scale": 0.5, "scale_clamped": False,
                "node_sum_ms": 2.0, "model_nodes": 3, "end_to_end_basic_ms": 2.0,
                "self_check_error": 0.01, "profile_all_ms": pred, "validation_all_ms": meas,
                "profile_drift": drift, "repeat_noise": 0.02}  # fmt: skip

    # the host ran slow for the profile of run 2 and for the validation of run 3
    runs = [rep(1.0, 1.0, 0.0), rep(1.3, 1.0, 0.3), rep(1.0, 1.4, 0.29), rep(1.0, 1.02, 0.02)]
    runs.append(rep(5.0, 5.0, 0.0, nodes=2))  # another cut: another plan, not averaged in
    out = aggregate(runs)
    whole, other = out["plans"]
    assert whole["repeats"] == 4 and other["repeats"] == 1
    assert whole["predicted_ms"] == pytest.approx(1.0) and whole["measured_ms"] == 1.01
    assert whole["ape"] == pytest.approx(0.01 / 1.01)
    assert max(whole["single_apes"]) == pytest.approx(0.3)  # run 2: 1.3 vs 1.0
    assert out["drifts"] == [0.0, 0.3, 0.29, 0.02, 0.0] and out["repeats"] == 5
    res = summarize_prediction({"m": out})
    assert res["plan_error_single_run"]["n"] == 5 and res["plan_error"]["n"] == 2


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
    per = {"n": 3, "median": 0.05, "p90": 0.3, "max": 0.4}
    pe = {
        "plan_error": per,
        "stage_error": per,
        "plan_error_before": per,
        "median_target_met": True,
        "p90_target_met": False,
    }
    rows = headline({"bench_prediction": pe})
    assert rows[0][1] == "5.0% / 30.0% (n = 3)" and rows[0][-1] == "missed"
    assert "not the product" in rows[2][0]


def test_paired_ratios_cancel_a_drift_that_hits_every_placement_in_a_round():
    from bench.bench_plan_quality import paired

    speed = [1.0, 1.4, 0.8, 1.3, 1.0]  # the host's speed state, round by round
    whole = [10.0 * s for s in speed]
    cut = [9.0 * s for s in speed]
    cut[2] = None  # a dropped round
    assert paired(cut, whole) == pytest.approx([0.9] * 4)
    assert regrets(
        {"w": median(paired(whole, whole)), "c": median(paired(cut, whole))},
        {"adv": "c", "ns": "w"},
    ) == pytest.approx({"adv": 0.0, "ns": 1 / 0.9 - 1})


def test_history_keeps_each_sections_recent_runs(tmp_path, monkeypatch):
    from bench.bench_prediction import _history

    monkeypatch.setattr(common, "HISTORY", tmp_path / "history.jsonl")
    for m in (0.04, 0.14, 0.05):
        rows = common.record_history("prediction-error", {"median": m, "p90": 0.2, "met": m < 0.1})
    common.record_history("plan-quality", {"median": 0.0})
    (tmp_path / "history.jsonl").open("a").write("not json\n")  # a damaged line is skipped
    rows = common.record_history(
        "prediction-error", {"median": 0.03, "p90": 0.1, "met": True}, keep=3
    )
    assert [r["median"] for r in rows] == [0.14, 0.05, 0.03]
    text = _history(rows)
    assert "met in 2 of 3" in text and "14.0% / 20.0%" in text
    assert _history(rows[:1]) == ""  # one run: nothing to compare with
