"""`MeasurementMemo`: measurements reused across advise() calls in one process, by content.

A sweep advises one model for many targets and links; most plans' artifacts (the FP32 model,
its INT8 and FP16 builds, a partition at the same cut) are byte-identical from one cell to
the next. With a memo, validation runs and times each distinct artifact once. Keys are
content hashes: an artifact's SHA-256 (`digest_bytes`) and its inputs' (`feeds_key`), with
the settings that change a figure (runs, threads, rounds). A figure taken from the memo says
so in its method (`REUSED`). Pass one to `advise(request, memo=...)`; a memo belongs to one
process on one machine.

>>> import numpy as np
>>> feeds_key({"x": np.zeros(2, np.float32)}) == feeds_key({"x": np.zeros(2, np.float32)})
True
>>> feeds_key({"x": np.zeros(2, np.float32)}) == feeds_key({"x": np.ones(2, np.float32)})
False
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["REUSED", "MeasurementMemo", "digest_bytes", "feeds_key"]

REUSED = " (reused: an identical artifact was timed earlier in this process)"


@dataclass
class MeasurementMemo:
    """What advisor.validate.core measured, by content key (see the module docstring)."""

    eval_runs: dict[tuple, Any] = field(default_factory=dict)  # -> validate._EvalRun
    latencies: dict[tuple, Any] = field(default_factory=dict)  # -> timing.LatencyStats
    remeasured: dict[tuple, tuple[float, float | None]] = field(default_factory=dict)
    references: dict[tuple, list[list[np.ndarray]]] = field(default_factory=dict)
    paired: dict[tuple, Any] = field(default_factory=dict)  # -> validate.PairedTiming
    # StageTimer figures by (model bytes, inputs) key, shared by every advise of a sweep
    timings: dict[str, Any] = field(default_factory=dict)
    # guard windows by (FP32 stage key, plan stage key) -> (PairedTiming, its note)
    windows: dict[tuple[str, str], tuple[Any, dict[str, object]]] = field(default_factory=dict)
    hits: int = 0  # evaluation runs found in the memo
    misses: int = 0  # evaluation runs measured


def digest_bytes(data: bytes) -> str:
    """SHA-256 of `data` (an artifact's file bytes)."""
    return hashlib.sha256(data).hexdigest()


def feeds_key(feeds: dict[str, np.ndarray]) -> str:
    """SHA-256 over the names, dtypes, shapes and bytes of a session's inputs."""
    h = hashlib.sha256()
    for name in sorted(feeds):
        a = np.ascontiguousarray(feeds[name])
        h.update(f"{name}|{a.dtype}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()
