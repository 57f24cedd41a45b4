"""ONNX Runtime CPU sessions with fixed threads, and honest whole-model timing.

Every session has a fixed `intra_op_num_threads`, one inter-op thread and sequential
execution on the CPU provider. A timed run records wall time and the calling thread's CPU
time: with one intra-op thread ORT computes on the calling thread, so a run whose wall time
is well above its CPU time waited for a core (another process had it) and is left out of the
statistics when enough clean runs remain.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
from pydantic import BaseModel, ConfigDict

from advisor.errors import InputDataError, ModelError, RequestError, ort_message

__all__ = [
    "LatencyStats",
    "OptLevel",
    "check_counts",
    "check_inputs",
    "make_session",
    "measure_latency",
    "median_p90",
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


def make_session(
    model: onnx.ModelProto | bytes | str | Path,
    threads: int = 1,
    opt_level: OptLevel = "all",
    *,
    profile_prefix: str | None = None,
) -> ort.InferenceSession:
    """A CPU session with fixed intra-op threads, one inter-op thread, sequential execution."""
    if threads < 1:
        raise RequestError(f"threads must be at least 1 (got {threads})")
    so = ort.SessionOptions()
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
        if model.ByteSize() > _PROTO_LIMIT:
            # protobuf cannot serialize past 2 GB: hand ORT a file with external data
            keep = tempfile.TemporaryDirectory(prefix="edgedl-model-")
            path = Path(keep.name) / "model.onnx"
            onnx.save_model(model, path, save_as_external_data=True, location="model.data")
            source: bytes | str = str(path)
        else:
            source = model.SerializeToString()
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
