"""Timing plans against each other on this host: the paired FP32-vs-plan guard
(`paired_timing`) and the interleaved re-measurement of every validated plan
(`remeasure_interleaved`), both in alternating rounds so a burst of load hits every side.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from advisor.advice import Latency, PlanResult
from advisor.measure.memo import REUSED, MeasurementMemo, digest_bytes, feeds_key
from advisor.measure.timing import make_session
from advisor.validate.fidelity import feeds_for_session


@dataclass(frozen=True)
class PairedTiming:
    """Two models timed in alternating rounds, so machine drift hits both alike."""

    base_ms: float
    other_ms: float
    ratio: float  # median over rounds of other/base: > 1 means `other` is slower
    spread: float  # half the inter-quartile range of the per-round ratios, relative
    rounds: int
    runs: int


def paired_timing(
    base: str | onnx.ModelProto,
    base_feeds: dict[str, np.ndarray],
    other: str | onnx.ModelProto,
    other_feeds: dict[str, np.ndarray],
    *,
    rounds: int = 7,
    runs: int = 10,
    threads: int = 1,
    memo: MeasurementMemo | None = None,
) -> PairedTiming:
    """Time `base` and `other` in `rounds` alternating rounds of `runs` inferences each.
    With a `memo`, files (paths) already paired in this process are not timed again."""
    key = None
    if memo is not None and isinstance(base, str | Path) and isinstance(other, str | Path):
        key = (
            digest_bytes(Path(base).read_bytes()),
            feeds_key(base_feeds),
            digest_bytes(Path(other).read_bytes()),
            feeds_key(other_feeds),
            rounds,
            runs,
            threads,
        )
        if key in memo.paired:
            return memo.paired[key]  # type: ignore[no-any-return]
    result = _paired(base, base_feeds, other, other_feeds, rounds, runs, threads)
    if key is not None and memo is not None:
        memo.paired[key] = result
    return result


def _paired(base, base_feeds, other, other_feeds, rounds: int, runs: int, threads: int):
    import time

    sa, sb = make_session(base, threads=threads), make_session(other, threads=threads)

    def burst(sess, feeds) -> float:
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            sess.run(None, feeds)
            times.append(time.perf_counter() - t)
        return float(np.median(times)) * 1e3

    burst(sa, base_feeds)
    burst(sb, other_feeds)  # warm-up
    a_ms, b_ms = [], []
    for r in range(rounds):
        first_a = r % 2 == 0
        x = burst(sa, base_feeds) if first_a else None
        b_ms.append(burst(sb, other_feeds))
        a_ms.append(x if x is not None else burst(sa, base_feeds))
    ratios = np.array(b_ms) / np.array(a_ms)
    q1, q3 = np.percentile(ratios, [25, 75])
    med = float(np.median(ratios))
    return PairedTiming(
        float(np.median(a_ms)),
        float(np.median(b_ms)),
        med,
        float((q3 - q1) / 2 / med),
        rounds,
        runs,
    )


def _stage_sessions(
    plans: list[PlanResult], inputs: dict[str, np.ndarray], threads: int
) -> list[tuple[int, int, Any, dict[str, np.ndarray]]]:
    """(plan index, stage index, warmed-up session, its feed) for every compute stage of every
    plan that has artifacts and is not a cascade, each fed by the stages before it."""
    items: list[tuple[int, int, Any, dict[str, np.ndarray]]] = []
    for pi, p in enumerate(plans):
        if not p.artifacts or "cascade" in p.extra:
            continue
        env = dict(inputs)
        compute_idx = [i for i, s in enumerate(p.stages) if s.kind == "compute"]
        for si, path in zip(compute_idx, p.artifacts, strict=False):
            sess = make_session(path, threads=threads)
            feed = feeds_for_session(sess, env)
            outs = sess.run(None, feed)  # also the warm-up
            env.update({o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)})
            items.append((pi, si, sess, feed))
    return items


def remeasure_interleaved(
    plans: list[PlanResult],
    inputs: dict[str, np.ndarray],
    *,
    runs: int,
    threads: int,
    rounds: int = 5,
    seed: int = 0,
    memo: MeasurementMemo | None = None,
) -> list[PlanResult]:
    """Time every plan's compute stages again, round-robin across all plans, and use those
    figures as their `measured_host`.

    Each stage's first measurement (`validate`) ran in its own time window; on a shared host a
    burst of load in one window can move it by tens of percent, so two plans holding the same
    model could differ by that much. Here every stage of every plan runs a few times per round,
    in a shuffled order, for `rounds` rounds; a stage's figure is the median of its per-round
    medians, so drift hits all plans alike and their figures compare. Cascades (expected
    latencies over exit shares) keep their figures. With a `memo`, a stage whose artifact and
    input were re-timed by an earlier call in this process keeps that figure, and only the
    other stages are timed (round-robin among themselves).
    """
    items = _stage_sessions(plans, inputs, threads)
    figures: dict[tuple[int, int], tuple[float, float | None, str]] = {}
    keys: dict[tuple[int, int], tuple] = {}
    if memo is not None:
        fresh = []
        for pi, si, sess, feed in items:
            key = (digest_bytes(Path(plans[pi].artifacts[_artifact_index(plans[pi], si)])
                                .read_bytes()), feeds_key(feed), runs, threads)  # fmt: skip
            if key in memo.remeasured:
                ms, p90 = memo.remeasured[key]
                figures[(pi, si)] = (
                    ms,
                    p90,
                    f"ORT CPU, ORT_ENABLE_ALL, {threads} thread(s)" + REUSED,
                )
            else:
                keys[(pi, si)] = key
                fresh.append((pi, si, sess, feed))
        items = fresh
    timed = _round_robin(items, runs=runs, threads=threads, rounds=rounds, seed=seed)
    for k, fig in timed.items():
        figures[k] = fig
        if memo is not None:
            memo.remeasured[keys[k]] = (fig[0], fig[1])
    return _with_figures(plans, figures) if figures else plans


def _artifact_index(plan: PlanResult, stage: int) -> int:
    """Which of the plan's artifacts stage `stage` (a compute stage) runs."""
    compute = [i for i, s in enumerate(plan.stages) if s.kind == "compute"]
    return compute.index(stage)


def _round_robin(
    items: list[tuple[int, int, Any, dict[str, np.ndarray]]],
    *,
    runs: int,
    threads: int,
    rounds: int,
    seed: int,
) -> dict[tuple[int, int], tuple[float, float | None, str]]:
    """(plan, stage) -> (median of round medians, p90, method) for every item."""
    import random

    from advisor.measure.timing import median_p90, timed_run, uncontended

    per_round = max(3, runs // rounds)
    medians: dict[tuple[int, int], list[float]] = {(pi, si): [] for pi, si, _, _ in items}
    samples: dict[tuple[int, int], list[float]] = {(pi, si): [] for pi, si, _, _ in items}
    order = list(range(len(items)))
    rng = random.Random(seed)
    for _ in range(rounds if items else 0):
        rng.shuffle(order)
        for k in order:
            pi, si, sess, feed = items[k]
            times = [timed_run(sess, feed) for _ in range(per_round)]
            kept = [times[i][0] for i in uncontended(times, threads)]
            medians[(pi, si)].append(float(np.median(kept)))
            samples[(pi, si)].extend(kept)
    method = (
        f"ORT CPU, ORT_ENABLE_ALL, {threads} thread(s): median of {rounds} round medians of "
        f"{per_round} runs, round-robin with every other plan's stages"
    )
    return {
        key: (float(np.median(ms)), median_p90(samples[key])[1], method)
        for key, ms in medians.items()
    }


def _with_figures(
    plans: list[PlanResult], figures: dict[tuple[int, int], tuple[float, float | None, str]]
) -> list[PlanResult]:
    """The plans with the new stage figures and their totals (transfers as predicted)."""
    out = list(plans)
    for pi in sorted({pi for pi, _ in figures}):
        p = out[pi]
        stages = list(p.stages)
        for si, s in enumerate(stages):
            if (pi, si) not in figures:
                continue
            ms, p90, how = figures[(pi, si)]
            stages[si] = s.model_copy(
                update={
                    "measured_host": Latency(ms=ms, p90_ms=p90, kind="measured_host", method=how)
                }
            )
        total = sum(
            (
                s.measured_host.ms
                if s.kind == "compute" and s.measured_host
                else s.predicted.ms
                if s.predicted
                else 0.0
            )
            for s in stages
        )
        err = p.prediction_error
        if err is not None and p.predicted is not None and total > 0:
            err = abs(p.predicted.ms - total) / total
        measured = p.measured_host.model_copy(update={"ms": total}) if p.measured_host else None
        out[pi] = p.model_copy(
            update={"stages": stages, "measured_host": measured, "prediction_error": err}
        )
    return out
