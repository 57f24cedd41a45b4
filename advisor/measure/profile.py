"""Measure a model on this host with ONNX Runtime: per node and end to end.

Per-node latency comes from ORT's own profiler on a session at ORT_ENABLE_BASIC, where node
names survive (basic fusions such as Conv+BatchNorm keep the surviving node's name; a node
that is folded or fused away gets 0 ms and `executed=False`). Whole-model latency is timed on
plain sessions at ORT_ENABLE_BASIC (the self-check reference) and ORT_ENABLE_ALL (realistic).
The three sessions run interleaved, one inference each per round, so a noisy neighbour on a
shared machine affects them alike. Every figure is `measured_host`, in milliseconds, tied to
an environment `Fingerprint`; profiles are cached by model digest + inputs + fingerprint.

ORT's profiler adds a fixed cost inside every kernel event (a few microseconds), which
swamps tiny kernels. That cost is measured once per environment on a chain of trivial nodes
(`profiler_overhead_us`) and subtracted from each event; the uncorrected sum and its
self-check error are kept beside the corrected ones.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
from pydantic import BaseModel, ConfigDict, ValidationError

from advisor import cache as _cache
from advisor.errors import ModelError
from advisor.measure.environment import Fingerprint, fingerprint
from advisor.measure.memo import feeds_key
from advisor.measure.ort_trace import kernel_ms_per_run, owner, subgraph_node_names
from advisor.measure.timing import (
    LatencyStats,
    Rule,
    check_counts,
    check_inputs,
    make_session,
    measure_latency,
    median_p90,
    session_source,
    stop_reason,
    timed_run,
    uncontended,
)

__all__ = [
    "Fingerprint",
    "LatencyStats",
    "NodeTiming",
    "Profile",
    "fingerprint",
    "make_session",
    "measure_latency",
    "profile_model",
    "profiler_overhead_us",
]

#: an adaptive profile's warm-up stops after this many seconds, once a round has run
WARMUP_S = 0.25
_OVERHEAD_CHAIN = 64  # trivial nodes in the profiler-overhead probe


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeTiming(_Frozen):
    name: str
    op_type: str
    median_ms: float
    p90_ms: float
    kind: Literal["measured_host"] = "measured_host"
    executed: bool = True  # False: ORT folded or fused the node away at ORT_ENABLE_BASIC


class Profile(_Frozen):
    """Per-node and end-to-end latency of one model on this host (all `measured_host`, ms)."""

    model_digest: str
    input_digest: str
    fingerprint: Fingerprint
    runs: int
    warmup: int
    threads: int
    nodes: dict[str, NodeTiming]
    node_sum_ms: float  # sum of per-node medians (+ unattributed kernels), ORT_ENABLE_BASIC
    node_sum_raw_ms: float  # the same before subtracting the profiler's per-kernel overhead
    kernel_overhead_us: float  # profiler cost inside each kernel event, subtracted per event
    unattributed_ms: float  # kernels ORT created that belong to no graph node
    end_to_end_basic_ms: float  # median whole run at ORT_ENABLE_BASIC
    end_to_end_basic_p90_ms: float
    end_to_end_ms: float  # median whole run at ORT_ENABLE_ALL
    end_to_end_p90_ms: float
    self_check_error: float  # |node_sum - e2e_basic| / e2e_basic
    self_check_error_raw: float  # the same with node_sum_raw_ms
    load_avg: float | None = None  # 1-minute load average when the measurement started
    contended_runs: int = 0  # timed runs (all three sessions) dropped: they waited for a core
    kind: Literal["measured_host"] = "measured_host"
    units: Literal["ms"] = "ms"
    measured_at: str
    notes: list[str] = []
    cached: bool = False


# --- per-node profiling ------------------------------------------------------------------


def _graph_nodes(model: onnx.ModelProto) -> dict[str, str]:
    """name -> op_type of the top-level nodes; names must be unique and non-empty."""
    nodes: dict[str, str] = {}
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in nodes:
            raise ModelError(
                f"node #{i} ({node.op_type}) has {'no' if not node.name else 'a duplicate'} name; "
                "per-node profiling needs unique names - load the model with "
                "advisor.model.load_model, which names every node"
            )
        nodes[node.name] = node.op_type
    return nodes


def _digest_inputs(feed: Mapping[str, np.ndarray]) -> str:
    return feeds_key(dict(feed))


def profile_model(
    graph_or_model: Any,
    inputs: Mapping[str, Any],
    *,
    runs: int = 20,
    warmup: int = 5,
    threads: int = 1,
    cache: bool = True,
    rule: Rule | None = None,
) -> Profile:
    """Profile a ModelGraph (or a ModelProto with unique node names) on these inputs.

    Returns per-node median/p90 at ORT_ENABLE_BASIC, whole-model latency at BASIC and ALL,
    and the self-check error of the per-node sum against the BASIC whole-model median.
    With `rule`, rounds stop once the profiled whole run's 95% interval is within its
    precision (floor, cap; `runs` is then the count used), as `notes` say.
    """
    check_counts(runs, warmup, threads)
    model: onnx.ModelProto = getattr(graph_or_model, "model", graph_or_model)
    if not isinstance(model, onnx.ModelProto):
        raise ModelError(
            f"cannot profile a {type(graph_or_model).__name__}; pass a ModelGraph "
            "(advisor.model.load_model) or an onnx.ModelProto"
        )
    ops = _graph_nodes(model)
    digest = (
        getattr(graph_or_model, "digest", None)
        or hashlib.sha256(model.SerializeToString()).hexdigest()
    )
    fp = fingerprint(threads)
    feed_raw = {n: np.asarray(v) for n, v in inputs.items()}
    input_digest = _digest_inputs(feed_raw)
    key = f"{digest[:24]}-{input_digest[:12]}-{fp.key()}-r{runs}w{warmup}" + _rule_key(rule)
    if cache:
        hit = _cached(key)
        if hit is not None:
            return hit

    load = _load_avg()
    overhead = profiler_overhead_us(threads)  # cached per fingerprint even when cache=False
    source = getattr(graph_or_model, "serialized", lambda: None)() or model  # a graph's bytes
    events, times, stopped, warmup = _timed_runs(source, feed_raw, runs, warmup, threads, rule)
    runs = len(times["prof"])
    keep = {k: uncontended(v, threads) for k, v in times.items()}
    raw = _node_stats(events, model, ops, runs, warmup, 0.0, keep["prof"])
    timings, unattributed, stray = _node_stats(
        events, model, ops, runs, warmup, overhead, keep["prof"]
    )
    node_sum = sum(t.median_ms for t in timings.values()) + unattributed
    raw_sum = sum(t.median_ms for t in raw[0].values()) + raw[1]
    basic_med, basic_p90 = median_p90([times["basic"][i][0] for i in keep["basic"]])
    all_med, all_p90 = median_p90([times["all"][i][0] for i in keep["all"]])
    contended = sum(runs - len(k) for k in keep.values())
    result = Profile(
        model_digest=digest,
        input_digest=input_digest,
        fingerprint=fp,
        runs=runs,
        warmup=warmup,
        threads=threads,
        nodes=timings,
        node_sum_ms=node_sum,
        node_sum_raw_ms=raw_sum,
        kernel_overhead_us=overhead,
        unattributed_ms=unattributed,
        end_to_end_basic_ms=basic_med,
        end_to_end_basic_p90_ms=basic_p90,
        end_to_end_ms=all_med,
        end_to_end_p90_ms=all_p90,
        self_check_error=_rel_error(node_sum, basic_med),
        self_check_error_raw=_rel_error(raw_sum, basic_med),
        load_avg=load,
        contended_runs=contended,
        measured_at=datetime.now(UTC).isoformat(timespec="seconds"),
        notes=_notes(timings, unattributed, stray, load, fp, contended, 3 * runs)
        + _rule_note(rule, runs, stopped),
    )
    if cache:
        _store(key, result)
    return result


def _rel_error(total: float, ref: float) -> float:
    return abs(total - ref) / ref if ref > 0 else 0.0


def _rule_key(rule: Rule | None) -> str:
    return "" if rule is None else f"-{rule.label}{rule.floor}-{rule.cap}-{rule.precision:g}"


def _rule_note(rule: Rule | None, runs: int, stopped: str) -> list[str]:
    if rule is None:
        return []
    return [
        f"{runs} profiled rounds ({rule.label}: stopped, {stopped} for the profiled whole run, "
        "the sum of every node's time)"
    ]


def _timed_runs(
    model: onnx.ModelProto | bytes,
    feed_raw: dict[str, np.ndarray],
    runs: int,
    warmup: int,
    threads: int,
    rule: Rule | None = None,
) -> tuple[list[dict[str, Any]], dict[str, list[tuple[float, float]]], str, int]:
    """Interleave the profiled BASIC, plain BASIC and ALL sessions, one timed run each per
    round, so the ALL/BASIC ratio the predictor scales by is measured in the same moments:
    this host's speed moves by tens of percent from one second to the next, and two
    back-to-back blocks of runs can land in different speed states. Each timed ALL run follows
    an untimed one, so it finds its weights in cache as deployment (and validation, which
    runs each stage several times in a row) does.

    With a `rule`, warm-up takes up to `warmup` rounds, and no more once a round has run and
    WARMUP_S have passed: every session has then run the model at least once, which is what
    the warm-up is for, and a large model's rounds (about 0.3 s each for a ResNet-50-class
    model here) would otherwise spend a second on it.

    Returns the profiler's events, per session ('prof', 'basic', 'all') the (wall ms,
    thread CPU ms) of each timed run, why an adaptive `rule` stopped ('' without one), and
    the warm-up rounds run.
    """
    with tempfile.TemporaryDirectory(prefix="edgedl-prof-") as tmp:
        # serialized once for the three sessions (the loader's bytes, when given)
        source = model if isinstance(model, bytes) else session_source(model)
        # only the ALL session (the deployment's figure) spins its idle workers: the other
        # two would otherwise spin on the cores the ALL run needs (make_session)
        prof = make_session(
            source, threads, "basic", profile_prefix=str(Path(tmp) / "ort"), spinning=False
        )
        basic = make_session(source, threads, "basic", spinning=False)
        full = make_session(source, threads, "all")
        del source
        feed = check_inputs(prof, feed_raw)
        times: dict[str, list[tuple[float, float]]] = {"prof": [], "basic": [], "all": []}
        stopped, i, warmed, start = "", -1, warmup, time.perf_counter()
        while not stopped:
            i += 1
            if rule is not None and 0 < i < warmed and time.perf_counter() - start >= WARMUP_S:
                warmed = i  # warm enough: this round is the first timed one
            timed_run(full, feed)  # the cache warm-up for the timed ALL run below
            round_ = {
                "all": timed_run(full, feed),
                "prof": timed_run(prof, feed),
                "basic": timed_run(basic, feed),
            }
            if i >= warmed:
                for k, v in round_.items():
                    times[k].append(v)
            done = len(times["prof"])
            if rule is None:
                stopped = "fixed" if done >= runs else ""
            elif done:
                stopped = stop_reason([t[0] for t in times["prof"]], rule, None)
        trace = Path(prof.end_profiling())
        events = json.loads(trace.read_text(encoding="utf-8"))
        del prof  # the trace file and the session go with the temp dir
    return events, times, "" if rule is None else stopped, warmed


def _node_stats(
    events: list[dict[str, Any]],
    model: onnx.ModelProto,
    ops: dict[str, str],
    runs: int,
    warmup: int,
    overhead_us: float,
    keep: list[int],
) -> tuple[dict[str, NodeTiming], float, list[str]]:
    """Per-node timings over the runs `keep`, the median unattributed ms, the stray kernels."""
    every = kernel_ms_per_run(events, overhead_us)[warmup:]
    if len(every) != runs:
        raise ModelError(
            f"ONNX Runtime's profile holds {len(every) + warmup} runs, expected "
            f"{runs + warmup}; cannot attribute node times"
        )
    per_kernel = [every[i] for i in keep]
    nested = subgraph_node_names(model.graph) - set(ops)
    stray: set[str] = set()
    per_run: list[dict[str, float]] = []
    for kernels in per_kernel:
        nodes: dict[str, float] = {}
        for kernel, ms in kernels.items():
            if kernel in nested:
                continue  # counted inside the If/Loop/Scan node that owns the subgraph
            node = owner(kernel, ops)
            if node is None:
                stray.add(kernel)
                node = "\0unattributed"
            nodes[node] = nodes.get(node, 0.0) + ms
        per_run.append(nodes)
    timings: dict[str, NodeTiming] = {}
    for name, op in ops.items():
        med, p90 = median_p90([r.get(name, 0.0) for r in per_run])
        executed = any(name in r for r in per_run)
        timings[name] = NodeTiming(
            name=name, op_type=op, median_ms=med, p90_ms=p90, executed=executed
        )
    unattributed, _ = median_p90([r.get("\0unattributed", 0.0) for r in per_run])
    return timings, unattributed, sorted(stray)


def _notes(
    timings: dict[str, NodeTiming],
    unattributed: float,
    stray: list[str],
    load: float | None,
    fp: Fingerprint,
    contended: int,
    timed: int,
) -> list[str]:
    notes = []
    absent = [n for n, t in timings.items() if not t.executed]
    if absent:
        notes.append(
            f"{len(absent)} node(s) did not run at ORT_ENABLE_BASIC (constant-folded or fused "
            "into a neighbour; 0 ms, their cost is inside the surviving node): "
            + ", ".join(absent[:8])
            + (" ..." if len(absent) > 8 else "")
        )
    if stray:
        notes.append(
            f"{unattributed:.3f} ms per run in kernels ORT created that belong to no graph node "
            "(counted in node_sum_ms, not in any node): "
            + ", ".join(stray[:6])
            + (" ..." if len(stray) > 6 else "")
        )
    if contended:
        notes.append(
            f"{contended} of {timed} timed runs waited for a core (wall time well above the "
            "thread's CPU time) and were left out of the statistics"
        )
    if load is not None and fp.logical_cores and load > 0.75 * fp.logical_cores:
        notes.append(
            f"host was busy: load average {load:.1f} on {fp.logical_cores} logical cores; "
            "figures may include time lost to other processes"
        )
    return notes


def _load_avg() -> float | None:
    try:
        return os.getloadavg()[0]
    except (OSError, AttributeError):  # not on every platform
        return None


def profiler_overhead_us(threads: int = 1, cache: bool = True) -> float:
    """The time ORT's profiler adds inside each kernel event, in microseconds.

    Measured on a chain of trivial nodes (Neg on one float): the median kernel event minus
    the plain session's whole-run time per node. The plain time still holds the executor's
    own per-node work, so this is a lower bound of the profiler's cost; cached per
    environment fingerprint.
    """
    fp = fingerprint(threads)
    key = f"{fp.key()}-v1"
    if cache:
        hit = _cache.read_json("profiler_overhead", key)
        if hit is not None and isinstance(hit.get("overhead_us"), int | float):
            return float(hit["overhead_us"])
    k = _OVERHEAD_CHAIN
    vi = onnx.helper.make_tensor_value_info
    chain = onnx.helper.make_graph(
        [onnx.helper.make_node("Neg", [f"t{i}"], [f"t{i + 1}"], f"n{i}") for i in range(k)],
        "overhead_probe",
        [vi("t0", onnx.TensorProto.FLOAT, [1])],
        [vi(f"t{k}", onnx.TensorProto.FLOAT, [1])],
    )
    model = onnx.helper.make_model(chain, opset_imports=[onnx.helper.make_opsetid("", 17)])
    model.ir_version = 8  # opset 17's IR; helper's default (newest) is refused by older ORT
    events, times, _, _ = _timed_runs(model, {"t0": np.ones(1, np.float32)}, 40, 5, threads)
    kernels = [ms for run in kernel_ms_per_run(events)[5:] for ms in run.values()]
    plain = [times["basic"][i][0] for i in uncontended(times["basic"], threads)]
    overhead = max(0.0, float(np.median(kernels)) * 1e3 - float(np.median(plain)) * 1e3 / k)
    if cache:
        _cache.write_json(
            "profiler_overhead", key, {"overhead_us": overhead, "fingerprint": fp.model_dump()}
        )
    return overhead


def _cached(key: str) -> Profile | None:
    data = _cache.read_json("profiles", key)
    if data is None:
        return None
    try:
        return Profile.model_validate(data).model_copy(update={"cached": True})
    except ValidationError:
        return None  # stale format: measure again


def _store(key: str, result: Profile) -> None:
    _cache.write_json("profiles", key, result.model_dump(mode="json"))
