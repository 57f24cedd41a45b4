"""Profiling on this host: per-node timings, the self-check, caching, errors, `edgedl profile`."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnx.helper as oh
import pytest
from click.testing import CliRunner
from conftest import make_chain_model, make_if_model
from onnx import TensorProto, numpy_helper

from advisor.errors import InputDataError, ModelError, RequestError
from advisor.measure.ort_trace import kernel_ms_per_run, owner
from advisor.measure.profile import (
    LatencyStats,
    fingerprint,
    make_session,
    measure_latency,
    profile_model,
    profiler_overhead_us,
)
from advisor.measure.timing import uncontended
from advisor.model import load_model, sample_inputs
from app.cli import cli

RUNS, WARMUP = 15, 3


def make_profile_model(c: int = 32, hw: int = 40) -> onnx.ModelProto:
    """A residual conv net big enough (milliseconds per run) that kernels dominate overheads."""
    rng = np.random.default_rng(7)

    def w(name, *shape):
        return numpy_helper.from_array((rng.standard_normal(shape) * 0.1).astype(np.float32), name)

    p = [1, 1, 1, 1]
    nodes = [
        oh.make_node("Conv", ["x", "stem.w"], ["s"], "stem.conv", pads=p),
        oh.make_node("Relu", ["s"], ["sa"], "stem.relu"),
        oh.make_node("Conv", ["sa", "b.w1"], ["b1"], "block.conv1", pads=p),
        oh.make_node("Relu", ["b1"], ["b1a"], "block.relu1"),
        oh.make_node("Conv", ["b1a", "b.w2"], ["b2"], "block.conv2", pads=p),
        oh.make_node("Add", ["b2", "sa"], ["sum"], "block.add"),
        oh.make_node("Relu", ["sum"], ["out"], "block.relu2"),
        oh.make_node("Conv", ["out", "down.w"], ["d"], "down.conv", pads=p, strides=[2, 2]),
        oh.make_node("GlobalAveragePool", ["d"], ["g"], "head.pool"),
        oh.make_node("Flatten", ["g"], ["f"], "head.flatten"),
        oh.make_node("Gemm", ["f", "fc.w", "fc.b"], ["y"], "head.fc", transB=1),
    ]
    inits = [w("stem.w", c, 8, 3, 3), w("b.w1", c, c, 3, 3), w("b.w2", c, c, 3, 3),
             w("down.w", 2 * c, c, 3, 3), w("fc.w", 10, 2 * c), w("fc.b", 10)]  # fmt: skip
    graph = oh.make_graph(
        nodes, "profile_fixture",
        [oh.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, hw, hw])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits,
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


@pytest.fixture(scope="module", autouse=True)
def _own_cache(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEDL_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="module")
def graph():
    return load_model(make_profile_model())


@pytest.fixture(scope="module")
def measured(graph, tmp_path_factory):
    temp = tmp_path_factory.mktemp("tmp")
    with pytest.MonkeyPatch.context() as mp:  # every temp file ORT writes lands here
        mp.setattr(tempfile, "tempdir", str(temp))
        prof = profile_model(graph, sample_inputs(graph), runs=RUNS, warmup=WARMUP)
    return prof, temp


def test_every_node_gets_a_measured_timing(graph, measured):
    prof, _ = measured
    assert set(prof.nodes) == {n.name for n in graph.nodes}
    for n in graph.nodes:
        t = prof.nodes[n.name]
        assert t.kind == "measured_host" and t.op_type == n.op_type
        assert t.executed and t.median_ms > 0 and t.p90_ms >= t.median_ms
    convs = [prof.nodes[n.name].median_ms for n in graph.nodes if n.op_type == "Conv"]
    relus = [prof.nodes[n.name].median_ms for n in graph.nodes if n.op_type == "Relu"]
    assert min(convs[1:]) > max(relus)  # the heavy layers are where the time goes
    assert (prof.runs, prof.warmup, prof.threads) == (RUNS, WARMUP, 1)
    assert prof.model_digest == graph.digest and not prof.cached


def test_node_sum_matches_end_to_end_within_25_percent(measured):
    prof, _ = measured
    assert prof.end_to_end_basic_ms > 0 and prof.end_to_end_ms > 0
    assert prof.end_to_end_p90_ms >= prof.end_to_end_ms
    expected = abs(prof.node_sum_ms - prof.end_to_end_basic_ms) / prof.end_to_end_basic_ms
    assert prof.self_check_error == pytest.approx(expected)
    assert prof.self_check_error <= 0.25, (prof.node_sum_ms, prof.end_to_end_basic_ms)
    # the overhead correction only ever removes time, a few microseconds per kernel
    assert 0 <= prof.kernel_overhead_us < 50
    assert prof.node_sum_raw_ms >= prof.node_sum_ms
    assert prof.node_sum_raw_ms - prof.node_sum_ms <= 11 * prof.kernel_overhead_us / 1e3 + 1e-9


def test_profiler_files_are_cleaned_up(measured):
    _, temp = measured
    assert list(Path(temp).iterdir()) == []


def test_fingerprint_records_the_environment():
    fp = fingerprint(1)
    assert fp.threads == 1 and fp.ort_version and fp.cpu_model
    assert fp.logical_cores and fp.logical_cores >= 1
    assert fp.key() == fingerprint(1).key() != fingerprint(3).key()
    flags = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    if " avx2 " in flags:
        assert "avx2" in fp.isa_flags


def test_profiles_are_cached_by_model_inputs_and_fingerprint(graph, measured):
    prof, _ = measured
    again = profile_model(graph, sample_inputs(graph), runs=RUNS, warmup=WARMUP)
    assert again.cached and again.nodes == prof.nodes
    other_inputs = profile_model(graph, sample_inputs(graph, seed=1), runs=2, warmup=0)
    assert not other_inputs.cached and other_inputs.input_digest != prof.input_digest


def test_folded_nodes_get_zero_and_a_note():
    """A node whose inputs are all constants is folded at ORT_ENABLE_BASIC: 0 ms, noted."""
    model = make_chain_model()
    scale = numpy_helper.from_array(np.array([2.0], np.float32), "two")
    model.graph.initializer.append(scale)
    model.graph.node.insert(0, oh.make_node("Mul", ["conv1.b", "two"], ["b2"], "bias.double"))
    model.graph.node[1].input[2] = "b2"
    graph = load_model(model)
    # load_model folds it into a weight itself (so no cut can send it) ...
    assert "bias.double" not in {n.name for n in graph.nodes}
    assert any("folded 1 node(s)" in n for n in graph.notices)
    # ... and a ModelProto profiled as given keeps the node, which ORT folds: 0 ms, noted
    prof = profile_model(model, sample_inputs(graph), runs=3, warmup=1, cache=False)
    folded = prof.nodes["bias.double"]
    assert not folded.executed and folded.median_ms == 0
    assert any("bias.double" in note for note in prof.notes)
    assert all(t.executed for name, t in prof.nodes.items() if name != "bias.double")


def test_fused_kernels_are_attributed_to_the_node_they_are_named_after():
    """ORT fuses MatMul+Add at BASIC into a kernel named '<matmul>/MatMulAddFusion'."""
    rng = np.random.default_rng(3)
    w = numpy_helper.from_array(rng.standard_normal((128, 128)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.standard_normal(128).astype(np.float32), "b")
    nodes = [
        oh.make_node("MatMul", ["x", "w"], ["m"], "fc.matmul"),
        oh.make_node("Add", ["m", "b"], ["a"], "fc.add"),
        oh.make_node("Relu", ["a"], ["y"], "act"),
    ]
    graph = oh.make_graph(
        nodes, "fused", [oh.make_tensor_value_info("x", TensorProto.FLOAT, [2, 8, 128])],
        [oh.make_tensor_value_info("y", TensorProto.FLOAT, [2, 8, 128])], [w, b],
    )  # fmt: skip
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)])
    model.ir_version = 8
    loaded = load_model(model)
    prof = profile_model(loaded, sample_inputs(loaded), runs=3, warmup=1, cache=False)
    assert prof.nodes["fc.matmul"].executed and prof.nodes["fc.matmul"].median_ms > 0
    assert not prof.nodes["fc.add"].executed  # fused into the MatMul's kernel
    assert prof.node_sum_ms == pytest.approx(
        sum(t.median_ms for t in prof.nodes.values()) + prof.unattributed_ms
    )


def test_trace_parsing_on_synthetic_events():
    events = [
        {"cat": "Session", "name": "model_run", "ts": 100, "dur": 50},
        {"cat": "Node", "name": "a_kernel_time", "ts": 105, "dur": 10},
        {"cat": "Node", "name": "b/SomeFusion_kernel_time", "ts": 120, "dur": 3},
        {"cat": "Node", "name": "a_fence_before", "ts": 104, "dur": 1},  # not a kernel event
        {"cat": "Session", "name": "model_run", "ts": 200, "dur": 50},
        {"cat": "Node", "name": "a_kernel_time", "ts": 210, "dur": 20},
        {"cat": "Node", "name": "a_kernel_time", "ts": 400, "dur": 5},  # outside every run
    ]
    assert kernel_ms_per_run(events) == [{"a": 0.010, "b/SomeFusion": 0.003}, {"a": 0.020}]
    corrected = kernel_ms_per_run(events, overhead_us=4)
    assert corrected[0]["a"] == pytest.approx(0.006) and corrected[0]["b/SomeFusion"] == 0.0
    assert owner("b/SomeFusion", {"a", "b"}) == "b"
    assert owner("x/y/Fusion", {"x/y", "x"}) == "x/y"  # the longest prefix wins
    assert owner("reshape_token_3", {"a"}) is None


def test_contended_runs_are_left_out():
    clean = [(1.0, 0.99)] * 6
    busy = [(9.0, 1.0)] * 4
    assert uncontended(clean + busy, threads=1) == list(range(6))
    assert uncontended(clean[:2] + busy * 2, threads=1) == list(range(10))  # too few clean
    assert uncontended(clean + busy, threads=4) == list(range(10))  # test does not apply


def test_profiler_overhead_is_measured_and_cached():
    first = profiler_overhead_us(1)
    assert 0 <= first < 50
    assert profiler_overhead_us(1) == first  # cached per fingerprint


def test_subgraph_nodes_are_not_double_counted():
    graph = load_model(make_if_model())
    prof = profile_model(graph, sample_inputs(graph), runs=3, warmup=1, cache=False)
    assert set(prof.nodes) == {"relu", "sum", "greater", "if", "neg"}
    assert prof.nodes["if"].executed and prof.unattributed_ms == 0


def test_bad_inputs_and_arguments_are_clear_errors(graph):
    with pytest.raises(InputDataError, match="missing x.*takes: x"):
        profile_model(graph, {"input": np.zeros((1, 8, 40, 40), np.float32)}, cache=False)
    with pytest.raises(InputDataError, match="failed to run"):
        profile_model(graph, {"x": np.zeros((1, 3, 5), np.float32)}, runs=1, cache=False)
    with pytest.raises(RequestError, match="runs must be at least 1"):
        profile_model(graph, sample_inputs(graph), runs=0)
    unnamed = make_chain_model()
    unnamed.graph.node[2].name = ""
    with pytest.raises(ModelError, match="unique names.*load_model"):
        profile_model(unnamed, {"x": np.zeros((1, 3, 8, 8), np.float32)})
    with pytest.raises(ModelError, match="cannot load the model"):
        make_session(b"definitely not an onnx model")
    with pytest.raises(RequestError, match="unknown optimization level"):
        make_session(make_chain_model(), opt_level="max")  # type: ignore[arg-type]


def test_measure_latency(tmp_path: Path):
    model = make_chain_model()
    path = tmp_path / "chain.onnx"
    onnx.save(model, path)
    x = {"x": np.ones((1, 3, 8, 8), np.float32)}
    for source in (model, model.SerializeToString(), path):
        stats = measure_latency(source, x, runs=5, warmup=1, opt_level="basic")
        assert isinstance(stats, LatencyStats) and stats.kind == "measured_host"
        assert 0 < stats.median_ms <= stats.p90_ms and stats.runs == 5


def _fixture_file(tmp_path: Path) -> Path:
    path = tmp_path / "fixture.onnx"
    onnx.save(make_profile_model(), path)
    return path


def test_cli_profile_json(tmp_path: Path):
    path = _fixture_file(tmp_path)
    result = CliRunner().invoke(
        cli, ["profile", str(path), "--runs", "15", "--warmup", "3", "--json", "--target", "rpi4"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["kind"] == "measured_host" and data["units"] == "ms"
    assert len(data["nodes"]) == 11
    for n in data["nodes"]:
        assert {"name", "op_type", "flops", "output_bytes", "median_ms", "share"} <= set(n)
        assert n["median_ms"] > 0 and n["output_bytes"] > 0 and n["kind"] == "measured_host"
        assert n["predicted_ms"]["rpi4"] > 0
    assert sum(n["share"] for n in data["nodes"]) == pytest.approx(1.0, abs=0.01)
    assert data["self_check"]["ok"] and data["self_check"]["error"] <= 0.25, data["self_check"]
    assert data["predictions"][0]["kind"] == "predicted_target"
    assert data["fingerprint"]["threads"] == 1


def test_cli_profile_table(tmp_path: Path):
    result = CliRunner().invoke(cli, ["profile", str(_fixture_file(tmp_path)), "--runs", "3",
                                      "--warmup", "1"])  # fmt: skip
    assert result.exit_code == 0, result.output
    for text in ("block.conv1", "median ms", "share", "end-to-end, ALL", "self-check error"):
        assert text in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "nosuch"], "unknown hardware target 'nosuch'"),
        (["--target", "coral_edgetpu"], "runs only int8 models"),
        (["--input-shape", "x=1by3"], "is not NAME=DIMxDIM"),
        (["--runs", "0"], "runs must be at least 1"),
    ],
)
def test_cli_profile_bad_input_exits_2_with_one_line(tmp_path: Path, args, message):
    path = tmp_path / "chain.onnx"
    onnx.save(make_chain_model(), path)
    result = CliRunner().invoke(cli, ["profile", str(path), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]


def test_adaptive_warm_up_stops_once_every_session_has_run_and_time_is_spent(graph, monkeypatch):
    """With a rule, warm-up rounds stop after the first once WARMUP_S have passed (a large
    model's round alone exceeds it); node times still come from the timed rounds only, so
    every node is attributed. Fixed counts (the exhaustive mode) keep their warm-up."""
    import advisor.measure.profile as profile_mod
    from advisor.measure.timing import Rule

    monkeypatch.setattr(profile_mod, "WARMUP_S", 0.0)
    feeds = sample_inputs(graph)
    rule = Rule(floor=3, cap=4, precision=0.5)
    quick = profile_model(graph, feeds, runs=4, warmup=3, rule=rule, cache=False)
    fixed = profile_model(graph, feeds, runs=4, warmup=3, cache=False)
    assert (quick.warmup, fixed.warmup) == (1, 3)
    assert 3 <= quick.runs <= 4 and fixed.runs == 4
    for prof in (quick, fixed):
        assert set(prof.nodes) == {n.name for n in graph.nodes}
        assert all(t.median_ms > 0 for t in prof.nodes.values())
