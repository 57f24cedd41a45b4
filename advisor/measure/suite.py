"""The target calibration suite: attained speed per operator class, size and thread count.

`run_suite(threads=(1, 2, 4))` builds small ONNX models with `onnx.helper` — eight copies of
one node in a row (one copy where the node changes its input's shape), at three sizes per
class (`advisor.graph.opclass`): 3x3 Conv, 1x1 Conv, depthwise Conv, MatMul, an element-wise
Add, Softmax, MaxPool, and where ONNX Runtime has them int8 MatMulInteger and QLinearConv —
and times them with ONNX Runtime on the machine it runs on (here, or on a device through
`edgedl agent serve`'s /calibrate route). It also measures the fixed costs a roofline misses:
the per-inference call cost (a one-node model on a single element) and the per-node dispatch
cost (a chain of 64 trivial nodes against one).

Every rate is attained, not peak: FLOPs (or bytes moved) over the median time of one node in
the chain, less the call and dispatch costs. Chains, not lone nodes, because that is how a
model runs them: a lone node pays for waking the thread pool on every run, which made 2
threads look slower than 1 for small nodes that run faster at 2 inside a model. A target
file saved by `edgedl hardware calibrate` carries the result (`MeasuredProfile`), and
`advisor.targets.predict` reads a node's rate from it by class and size (interpolated on log
size).

>>> p = run_suite(threads=(1,), quick=True)   # doctest: +SKIP
>>> p.rate("conv", 5e7, threads=1) > 0   # doctest: +SKIP
True
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from pydantic import BaseModel, ConfigDict, Field

from advisor.errors import RequestError
from advisor.measure.environment import fingerprint
from advisor.measure.timing import make_session, timed_run, uncontended

__all__ = [
    "RatePoint",
    "ThreadRates",
    "MeasuredProfile",
    "run_suite",
    "host_profile",
    "auto_threads",
    "parse_threads",
    "SUITE_CLASSES",
]

SUITE_VERSION = 4
#: operator classes whose kernels are memory-bound: their thread step depends on size
#: (`MeasuredProfile.thread_step`)
MEMORY_CLASSES = frozenset({"elementwise", "norm", "pool"})
_CHAIN = 64  # trivial nodes in the dispatch probe
_REPEAT = 8  # copies of a shape-keeping probe node run back to back (see _repeat)


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class RatePoint(_Frozen):
    """One timed node: its work (FLOPs, or bytes for memory-bound classes) and attained rate."""

    work: float = Field(gt=0, description="FLOPs, or bytes moved for memory-bound classes")
    rate: float = Field(gt=0, description="GFLOP/s (GOP/s for int8), or GB/s")
    ms: float = Field(ge=0, description="median time of one node in its chain, ms")


class ThreadRates(_Frozen):
    """Everything measured at one intra-op thread count."""

    threads: int = Field(ge=1)
    rates: dict[str, list[RatePoint]]  # op class (or 'dense_int8', 'conv_int8') -> by size
    dispatch_us: float = Field(ge=0, description="cost of one more node in a graph, µs")
    call_ms: float = Field(ge=0, description="one session.run() of a trivial model, ms")


class MeasuredProfile(_Frozen):
    """A machine's measured speed: what `edgedl hardware calibrate` saves in a target file."""

    cpu_model: str | None
    fingerprint_key: str
    ort_version: str
    date: str
    suite_version: int = SUITE_VERSION
    seconds: float = 0.0
    by_threads: dict[int, ThreadRates]

    @property
    def thread_counts(self) -> list[int]:
        return sorted(self.by_threads)

    def at(self, threads: int) -> ThreadRates:
        """The rates measured at `threads`, or at the nearest measured count below it."""
        counts = self.thread_counts
        below = [t for t in counts if t <= threads]
        return self.by_threads[below[-1] if below else counts[0]]

    def rate(self, op_class: str, work: float, threads: int) -> float | None:
        """Attained rate for `work` FLOPs (or bytes) of `op_class`, interpolated on log work
        between the measured sizes and held flat beyond them; None if the class was not
        measured."""
        points = self.at(threads).rates.get(op_class)
        if not points:
            return None
        return interpolate(points, work)

    def thread_step(
        self, op_class: str, threads: int, work: float | None = None
    ) -> tuple[float, float] | None:
        """How a node of `op_class` changes from 1 thread to `threads`: (speed-up, fork-join
        ms), for `node_ms(threads) = node_ms(1) / speed-up + fork-join`; None if the class
        was not measured at both counts. What thread-count steps are read from
        (`advisor.targets.methods`).

        A memory-bound node (MEMORY_CLASSES) with its `work` (bytes) given steps by size:
        ONNX Runtime splits such a kernel only past a cost threshold (here an Add on 64 KB
        ran 0.99x as fast at 2 threads, on 3 MB 1.77x), so its speed-up is the probes' own
        1 -> `threads` ratio interpolated at `work`, between 1 and `threads`, with no
        fork-join cost (evidence: `advisor.targets.methods.ratio_node_ms`).

        A node that runs in parallel pays a fixed cost to hand its work to the pool and join
        it, whatever its size: the smallest probe's time at `threads` beyond what the
        speed-up leaves of its 1-thread time. The speed-up is the best of the larger probes
        once that cost is taken off, and never more than `threads`: a probe scales worse than
        its class for reasons outside its arithmetic (a shape that splits badly, noise),
        rarely better.

        >>> p = MeasuredProfile(cpu_model=None, fingerprint_key="k", ort_version="x",
        ...     date="d", by_threads={t: ThreadRates(threads=t, dispatch_us=0, call_ms=0,
        ...     rates={"conv": [RatePoint(work=w, rate=w / m / 1e6, ms=m) for w, m in pts]})
        ...     for t, pts in {1: [(1e5, .010), (1e6, .100), (1e7, 1.0)],
        ...                    2: [(1e5, .010), (1e6, .055), (1e7, .505)]}.items()})
        >>> speedup, fork_join = p.thread_step("conv", 2)   # probes: half, plus 5 µs a node
        >>> round(speedup, 2), round(fork_join * 1e3, 1)
        (2.0, 5.0)
        """
        if self.at(threads).threads == self.at(1).threads:
            return (1.0, 0.0) if self.at(1).rates.get(op_class) else None
        one = sorted(self.at(1).rates.get(op_class) or [], key=lambda p: p.work)
        many = sorted(self.at(threads).rates.get(op_class) or [], key=lambda p: p.work)
        if not one or len(one) != len(many):
            return None
        t1 = [p.work / p.rate / 1e6 for p in one]  # ms per node (RatePoint.ms is rounded)
        tn = [p.work / p.rate / 1e6 for p in many]
        cap = float(self.at(threads).threads)
        if op_class in MEMORY_CLASSES and work is not None:
            steps = [  # interpolate() reads (work, rate) points: the rate here is a speed-up
                RatePoint(work=p.work, rate=min(max(a / b, 1.0), cap), ms=0.0)
                for p, a, b in zip(one, t1, tn, strict=True)
            ]
            return interpolate(steps, work), 0.0
        if len(one) == 1:
            return t1[0] / tn[0], 0.0
        pairs = list(zip(t1[1:], tn[1:], strict=True))
        raw = max(a / b for a, b in pairs)
        fork_join = max(0.0, tn[0] - t1[0] / raw)
        speedup = max(a / max(b - fork_join, 1e-9) for a, b in pairs)
        return min(speedup, cap), fork_join

    def source(self) -> str:
        return (
            f"measured by edgedl hardware calibrate on {self.cpu_model or 'unknown CPU'} "
            f"({self.fingerprint_key}), {self.date}, ONNX Runtime {self.ort_version}"
        )


def interpolate(points: Sequence[RatePoint], work: float) -> float:
    """Log-log interpolation of rate against work.

    >>> pts = [RatePoint(work=1e6, rate=1.0, ms=1), RatePoint(work=1e8, rate=100.0, ms=1)]
    >>> round(interpolate(pts, 1e7), 6), interpolate(pts, 1e3), interpolate(pts, 1e12)
    (10.0, 1.0, 100.0)
    """
    pts = sorted(points, key=lambda p: p.work)
    works = [p.work for p in pts]
    if work <= works[0]:
        return pts[0].rate
    if work >= works[-1]:
        return pts[-1].rate
    i = bisect.bisect_left(works, work)
    a, b = pts[i - 1], pts[i]
    f = (math.log(work) - math.log(a.work)) / (math.log(b.work) - math.log(a.work))
    return math.exp(math.log(a.rate) + f * (math.log(b.rate) - math.log(a.rate)))


# --- the probe models ---------------------------------------------------------------------

_vi = helper.make_tensor_value_info
_Probe = tuple[onnx.ModelProto, dict[str, np.ndarray], float]  # model, feeds, work


def _model(nodes: list[onnx.NodeProto], inputs: list, outputs: list, inits: list, opset=17):
    graph = helper.make_graph(nodes, "calibration", inputs, outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _conv(c_in: int, c_out: int, hw: int, k: int, group: int) -> _Probe:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((c_out, c_in // group, k, k)).astype(np.float32) * 0.1
    node = helper.make_node(
        "Conv", ["x", "w"], ["y"], pads=[k // 2] * 4, group=group, kernel_shape=[k, k]
    )
    model = _model(
        [node],
        [_vi("x", TensorProto.FLOAT, [1, c_in, hw, hw])],
        [_vi("y", TensorProto.FLOAT, [1, c_out, hw, hw])],
        [numpy_helper.from_array(w, "w")],
    )
    x = rng.standard_normal((1, c_in, hw, hw)).astype(np.float32)
    return model, {"x": x}, 2.0 * c_out * (c_in // group) * k * k * hw * hw


def _matmul(m: int, k: int, n: int) -> _Probe:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((k, n)).astype(np.float32) * 0.1
    model = _model(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        [_vi("x", TensorProto.FLOAT, [m, k])],
        [_vi("y", TensorProto.FLOAT, [m, n])],
        [numpy_helper.from_array(w, "w")],
    )
    return model, {"x": rng.standard_normal((m, k)).astype(np.float32)}, 2.0 * m * k * n


def _unary(op: str, shape: list[int], passes: float, **attrs) -> _Probe:
    """A memory-bound node; work = bytes read and written (x `passes` for multi-pass ops)."""
    rng = np.random.default_rng(0)
    out_shape = list(shape)
    if op == "MaxPool" and attrs.get("strides", [1])[0] > 1:
        out_shape = [*shape[:2], shape[2] // 2, shape[3] // 2]
    model = _model(
        [helper.make_node(op, ["x"], ["y"], **attrs)],
        [_vi("x", TensorProto.FLOAT, shape)],
        [_vi("y", TensorProto.FLOAT, out_shape)],
        [],
    )
    x = rng.standard_normal(shape).astype(np.float32)
    moved = 4.0 * (math.prod(shape) + math.prod(out_shape)) * passes
    return model, {"x": x}, moved


def _add(n: int) -> _Probe:
    rng = np.random.default_rng(0)
    model = _model(
        [helper.make_node("Add", ["a", "b"], ["y"])],
        [_vi("a", TensorProto.FLOAT, [n]), _vi("b", TensorProto.FLOAT, [n])],
        [_vi("y", TensorProto.FLOAT, [n])],
        [],
    )
    feeds = {k: rng.standard_normal(n).astype(np.float32) for k in ("a", "b")}
    return model, feeds, 12.0 * n


def _matmul_int8(m: int, k: int, n: int) -> _Probe:
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 127, (k, n), dtype=np.int8)
    model = _model(
        [helper.make_node("MatMulInteger", ["x", "w"], ["y"])],
        [_vi("x", TensorProto.UINT8, [m, k])],
        [_vi("y", TensorProto.INT32, [m, n])],
        [numpy_helper.from_array(w, "w")],
    )
    return model, {"x": rng.integers(0, 255, (m, k), dtype=np.uint8)}, 2.0 * m * k * n


def _conv_int8(c: int, hw: int) -> _Probe:
    rng = np.random.default_rng(0)
    w = rng.integers(-127, 127, (c, c, 3, 3), dtype=np.int8)
    scalars = {
        "xs": np.float32(0.05), "xz": np.uint8(128), "ws": np.float32(0.01),
        "wz": np.int8(0), "ys": np.float32(0.1), "yz": np.uint8(128),
    }  # fmt: skip
    inits = [numpy_helper.from_array(np.array(v), k) for k, v in scalars.items()]
    node = helper.make_node(
        "QLinearConv",
        ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"],
        ["y"],
        pads=[1, 1, 1, 1],
        kernel_shape=[3, 3],
    )
    model = _model(
        [node],
        [_vi("x", TensorProto.UINT8, [1, c, hw, hw])],
        [_vi("y", TensorProto.UINT8, [1, c, hw, hw])],
        [numpy_helper.from_array(w, "w"), *inits],
    )
    x = rng.integers(0, 255, (1, c, hw, hw), dtype=np.uint8)
    return model, {"x": x}, 2.0 * c * c * 9 * hw * hw


def _chain(n: int) -> _Probe:
    nodes = [helper.make_node("Relu", [f"t{i}"], [f"t{i + 1}"], name=f"r{i}") for i in range(n)]
    model = _model(
        nodes,
        [_vi("t0", TensorProto.FLOAT, [1, 16])],
        [_vi(f"t{n}", TensorProto.FLOAT, [1, 16])],
        [],
    )
    return model, {"t0": np.ones((1, 16), np.float32)}, 0.0


_POOL = {"kernel_shape": [3, 3], "strides": [1, 1], "pads": [1, 1, 1, 1]}  # keeps the shape

#: class -> three probes, small to large (the sizes span what batch-1 edge models run)
SUITE_CLASSES: dict[str, list[Callable[[], _Probe]]] = {
    "conv": [lambda: _conv(16, 16, 16, 3, 1), lambda: _conv(64, 64, 28, 3, 1),
             lambda: _conv(128, 128, 28, 3, 1)],
    "conv1x1": [lambda: _conv(32, 32, 16, 1, 1), lambda: _conv(128, 128, 28, 1, 1),
                lambda: _conv(256, 256, 28, 1, 1)],
    "depthwise": [lambda: _conv(32, 32, 16, 3, 32), lambda: _conv(128, 128, 56, 3, 128),
                  lambda: _conv(256, 256, 56, 3, 256)],
    "dense": [lambda: _matmul(1, 256, 256), lambda: _matmul(64, 256, 256),
              lambda: _matmul(128, 768, 768)],
    "elementwise": [lambda: _add(4096), lambda: _add(262144), lambda: _add(4194304)],
    "norm": [lambda: _unary("Softmax", [64, 64], 2, axis=-1),
             lambda: _unary("Softmax", [512, 512], 2, axis=-1),
             lambda: _unary("Softmax", [2048, 1024], 2, axis=-1)],
    "pool": [lambda: _unary("MaxPool", [1, 16, 16, 16], 1, **_POOL),
             lambda: _unary("MaxPool", [1, 64, 56, 56], 1, **_POOL),
             lambda: _unary("MaxPool", [1, 128, 112, 112], 1, **_POOL)],
    "dense_int8": [lambda: _matmul_int8(1, 256, 256), lambda: _matmul_int8(64, 256, 256),
                   lambda: _matmul_int8(128, 768, 768)],
    "conv_int8": [lambda: _conv_int8(16, 16), lambda: _conv_int8(64, 28),
                  lambda: _conv_int8(128, 28)],
}  # fmt: skip


# --- timing -----------------------------------------------------------------------------


def _median_ms(
    sess: ort.InferenceSession, feeds: dict[str, np.ndarray], budget_s: float, threads: int
) -> float:
    """Median of timed runs after a warm-up: at least 5, more until `budget_s` is spent
    (at most 200). At 1 thread, runs that waited for a core are left out (`uncontended`):
    the host's own profile is cached and divides every target-profile prediction, so one
    measured while the machine was busy would skew them all until the cache is cleared."""
    for _ in range(2):
        sess.run(None, feeds)
    times: list[tuple[float, float]] = []
    start = time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < budget_s and len(times) < 200):
        times.append(timed_run(sess, feeds))
    return float(np.median([times[i][0] for i in uncontended(times, threads)]))


def _time(probe: _Probe, threads: int, budget_s: float) -> tuple[float, float]:
    model, feeds, work = probe
    sess = make_session(model, threads=threads, opt_level="all")
    return _median_ms(sess, feeds, budget_s, threads), work


def _repeat(probe: _Probe, copies: int) -> tuple[_Probe, int]:
    """The probe's node `copies` times in a row, each reading the last one's output, when the
    node keeps its first input's shape and type (returns the probe and how many copies).

    Timed alone, a node pays for waking the thread pool on every run; inside a model the
    workers are still spinning from the node before. A chain times nodes the way a model
    runs them, which is what thread-count predictions need (a lone small node looks slower
    at 2 threads than at 1; inside a model it is not)."""
    model, feeds, work = probe
    g = model.graph
    node = g.node[0]
    first, out = g.input[0], g.output[0]
    if len(g.node) != 1 or node.input[0] != first.name or first.type != out.type:
        return probe, 1
    chain = []
    for i in range(copies):
        n = onnx.NodeProto()
        n.CopyFrom(node)
        n.name = f"n{i}"
        n.input[0] = node.input[0] if i == 0 else f"{out.name}_{i - 1}"
        n.output[0] = out.name if i == copies - 1 else f"{out.name}_{i}"
        chain.append(n)
    del g.node[:]
    g.node.extend(chain)
    return (model, feeds, work), copies


def _interleaved(
    probe: _Probe, counts: list[int], budget_s: float
) -> tuple[dict[int, float], float]:
    """The probe's median ms at each thread count, timed in the order counts, then counts
    reversed, half the budget each, and the two medians averaged: a drift in the machine's
    speed while the suite runs (this VM's moves by up to 1.5x within minutes) then falls on
    every count alike instead of on whichever was timed last, and the 1 -> T steps read from
    these figures (`MeasuredProfile.thread_step`) stay the machine's, not the drift's."""
    order = counts if len(counts) == 1 else counts + counts[::-1]
    half = budget_s if len(counts) == 1 else budget_s / 2
    got: dict[int, list[float]] = {t: [] for t in counts}
    work = 0.0
    for t in order:
        ms, work = _time(probe, t, half)
        got[t].append(ms)
    return {t: float(np.mean(v)) for t, v in got.items()}, work


def _measure(counts: list[int], budget_s: float) -> dict[int, ThreadRates]:
    """Every probe at every thread count, each probe's counts timed back to back
    (`_interleaved`)."""
    call, _ = _interleaved(_chain(1), counts, budget_s)
    chain, _ = _interleaved(_chain(_CHAIN), counts, budget_s)
    dispatch = {t: max(chain[t] - call[t], 0.0) / (_CHAIN - 1) for t in counts}
    rates: dict[int, dict[str, list[RatePoint]]] = {t: {} for t in counts}
    for cls, probes in SUITE_CLASSES.items():
        points: dict[int, list[RatePoint]] = {t: [] for t in counts}
        for make in probes:
            probe, copies = _repeat(make(), _REPEAT)
            try:
                by_count, work = _interleaved(probe, counts, budget_s)
            except Exception:  # noqa: BLE001 - a runtime without this kernel: class unmeasured
                break
            for t, ms in by_count.items():
                # one node: the chain less the call and the dispatch between its nodes
                node_ms = max(ms - call[t] - (copies - 1) * dispatch[t], 1e-4 * copies) / copies
                points[t].append(
                    RatePoint(work=work, rate=work / node_ms / 1e6, ms=round(node_ms, 5))
                )
        for t in counts:
            if points[t]:
                rates[t][cls] = points[t]
    return {
        t: ThreadRates(threads=t, rates=rates[t], dispatch_us=dispatch[t] * 1e3, call_ms=call[t])
        for t in counts
    }


def auto_threads(cores: int | None = None) -> list[int]:
    """The thread counts `edgedl hardware calibrate` measures by default: 1 and each power
    of two up to the machine's cores, and the core count itself.

    >>> auto_threads(6), auto_threads(1), auto_threads(16)
    ([1, 2, 4, 6], [1], [1, 2, 4, 8, 16])
    """
    import os

    n = max(1, cores if cores is not None else (os.cpu_count() or 1))
    return sorted({1, n, *(2**i for i in range(1, n.bit_length()) if 2**i <= n)})


def parse_threads(text: str, cores: int | None = None) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; 'auto' -> `auto_threads(cores)`; anything else: RequestError."""
    if text.strip().lower() == "auto":
        return auto_threads(cores)
    try:
        counts = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise RequestError(
            f"thread counts are comma-separated integers or 'auto', not {text!r}"
        ) from None
    if not counts or counts[0] < 1:
        raise RequestError(f"thread counts must be 1 or more (got {text!r})")
    return counts


def run_suite(threads: Sequence[int] = (1,), *, quick: bool = False) -> MeasuredProfile:
    """Run the suite at each thread count on this machine (about 5–15 s per count here;
    `quick` spends a third of the time per probe)."""
    counts = sorted(set(threads))
    if not counts or counts[0] < 1:
        raise RequestError(f"thread counts must be 1 or more (got {list(threads)})")
    budget = 0.1 if quick else 0.3
    t0 = time.perf_counter()
    by_threads = _measure(counts, budget)
    fp = fingerprint(counts[0])
    return MeasuredProfile(
        cpu_model=fp.cpu_model,
        fingerprint_key=fp.key().rsplit("|", 1)[0] if "|" in fp.key() else fp.key(),
        ort_version=ort.__version__,
        date=datetime.now(UTC).strftime("%Y-%m-%d"),
        seconds=round(time.perf_counter() - t0, 2),
        by_threads=by_threads,
    )


def host_profile(threads: int, *, cache: bool = True) -> MeasuredProfile:
    """This machine's profile at `threads`, cached per environment fingerprint: the
    reference a target profile is compared with, node by node (`advisor.targets.methods`)."""
    from advisor import cache as _cache

    key = f"suite-v{SUITE_VERSION}-{fingerprint(threads).key()}"
    if cache:
        hit = _cache.read_json("host_suite", key)
        if hit is not None:
            try:
                return MeasuredProfile.model_validate(hit)
            except ValueError:
                pass  # an older format: measure again
    result = run_suite((threads,), quick=True)
    _cache.write_json("host_suite", key, result.model_dump(mode="json"))
    return result
