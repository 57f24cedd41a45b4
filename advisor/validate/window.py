"""The shared timing window of one advise() run (step 3 of `advisor.validate.schedule`):
every distinct stage of every plan (cascades aside), loaded once (`load_sessions`), timed in
shuffled rounds with the FP32 model, which gives each stage's figure and each compression
plan's paired ratio to FP32 for the speed guard. A stage no tier of the request reads from
this host (its target is another machine) is settled at the floor of rounds, one run each,
and says so."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from advisor.measure.heap import release_freed
from advisor.measure.memo import MeasurementMemo
from advisor.measure.policy import Policy, StageTimer, file_digest
from advisor.measure.timing import LatencyStats, make_session, median_p90
from advisor.plans import Exit
from advisor.targets.catalog import HOST_ID
from advisor.validate.core import Built, Prepared
from advisor.validate.fidelity import feeds_for_session
from advisor.validate.guard import (
    INFORMATIVE_MARK,
    ROUND_MS,
    Window,
    remember,
    shared_window,
)

__all__ = ["load_sessions", "window_all"]


@dataclass
class _Stages:
    """What the window times, read from the prepared plans (`_window_stages`)."""

    stages: dict[str, tuple[Any, dict[str, np.ndarray]]] = field(default_factory=dict)
    owners: dict[str, list[str]] = field(default_factory=dict)  # stage key -> plan ids
    first: dict[str, str] = field(default_factory=dict)  # plan id -> its first stage's key
    sessions: dict[str, list[Any]] = field(default_factory=dict)  # plan id -> its sessions
    on_host: set[str] = field(default_factory=set)  # keys a tier whose target is the host runs


def _window_stages(
    prepared: list[tuple[str, Prepared]],
    inputs: dict[str, np.ndarray],
    timer: StageTimer,
    threads: int,
    memo: MeasurementMemo | None,
) -> _Stages:
    """Every non-cascade plan's stages, each distinct one (model bytes and inputs) on the
    session `prepare_all` loaded (else loaded here) and run once: the warm-up, whose outputs
    feed the next stage and stay in `timer`. A plan whose sessions ran its evaluation inputs
    (`Prepared.warm`) has run them on this very input already: its outputs are read from
    that run."""
    out = _Stages()
    if all(prep.sessions for _, prep in prepared):  # loaded, and run, by prepare_all
        loaded = {
            d: sess
            for _, prep in prepared
            for d, sess in zip(prep.digests, prep.sessions, strict=True)
        }
    else:
        loaded = load_sessions([prep for _, prep in prepared], threads, memo, cascades=False)
    for pid, prep in prepared:
        if any(isinstance(s, Exit) for s in prep.cand.steps):
            continue  # a cascade: its stages are timed one by one (StageTimer)
        env, out.sessions[pid] = dict(inputs), []
        digests = prep.digests or tuple(file_digest(a) for a in prep.artifacts)
        first = prep.run.first_env  # the plan's evaluation run of this very input
        for path, digest, comp in zip(prep.artifacts, digests, prep.computes, strict=True):
            sess = loaded[digest]
            if isinstance(sess, BaseException):
                raise sess
            feed = feeds_for_session(sess, env)
            key = StageTimer.key(path, feed, digest)
            names = [o.name for o in sess.get_outputs()]
            if key in timer.outputs:  # the same model on the same inputs, run already
                outs = timer.outputs[key]
            elif prep.warm and all(n in first for n in names):
                outs = [first[n] for n in names]  # its evaluation run was the warm-up
            elif memo is not None:  # run once already (the warm-up), outputs kept
                outs = memo.run(digest, path, threads, feed, sess)[1]
            else:
                outs = sess.run(None, feed)  # also the warm-up
            env.update({o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)})
            timer.outputs.setdefault(key, outs)
            if comp.target.id == HOST_ID:
                out.on_host.add(key)
            out.stages.setdefault(key, (sess, feed))
            out.owners.setdefault(key, []).append(pid)
            out.first.setdefault(pid, key)
            out.sessions[pid].append(sess)
    return out


def window_all(
    prepared: list[tuple[str, Prepared]],
    inputs: dict[str, np.ndarray],
    policy: Policy,
    threads: int,
    memo: MeasurementMemo | None = None,
) -> tuple[StageTimer, dict[str, list[Any]], dict[str, dict[str, object]]]:
    """One shared window for every stage of every plan (cascades aside) and the speed guard:
    (a timer holding its figures, each plan's loaded sessions, each guarded plan's note).
    With a `memo` (a sweep), stages and guard pairs an earlier advise of the same process
    already timed keep those figures, and only the rest enter the window."""
    timer = StageTimer(policy, threads, seen=memo.timings) if memo else StageTimer(policy, threads)
    timer.inherited = set(timer.seen)  # measured by an earlier advise of this process
    w = _window_stages(prepared, inputs, timer, threads, memo)
    stages, owners, first, sessions, on_host = w.stages, w.owners, w.first, w.sessions, w.on_host
    if not stages or policy.stage is None or policy.interleave is None or policy.guard is None:
        return timer, sessions, {}
    pairs = {
        pid: (first["baseline.device"], first[pid])
        for pid, prep in prepared
        if prep.cand.speed_claim and pid in first and "baseline.device" in first
    }
    notes: dict[str, dict[str, object]] = {}
    base_path = dict(prepared)["baseline.device"].artifacts[0] if pairs else ""
    known = memo.windows if memo is not None else {}
    for pid, pair in pairs.items():
        if pair in known:  # guarded in an earlier advise of this sweep
            pt, notes[pid] = known[pair]
            remember(base_path, dict(prepared)[pid].artifacts[0], threads, pt, _pair(prepared, pid))
    pairs = {pid: pair for pid, pair in pairs.items() if pair not in known}
    stages = {
        k: v
        for k, v in stages.items()
        if k not in timer.seen
        or any(k in pair for pair in pairs.values())
        or (k in on_host and _informative(timer.seen[k][0]))  # an earlier cell's floor figure
    }
    if not stages:
        return timer, sessions, notes
    win = shared_window(
        stages,
        pairs,
        policy.interleave,
        policy.guard,
        per_round=policy.guard_runs,
        threads=threads,
        informative=frozenset(k for k in stages if k not in on_host),
    )
    _prefill(timer, win, owners, policy, threads)
    timer.inherited -= set(win.medians)  # timed again in this window: not reused
    for pid, pt in win.pairs.items():
        remember(base_path, dict(prepared)[pid].artifacts[0], threads, pt, _pair(prepared, pid))
        notes[pid] = {
            "rounds": pt.rounds,
            "runs_per_round": pt.runs,
            "stopped": pt.stopped,
            "method": "FP32 and every plan's stages in one window of shuffled rounds of up "
            f"to {pt.runs} runs (as many as fit in {ROUND_MS:.0f} ms); "
            f"{policy.label(pt.stopped, pt.rounds, 'rounds')}",
            "kind": "measured_host",
        }
        if memo is not None:
            memo.windows[pairs[pid]] = (pt, notes[pid])
    return timer, sessions, notes


def _informative(stats: LatencyStats) -> bool:
    """Whether a figure was settled at the window's floor because no tier read it."""
    return INFORMATIVE_MARK in (stats.stopped or "")


def _pair(prepared: list[tuple[str, Prepared]], pid: str) -> tuple[str, str] | None:
    """The digests of the FP32 model and plan `pid`'s first artifact, when prepare took them."""
    by_id = dict(prepared)
    base, plan = by_id["baseline.device"].digests, by_id[pid].digests
    return (base[0], plan[0]) if base and plan else None


def load_sessions(
    items: Sequence[Built | Prepared],
    threads: int,
    memo: MeasurementMemo | None = None,
    cascades: bool = True,
) -> dict[str, Any]:
    """One session per distinct model (by file digest) of every plan (without `cascades`,
    of every non-cascade plan), the largest file first: each load briefly holds the file's
    bytes and ORT's parse besides the sessions already loaded, so the small ones coming
    last keep that peak low. What a load parsed and dropped goes back to the system before
    the next. A sweep's `memo` lends the sessions it keeps (shared across cells). A load
    that fails is kept as its exception: the plans holding that artifact are rejected."""
    paths: dict[str, str] = {}
    for b in items:
        if cascades or not any(isinstance(s, Exit) for s in b.cand.steps):
            digests = b.digests or tuple(file_digest(a) for a in b.artifacts)
            paths.update(zip(digests, b.artifacts, strict=True))
    loaded: dict[str, Any] = {}
    for digest, path in sorted(paths.items(), key=lambda kv: -os.path.getsize(kv[1])):
        try:
            if memo is not None:
                loaded[digest] = memo.session(digest, path, threads)[0]
            else:
                loaded[digest] = make_session(path, threads)
        except Exception as exc:  # noqa: BLE001 - ORT cannot load it: its plans are rejected
            loaded[digest] = exc
        release_freed()
    return loaded


def _prefill(
    timer: StageTimer, win: Window, owners: dict[str, list[str]], policy: Policy, threads: int
) -> None:
    for key, meds in win.medians.items():
        _, p90 = median_p90(win.samples[key])
        stats = LatencyStats(
            median_ms=float(np.median(meds)),
            p90_ms=p90,
            runs=len(win.samples[key]),
            threads=threads,
            stopped=win.reasons[key],
        )
        method = (
            f"ORT CPU, ORT_ENABLE_ALL, {threads} thread(s): median of {len(meds)} round "
            f"medians ({len(win.samples[key])} runs: up to {win.per_round} a round, as many "
            f"as fit in {ROUND_MS:.0f} ms), round-robin with every other plan's stages "
            f"({policy.mode}: stopped, {win.reasons[key]})"
            + ("; identical models timed once" if len(owners[key]) > 1 else "")
        )
        timer.prefill(key, stats, method)
