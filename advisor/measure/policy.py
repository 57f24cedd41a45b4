"""How much to measure: the stopping rules of one advise() run, and a timer that times each
distinct model once.

Three modes, one output schema:

- `adaptive` (default): every measurement stops when its 95% confidence interval settles the
  figure (or, for the speed guard, the decision), between a floor and a cap of runs;
- `quick`: the same rules with a lower floor and cap and a looser precision, for a first look;
- `exhaustive`: the fixed counts the advisor used before (`runs` per stage, 7 alternating
  rounds per guard, 5 interleaved rounds), kept so its decisions can be compared.

Every method string names the mode, the runs used and why the measurement stopped.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from advisor.measure.memo import REUSED, feeds_key
from advisor.measure.timing import LatencyStats, Rule, measure_adaptive, measure_latency

__all__ = ["Mode", "Policy", "StageTimer", "feed_digest", "file_digest", "policy_for"]

Mode = Literal["adaptive", "quick", "exhaustive"]


@dataclass(frozen=True)
class Policy:
    """The stopping rules of one advise() run; a rule of None means a fixed count (`runs`)."""

    mode: Mode
    runs: int  # the request's runs: the fixed count, and the cap of adaptive stage timing
    stage: Rule | None  # runs of one plan stage
    guard: Rule | None  # alternating rounds of FP32 against a plan (the speed guard)
    guard_runs: int  # runs per model per guard round
    interleave: Rule | None  # rounds of the interleaved re-measurement of all plans
    profile: Rule | None  # rounds of the per-node profile
    profile_warmup: int = 5  # untimed profile rounds first (fixed counts: 5, as before)

    def label(self, stopped: str, n: int, unit: str = "runs") -> str:
        """'median of 7 runs (adaptive: 95% CI within ±5%)' or 'median of 20 runs'."""
        if not stopped:
            return f"median of {n} {unit}"
        return f"median of {n} {unit} ({self.mode}: stopped, {stopped})"


def policy_for(mode: Mode, runs: int) -> Policy:
    """The rules for `mode`, with `runs` (the request's count) as the exhaustive count and
    the adaptive cap.

    >>> policy_for("adaptive", 20).stage
    Rule(floor=5, cap=20, precision=0.05, label='adaptive')
    >>> policy_for("exhaustive", 20).stage is None
    True
    """
    if mode == "exhaustive":
        return Policy(mode, runs, None, None, max(10, runs // 2), None, None)
    if mode == "quick":
        cap = max(3, runs // 4)
        return Policy(
            mode,
            runs,
            stage=Rule(floor=3, cap=cap, precision=0.10, label=mode),
            guard=Rule(floor=2, cap=3, precision=0.10, label=mode),
            guard_runs=3,
            interleave=Rule(floor=2, cap=3, precision=0.10, label=mode),
            profile=Rule(floor=3, cap=cap, precision=0.10, label=mode),
            profile_warmup=1,
        )
    return Policy(
        mode,
        runs,
        stage=Rule(floor=min(5, runs), cap=runs, precision=0.05, label=mode),
        # the guard decides ratio <= 1.05; 3 rounds settle a plan 2x faster or slower
        guard=Rule(floor=3, cap=7, precision=0.03, label=mode),
        guard_runs=3,
        interleave=Rule(floor=3, cap=5, precision=0.05, label=mode),
        profile=Rule(floor=min(5, runs), cap=runs, precision=0.05, label=mode),
        # each round runs four inferences, the first an untimed warm-up of the next: two
        # rounds bring weights into cache and the allocator to its steady state
        profile_warmup=2,
    )


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes: two plans whose models have the same bytes share timings.

    Read once per file version: the window, the guard and every stage's timing key ask for
    the same artifacts again (41 reads of 100 MB models for one ResNet-50 advise), so the
    digest is kept per (device, inode, size, modification time in ns) — a rewritten file has
    a new stat and is read again. The file is streamed, never held whole in memory."""
    st = Path(path).stat()
    return _digest_of(str(path), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=512)
def _digest_of(path: str, dev: int, ino: int, size: int, mtime_ns: int) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def feed_digest(feed: Mapping[str, Any]) -> str:
    """sha256 over names, dtypes, shapes and bytes of an input feed."""
    return feeds_key(dict(feed))


@dataclass
class StageTimer:
    """Times plan stages under a policy, each distinct (model bytes, inputs) once per run.

    Two plans often hold the same model (a partition whose cut keeps everything on the
    device is the FP32 model; two quantizers can agree byte for byte): the second asks for a
    timing the first already paid for and gets it, with its method saying so.
    """

    policy: Policy
    threads: int
    seen: dict[str, tuple[LatencyStats, str, str]] = field(default_factory=dict)
    # keys whose figure an earlier advise of this process measured (a sweep's memo)
    inherited: set[str] = field(default_factory=set)
    # the outputs of one run of the model on its inputs, by key (the shared window's warm-up
    # run), so that walking a plan's stages after the window does not run each stage again
    outputs: dict[str, list[Any]] = field(default_factory=dict)

    @staticmethod
    def key(path: str, feeds: Mapping[str, Any], digest: str | None = None) -> str:
        """What identifies one timing: the model's bytes (`digest`: their SHA-256, when the
        caller has it) and its inputs."""
        return f"{digest or file_digest(path)}-{feed_digest(feeds)}"

    def prefill(self, key: str, stats: LatencyStats, method: str) -> None:
        """A figure measured elsewhere (the shared window) for the model and inputs `key`."""
        self.seen[key] = (stats, method, "")

    def time(
        self,
        path: str,
        feeds: Mapping[str, Any],
        session: Any = None,
        owner: str = "",
        digest: str | None = None,
    ) -> tuple[LatencyStats, str]:
        """(latency, method) of the model at `path` (bytes with SHA-256 `digest`, if given)
        on `feeds`."""
        key = self.key(path, feeds, digest)
        if key in self.seen:
            stats, method, first = self.seen[key]
            if key in self.inherited:
                return stats, method + REUSED
            return stats, method + (f"; same model bytes as {first}, timed once" if first else "")
        rule = self.policy.stage
        if rule is None:
            stats = measure_latency(path, feeds, runs=self.policy.runs, threads=self.threads)
        else:
            stats = measure_adaptive(path, feeds, rule, threads=self.threads, session=session)
        method = self._method(stats)
        self.seen[key] = (stats, method, owner or Path(path).parent.name)
        return stats, method

    def _method(self, stats: LatencyStats) -> str:
        return f"ORT CPU, ORT_ENABLE_ALL, {self.threads} thread(s), " + self.policy.label(
            stats.stopped, stats.runs
        )
