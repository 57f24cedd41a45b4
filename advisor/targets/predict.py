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

from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from advisor.errors import RequestError
from advisor.measure.calibrate import Calibration
from advisor.measure.profile import Profile
from advisor.targets.catalog import HOST_ID, Precision, Target

__all__ = [
    "Prediction",
    "bound",
    "effective_precision",
    "node_time_ratio",
    "predict",
    "predict_ms",
    "predict_nodes",
    "roofline_ms",
]

Bound = Literal["compute", "memory", "none"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


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
            "graph first (advisor.measure.profile.profile_model)"
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
