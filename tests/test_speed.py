"""Advice in seconds (issue 13): adaptive stopping rules, one timing per distinct model, the
shared FP32 guard window, plans not validated when they cannot win, --quick / --exhaustive."""

from __future__ import annotations

import itertools
import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from conftest import make_chain_model

from advisor import AdviceRequest, advise
from advisor.errors import RequestError
from advisor.measure.policy import StageTimer, policy_for
from advisor.measure.timing import (
    Rule,
    adaptive,
    log_ci,
    make_session,
    measure_adaptive,
    stop_reason,
)
from advisor.validate.guard import (
    GUARD_THRESHOLD,
    forget_window,
    guard_window,
    paired_timing,
    shared_window,
)
from app.cli import cli


def _feed() -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)}


@pytest.fixture()
def chain_file(tmp_path: Path) -> str:
    path = tmp_path / "chain.onnx"
    onnx.save(make_chain_model(), path)
    return str(path)


# --- the stopping rule -------------------------------------------------------------------------


def test_steady_samples_stop_at_the_floor_and_noisy_ones_at_the_cap():
    rule = Rule(floor=4, cap=12, precision=0.05)
    steady = adaptive(itertools.repeat(2.0).__next__, rule)
    assert steady.n == 4 and "within ±5%" in steady.reason
    noisy = adaptive(itertools.cycle([1.0, 4.0]).__next__, rule)
    assert noisy.n == 12 and noisy.reason == "cap of 12 reached"


def test_a_threshold_settles_the_decision_before_the_figure_is_precise():
    """Ratios near 0.5 with 20% noise: too wide for ±3%, but clearly below 1.05."""
    rule = Rule(floor=3, cap=20, precision=0.03)
    draws = itertools.cycle([0.4, 0.5, 0.6]).__next__
    got = adaptive(draws, rule, threshold=GUARD_THRESHOLD)
    assert got.n == 3 and got.reason == "95% CI below 1.05"
    assert got.high < GUARD_THRESHOLD
    slower = adaptive(itertools.cycle([1.8, 2.0, 2.2]).__next__, rule, threshold=GUARD_THRESHOLD)
    assert slower.reason == "95% CI above 1.05"
    straddling = [1.0, 1.1] * 3
    assert stop_reason(straddling, rule, GUARD_THRESHOLD) == ""  # undecided: keep timing


def test_interval_narrows_with_more_samples():
    lo3, hi3 = log_ci([9.0, 10.0, 11.0])
    lo9, hi9 = log_ci([9.0, 10.0, 11.0] * 3)
    assert lo3 < lo9 < 10 < hi9 < hi3


@pytest.mark.parametrize("floor,cap", [(1, 5), (6, 5)])
def test_a_rule_with_a_bad_floor_or_cap_is_a_clear_error(floor, cap):
    with pytest.raises(RequestError, match="floor <= cap"):
        Rule(floor=floor, cap=cap)


def test_measure_adaptive_says_how_many_runs_and_why(chain_file):
    rule = Rule(floor=3, cap=8, precision=0.5)
    stats = measure_adaptive(chain_file, _feed(), rule)
    assert 3 <= stats.runs <= 8 and stats.stopped
    assert stats.median_ms > 0 and stats.kind == "measured_host"


def test_policies_keep_the_previous_counts_reachable():
    old = policy_for("exhaustive", 20)
    assert old.stage is None and old.guard is None and old.interleave is None
    quick, default = policy_for("quick", 20), policy_for("adaptive", 20)
    assert quick.stage is not None and default.stage is not None
    assert quick.stage.cap < default.stage.cap == 20
    assert "quick: stopped" in quick.label("cap of 5 reached", 5)
    fewest = policy_for("adaptive", 3)  # the request's minimum: the cap bounds the floor
    assert fewest.stage is not None and fewest.stage.floor == fewest.stage.cap == 3


# --- no repeated work ----------------------------------------------------------------------------


def test_identical_model_bytes_are_timed_once(chain_file, tmp_path: Path):
    twin = tmp_path / "twin" / "model.onnx"
    twin.parent.mkdir()
    shutil.copy(chain_file, twin)
    timer = StageTimer(policy_for("quick", 20), threads=1)
    first, m1 = timer.time(chain_file, _feed())
    second, m2 = timer.time(str(twin), _feed())
    assert second is first
    assert "timed once" in m2 and "timed once" not in m1
    assert "quick: stopped" in m1


def test_guard_window_times_fp32_once_per_round_and_feeds_the_judge(chain_file, tmp_path: Path):
    twin = tmp_path / "twin.onnx"
    shutil.copy(chain_file, twin)
    rule = Rule(floor=2, cap=4, precision=0.5)
    got = guard_window(chain_file, {"a": str(twin), "b": str(twin)}, _feed(), rule, runs=2)
    assert set(got) == {"a", "b"} and got["a"] == got["b"]  # same bytes: timed once
    assert got["a"].ratio == 1.0  # FP32's own bytes: the very same burst, not a second one
    assert 2 <= got["a"].rounds <= 4 and got["a"].stopped
    # the judge's paired_timing on the same files reuses the window instead of timing again
    assert paired_timing(chain_file, _feed(), str(twin), _feed()) == got["a"]
    forget_window()
    fresh = paired_timing(chain_file, _feed(), str(twin), _feed(), rounds=2, runs=2)
    assert fresh.rounds == 2 and fresh.stopped == ""


def _wide_chain(tmp_path: Path, repeat: int) -> str:
    """The chain model with its conv repeated: a model `repeat` times as slow, roughly."""
    path = tmp_path / f"chain{repeat}.onnx"
    model = make_chain_model()
    nodes = list(model.graph.node)
    conv = next(n for n in nodes if n.op_type == "Conv")
    extra = []
    for i in range(repeat - 1):  # side convs whose outputs feed nothing but are computed
        n = onnx.helper.make_node("Conv", list(conv.input), [f"side{i}"], name=f"side{i}")
        for a in conv.attribute:
            n.attribute.append(a)
        extra.append(n)
        model.graph.output.append(onnx.helper.make_tensor_value_info(f"side{i}", 1, None))
    model.graph.node.extend(extra)
    onnx.save(model, path)
    return str(path)


def test_shared_window_retires_settled_stages_and_pairs_each_plan_with_fp32(tmp_path: Path):
    base, slow = _wide_chain(tmp_path, 1), _wide_chain(tmp_path, 60)
    stages = {}
    for name, path in (("fp32", base), ("slow", slow)):
        sess = make_session(path)
        stages[name] = (sess, {"x": _feed()["x"]})
    rule = Rule(floor=3, cap=6, precision=0.5)  # loose: settles at the floor
    win = shared_window(stages, {"plan": ("fp32", "slow")}, rule, Rule(floor=3, cap=8), per_round=7)
    pt = win.pairs["plan"]
    assert pt.ratio > GUARD_THRESHOLD and pt.stopped == "95% CI above 1.05"
    # a ~10x gap settles before the guard's cap (at the floor of 3 on a quiet machine; a
    # round hit by this VM's wake-up stalls can widen the interval for a round or two)
    assert 3 <= pt.rounds < 8
    # the slower model leaves with its verdict, in the very round that settled it; FP32
    # stays until its own figure is settled
    assert len(win.medians["slow"]) == pt.rounds
    assert not win.reasons["slow"].startswith("cap")  # its own figure or the guard's verdict
    assert 3 <= len(win.medians["fp32"]) <= max(6, pt.rounds)  # its cap, or the pair's rounds
    assert len(win.samples["fp32"]) <= 7 * len(win.medians["fp32"])
    assert set(win.reasons) == {"fp32", "slow"} and all(win.reasons.values())


def test_a_slow_stage_runs_fewer_times_a_round(tmp_path: Path, monkeypatch):
    """A round gives each stage up to `per_round` runs or ROUND_MS, whichever comes first
    (at least one run): here every stage counts as slow, so each round runs it once."""
    import advisor.validate.guard as guard

    monkeypatch.setattr(guard, "ROUND_MS", 0.0)
    base, slow = _wide_chain(tmp_path, 1), _wide_chain(tmp_path, 60)
    stages = {
        name: (make_session(path), _feed()) for name, path in (("fp32", base), ("slow", slow))
    }
    rule = Rule(floor=3, cap=4, precision=0.5)
    win = guard.shared_window(
        stages, {"plan": ("fp32", "slow")}, rule, Rule(floor=3, cap=4), per_round=5
    )
    for key in ("fp32", "slow"):
        assert len(win.samples[key]) <= len(win.medians[key])  # one run (or none kept) a round
    assert win.pairs["plan"].ratio > GUARD_THRESHOLD


def test_a_stage_no_tier_reads_leaves_at_the_floor_and_says_why(tmp_path: Path):
    """A stage whose tier's target is not this host (`informative`) is settled at the
    floor of rounds, with the reason in its label; one a host tier reads runs until its own
    rule settles it (here an unreachable precision: its cap)."""
    from advisor.validate.guard import INFORMATIVE_MARK

    a, b, c = (_wide_chain(tmp_path, n) for n in (1, 2, 3))
    named = (("read", a), ("shown", b), ("guarded", c))
    stages = {name: (make_session(path), _feed()) for name, path in named}
    strict = Rule(floor=3, cap=5, precision=1e-9)
    win = shared_window(
        stages,
        {"plan": ("read", "guarded")},
        strict,
        Rule(floor=3, cap=5),
        per_round=4,
        informative=frozenset({"shown", "guarded"}),
    )
    assert len(win.medians["shown"]) == 3 and INFORMATIVE_MARK in win.reasons["shown"]
    assert len(win.medians["read"]) == 5 and win.reasons["read"].startswith("cap of 5")
    # an informative stage runs once a round; one a guard ratio reads keeps its runs a round
    assert len(win.samples["shown"]) <= 3 and "one run" in win.reasons["shown"]
    assert len(win.samples["guarded"]) > len(win.medians["guarded"])


# --- skip what cannot win, end to end ----------------------------------------------------------


def _request(path: str, tmp_path: Path, **kw) -> AdviceRequest:
    return AdviceRequest(
        model=path,
        device="host",
        edge="host",
        link="wifi",
        plans=["baseline.device", "baseline.server", "quantize.dynamic_int8"],
        out_dir=str(tmp_path / "out"),
        **kw,
    )


def test_plans_that_cannot_win_are_reported_not_validated(chain_file, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    # baseline.server pays the wifi round trip (tens of ms): far over a 1 ms target
    advice = advise(_request(chain_file, tmp_path, latency_ms=1.0, measurement="quick"))
    by_id = {p.id: p for p in advice.plans}
    server = by_id["baseline.server"]
    assert server.status == "not_validated" and not server.artifacts
    assert server.reasons[0].startswith("not validated: predicted")
    assert "× over the target" in server.reasons[0] and "--validate-all" in server.reasons[0]
    assert server.predicted is not None and server.predicted.ms > 1.25
    assert by_id["baseline.device"].status in ("recommended", "candidate")  # always validated
    dev = by_id["baseline.device"].stages[0].measured_host
    assert dev is not None and "quick: stopped" in dev.method
    assert "--quick" in advice.command
    # --validate-all builds and times it anyway
    every = advise(
        _request(chain_file, tmp_path, latency_ms=1.0, measurement="quick", validate_all=True)
    )
    assert all(p.status != "not_validated" for p in every.plans)
    assert every.plan("baseline.server").measured_host is not None


def test_the_fp32_model_is_written_once_and_linked_for_the_other_baseline(
    chain_file, tmp_path, monkeypatch
):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    advice = advise(
        _request(chain_file, tmp_path, latency_ms=1000.0, measurement="quick", validate_all=True)
    )
    device = advice.plan("baseline.device").artifacts
    server = advice.plan("baseline.server").artifacts
    assert len(device) == 1 and len(server) == 1 and device[0] != server[0]
    assert os.path.samefile(device[0], server[0])  # one file, two names: no second write
    assert onnx.load(server[0]).graph.node  # a whole model, as written


def test_each_artifact_is_loaded_once_and_its_evaluation_run_is_the_warm_up(
    chain_file, tmp_path, monkeypatch
):
    """prepare_all loads every distinct artifact once (both baselines share the FP32 file)
    and the shared window times those very sessions: nothing is loaded again, and only a
    session that ran no evaluation (the FP32 one, whose run is the reference's) gets a
    warm-up run in the window."""
    import advisor.validate.window as window

    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    loads: list[str] = []
    real_load = window.make_session
    monkeypatch.setattr(window, "make_session", lambda p, t: loads.append(p) or real_load(p, t))
    warmed: list[str] = []
    real_stages = window._window_stages

    def stages(prepared, *a, **k):  # counts the runs of the window's warm-up only
        owner = {id(sess): (sess, pid) for pid, prep in prepared for sess in prep.sessions}
        for sess, pid in owner.values():
            sess.run = lambda *r, _p=pid, _run=sess.run: warmed.append(_p) or _run(*r)
        try:
            return real_stages(prepared, *a, **k)
        finally:
            for sess, _ in owner.values():
                del sess.run  # the class's own method again

    monkeypatch.setattr(window, "_window_stages", stages)
    advice = advise(_request(chain_file, tmp_path, latency_ms=1000.0, validate_all=True))
    assert len(loads) == len(set(loads)) == 2  # the FP32 file and the INT8 one
    # one warm-up run: the FP32 session both baselines share (their evaluation is the
    # reference's run); the INT8 session's evaluation run was its warm-up
    assert len(warmed) == 1 and warmed[0].startswith("baseline.")
    assert advice.plan("quantize.dynamic_int8").stages[0].measured_host is not None


def test_an_artifact_runtime_cannot_load_rejects_only_its_plan(chain_file, tmp_path, monkeypatch):
    import advisor.validate.window as window

    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    real_load = window.make_session

    def load(path, threads):
        if "dynamic_int8" in str(path):
            raise RuntimeError("cannot load this one")
        return real_load(path, threads)

    monkeypatch.setattr(window, "make_session", load)
    advice = advise(_request(chain_file, tmp_path, latency_ms=1000.0, validate_all=True))
    bad = advice.plan("quantize.dynamic_int8")
    assert bad.status == "rejected" and "cannot load this one" in bad.reasons[0]
    assert advice.plan("baseline.device").status in ("recommended", "candidate")


def test_evaluation_inputs_run_on_every_core_in_their_order():
    import threading
    import time

    from advisor.validate.fidelity import per_input

    names: set[str] = set()

    def run(x: int) -> int:
        names.add(threading.current_thread().name)
        time.sleep(0.02)  # long enough for the pool to hand out every worker
        return x * 2

    assert per_input(run, list(range(8))) == [x * 2 for x in range(8)]
    assert len(names) == min(8, os.cpu_count() or 1)
    names.clear()
    # sessions with as many intra-op threads as cores: one input at a time, on this thread
    assert per_input(run, [1, 2], threads=os.cpu_count() or 1) == [2, 4]
    assert names == {threading.current_thread().name}


def test_exhaustive_and_default_agree_on_a_small_model(chain_file, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    new = advise(_request(chain_file, tmp_path, latency_ms=1000.0))
    old = advise(_request(chain_file, tmp_path, latency_ms=1000.0, measurement="exhaustive"))
    assert [p.status for p in new.plans if p.id == "quantize.dynamic_int8"] == [
        p.status for p in old.plans if p.id == "quantize.dynamic_int8"
    ]
    fixed = old.plan("baseline.device").stages[0].measured_host
    assert fixed is not None and fixed.method.endswith(
        "median of 5 round medians of 4 runs, round-robin with every other plan's stages"
    )
    guard = new.plan("quantize.dynamic_int8").extra
    assert "guard_window" in guard and "paired_timing" in guard


def test_cli_flags_and_report_show_not_validated(chain_file, tmp_path, monkeypatch):
    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    args = ["advise", chain_file, "--device", "host", "--edge", "host", "--link", "wifi"]
    args += ["--latency-ms", "1", "--plan", "baseline.device", "--plan", "baseline.server"]
    report = tmp_path / "r.md"
    res = CliRunner().invoke(cli, [*args, "--quick", "--json", "--quiet", "--report", str(report)])
    assert res.exit_code in (0, 1), res.output
    data = json.loads(res.output)
    assert data["request"]["measurement"] == "quick"
    assert {p["status"] for p in data["plans"]} >= {"not_validated"}
    text = report.read_text()
    assert "1 not validated" in text and "not validated: predicted" in text
    clash = CliRunner().invoke(cli, [*args, "--quick", "--exhaustive"])
    assert clash.exit_code == 2 and "--quick or --exhaustive, not both" in clash.output
    both = CliRunner().invoke(cli, [*args, "--validate-all", "--exhaustive", "--json", "--quiet"])
    assert both.exit_code in (0, 1), both.output
    assert all(p["status"] != "not_validated" for p in json.loads(both.output)["plans"])


# --- the bench's bookkeeping ---------------------------------------------------------------------


def test_bench_speed_verdicts_and_table_list_every_differing_case():
    from bench.bench_speed import decisions, render, verdicts

    advice = {
        "recommended": "a",
        "plans": [
            {"id": "a", "status": "recommended"},
            {"id": "b", "status": "rejected"},
            {"id": "c", "status": "not_validated"},
            {"id": "d", "status": "candidate"},
        ],
    }
    assert decisions(advice) == {"recommended": "a", "rejected": ["b"], "not_validated": ["c"]}
    run = {"wall_s": 2.0, "advise_s": 1.0, "peak_mb": 200.0}
    speed = [
        {"model": "digits_cnn", "new": run, "old": {**run, "wall_s": 4.0}, "wall_ratio": 0.5,
         "rss_ratio": 1.0, "same": True},
        {"model": "resnet50_class", "new": {**run, "wall_s": 25.0}, "old": run, "wall_ratio": 12.5,
         "rss_ratio": 1.0, "same": True},
    ]  # fmt: skip
    same = [
        {"case": "x", "same": True, "why": ""},
        {"case": "y", "same": False, "why": "b (new: rejected ...)"},
    ]
    v = verdicts(speed, same)
    assert v == {
        "big_seconds": False,
        "big_memory": True,
        "zoo_seconds": True,
        "same_decisions": False,
    }
    table = render(speed, same)
    assert "1 of 2 cases" in table and "| y | b (new: rejected ...) |" in table


def test_quantized_models_are_cached_by_content(tmp_path, monkeypatch):
    from advisor.plans import quantize_common as qc

    monkeypatch.setenv("EDGEDL_CACHE_DIR", str(tmp_path / "cache"))
    model = make_chain_model()
    calib = [_feed(), {"x": _feed()["x"] * 2}]
    first = qc.static_int8(model, calib)
    calls = []
    real = qc._static_int8
    monkeypatch.setattr(qc, "_static_int8", lambda *a: calls.append(a) or real(*a))
    again = qc.static_int8(model, calib)
    assert calls == [] and again.SerializeToString() == first.SerializeToString()
    qc.static_int8(model, calib[:1])  # other calibration data: quantized again
    assert len(calls) == 1
    assert len(list((tmp_path / "cache" / "quantized").glob("*.onnx"))) == 2
