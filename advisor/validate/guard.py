"""Timing plans against each other on this host: the paired FP32-vs-plan guard
(`paired_timing`, or `guard_window` for every guarded plan at once) and the interleaved
re-measurement of every validated plan (`remeasure_interleaved`), all in alternating rounds
so a burst of load hits every side.

`guard_window` times FP32 once per round for all the plans it is compared with, and stops a
plan's rounds as soon as the 95% interval of its ratio to FP32 settles the guard's question
(is it more than 5% slower?). Its results are kept, keyed by the two models' bytes, for the
`paired_timing` calls the judge makes right after (advisor.validate.rank), which then do not
time again.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from advisor.advice import Latency, PlanResult
from advisor.measure.policy import feed_digest, file_digest
from advisor.measure.timing import Rule, make_session, stop_reason
from advisor.validate.fidelity import feeds_for_session

GUARD_THRESHOLD = 1.05  # plan/FP32 ratio the guard tests (advisor.validate.rank.NOISE_FLOOR)
#: a stage's share of one shared-window round: after its first run, runs stop at `per_round`
#: or once they took this long. Rounds of equal counts spent most of a ResNet-50 window on
#: its slowest stages (a dynamic INT8 model 5x slower than FP32 took half of each round),
#: while one run of a 70 ms model is already a steady figure.
ROUND_MS = 100.0


@dataclass(frozen=True)
class PairedTiming:
    """Two models timed in alternating rounds, so machine drift hits both alike."""

    base_ms: float
    other_ms: float
    ratio: float  # median over rounds of other/base: > 1 means `other` is slower
    spread: float  # half the inter-quartile range of the per-round ratios, relative
    rounds: int
    runs: int
    stopped: str = ""  # why an adaptive window stopped this plan's rounds ('' = fixed count)


# guard_window's results for the judge's paired_timing calls that follow it, keyed by
# (FP32 bytes digest, plan bytes digest, threads); each window replaces the previous one's
_WINDOW: dict[tuple[str, str, int], PairedTiming] = {}
_WINDOW_LOCK = threading.Lock()


def _burst(sess: Any, feeds: dict[str, np.ndarray], runs: int) -> float:
    """Median ms of `runs` back-to-back inferences."""
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feeds)
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e3


def _summary(a_ms: list[float], b_ms: list[float], runs: int, stopped: str) -> PairedTiming:
    """Paired figures of rounds in which both models ran `runs` inferences."""
    return _paired(a_ms, b_ms, list(np.array(b_ms) / np.array(a_ms)), runs, stopped)


def guard_window(
    base: str,
    others: dict[str, str],
    feeds: dict[str, np.ndarray],
    rule: Rule,
    *,
    runs: int = 5,
    threads: int = 1,
    seed: int = 0,
) -> dict[str, PairedTiming]:
    """Time FP32 (`base`, a model file) against every plan in `others` (id -> model file) in
    shuffled rounds of `runs` inferences each: FP32 once per round, shared by all; a model
    whose bytes another plan already holds is timed once for both. A plan leaves the rounds
    once the 95% interval of its per-round ratio to FP32 lies wholly on one side of
    GUARD_THRESHOLD or is within the rule's precision, or at the rule's cap.
    """
    base_key = file_digest(base)
    keys = {pid: file_digest(path) for pid, path in others.items()}
    paths = {keys[pid]: path for pid, path in others.items()}
    sessions = {k: make_session(p, threads=threads) for k, p in paths.items()}
    base_sess = make_session(base, threads=threads)
    for sess in (base_sess, *sessions.values()):
        _burst(sess, feeds, runs)  # warm-up
    a_ms: dict[str, list[float]] = {k: [] for k in sessions}
    b_ms: dict[str, list[float]] = {k: [] for k in sessions}
    done: dict[str, str] = {}
    rng = random.Random(seed)
    while len(done) < len(sessions):
        active = [k for k in sessions if k not in done]
        order = [base_key, *active]
        rng.shuffle(order)
        got = {k: _burst(base_sess if k == base_key else sessions[k], feeds, runs) for k in order}
        for k in active:
            a_ms[k].append(got[base_key])
            b_ms[k].append(got[k])
            ratios = [b / a for a, b in zip(a_ms[k], b_ms[k], strict=True)]
            done[k] = stop_reason(ratios, rule, GUARD_THRESHOLD)
            if not done[k]:
                del done[k]
    out = {pid: _summary(a_ms[k], b_ms[k], runs, done[k]) for pid, k in keys.items()}
    with _WINDOW_LOCK:
        _WINDOW.clear()
        for pid, k in keys.items():
            _WINDOW[(base_key, k, threads)] = out[pid]
    return out


@dataclass(frozen=True)
class Window:
    """One shared timing window: every distinct stage model, round-robin."""

    medians: dict[str, list[float]]  # per stage key, its median in each round (ms)
    samples: dict[str, list[float]]  # per stage key, every kept run (ms)
    pairs: dict[str, PairedTiming]  # per guarded plan, its device model against FP32
    per_round: int
    stopped: str  # why the window ended, in short
    reasons: dict[str, str]  # per stage key, why its rounds stopped


#: why a stage on a tier that is not this host left the window at the floor of rounds
INFORMATIVE_MARK = "its tier's target is not this host"
INFORMATIVE_STOP = (
    "{n} rounds of one run: " + INFORMATIVE_MARK + ", so no latency of the advice is read from it"
)


def shared_window(
    stages: dict[str, tuple[Any, dict[str, np.ndarray]]],
    pairs: dict[str, tuple[str, str]],
    stage_rule: Rule,
    guard_rule: Rule,
    *,
    per_round: int = 4,
    threads: int = 1,
    seed: int = 0,
    informative: frozenset[str] = frozenset(),
) -> Window:
    """Time every stage in `stages` (key -> warmed-up session and feed) in shuffled rounds of
    `per_round` runs (fewer for a slow stage: as many as fit in ROUND_MS, at least one), and
    read each guarded plan's ratio to FP32 (`pairs`: plan id -> (FP32
    stage key, plan stage key)) from the same rounds: one window serves the stage figures,
    their comparison across plans and the speed guard. Stops after a round in which every
    stage's 95% interval of its round medians is within `stage_rule`'s precision (or at its
    cap) and every ratio is settled against GUARD_THRESHOLD (or at `guard_rule`'s cap); a
    stage whose figure and ratios are settled leaves the later rounds.

    A stage in `informative` runs on a tier whose target is not this host: its host figure
    is shown, labelled as measured here, but no latency of the advice is read from it (that
    tier's figures are predictions), so its figure is settled at `stage_rule`'s floor of
    rounds of one run each (INFORMATIVE_STOP); one a guard ratio reads keeps `per_round`
    runs and settles by `guard_rule`."""
    from advisor.measure.timing import timed_run, uncontended

    medians: dict[str, list[float]] = {k: [] for k in stages}
    samples: dict[str, list[float]] = {k: [] for k in stages}
    ratios: dict[str, list[float]] = {pid: [] for pid in pairs}
    settled: dict[str, str] = {}  # stage key or plan id -> why it left the rounds
    rng = random.Random(seed)
    cap = max(stage_rule.cap, guard_rule.cap if pairs else 0)
    # an informative stage runs once a round (no guard ratio reads it): its figure is shown,
    # not decided on, and a ResNet-50-class window spent ~0.7 s on such runs
    paired = {k for pair in pairs.values() for k in pair}
    runs = {k: 1 if k in informative and k not in paired else per_round for k in stages}
    for _ in range(cap):
        # a stage leaves the rounds once its figure is settled and so is every ratio it is
        # part of (FP32 stays while any plan is still compared with it)
        order = [
            k
            for k in stages
            if k not in settled
            or any(k in pair and pid not in settled for pid, pair in pairs.items())
        ]
        if not order:
            break
        rng.shuffle(order)
        for k in order:
            sess, feed = stages[k]
            times = [timed_run(sess, feed)]
            while len(times) < runs[k] and sum(t[0] for t in times) < ROUND_MS:
                times.append(timed_run(sess, feed))
            kept = [times[i][0] for i in uncontended(times, threads)]
            medians[k].append(float(np.median(kept)))
            samples[k].extend(kept)
        for pid, (b, o) in pairs.items():
            if pid not in settled and b in order and o in order:
                ratios[pid].append(medians[o][-1] / medians[b][-1])
                settled[pid] = stop_reason(ratios[pid], guard_rule, GUARD_THRESHOLD)
            slower = settled.get(pid, "").startswith("95% CI above")
            if slower and o != b and not settled.get(o):
                # slower than FP32: the guard rejects the plan, a finer figure decides nothing
                settled[o] = f"guard settled it slower than FP32 after {len(ratios[pid])} rounds"
        for k in order:
            settled[k] = settled.get(k) or stop_reason(medians[k], stage_rule, None)
            if not settled[k] and k in informative and len(medians[k]) >= stage_rule.floor:
                settled[k] = INFORMATIVE_STOP.format(n=len(medians[k]))
        settled = {k: v for k, v in settled.items() if v}
    why = sorted({v for k, v in settled.items() if k in stages} or {"no stage"})
    stopped = "; ".join(why) if len(why) <= 2 else f"{why[0]}; ...; {why[-1]}"
    got = {
        pid: _paired(medians[b], medians[o], ratios[pid], per_round, settled.get(pid, ""))
        for pid, (b, o) in pairs.items()
    }
    reasons = {k: settled.get(k, f"cap of {cap} rounds reached") for k in stages}
    return Window(medians, samples, got, per_round, stopped, reasons)


def _paired(
    a_ms: list[float], b_ms: list[float], ratios: list[float], runs: int, stopped: str
) -> PairedTiming:
    """A plan's paired figures from the rounds it shared with FP32."""
    n = len(ratios)
    q1, q3 = np.percentile(ratios, [25, 75])
    med = float(np.median(ratios))
    return PairedTiming(
        float(np.median(a_ms)),
        float(np.median(b_ms)),
        med,
        float((q3 - q1) / 2 / med),
        n,
        runs,
        stopped,
    )


def remember(
    base: str,
    other: str,
    threads: int,
    pt: PairedTiming,
    digests: tuple[str, str] | None = None,
) -> None:
    """Keep `pt` for the judge's paired_timing(base, other) call (both model files;
    `digests`: their SHA-256, when the caller has them)."""
    key = (*(digests or (file_digest(base), file_digest(other))), threads)
    with _WINDOW_LOCK:
        _WINDOW[key] = pt


def forget_window() -> None:
    """Drop the last window's results (a run that times every guard itself calls this)."""
    with _WINDOW_LOCK:
        _WINDOW.clear()


def paired_timing(
    base: str | onnx.ModelProto,
    base_feeds: dict[str, np.ndarray],
    other: str | onnx.ModelProto,
    other_feeds: dict[str, np.ndarray],
    *,
    rounds: int = 7,
    runs: int = 10,
    threads: int = 1,
    memo: object = None,  # a sweep's memo: the digests of the files it wrote
) -> PairedTiming:
    """Time `base` and `other` in `rounds` alternating rounds of `runs` inferences each.

    When both are files that the last `guard_window` timed together, its result is returned.
    """
    if isinstance(base, str) and isinstance(other, str) and _WINDOW:
        known: dict[str, str] = getattr(memo, "file_digests", {})
        key = (known.get(base) or file_digest(base), known.get(other) or file_digest(other))
        with _WINDOW_LOCK:
            hit = _WINDOW.get((*key, threads))
        if hit is not None:
            return hit
    sa, sb = make_session(base, threads=threads), make_session(other, threads=threads)
    _burst(sa, base_feeds, runs)
    _burst(sb, other_feeds, runs)  # warm-up
    a_ms, b_ms = [], []
    for r in range(rounds):
        first_a = r % 2 == 0
        x = _burst(sa, base_feeds, runs) if first_a else None
        b_ms.append(_burst(sb, other_feeds, runs))
        a_ms.append(x if x is not None else _burst(sa, base_feeds, runs))
    return _summary(a_ms, b_ms, runs, "")


def _stage_sessions(
    plans: list[PlanResult], inputs: dict[str, np.ndarray], threads: int
) -> list[tuple[int, int, Any, dict[str, np.ndarray], str]]:
    """(plan index, stage index, warmed-up session, its feed, digest of model and feed) for
    every compute stage of every plan that has artifacts and is not a cascade, each fed by
    the stages before it."""
    items: list[tuple[int, int, Any, dict[str, np.ndarray], str]] = []
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
            items.append((pi, si, sess, feed, f"{file_digest(path)}-{feed_digest(feed)}"))
    return items


def _rounds(
    unique: dict[str, tuple[Any, dict[str, np.ndarray]]],
    per_round: int,
    threads: int,
    rounds: int,
    rule: Rule | None,
    seed: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]], str]:
    """Round-robin rounds over `unique` stages: (round medians, kept runs, why it stopped)."""
    from advisor.measure.timing import timed_run, uncontended

    medians: dict[str, list[float]] = {k: [] for k in unique}
    samples: dict[str, list[float]] = {k: [] for k in unique}
    order = list(unique)
    rng = random.Random(seed)
    cap = rounds if rule is None else rule.cap
    for n in range(1, cap + 1):
        rng.shuffle(order)
        for k in order:
            sess, feed = unique[k]
            times = [timed_run(sess, feed) for _ in range(per_round)]
            kept = [times[i][0] for i in uncontended(times, threads)]
            medians[k].append(float(np.median(kept)))
            samples[k].extend(kept)
        if rule is not None and n >= rule.floor:
            reasons = [stop_reason(m, rule, None) for m in medians.values()]
            if all(r.startswith("95% CI") for r in reasons):
                return medians, samples, f"every stage's 95% CI within ±{rule.precision:.0%}"
    return medians, samples, f"cap of {cap} rounds reached" if rule is not None else ""


def remeasure_interleaved(
    plans: list[PlanResult],
    inputs: dict[str, np.ndarray],
    *,
    runs: int,
    threads: int,
    rounds: int = 5,
    seed: int = 0,
    rule: Rule | None = None,
) -> list[PlanResult]:
    """Time every plan's compute stages again, round-robin across all plans, and use those
    figures as their `measured_host`.

    Each stage's first measurement (`validate`) ran in its own time window; on a shared host a
    burst of load in one window can move it by tens of percent, so two plans holding the same
    model could differ by that much. Here every stage of every plan runs a few times per round,
    in a shuffled order, for `rounds` rounds; a stage's figure is the median of its per-round
    medians, so drift hits all plans alike and their figures compare. Stages whose models and
    inputs have the same bytes are timed once. With `rule`, the rounds stop early once every
    stage's 95% interval of its round medians is within the rule's precision (floor and cap
    in rounds). Cascades (expected latencies over exit shares) keep their figures.
    """
    from advisor.measure.timing import median_p90

    items = _stage_sessions(plans, inputs, threads)
    if not items:
        return plans
    per_round = max(3, runs // rounds)
    unique: dict[str, tuple[Any, dict[str, np.ndarray]]] = {}
    key_of: dict[tuple[int, int], str] = {}
    for pi, si, sess, feed, digest in items:
        key = digest if rule is not None else f"{pi}-{si}"  # fixed counts: every stage, as before
        unique.setdefault(key, (sess, feed))
        key_of[(pi, si)] = key
    medians, samples, stopped = _rounds(unique, per_round, threads, rounds, rule, seed)
    n_rounds = len(next(iter(medians.values())))
    method = (
        f"ORT CPU, ORT_ENABLE_ALL, {threads} thread(s): median of {n_rounds} round medians of "
        f"{per_round} runs, round-robin with every other plan's stages"
        + (f" ({rule.label}: stopped, {stopped})" if rule is not None else "")
        + ("; identical models timed once" if len(unique) < len(items) else "")
    )
    out = list(plans)
    for pi in sorted({pi for pi, _, _, _, _ in items}):
        p = out[pi]
        stages = list(p.stages)
        for si, s in enumerate(stages):
            if (pi, si) not in key_of:
                continue
            _, p90 = median_p90(samples[key_of[(pi, si)]])
            ms = float(np.median(medians[key_of[(pi, si)]]))
            stages[si] = s.model_copy(
                update={
                    "measured_host": Latency(ms=ms, p90_ms=p90, kind="measured_host", method=method)
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
