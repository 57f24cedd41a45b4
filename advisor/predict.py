"""Predict per-node latency on a target from this host's measurements (roofline scaling).

A node doing F FLOPs and moving B bytes (inputs + outputs + weights) takes, on a platform with
peak P and bandwidth BW, at least `max(F / P, B / BW)`: it is compute-bound when its
arithmetic intensity F / B is at or above the platform's ridge point P / BW, memory-bound
below it. The host's time is measured; its P and BW are calibrated by a short micro-benchmark
(an ORT GEMM and a large element-wise pass). The prediction keeps the measured time and
scales it by the ratio of the two roofline times:

    t_target = t_host_measured * max(F/P_t, B/BW_t) / max(F/P_h, B/BW_h)

so overheads the roofline does not see are carried over in proportion. Every prediction is
labelled `predicted_target` and carries this method; for the `host` target the prediction
is the measurement (ratio 1, `measured_host`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from pydantic import BaseModel, ConfigDict, ValidationError

from advisor import cache as _cache
from advisor.errors import RequestError
from advisor.hardware import HOST_ID, Precision, Target
from advisor.profile import Profile, fingerprint, make_session

__all__ = [
    "Calibration",
    "Prediction",
    "bound",
    "calibrate",
    "effective_precision",
    "node_time_ratio",
    "predict",
    "predict_ms",
    "predict_nodes",
    "roofline_ms",
]

Bound = Literal["compute", "memory", "none"]
_GEMM_N = 512  # 2*N^3 = 268 MFLOP per run: milliseconds on any CPU this runs on
_COPY_MB = 32  # fp32 array far larger than any last-level cache
_REPEATS = 12
_CAL_VERSION = 2  # bump when the micro-benchmark changes, so old cache entries are ignored


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Calibration(_Frozen):
    """This host's attained ceilings at a thread count (best of repeated micro-benchmarks)."""

    gflops_fp32: float
    gops_int8: float | None = None
    bandwidth_gbps: float
    method: str
    fingerprint_key: str
    threads: int
    run_overhead_ms: float = 0.0  # one session.run() of a trivial model: per-inference cost
    version: int = _CAL_VERSION
    seconds: float = 0.0  # how long the micro-benchmark took
    cached: bool = False


class Prediction(_Frozen):
    """Per-node latency on one target, with how it was obtained."""

    target_id: str
    precision: Precision  # asked for
    precision_used: Precision  # the peak actually used
    nodes: dict[str, float]
    bounds: dict[str, Bound]  # on the target
    total_ms: float
    kind: Literal["predicted_target", "measured_host"]
    method: str
    units: Literal["ms"] = "ms"
    notes: list[str] = []
    # fixed cost of one inference call on the target, to add once per compute stage
    # (measured for the host; not modelled, 0, for other targets)
    run_overhead_ms: float = 0.0
    opt_scale: float = 1.0  # ORT_ENABLE_ALL whole-run time / sum of BASIC per-node times


# --- calibration -------------------------------------------------------------------------


def _best_ms(sess: ort.InferenceSession, binding: ort.IOBinding, repeats: int) -> float:
    sess.run_with_iobinding(binding)  # warm-up: arena allocation, first-touch pages
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run_with_iobinding(binding)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def _bench(
    model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int, repeats: int
) -> float:
    sess = make_session(model, threads=threads, opt_level="basic")
    binding = sess.io_binding()
    for name, arr in feeds.items():
        binding.bind_cpu_input(name, arr)
    for out in sess.get_outputs():
        binding.bind_output(out.name)  # ORT-allocated, reused between runs
    return _best_ms(sess, binding, repeats)


def _one_node_model(
    node: onnx.NodeProto, inputs: list, outputs: list, inits: list
) -> onnx.ModelProto:
    graph = helper.make_graph([node], "calibration", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # opset 17's IR; helper's default (newest) is refused by older ORT
    return model


def _measure_ceilings(threads: int) -> tuple[float, float | None, float]:
    rng = np.random.default_rng(0)
    n = _GEMM_N
    vi = helper.make_tensor_value_info
    # fp32 GEMM: ORT's MLAS SGEMM, the kernel behind Conv/MatMul/Gemm nodes
    b = numpy_helper.from_array(rng.standard_normal((n, n)).astype(np.float32), "b")
    gemm = _one_node_model(
        helper.make_node("MatMul", ["a", "b"], ["c"]),
        [vi("a", TensorProto.FLOAT, [n, n])], [vi("c", TensorProto.FLOAT, [n, n])], [b],
    )  # fmt: skip
    a = rng.standard_normal((n, n)).astype(np.float32)
    gflops = 2 * n**3 / (_bench(gemm, {"a": a}, threads, _REPEATS) * 1e6)
    # int8 GEMM: MLAS u8 x s8 -> s32, the kernel behind quantized MatMul/Conv
    bq = numpy_helper.from_array(rng.integers(-127, 127, (n, n), dtype=np.int8), "bq")
    igemm = _one_node_model(
        helper.make_node("MatMulInteger", ["aq", "bq"], ["cq"]),
        [vi("aq", TensorProto.UINT8, [n, n])], [vi("cq", TensorProto.INT32, [n, n])], [bq],
    )  # fmt: skip
    aq = rng.integers(0, 255, (n, n), dtype=np.uint8)
    try:
        gops: float | None = 2 * n**3 / (_bench(igemm, {"aq": aq}, threads, _REPEATS) * 1e6)
    except Exception:  # noqa: BLE001 - an ORT build without MatMulInteger: no int8 ceiling
        gops = None
    # bandwidth: one element-wise pass over a large fp32 array (read once, write once)
    count = _COPY_MB * 2**20 // 4
    scale = numpy_helper.from_array(np.array(1.0001, dtype=np.float32), "s")
    stream = _one_node_model(
        helper.make_node("Mul", ["x", "s"], ["y"]),
        [vi("x", TensorProto.FLOAT, [count])], [vi("y", TensorProto.FLOAT, [count])], [scale],
    )  # fmt: skip
    x = np.full(count, 0.5, dtype=np.float32)  # values do not matter; RNG would cost more
    ms = _bench(stream, {"x": x}, threads, _REPEATS // 2)
    gbps = 2 * x.nbytes / (ms * 1e6)
    return gflops, gops, gbps


def _run_overhead_ms(threads: int) -> float:
    """Median wall time of session.run() on a one-Identity model: the per-inference cost
    (input checks, output allocation, executor start) that no node's kernel time includes."""
    vi = helper.make_tensor_value_info
    ident = _one_node_model(
        helper.make_node("Identity", ["x"], ["y"]),
        [vi("x", TensorProto.FLOAT, [4])], [vi("y", TensorProto.FLOAT, [4])], [],
    )  # fmt: skip
    sess = make_session(ident, threads=threads, opt_level="all")
    feed = {"x": np.zeros(4, dtype=np.float32)}
    for _ in range(50):
        sess.run(None, feed)
    times = []
    for _ in range(300):
        t0 = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def calibrate(threads: int = 1, cache: bool = True) -> Calibration:
    """Host compute and bandwidth ceilings at `threads`, cached per environment fingerprint."""
    if threads < 1:
        raise RequestError(f"threads must be at least 1 (got {threads})")
    fp = fingerprint(threads)
    key = f"{fp.key()}-v{_CAL_VERSION}"
    if cache:
        hit = _cached(key)
        if hit is not None:
            return hit
    t0 = time.perf_counter()
    gflops, gops, gbps = _measure_ceilings(threads)
    overhead = _run_overhead_ms(threads)
    result = Calibration(
        run_overhead_ms=overhead,
        gflops_fp32=gflops,
        gops_int8=gops,
        bandwidth_gbps=gbps,
        method=(
            f"ONNX Runtime {ort.__version__} micro-benchmark at {threads} thread(s), best of "
            f"{_REPEATS}: {_GEMM_N}^3 fp32 MatMul (GFLOP/s), {_GEMM_N}^3 uint8 x int8 "
            f"MatMulInteger (GOP/s), element-wise Mul over {_COPY_MB} MiB fp32 counting read + "
            "write bytes (GB/s); median session.run() of a one-Identity model (per-inference "
            "overhead)"
        ),
        fingerprint_key=fp.key(),
        threads=threads,
        seconds=time.perf_counter() - t0,
    )
    if cache:
        _cache.write_json("calibration", key, result.model_dump(mode="json"))
    return result


def _cached(key: str) -> Calibration | None:
    data = _cache.read_json("calibration", key)
    if data is None:
        return None
    try:
        return Calibration.model_validate(data).model_copy(update={"cached": True})
    except ValidationError:
        return None


# --- the roofline --------------------------------------------------------------------------


def roofline_ms(flops: float, bytes_moved: float, gflops: float, gbps: float) -> float:
    """Lower-bound time in ms: the slower of compute at `gflops` and traffic at `gbps`.

    >>> roofline_ms(2e9, 1e6, gflops=100, gbps=10)  # 20 ms compute vs 0.1 ms memory
    20.0
    """
    return max(flops / (gflops * 1e9), bytes_moved / (gbps * 1e9)) * 1e3


def bound(flops: float, bytes_moved: float, gflops: float, gbps: float) -> Bound:
    """'compute' when arithmetic intensity (FLOP/byte) reaches the ridge point gflops/gbps.

    >>> bound(1e9, 1e6, gflops=100, gbps=10)  # intensity 1000 > ridge 10
    'compute'
    >>> bound(1e6, 1e6, gflops=100, gbps=10)  # intensity 1 < ridge 10
    'memory'
    """
    if flops <= 0 and bytes_moved <= 0:
        return "none"
    if bytes_moved <= 0:
        return "compute"
    return "compute" if flops / bytes_moved >= gflops / gbps else "memory"


def effective_precision(target: Target, precision: Precision) -> tuple[Precision, str | None]:
    """The precision whose peak applies on `target`, and a note when it differs."""
    if precision not in ("fp32", "fp16", "int8"):
        raise RequestError(f"unknown precision {precision!r}; use fp32, fp16 or int8")
    if precision in target.peak_gflops:
        return precision, None
    if "fp32" in target.peak_gflops:
        return "fp32", (
            f"{target.id} has no sourced {precision} peak; predicted with its fp32 peak"
        )
    raise RequestError(
        f"target {target.id} runs only {', '.join(target.precisions)} models; quantize the "
        f"model and predict at that precision (CLI: --precision {target.precisions[0]}; "
        f"Python: precision={target.precisions[0]!r})"
    )


def _host_peak(host: Calibration, precision: Precision) -> float:
    if precision == "int8" and host.gops_int8:
        return host.gops_int8
    return host.gflops_fp32  # fp16 on a CPU host runs at (or below) fp32 speed in ORT


def node_time_ratio(
    flops: float,
    bytes_moved: float,
    host: Calibration,
    target: Target,
    precision: Precision = "fp32",
) -> float:
    """Roofline time on `target` over roofline time on the host for one node.

    `precision` is the precision the node runs at on both machines (pass the quantized graph
    and 'int8' for an int8 model); the target's peak for it is used when listed, else fp32.
    """
    if target.id == HOST_ID:
        return 1.0
    used, _ = effective_precision(target, precision)
    t_host = roofline_ms(flops, bytes_moved, _host_peak(host, precision), host.bandwidth_gbps)
    if t_host <= 0:
        return 1.0  # no work to scale (shape ops): overhead assumed alike
    t_target = roofline_ms(flops, bytes_moved, target.peak_gflops[used], target.mem_bandwidth_gbps)
    return t_target / t_host


# --- predicting a profiled graph ---------------------------------------------------------


def _check_pair(graph: Any, profile: Profile, calibration: Calibration) -> None:
    if getattr(graph, "digest", None) != profile.model_digest:
        raise RequestError(
            "the profile was measured on a different model than the graph given; profile this "
            "graph first (advisor.profile.profile_model)"
        )
    if profile.fingerprint.key() != calibration.fingerprint_key:
        raise RequestError(
            "profile and calibration come from different environments (host or thread count); "
            f"use calibrate(threads={profile.threads}) on the machine that made the profile"
        )


def predict(
    graph: Any,
    profile: Profile,
    target: Target,
    calibration: Calibration,
    precision: Precision = "fp32",
    nodes: Collection[str] | None = None,
) -> Prediction:
    """Per-node ms on `target` for the graph's nodes (or the subset `nodes`)."""
    _check_pair(graph, profile, calibration)
    infos = {n.name: n for n in graph.nodes}
    wanted = list(infos) if nodes is None else list(nodes)
    unknown = [n for n in wanted if n not in infos]
    if unknown:
        raise RequestError(f"no such node(s) in {graph.name!r}: {', '.join(unknown[:5])}")
    used, note = effective_precision(target, precision)
    notes = [note] if note else []
    is_host = target.id == HOST_ID
    out: dict[str, float] = {}
    bounds: dict[str, Bound] = {}
    scale = opt_level_scale(profile, calibration)
    for name in wanted:
        info = infos[name]
        moved = info.input_bytes + info.output_bytes + info.param_bytes
        measured = profile.nodes[name].median_ms * scale
        out[name] = measured * node_time_ratio(info.flops, moved, calibration, target, precision)
        bounds[name] = bound(info.flops, moved, target.peak_gflops[used], target.mem_bandwidth_gbps)
    total = sum(out.values())
    if nodes is None and profile.unattributed_ms > 0:
        measured_total = sum(profile.nodes[n].median_ms for n in wanted)
        graph_ratio = total / measured_total if measured_total > 0 else 1.0
        total += profile.unattributed_ms * graph_ratio
        notes.append(
            f"{profile.unattributed_ms:.3f} ms of host kernels matched no node; scaled by the "
            "graph's overall ratio and included in total_ms"
        )
    scaled = (
        f"per-node medians at ORT_ENABLE_BASIC x {scale:.3g} (the model's "
        "ORT_ENABLE_ALL whole-run time, less the per-inference overhead, over the "
        "per-node sum: fusions at the level validation runs)"
    )
    if is_host:
        method = f"measured on this host: {scaled}; plus {calibration.run_overhead_ms:.3g} ms "
        method += "per inference call"
    else:
        notes.append("per-inference runtime overhead is not modelled for this target")
        method = (
            "roofline ratio: t_target = t_host_measured x max(F/P_t, B/BW_t) / max(F/P_h, B/BW_h) "
            f"with F = node FLOPs, B = input+output+weight bytes; P_t = {target.id} {used} peak "
            f"{target.peak_gflops[used]:g} GFLOP/s, BW_t = {target.mem_bandwidth_gbps:g} GB/s "
            f"(data/hardware.yaml); P_h = {_host_peak(calibration, precision):.1f}, BW_h = "
            f"{calibration.bandwidth_gbps:.1f} calibrated on this host ({calibration.method}); "
            f"host times: {scaled}"
        )
    return Prediction(
        target_id=target.id,
        precision=precision,
        precision_used=used,
        nodes=out,
        bounds=bounds,
        total_ms=total,
        kind="measured_host" if is_host else "predicted_target",
        method=method,
        notes=notes,
        run_overhead_ms=calibration.run_overhead_ms if is_host else 0.0,
        opt_scale=scale,
    )


def opt_level_scale(profile: Profile, calibration: Calibration) -> float:
    """ORT_ENABLE_ALL whole-model time (less one inference call's overhead) over the sum of
    the ORT_ENABLE_BASIC per-node medians. Per-node attribution needs BASIC (node names
    survive); deployed sessions run at ALL, whose fusions can make a CNN several times faster.
    Clamped to [0.1, 2] so a disturbed profile cannot swing predictions wildly."""
    if profile.node_sum_ms <= 0 or profile.end_to_end_ms <= 0:
        return 1.0
    work = max(profile.end_to_end_ms - calibration.run_overhead_ms, 0.0)
    return min(2.0, max(0.1, work / profile.node_sum_ms))


def predict_nodes(
    graph: Any,
    profile: Profile,
    target: Target,
    calibration: Calibration,
    precision: Precision = "fp32",
) -> dict[str, float]:
    """Predicted ms per node on `target` ('predicted_target'; the measurement for 'host')."""
    return predict(graph, profile, target, calibration, precision).nodes


def predict_ms(
    graph: Any,
    profile: Profile,
    target: Target,
    calibration: Calibration,
    nodes: Collection[str] | None = None,
    precision: Precision = "fp32",
) -> float:
    """Predicted ms on `target` for the whole graph or the node subset `nodes`."""
    return predict(graph, profile, target, calibration, precision, nodes).total_ms
