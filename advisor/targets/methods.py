"""The two ways a node's time on a target is predicted when it cannot be measured there.

- **From a measured target profile** (`profile_node_ms`): the target's own attained rate for
  the node's operator class and size (`advisor.measure.suite`, run on that machine by
  `edgedl hardware calibrate`), plus its measured per-node dispatch cost.
- **From catalog priors** (`priors_node_ms`): the datasheet roofline, divided by the attained
  fraction fitted to published measurements (`advisor.targets.priors`), plus the per-node cost
  fitted for that kind of unit.

Both read only the node's FLOPs, bytes and class (`advisor.graph.model.NodeInfo`), never this
host's time for it, so a quirk of this host (a slow kernel, subnormal weights) does not leak
into a target's figure.
"""

from __future__ import annotations

from advisor.graph.model import NodeInfo
from advisor.graph.opclass import COMPUTE_CLASSES
from advisor.measure.suite import MEMORY_CLASSES, MeasuredProfile
from advisor.targets.catalog import Precision, Target
from advisor.targets.priors import WIDTH, Priors, thread_factor, unit_of

__all__ = ["profile_node_ms", "ratio_node_ms", "priors_node_ms", "best_threads", "FREE_OPS"]

#: ops ONNX Runtime runs without touching the data (views and shape arithmetic)
FREE_OPS = frozenset(
    {"Reshape", "Flatten", "Squeeze", "Unsqueeze", "Shape", "Size", "Identity", "Constant",
     "Dropout"}
)  # fmt: skip
_INT8 = {"conv": "conv_int8", "conv1x1": "conv_int8", "dense": "dense_int8"}


def _bytes(node: NodeInfo, precision: Precision) -> float:
    return (node.input_bytes + node.output_bytes + node.param_bytes) * WIDTH.get(precision, 1.0)


def profile_node_ms(
    node: NodeInfo, profile: MeasuredProfile, threads: int, precision: Precision = "fp32"
) -> float:
    """One node on a target with a measured profile, at `threads` (ms)."""
    at = profile.at(threads)
    dispatch = at.dispatch_us / 1e3
    if node.op_type in FREE_OPS:
        return dispatch
    cls: str = node.op_class
    if precision == "int8" and cls in _INT8 and _INT8[cls] in at.rates:
        cls = _INT8[cls]
    if cls in COMPUTE_CLASSES or cls in ("conv_int8", "dense_int8"):
        rate = profile.rate(cls, max(node.flops, 1.0), threads)
        if rate:
            return node.flops / (rate * 1e6) + dispatch
    work = _bytes(node, precision)
    kind = cls if cls in MEMORY_CLASSES else "elementwise"
    rate = profile.rate(kind, max(work, 1.0), threads) or profile.rate("elementwise", work, threads)
    return (work / (rate * 1e6) if rate else 0.0) + dispatch


def ratio_node_ms(
    node: NodeInfo,
    host_ms: float,
    host: MeasuredProfile,
    host_threads: int,
    target: MeasuredProfile,
    threads: int,
) -> float:
    """One node on a profiled target from its time measured here: the host time less its
    dispatch cost, times (host rate / target rate) for the node's class and size at the
    target's thread count nearest the host's, stepped from that count to `threads` by the
    target's class-level speed-up and fork-join cost (for memory-bound classes a speed-up
    read at the node's size; `MeasuredProfile.thread_step`), plus the target's dispatch
    cost. What the roofline ratio did with datasheet peaks, with both
    machines' measured rates instead.

    Why this step (bench_target, 2026-12-04; nine models, the whole run timed alone): a
    per-size rate ratio put the smallest probes' poor scaling on every small node and
    predicted a 16-core machine's 2-16 threads a median 48% too slow; a speed-up alone (the
    mean over the larger probes) left models on this 2-core host up to 35% too fast at 2
    threads (median 14%), short by a few µs per node: the hand-off to the thread pool that a
    node pays whatever its size. Speed-up plus that cost: 5% here, 13% on the 16-core
    machine's own 1-thread profile stepped to 2-16 threads (was 16%). Memory-bound nodes
    stepped by size instead (ORT runs a small one inline): 4.6% here, 11.9% there, and 11.3%
    from here to there (was 11.9%). Ten variants were compared on those same data;
    bench_target scores the one kept on every run."""
    h_dispatch = host.at(host_threads).dispatch_us / 1e3
    t_dispatch = target.at(threads).dispatch_us / 1e3
    if node.op_type in FREE_OPS:
        return t_dispatch
    cls: str = node.op_class
    if cls in COMPUTE_CLASSES:
        work = max(node.flops, 1.0)
    else:
        work = max(float(node.input_bytes + node.output_bytes + node.param_bytes), 1.0)
        cls = cls if cls in MEMORY_CLASSES else "elementwise"
    near = target.at(host_threads).threads
    r_host = host.rate(cls, work, host_threads)
    r_target = target.rate(cls, work, near)
    if not r_host or not r_target:
        return profile_node_ms(node, target, threads)
    at_near = max(host_ms - h_dispatch, 0.0) * r_host / r_target
    if near == threads:
        return at_near + t_dispatch
    from_, to = target.thread_step(cls, near, work), target.thread_step(cls, threads, work)
    if from_ is None or to is None:  # not measured at both counts: the per-size rates
        return at_near * r_target / (target.rate(cls, work, threads) or r_target) + t_dispatch
    return max(at_near - from_[1], 0.0) * from_[0] / to[0] + to[1] + t_dispatch


def priors_node_ms(
    node: NodeInfo,
    target: Target,
    precision: Precision,
    priors: Priors,
    threads: int | None,
) -> float:
    """One node on a catalog target from the fitted priors (ms); `threads` None = all cores."""
    unit = unit_of(target, precision)
    peak = target.peak_gflops.get(precision) or target.peak_gflops["fp32"]
    roof = max(
        node.flops / (peak * 1e6), _bytes(node, precision) / (target.mem_bandwidth_gbps * 1e6)
    )
    s = priors.scale_for(target.id, unit, precision)
    roof *= thread_factor(target, unit, threads, priors.thread_exponent)
    return roof / s + priors.per_node_us.get(unit, 0.0) / 1e3


def best_threads(profile: MeasuredProfile, limit: int | None) -> list[int]:
    """The measured thread counts a stage may run at: all of them, or those up to `limit`."""
    counts = profile.thread_counts
    allowed = [t for t in counts if limit is None or t <= limit]
    return allowed or counts[:1]
