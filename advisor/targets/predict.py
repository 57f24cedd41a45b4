"""Per-node latency on a target, from the best source there is, with its error band.

In order of trust:
1. `measured_host` — the target is this machine: the profile's per-node medians (at
   ORT_ENABLE_BASIC, scaled to the ORT_ENABLE_ALL whole-run time) are the figures.
2. `target_profile` — the target has a measured profile (`edgedl hardware calibrate`, saved in
   a target file): each node from that machine's attained rate for its operator class and
   size, its per-node dispatch cost and per-inference call cost, at the best measured thread
   count up to `threads` (`advisor.targets.methods.profile_node_ms`).
3. `catalog_priors` — a catalog target: the datasheet roofline `max(F / P, B / BW)` divided by
   the attained fraction fitted to published measurements, plus the per-node and per-call
   costs fitted for its kind of unit (`advisor.targets.priors`); a CPU target runs on all its
   cores unless `threads` says fewer.
(Per-node times measured on the target itself, through an agent, come from
`advisor.validate.onsite.target_prediction` and are labelled `measured_target`.)

Every prediction says its source and carries an error band: the 80th percentile of |ln(pred /
measured)| that validation found for that source (`data/target_priors.yaml`; BENCHMARKS.md,
target-prediction section), so `ms * exp(±band)` is the range a figure is expected in.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from advisor.errors import RequestError
from advisor.graph.model import NodeInfo
from advisor.measure.calibrate import Calibration
from advisor.measure.profile import Profile
from advisor.measure.suite import host_profile
from advisor.targets.catalog import HOST_ID, Precision, Target
from advisor.targets.methods import best_threads, priors_node_ms, profile_node_ms, ratio_node_ms
from advisor.targets.priors import Priors, load_priors, unit_of

__all__ = [
    "predict_model",
    "Prediction",
    "Source",
    "PROFILE_BAND",
    "bound",
    "effective_precision",
    "node_time_ratio",
    "predict",
    "predict_ms",
    "predict_nodes",
    "roofline_ms",
]

Bound = Literal["compute", "memory", "none"]
Source = Literal["measured_host", "measured_target", "target_profile", "catalog_priors"]
#: error band of a target-profile prediction: the p80 |ln error| that bench_target measured
#: on its recorded second machine (16-core Xeon, 2026-12-04): 0.45 stepping that machine's own
#: 1-thread profile to 2-16 threads, 0.47 profiling here and predicting there at 1-16 threads
PROFILE_BAND = 0.45


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
    kind: Literal["predicted_target", "measured_host", "measured_target"]
    method: str
    units: Literal["ms"] = "ms"
    notes: list[str] = []
    # fixed cost of one inference call on the target, to add once per compute stage
    # (measured for the host; not modelled, 0, for other targets)
    run_overhead_ms: float = 0.0
    opt_scale: float = 1.0  # ORT_ENABLE_ALL whole-run time / sum of BASIC per-node times
    source: Source = "catalog_priors"
    band: float = 0.0  # ln-space half-width of the expected error (0: a measurement)
    threads: int | None = None  # CPU threads the figures assume (None: not a CPU or all)


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
        f"target {target.id} runs only {', '.join(target.precisions)} models; a "
        f"{precision} model cannot run there (advise considers only "
        f"{', '.join(target.precisions)} plans on it)"
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
    *,
    threads: int | None = None,
    priors: Priors | None = None,
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
    scale = opt_level_scale(profile, calibration)
    bounds = {
        n: bound(
            infos[n].flops,
            infos[n].input_bytes + infos[n].output_bytes + infos[n].param_bytes,
            target.peak_gflops[used],
            target.mem_bandwidth_gbps,
        )
        for n in wanted
    }
    if target.id == HOST_ID:
        out = {n: profile.nodes[n].median_ms * scale for n in wanted}
        return _host(target, precision, used, out, bounds, profile, calibration, scale, notes)
    chosen = [infos[n] for n in wanted]
    if target.profile is not None:
        host_ms = {n: profile.nodes[n].median_ms * scale for n in wanted}
        return _from_profile(
            target, precision, used, chosen, bounds, threads, notes, (host_ms, profile.threads)
        )
    return _from_priors(target, precision, used, chosen, bounds, threads, priors, notes)


def _host(target, precision, used, out, bounds, profile, calibration, scale, notes) -> Prediction:
    total = sum(out.values())
    if profile.unattributed_ms > 0 and len(out) == len(profile.nodes):
        total += profile.unattributed_ms
        notes.append(
            f"{profile.unattributed_ms:.3f} ms of host kernels matched no node; included in "
            "total_ms"
        )
    method = (
        f"measured on this host: per-node medians at ORT_ENABLE_BASIC x {scale:.3g} (the "
        "model's ORT_ENABLE_ALL whole-run time, less the per-inference overhead, over the "
        f"per-node sum); plus {calibration.run_overhead_ms:.3g} ms per inference call"
    )
    return Prediction(
        target_id=target.id, precision=precision, precision_used=used, nodes=out,
        bounds=bounds, total_ms=total, kind="measured_host", method=method, notes=notes,
        run_overhead_ms=calibration.run_overhead_ms, opt_scale=scale, source="measured_host",
        band=0.0, threads=calibration.threads,
    )  # fmt: skip


def _from_profile(
    target: Target,
    precision: Precision,
    used: Precision,
    nodes: list[NodeInfo],
    bounds: dict[str, Bound],
    threads: int | None,
    notes: list[str],
    host: tuple[dict[str, float], int] | None = None,
) -> Prediction:
    """From a measured target profile. With `host` (this host's per-node ms and its thread
    count) an FP32 node is scaled from its time here by the two machines' rates for its
    class and size (ratio); otherwise it is computed from the target's rates (absolute)."""
    prof = target.profile
    if prof is None:
        raise RequestError(f"target {target.id} has no measured profile")
    ref = host_profile(host[1]) if host is not None and used == "fp32" else None

    def node_ms(n: NodeInfo, t: int) -> float:
        if ref is not None and host is not None:
            return ratio_node_ms(n, host[0][n.name], ref, host[1], prof, t)
        return profile_node_ms(n, prof, t, used)

    options = {t: {n.name: node_ms(n, t) for n in nodes} for t in best_threads(prof, threads)}
    best = min(options, key=lambda t: sum(options[t].values()) + prof.at(t).call_ms)
    out = options[best]
    if len(options) > 1:
        tried = ", ".join(
            f"{t}: {sum(v.values()) + prof.at(t).call_ms:.3g} ms" for t, v in options.items()
        )
        notes.append(f"thread counts tried ({tried}); {best} is the fastest")
    how = (
        "each node's time measured here x (this host's / the target's attained rate for its "
        "operator class and size)"
        if ref is not None
        else "each node's FLOPs (or bytes) at the target's attained rate for its operator "
        "class and size"
    )
    method = (
        f"target profile: {how}, plus {prof.at(best).dispatch_us:.3g} µs dispatch per node, "
        f"at {best} thread(s); {prof.source()}"
    )
    return Prediction(
        target_id=target.id, precision=precision, precision_used=used, nodes=out,
        bounds=bounds, total_ms=sum(out.values()), kind="predicted_target", method=method,
        notes=notes, run_overhead_ms=prof.at(best).call_ms, source="target_profile",
        band=PROFILE_BAND, threads=best,
    )  # fmt: skip


#: measured, not fitted: bench/results/devices/h200-box_2026-12-04.json.gz (bench_target)
GPU_EAGER_NOTE = (
    "GPU figures assume a runtime that launches the whole graph at once (TensorRT, CUDA "
    "graphs): on an H200, PyTorch eager ran seven CNNs at batch 1 3.5-9x slower than the same "
    "models replayed as CUDA graphs, which these priors matched within a median 20% "
    "(bench_target, recorded 2026-12-04)"
)


def _from_priors(
    target: Target,
    precision: Precision,
    used: Precision,
    nodes: list[NodeInfo],
    bounds: dict[str, Bound],
    threads: int | None,
    priors: Priors | None,
    notes: list[str],
) -> Prediction:
    priors = priors or load_priors()
    unit = unit_of(target, used)
    s = priors.scale_for(target.id, unit, used)
    runtime = priors.runtime_for(target.id, unit, used)
    cpu = unit == "cpu" and target.cores is not None
    run_threads = min(threads, target.cores) if cpu and threads and target.cores else None
    out = {n.name: priors_node_ms(n, target, used, priors, run_threads) for n in nodes}
    if runtime is None:
        notes.append(
            f"no published {used} measurements on {target.id}'s {unit}: its attained fraction "
            f"is the median of {unit} targets ({s:.3g}), so the band is wider"
        )
    if unit == "gpu":
        notes.append(GPU_EAGER_NOTE)
    where = f"with {runtime}" if runtime else f"(median {unit} fraction)"
    cores = f", on {run_threads or target.cores} of {target.cores} cores" if cpu else ""
    method = (
        f"catalog priors: max(F / P, B / BW) per node at {target.id}'s datasheet {used} peak "
        f"{target.peak_gflops[used]:g} GFLOP/s and {target.mem_bandwidth_gbps:g} GB/s, over the "
        f"attained fraction {s:.3g} fitted to published measurements {where}{cores}, plus "
        f"{priors.per_node_us.get(unit, 0.0):g} µs per node and "
        f"{priors.call_ms.get(unit, 0.0):g} ms per call ({priors.fitted})"
    )
    return Prediction(
        target_id=target.id, precision=precision, precision_used=used, nodes=out,
        bounds=bounds, total_ms=sum(out.values()), kind="predicted_target", method=method,
        notes=notes, run_overhead_ms=priors.call_ms.get(unit, 0.0), source="catalog_priors",
        band=priors.band if runtime else priors.band_fallback,
        threads=(run_threads or target.cores) if cpu else None,
    )  # fmt: skip


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
    *,
    threads: int | None = None,
) -> dict[str, float]:
    """Predicted ms per node on `target` ('predicted_target'; the measurement for 'host')."""
    return predict(graph, profile, target, calibration, precision, threads=threads).nodes


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


def predict_model(
    model: Any,
    target: Target,
    precision: Precision,
    threads: int | None = None,
    *,
    graph: Any = None,
    loaded: bool = False,
) -> Prediction:
    """Predict a whole model (an ONNX ModelProto, e.g. a quantized or pruned plan artifact) on
    a non-host `target` from its own nodes: the target profile if it has one, else the
    catalog priors. Nothing of this host's timing enters the figure. `graph`: the model
    already loaded (`advisor.graph.load.load_model(model)`), when the caller has it;
    `loaded`: the caller has loaded this model in ONNX Runtime already (no second load to
    check it)."""
    from advisor.graph.load import load_model

    if target.id == HOST_ID:
        raise RequestError("the host is measured, not predicted: time the model with ORT")
    if graph is None:
        graph = load_model(model, ort_check=not loaded, compact=False)  # read once, dropped
    used, note = effective_precision(target, precision)
    notes = [note] if note else []
    nodes = list(graph.nodes)
    bounds = {
        n.name: bound(
            n.flops,
            n.input_bytes + n.output_bytes + n.param_bytes,
            target.peak_gflops[used],
            target.mem_bandwidth_gbps,
        )
        for n in nodes
    }
    if target.profile is not None:
        return _from_profile(target, precision, used, nodes, bounds, threads, notes)
    return _from_priors(target, precision, used, nodes, bounds, threads, None, notes)
