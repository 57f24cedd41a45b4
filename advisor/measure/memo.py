"""`MeasurementMemo`: measurements reused across advise() calls in one process, by content.

A sweep advises one model for many targets and links; most plans' artifacts (the FP32 model,
its INT8 and FP16 builds, a partition at the same cut) are byte-identical from one cell to
the next. With a memo, validation runs and times each distinct artifact once. Keys are
content hashes: an artifact's SHA-256 (`digest_bytes`) and its inputs' (`feeds_key`), with
the settings that change a figure (runs, threads, rounds). A figure taken from the memo says
so in its method (`REUSED`). Pass one to `advise(request, memo=...)`; a memo belongs to one
process on one machine.

Beyond measurements, a memo carries what every cell of one model would otherwise redo: the
loaded model with its data and FP32 reference, this host's profile of it, one ORT session per
distinct artifact (with its outputs), the predictions of changed models, the planners'
conversions and sub-models (`advisor.plans.PlanContext.once`) and the knowledge base's
citations. Each is keyed by what decides it, so a cell reads from the memo exactly what it
would have computed itself; `counts()` says how much was done once.

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

MAX_SESSIONS = 256  # ORT sessions one memo keeps (a sweep task's distinct artifacts)
MAX_SESSION_BYTES = 512 * 1024 * 1024  # and the artifact bytes they load, at most
REUSED = " (reused: an identical artifact was timed earlier in this process)"


@dataclass
class MeasurementMemo:
    """What advisor.validate.core measured, by content key (see the module docstring)."""

    eval_runs: dict[tuple, Any] = field(default_factory=dict)  # -> (EvalRun, Fidelity)
    latencies: dict[tuple, Any] = field(default_factory=dict)  # -> timing.LatencyStats
    remeasured: dict[tuple, tuple[float, float | None]] = field(default_factory=dict)
    references: dict[tuple, list[list[np.ndarray]]] = field(default_factory=dict)
    paired: dict[tuple, Any] = field(default_factory=dict)  # -> validate.PairedTiming
    # StageTimer figures by (model bytes, inputs) key, shared by every advise of a sweep
    timings: dict[str, Any] = field(default_factory=dict)
    # guard windows by (FP32 stage key, plan stage key) -> (PairedTiming, its note)
    windows: dict[tuple[str, str], tuple[Any, dict[str, object]]] = field(default_factory=dict)
    # ORT sessions by (artifact digest, threads), each with its outputs by feeds key: a
    # session here has run at least once (warm for a timing window)
    sessions: dict[tuple[str, int], tuple[Any, dict[str, list[np.ndarray]]]] = field(
        default_factory=dict
    )
    # a changed model's predicted_target figure by (artifact digest, target, precision,
    # threads): predicting it reads the whole graph again
    predictions: dict[tuple, Any] = field(default_factory=dict)
    graphs: dict[str, Any] = field(default_factory=dict)  # artifact digest -> its ModelGraph
    # artifact path -> SHA-256 of the bytes last written there (validate.core.prepare)
    file_digests: dict[str, str] = field(default_factory=dict)
    # what advise() loads for a request (model, data, FP32 reference), by the request fields
    # that decide it: every cell of one model reads the same
    loaded: dict[tuple, Any] = field(default_factory=dict)
    # this host's fingerprint, calibration and the model's per-node profile, by (model digest,
    # inputs, runs, threads, measurement mode): a model is profiled once per sweep task
    hosts: dict[tuple, Any] = field(default_factory=dict)
    # what planners built that depends only on its content key (advisor.plans.PlanContext.once)
    planning: dict[tuple, Any] = field(default_factory=dict)
    citations: dict[str, list[Any]] = field(default_factory=dict)  # plan kind -> KB entries
    # artifact bytes of the sessions this memo may keep: a sweep's shares them across cells;
    # one advise call's own memo keeps none (they would add to its peak memory)
    session_budget: int = MAX_SESSION_BYTES
    hits: int = 0  # evaluation runs found in the memo
    misses: int = 0  # evaluation runs measured
    loads: int = 0  # models loaded (with their data and FP32 reference)
    sessions_made: int = 0  # ORT sessions created through the memo
    session_bytes: int = 0  # artifact bytes of the sessions kept

    def counts(self) -> dict[str, int]:
        """How much work the memo holds, each item done once for every cell that used it."""
        return {
            "models_loaded": self.loads,
            "host_profiles": len(self.hosts),
            "sessions": self.sessions_made,
            "evaluation_runs": self.misses,
            "evaluation_runs_reused": self.hits,
            "stage_timings": len(self.timings),
            "planning_results": len(self.planning),
        }

    def session(self, digest: str, path: str, threads: int) -> tuple[Any, dict]:
        """(the session of the artifact with bytes `digest`, its outputs by feeds key),
        loading `path` the first time. A new session is kept while the memo holds fewer than
        MAX_SESSIONS sessions of at most MAX_SESSION_BYTES artifact bytes in all (large
        models: the caller's session is used once and dropped, as without a memo)."""
        from pathlib import Path

        from advisor.measure.timing import make_session

        key = (digest, threads)
        if key in self.sessions:
            return self.sessions[key]
        got: tuple[Any, dict] = (make_session(path, threads=threads), {})
        self.sessions_made += 1
        size = Path(path).stat().st_size
        if len(self.sessions) < MAX_SESSIONS and self.session_bytes + size <= self.session_budget:
            self.sessions[key] = got
            self.session_bytes += size
        return got

    def run(
        self,
        digest: str,
        path: str,
        threads: int,
        feeds: dict[str, np.ndarray],
        session: Any = None,
    ) -> tuple[Any, list[np.ndarray]]:
        """(session, its outputs on `feeds`): run once per (artifact, threads, inputs) while the
        memo keeps the session; else on `session` (the caller's) or a new one, every time."""
        if (digest, threads) not in self.sessions and session is not None:
            return session, session.run(None, feeds)
        sess, outs = self.session(digest, path, threads)
        fk = feeds_key(feeds)
        if fk not in outs:
            outs[fk] = sess.run(None, feeds)
        return sess, outs[fk]


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
