"""Roofline prediction: classification, monotonic scaling, host ratio 1, precision, calibration."""

from __future__ import annotations

import doctest

import pytest
from conftest import make_chain_model, make_residual_model

import advisor.measure.ort_trace
import advisor.targets.catalog
import advisor.targets.predict
from advisor.errors import RequestError
from advisor.measure.calibrate import Calibration, calibrate
from advisor.measure.profile import profile_model
from advisor.model import load_model, sample_inputs
from advisor.targets.catalog import Target, get_target, load_catalog
from advisor.targets.predict import (
    bound,
    effective_precision,
    node_time_ratio,
    predict,
    predict_ms,
    predict_nodes,
    roofline_ms,
)

# a 512x512x512 GEMM and a ReLU over 1M floats
GEMM = (2 * 512**3, 3 * 512 * 512 * 4)  # intensity ~85 FLOP/byte
RELU = (1_000_000, 8_000_000)  # intensity 0.125 FLOP/byte


@pytest.fixture(scope="module", autouse=True)
def _own_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def profiled():
    graph = load_model(make_residual_model(channels=16))
    prof = profile_model(graph, sample_inputs(graph), runs=5, warmup=1)
    return graph, prof, calibrate(threads=1)


def _host_cal(key: str = "k", gflops: float = 50.0, gbps: float = 10.0) -> Calibration:
    return Calibration(gflops_fp32=gflops, gops_int8=2 * gflops, bandwidth_gbps=gbps,
                       method="test", fingerprint_key=key, threads=1)  # fmt: skip


def _scaled(target: Target, k: float) -> Target:
    return target.model_copy(update={
        "id": f"{target.id}_x{k}",
        "peak_gflops": {p: v * k for p, v in target.peak_gflops.items()},
        "mem_bandwidth_gbps": target.mem_bandwidth_gbps * k,
    })  # fmt: skip


def test_doc_examples():
    for module in (advisor.targets.predict, advisor.targets.catalog, advisor.measure.ort_trace):
        failed, tried = doctest.testmod(module)
        assert tried > 0 and failed == 0


def test_roofline_time_and_classification_on_constructed_nodes():
    assert roofline_ms(2e9, 0, gflops=100, gbps=10) == pytest.approx(20.0)
    assert roofline_ms(0, 1e9, gflops=100, gbps=10) == pytest.approx(100.0)
    rpi4, l4 = get_target("rpi4"), get_target("edge_l4")
    assert rpi4.ridge_point() == pytest.approx(48 / 12.8)
    # the GEMM is compute-bound on the Pi (ridge 3.75) but memory-bound on the L4 (ridge 101)
    assert bound(*GEMM, rpi4.peak_gflops["fp32"], rpi4.mem_bandwidth_gbps) == "compute"
    assert bound(*GEMM, l4.peak_gflops["fp32"], l4.mem_bandwidth_gbps) == "memory"
    for t in load_catalog().targets.values():
        peak = next(iter(t.peak_gflops.values()))
        assert bound(*RELU, peak, t.mem_bandwidth_gbps) == "memory", t.id
    assert bound(0, 0, 1, 1) == "none" and bound(5, 0, 1, 1) == "compute"


def test_ratio_is_monotonic_in_target_speed():
    host, base = _host_cal(), get_target("rpi5")
    for node in (GEMM, RELU):
        ratios = [node_time_ratio(*node, host, _scaled(base, k)) for k in (0.5, 1, 2, 4, 8)]
        assert all(a > b for a, b in zip(ratios, ratios[1:], strict=False)), ratios
    # real catalog, compute-heavy node: slower hardware -> larger ratio
    order = ["rpi4", "rpi5", "jetson_orin_nano", "edge_t4", "cloud_a100", "cloud_h100"]
    ratios = [node_time_ratio(*GEMM, host, get_target(t)) for t in order]
    by_target = dict(zip(order, ratios, strict=True))
    assert all(a > b for a, b in zip(ratios, ratios[1:], strict=False)), by_target
    # a compute-bound node scales by peak ratio, a memory-bound one by bandwidth ratio
    assert node_time_ratio(*GEMM, host, get_target("rpi4")) == pytest.approx(50 / 48)
    assert node_time_ratio(*RELU, host, get_target("rpi4")) == pytest.approx(10 / 12.8)


def test_host_ratio_is_one_and_prediction_is_the_scaled_measurement(profiled):
    """On the host the roofline ratio is 1: each node is its BASIC median times the one
    optimisation-level factor (ALL whole-run time less a call's overhead, over the BASIC sum)."""
    from advisor.targets.predict import opt_level_scale

    graph, prof, cal = profiled
    host = get_target("host")
    assert node_time_ratio(*GEMM, cal, host) == 1.0
    pred = predict(graph, prof, host, cal)
    scale = opt_level_scale(prof, cal)
    assert pred.kind == "measured_host" and pred.opt_scale == scale and 0.1 <= scale <= 2
    assert pred.nodes == pytest.approx({n: t.median_ms * scale for n, t in prof.nodes.items()})
    assert pred.total_ms == pytest.approx(prof.node_sum_ms * scale)
    assert pred.run_overhead_ms == cal.run_overhead_ms > 0
    expected = (prof.end_to_end_ms - cal.run_overhead_ms) / prof.node_sum_ms
    assert scale == pytest.approx(min(2.0, max(0.1, expected)))


def test_predictions_on_catalog_targets(profiled):
    graph, prof, cal = profiled
    slow, mid, fast = (get_target(t) for t in ("rpi4", "edge_t4", "cloud_a100"))
    totals = [predict_ms(graph, prof, t, cal) for t in (slow, mid, fast)]
    assert totals[0] > totals[1] > totals[2] > 0
    pred = predict(graph, prof, slow, cal)
    assert pred.kind == "predicted_target" and "catalog priors" in pred.method
    assert "rpi4" in pred.method and pred.source == "catalog_priors" and pred.band > 0
    assert set(pred.nodes) == set(prof.nodes) and set(pred.bounds) == set(prof.nodes)
    assert pred.total_ms == pytest.approx(sum(pred.nodes.values()))
    assert predict_nodes(graph, prof, slow, cal) == pred.nodes
    head = [n.name for n in graph.nodes[:3]]
    assert predict_ms(graph, prof, slow, cal, nodes=head) == pytest.approx(
        sum(pred.nodes[n] for n in head)
    )


def test_precision_uses_the_target_peak_or_falls_back_with_a_note(profiled):
    graph, prof, cal = profiled
    host, t4, rpi4, coral = (
        _host_cal(),
        *(get_target(t) for t in ("edge_t4", "rpi4", "coral_edgetpu")),
    )
    assert node_time_ratio(*GEMM, host, t4, "int8") < node_time_ratio(*GEMM, host, t4, "fp32")
    assert effective_precision(t4, "fp16") == ("fp16", None)
    used, note = effective_precision(rpi4, "int8")
    assert used == "fp32" and "no sourced int8 peak" in note
    pred = predict(graph, prof, rpi4, cal, precision="int8")
    assert pred.precision_used == "fp32" and pred.notes
    with pytest.raises(RequestError, match="runs only int8 models"):
        predict(graph, prof, coral, cal, precision="fp32")
    assert predict(graph, prof, coral, cal, precision="int8").precision_used == "int8"
    with pytest.raises(RequestError, match="unknown precision"):
        effective_precision(t4, "fp8")  # type: ignore[arg-type]


def test_mismatched_inputs_are_refused(profiled):
    graph, prof, cal = profiled
    other = load_model(make_chain_model())
    with pytest.raises(RequestError, match="different model"):
        predict(other, prof, get_target("rpi4"), cal)
    with pytest.raises(RequestError, match="different environments"):
        predict(graph, prof, get_target("rpi4"), _host_cal(key="elsewhere"))
    with pytest.raises(RequestError, match="no such node"):
        predict_ms(graph, prof, get_target("rpi4"), cal, nodes=["nope"])


def test_calibration_is_short_positive_and_cached():
    fresh = calibrate(threads=1, cache=False)
    assert fresh.gflops_fp32 > 0.5 and fresh.bandwidth_gbps > 0.1 and fresh.threads == 1
    assert fresh.gops_int8 is None or fresh.gops_int8 > 0
    assert fresh.seconds < 2.0 and "MatMul" in fresh.method
    first = calibrate(threads=1)
    second = calibrate(threads=1)
    assert second.cached and second.gflops_fp32 == first.gflops_fp32
    with pytest.raises(RequestError):
        calibrate(threads=0)


def _profile(scale_2t: float):
    """A measured profile with made-up rates: 2 threads run `scale_2t` times faster."""
    from advisor.measure.suite import MeasuredProfile, RatePoint, ThreadRates

    def rates(k: float) -> dict:
        pts = [RatePoint(work=1e5, rate=k, ms=1), RatePoint(work=1e9, rate=10 * k, ms=1)]
        classes = ("conv", "conv1x1", "depthwise", "dense", "elementwise", "norm", "pool")
        return {c: pts for c in classes}

    return MeasuredProfile(
        cpu_model="test cpu", fingerprint_key="k", ort_version="x", date="2026-01-01",
        by_threads={
            1: ThreadRates(threads=1, rates=rates(1.0), dispatch_us=2.0, call_ms=0.01),
            2: ThreadRates(threads=2, rates=rates(scale_2t), dispatch_us=2.0, call_ms=0.01),
        },
    )  # fmt: skip


def test_a_measured_target_profile_predicts_at_its_best_thread_count(profiled):
    graph, prof, cal = profiled
    target = get_target("rpi4").model_copy(update={"id": "mine", "profile": _profile(2.0)})
    pred = predict(graph, prof, target, cal)
    assert pred.source == "target_profile" and "target profile" in pred.method
    assert pred.threads == 2 and pred.band > 0 and pred.run_overhead_ms == pytest.approx(0.01)
    one = predict(graph, prof, target, cal, threads=1)
    assert one.threads == 1 and one.total_ms > pred.total_ms
    slower = target.model_copy(update={"profile": _profile(0.5)})  # 2 threads slower: stay at 1
    assert predict(graph, prof, slower, cal).threads == 1


def test_catalog_cpu_targets_run_on_all_cores_unless_told(profiled):
    graph, prof, cal = profiled
    rpi4 = get_target("rpi4")
    full = predict(graph, prof, rpi4, cal)
    single = predict(graph, prof, rpi4, cal, threads=1)
    assert full.threads == 4 and single.threads == 1
    assert single.total_ms > full.total_ms
    gpu = predict(graph, prof, get_target("edge_t4"), cal)
    assert gpu.threads is None and gpu.source == "catalog_priors"
