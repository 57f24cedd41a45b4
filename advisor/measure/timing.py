"""ONNX Runtime CPU sessions with fixed threads, and honest whole-model timing.

Every session has a fixed `intra_op_num_threads`, one inter-op thread and sequential
execution on the CPU provider. A timed run records wall time and the calling thread's CPU
time: with one intra-op thread ORT computes on the calling thread, so a run whose wall time
is well above its CPU time waited for a core (another process had it) and is left out of the
statistics when enough clean runs remain.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import EncodeError
from pydantic import BaseModel, ConfigDict

from advisor.errors import InputDataError, ModelError, RequestError, ort_message

__all__ = [
    "Adaptive",
    "LatencyStats",
    "Rule",
    "adaptive",
    "log_ci",
    "measure_adaptive",
    "OptLevel",
    "check_counts",
    "check_inputs",
    "make_session",
    "measure_latency",
    "median_p90",
    "serialized",
    "session_source",
    "stop_reason",
    "timed_run",
    "uncontended",
]

OptLevel = Literal["disable", "basic", "extended", "all"]
_OPT_LEVELS = {
    "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
_PROTO_LIMIT = 1_800_000_000  # serialized protobuf must stay under 2 GB
_ORT_ERRORS: tuple[type[BaseException], ...] = tuple(
    getattr(ort.capi.onnxruntime_pybind11_state, n)
    for n in ("Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError",
              "RuntimeException", "InvalidProtobuf", "NotImplemented", "InvalidGraph", "EPFail")
    if hasattr(ort.capi.onnxruntime_pybind11_state, n)
) + (RuntimeError,)  # fmt: skip


class LatencyStats(BaseModel):
    """Whole-model latency on this host (ms, `measured_host`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    median_ms: float
    p90_ms: float
    runs: int
    kind: Literal["measured_host"] = "measured_host"
    opt_level: OptLevel = "all"
    threads: int = 1
    contended_runs: int = 0  # runs dropped because they waited for a core (busy host)
    stopped: str = ""  # why an adaptive measurement stopped ('' for a fixed count)


def _check_level(opt_level: str) -> ort.GraphOptimizationLevel:
    try:
        return _OPT_LEVELS[opt_level]
    except KeyError:
        raise RequestError(
            f"unknown optimization level {opt_level!r}; use one of {', '.join(_OPT_LEVELS)}"
        ) from None


def check_counts(runs: int, warmup: int, threads: int) -> None:
    if runs < 1:
        raise RequestError(f"runs must be at least 1 (got {runs})")
    if warmup < 0:
        raise RequestError(f"warmup must be 0 or more (got {warmup})")
    if threads < 1:
        raise RequestError(f"threads must be at least 1 (got {threads})")


def serialized(model: onnx.ModelProto) -> bytes | None:
    """The model's bytes, or None past `_PROTO_LIMIT` (protobuf cannot serialize past 2 GB).
    One pass: asking `ByteSize()` first costs as much as serializing (~0.1 s per 100 MB)."""
    try:
        data = model.SerializeToString()
    except (ValueError, EncodeError):  # past 2 GB
        return None
    return data if len(data) <= _PROTO_LIMIT else None


def save_model(model: onnx.ModelProto, path: str | Path) -> None:
    """Write the model to `path`: `onnx.save` less its size check, which asks `ByteSize()`
    first (on a 100 MB model 0.25 s, as long as serializing: a 0.6 s write became 0.35 s).
    Past protobuf's limit `onnx.save` itself runs (and says why it cannot)."""
    data = serialized(model)
    if data is None:
        onnx.save(model, str(path))
        return
    Path(path).write_bytes(data)


def session_source(model: onnx.ModelProto) -> onnx.ModelProto | bytes:
    """The model's bytes, serialized once for several sessions of it (each `make_session`
    of a ModelProto serializes it again: a second copy in memory and ~0.1 s per 100 MB);
    the proto itself past protobuf's 2 GB limit (make_session writes external data)."""
    data = serialized(model)
    return model if data is None else data


def make_session(
    model: onnx.ModelProto | bytes | str | Path,
    threads: int = 1,
    opt_level: OptLevel = "all",
    *,
    profile_prefix: str | None = None,
    spinning: bool = True,
) -> ort.InferenceSession:
    """A CPU session with fixed intra-op threads, one inter-op thread, sequential execution.

    `spinning=False` makes the session's idle workers sleep at once instead of spinning for
    their next task (ONNX Runtime's default spins each worker about 2^20 times after a run).
    Give it to every session that is timed *beside* the one being measured: with several
    multi-threaded sessions interleaved, the idle ones' spinning workers take the cores the
    measured one runs on (on a 16-core machine, a model profiled at 16 threads ran slower than
    at 4 until they stopped). Deployment keeps the default, so the session whose time is
    reported spins."""
    if threads < 1:
        raise RequestError(f"threads must be at least 1 (got {threads})")
    so = ort.SessionOptions()
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = _check_level(opt_level)
    # fatal only: warnings would garble CLI output, and an error also raises, with the same
    # text, which the caller turns into one clear line
    so.log_severity_level = 4
    if profile_prefix is not None:
        so.enable_profiling = True
        so.profile_file_prefix = profile_prefix
    keep: tempfile.TemporaryDirectory[str] | None = None
    if isinstance(model, onnx.ModelProto):
        data = serialized(model)
        if data is None:
            # protobuf cannot serialize past 2 GB: hand ORT a file with external data
            keep = tempfile.TemporaryDirectory(prefix="edgedl-model-")
            path = Path(keep.name) / "model.onnx"
            onnx.save_model(model, path, save_as_external_data=True, location="model.data")
            source: bytes | str = str(path)
        else:
            source = data
    elif isinstance(model, bytes):
        source = model
    else:
        source = str(model)
        if not Path(source).is_file():
            raise ModelError(f"model file not found: {source}")
    try:
        sess = ort.InferenceSession(source, so, providers=["CPUExecutionProvider"])
    except _ORT_ERRORS as exc:
        raise ModelError(f"ONNX Runtime cannot load the model: {ort_message(exc)}") from exc
    if keep is not None:
        sess._edgedl_tmp = keep  # type: ignore[attr-defined]  # lives as long as the session
    return sess


def check_inputs(sess: ort.InferenceSession, inputs: Mapping[str, Any]) -> dict[str, Any]:
    expected = [i.name for i in sess.get_inputs()]
    missing = [n for n in expected if n not in inputs]
    extra = [n for n in inputs if n not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        raise InputDataError(
            f"inputs do not match the model ({'; '.join(parts)}); the model takes: "
            f"{', '.join(expected)}"
        )
    return {n: np.asarray(inputs[n]) for n in expected}


def timed_run(sess: ort.InferenceSession, feed: dict[str, Any]) -> tuple[float, float]:
    """One inference: (wall ms, CPU ms of the calling thread)."""
    c0, t0 = time.thread_time(), time.perf_counter()
    try:
        sess.run(None, feed)
    except _ORT_ERRORS as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputDataError(
            f"ONNX Runtime failed to run the model on these inputs: {first}"
        ) from exc
    return (time.perf_counter() - t0) * 1e3, (time.thread_time() - c0) * 1e3


def uncontended(times: list[tuple[float, float]], threads: int) -> list[int]:
    """Indices of runs that lost (almost) no wall time to other processes.

    With one intra-op thread ORT computes on the calling thread, so wall time well above
    that thread's CPU time means the run waited for a core (a busy host). Such runs are
    dropped when enough clean ones remain; with more threads the test does not apply.
    """
    every = list(range(len(times)))
    if threads != 1:
        return every
    clean = [i for i, (wall, cpu) in enumerate(times) if wall - cpu <= max(0.02, 0.05 * wall)]
    return clean if len(clean) >= max(3, len(times) // 4) else every


def median_p90(samples: list[float]) -> tuple[float, float]:
    arr = np.asarray(samples, dtype=float)
    return float(np.median(arr)), float(np.percentile(arr, 90))


def measure_latency(
    model: onnx.ModelProto | bytes | str | Path,
    inputs: Mapping[str, Any],
    *,
    runs: int = 20,
    warmup: int = 5,
    threads: int = 1,
    opt_level: OptLevel = "all",
) -> LatencyStats:
    """Median and p90 whole-model latency of `runs` timed inferences after `warmup`."""
    check_counts(runs, warmup, threads)
    sess = make_session(model, threads=threads, opt_level=opt_level)
    feed = check_inputs(sess, inputs)
    for _ in range(warmup):
        timed_run(sess, feed)
    times = [timed_run(sess, feed) for _ in range(runs)]
    keep = uncontended(times, threads)
    median, p90 = median_p90([times[i][0] for i in keep])
    return LatencyStats(
        median_ms=median,
        p90_ms=p90,
        runs=runs,
        opt_level=opt_level,
        threads=threads,
        contended_runs=runs - len(keep),
    )


# --- adaptive measurement: time until the figure (or the decision) is settled ---------------

# two-sided 95% Student t quantiles by degrees of freedom (1..30); above 30 the normal's
_T95 = (12.71, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
        2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
        2.060, 2.056, 2.052, 2.048, 2.045, 2.042)  # fmt: skip


@dataclass(frozen=True)
class Rule:
    """A sequential stopping rule: at least `floor` samples, at most `cap`; in between, stop
    as soon as the 95% confidence interval of the (geometric) mean lies wholly on one side of
    `threshold` (the decision is settled) or is narrower than ±`precision` (relative: the
    figure is settled). `label` names the rule in method strings ('adaptive', 'quick')."""

    floor: int = 5
    cap: int = 40
    precision: float = 0.03
    label: str = "adaptive"

    def __post_init__(self) -> None:
        if not 2 <= self.floor <= self.cap:
            raise RequestError(
                f"a stopping rule needs 2 <= floor <= cap (got {self.floor}, {self.cap})"
            )


@dataclass(frozen=True)
class Adaptive:
    """The samples an adaptive measurement drew and why it stopped."""

    samples: list[float]
    reason: str  # 'settled below 1.05', 'within ±3%', 'cap of 40 runs'
    low: float  # the 95% confidence interval of the geometric mean, in sample units
    high: float

    @property
    def n(self) -> int:
        return len(self.samples)


def log_ci(samples: list[float]) -> tuple[float, float]:
    """The 95% t interval of the geometric mean of positive samples (mean of their logs).

    Timings are skewed (a run can only lose time), so the interval is taken on logs; with
    one sample the interval is unbounded.

    >>> lo, hi = log_ci([10.0, 10.0, 10.0])
    >>> round(lo, 6), round(hi, 6)
    (10.0, 10.0)
    >>> log_ci([5.0])
    (0.0, inf)
    """
    logs = [math.log(max(x, 1e-12)) for x in samples]
    n = len(logs)
    if n < 2:
        return 0.0, math.inf
    mean = sum(logs) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in logs) / (n - 1))
    t = _T95[n - 2] if n - 1 <= len(_T95) else 1.96
    half = t * sd / math.sqrt(n)
    return math.exp(mean - half), math.exp(mean + half)


def stop_reason(samples: list[float], rule: Rule, threshold: float | None) -> str:
    """Why to stop now, or '' to draw another sample."""
    n = len(samples)
    if n < rule.floor:
        return ""
    lo, hi = log_ci(samples)
    if threshold is not None and hi < threshold:
        return f"95% CI below {threshold:.3g}"
    if threshold is not None and lo > threshold:
        return f"95% CI above {threshold:.3g}"
    centre = math.sqrt(lo * hi)
    if centre > 0 and (hi - lo) / 2 <= rule.precision * centre:
        return f"95% CI within ±{rule.precision * 100:.0f}%"
    if n >= rule.cap:
        return f"cap of {rule.cap} reached"
    return ""


def adaptive(draw: Callable[[], float], rule: Rule, threshold: float | None = None) -> Adaptive:
    """Call `draw` (one positive sample each) until `rule` says the figure is settled.

    >>> it = iter([10.0, 10.1, 9.9, 10.0, 10.05, 9.95] * 10)
    >>> a = adaptive(lambda: next(it), Rule(floor=3, cap=20, precision=0.05))
    >>> a.n, a.reason
    (3, '95% CI within ±5%')
    >>> it = iter([1.0, 3.0] * 10)
    >>> adaptive(lambda: next(it), Rule(floor=3, cap=6)).reason
    'cap of 6 reached'
    """
    samples: list[float] = []
    while True:
        samples.append(draw())
        reason = stop_reason(samples, rule, threshold)
        if reason:
            lo, hi = log_ci(samples)
            return Adaptive(samples, reason, lo, hi)


def measure_adaptive(
    model: onnx.ModelProto | bytes | str | Path,
    inputs: Mapping[str, Any],
    rule: Rule,
    *,
    warmup: int = 3,
    threads: int = 1,
    opt_level: OptLevel = "all",
    session: ort.InferenceSession | None = None,
) -> LatencyStats:
    """Whole-model latency timed until its 95% interval is within the rule's precision (or
    the cap). Runs that waited for a core (see `uncontended`) are drawn again, not counted."""
    sess = session if session is not None else make_session(model, threads, opt_level)
    feed = check_inputs(sess, inputs)
    for _ in range(warmup):
        timed_run(sess, feed)
    dropped = 0

    def draw() -> float:
        nonlocal dropped
        for _ in range(3):  # a contended run is redrawn, at most twice
            wall, cpu = timed_run(sess, feed)
            if threads != 1 or wall - cpu <= max(0.02, 0.05 * wall):
                return wall
            dropped += 1
        return wall

    got = adaptive(draw, rule)
    median, p90 = median_p90(got.samples)
    return LatencyStats(
        median_ms=median,
        p90_ms=p90,
        runs=got.n,
        opt_level=opt_level,
        threads=threads,
        contended_runs=dropped,
        stopped=got.reason,
    )
