"""Validation: every candidate plan is built, loaded in ONNX Runtime and run for real.

For each candidate: its models are written to disk (the plan's artifacts) and loaded in fresh
ORT sessions; the whole pipeline — compute steps, transfers (with a real INT8 round trip of the
boundary where the plan compresses it) — runs on the evaluation inputs and is compared with the
FP32 model (max abs error, cosine, top-1 agreement, task accuracy); every compute step is timed
on this host (`measured_host`) and predicted on its target (`predicted_target`); transfers come
from the bytes that actually cross and the link model.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from advisor.advice import Fidelity, Latency, PlanResult, Stage
from advisor.graph.model import ModelGraph
from advisor.measure.memo import MeasurementMemo, digest_bytes
from advisor.measure.policy import StageTimer
from advisor.measure.profile import make_session, measure_latency
from advisor.plans import Candidate, Compute, Exit, PlanContext, Transfer
from advisor.targets.catalog import transfer_ms
from advisor.validate.fidelity import (
    EvalRun,
    EvalSet,
    eval_key,
    feeds_for_session,
    fidelity,
    run_eval,
)

LINK_METHOD = "link model: RTT/2 + bytes / nominal bandwidth"


def _tier_ms(ctx: PlanContext, tier: str) -> dict[str, float]:
    return {
        "device": ctx.device_ms,
        "edge": ctx.edge_ms or ctx.server_ms,
        "cloud": ctx.cloud_ms or ctx.server_ms,
    }.get(tier, ctx.server_ms)


@dataclass
class _Walk:
    """The running totals while a plan's steps are timed in order."""

    stages: list[Stage] = field(default_factory=list)
    pred_total: float = 0.0
    meas_total: float = 0.0
    all_host: bool = True
    derived: bool = False  # a stage predicted from its own measurement: no independent check
    paths: list[tuple[str, float, float]] = field(default_factory=list)  # per Exit step
    path_stages: list[list[int]] = field(default_factory=list)  # stage indices on its path
    exit_downs: set[int] = field(default_factory=set)  # downlinks of one exit's path only
    sources: list[str] = field(default_factory=list)  # each compute stage's source
    band: float = 0.0  # the widest band of any compute stage


def validate(
    ctx: PlanContext,
    cand: Candidate,
    plan_id: str,
    ev: EvalSet,
    out_dir: Path,
    runs: int,
    threads: int,
    timer: StageTimer | None = None,
) -> PlanResult:
    """Build, run and measure one candidate. Raises on a broken artifact (caller records it)."""
    return measure(ctx, prepare(ctx, cand, plan_id, ev, out_dir, threads), ev, runs, threads, timer)


@dataclass(frozen=True)
class Prepared:
    """A candidate built and run on the evaluation inputs, not yet timed."""

    cand: Candidate
    plan_id: str
    computes: list[Compute]
    artifacts: list[str]
    sessions: list[Any]
    run: EvalRun
    fid: Fidelity
    digests: tuple[str, ...] = ()  # SHA-256 of each artifact's bytes, in step order


def prepare(
    ctx: PlanContext,
    cand: Candidate,
    plan_id: str,
    ev: EvalSet,
    out_dir: Path,
    threads: int,
    keep_sessions: bool = True,
    memo: MeasurementMemo | None = None,
) -> Prepared:
    """Everything but timing: write the artifacts, load them, run the evaluation inputs and
    compare with FP32. Safe to run beside other `prepare` calls (it times nothing). Without
    `keep_sessions` the loaded sessions are dropped (`measure` loads them again). With a
    `memo`, artifacts whose bytes an earlier call already ran share that run and its
    sessions."""
    computes = [s for s in cand.steps if isinstance(s, Compute)]
    artifacts = _build(computes, out_dir / plan_id)
    digests = tuple(digest_bytes(Path(a).read_bytes()) for a in artifacts)
    if memo is not None:
        memo.file_digests.update(zip(artifacts, digests, strict=True))
    names = [t.name for t in ctx.graph.outputs]
    run, fid, sessions = _eval_run(cand, artifacts, digests, ev, names, threads, memo)
    # of every tensor the first input produced, only those a transfer sends are read later;
    # the rest (every activation of the model) would stay in memory until timing ends
    sent = {t for s in cand.steps if isinstance(s, Transfer) for t in s.tensors}
    run = replace(run, first_env={k: v for k, v in run.first_env.items() if k in sent})
    if keep_sessions and sessions is None:
        sessions = [_session(a, d, threads, memo) for a, d in zip(artifacts, digests, strict=True)]
    kept = (sessions or []) if keep_sessions else []
    return Prepared(cand, plan_id, computes, artifacts, kept, run, fid, digests)


def measure(
    ctx: PlanContext,
    prep: Prepared,
    ev: EvalSet,
    runs: int,
    threads: int,
    timer: StageTimer | None = None,
    memo: MeasurementMemo | None = None,
) -> PlanResult:
    """Time a prepared candidate's compute stages (fixed `runs`, or `timer`'s policy). With
    a `memo`, outputs and predictions of artifacts seen earlier are reused."""
    digests = prep.digests or tuple(digest_bytes(Path(a).read_bytes()) for a in prep.artifacts)
    sessions = prep.sessions or [
        _session(a, d, threads, memo) for a, d in zip(prep.artifacts, digests, strict=True)
    ]
    compiled = zip(prep.computes, sessions, prep.artifacts, digests, strict=True)
    walk = _walk(ctx, prep.cand, ev, prep.run, compiled, runs, threads, timer, memo)
    return _result(ctx, prep.cand, prep.plan_id, walk, prep.run, prep.fid, prep.artifacts)


def _session(path: str, digest: str, threads: int, memo: MeasurementMemo | None) -> Any:
    """A session of the artifact at `path`: the memo's (shared, already run) or a new one."""
    if memo is None:
        return make_session(path, threads=threads)
    return memo.session(digest, path, threads)[0]


def _eval_run(
    cand: Candidate,
    artifacts: list[str],
    digests: tuple[str, ...],
    ev: EvalSet,
    names: list[str],
    threads: int,
    memo: MeasurementMemo | None,
) -> tuple[EvalRun, Fidelity, list[Any] | None]:
    """(the plan run on every evaluation input, its fidelity, the sessions it loaded or None),
    or the same run from the memo (same artifact bytes, exits, outputs and evaluation set),
    which loads nothing."""
    if memo is None:
        sessions = [make_session(a, threads=threads) for a in artifacts]
        run = run_eval(cand, sessions, ev, names)
        return run, fidelity(run.outputs, run.compare), sessions
    key = (
        digests,
        tuple((s.tensor, s.threshold) for s in cand.steps if isinstance(s, Exit)),
        cand.prediction,
        tuple(names),
        eval_key(ev),
    )
    if key in memo.eval_runs:
        memo.hits += 1
        run, fid = memo.eval_runs[key]
        return run, fid, None
    memo.misses += 1
    sessions = [_session(a, d, threads, memo) for a, d in zip(artifacts, digests, strict=True)]
    run = run_eval(cand, sessions, ev, names)
    fid = fidelity(run.outputs, run.compare)
    memo.eval_runs[key] = (run, fid)
    return run, fid, sessions


def _build(computes: list[Compute], plan_dir: Path) -> list[str]:
    """Write each compute step's model: the plan's artifacts, in step order."""
    plan_dir.mkdir(parents=True, exist_ok=True)
    artifacts = []
    for i, comp in enumerate(computes):
        file = plan_dir / f"{i}_{comp.tier}_{comp.precision}.onnx"
        onnx.save(comp.model, file)
        artifacts.append(str(file))
    return artifacts


def _walk(
    ctx: PlanContext,
    cand: Candidate,
    ev: EvalSet,
    run: EvalRun,
    compiled: Iterator[tuple[Compute, Any, str, str]],
    runs: int,
    threads: int,
    timer: StageTimer | None = None,
    memo: MeasurementMemo | None = None,
) -> _Walk:
    """Each step in order: exits close a path, transfers cost the link, computes are timed."""
    walk = _Walk()
    env0 = dict(ev.inputs[0])
    for step in cand.steps:
        if isinstance(step, Exit):
            _exit_step(ctx.graph, step, env0, walk)
        elif isinstance(step, Transfer):
            _transfer_step(ctx.graph, step, run.first_env, walk)
        else:
            step_c, sess, path, digest = next(compiled)
            at = _At(sess, path, digest, memo)
            _compute_step(ctx, step_c, at, env0, walk, runs, threads, timer)
    return walk


@dataclass(frozen=True)
class _At:
    """Where a compute step runs: its session, artifact file and its digest, and the memo."""

    sess: Any
    path: str
    digest: str
    memo: MeasurementMemo | None = None


def _exit_step(g: ModelGraph, step: Exit, env0: dict[str, np.ndarray], walk: _Walk) -> None:
    down = 0.0
    on_path = [i for i in range(len(walk.stages)) if i not in walk.exit_downs]
    if step.link is not None:  # the exit is on the server: its logits go back down
        arr = env0.get(step.tensor)
        nbytes = int(arr.nbytes) if arr is not None else g.tensor(step.tensor).nbytes
        down = transfer_ms(nbytes, step.link, "down")
        walk.stages.append(
            Stage(
                name=f"downlink transfer (leaving at {step.name})",
                kind="transfer",
                target=step.link.id,
                bytes=nbytes,
                predicted=Latency(
                    ms=down, kind="predicted_target", method=LINK_METHOD, target=step.link.id
                ),
            )
        )
        walk.exit_downs.add(len(walk.stages) - 1)
        on_path.append(len(walk.stages) - 1)
    walk.paths.append((step.name, walk.pred_total + down, walk.meas_total + down))
    walk.path_stages.append(on_path)


def _transfer_step(
    g: ModelGraph, step: Transfer, first_env: dict[str, np.ndarray] | None, walk: _Walk
) -> None:
    nbytes = 0
    for t in step.tensors:
        arr = first_env[t] if first_env and t in first_env else None
        nbytes += int(arr.nbytes) if arr is not None else g.tensor(t).nbytes
    ms = transfer_ms(nbytes, step.link, "up" if step.direction == "up" else "down")
    lat = Latency(ms=ms, kind="predicted_target", method=LINK_METHOD, target=step.link.id)
    walk.stages.append(
        Stage(name=step.name, kind="transfer", target=step.link.id, predicted=lat, bytes=nbytes)
    )
    walk.pred_total += ms
    walk.meas_total += ms


def _compute_step(
    ctx: PlanContext,
    step_c: Compute,
    at: _At,
    env0: dict[str, np.ndarray],
    walk: _Walk,
    runs: int,
    threads: int,
    timer: StageTimer | None = None,
) -> None:
    sess, path = at.sess, at.path
    feeds = feeds_for_session(sess, env0)
    if timer is None:
        stats = measure_latency(path, feeds, runs=runs, threads=threads)
        timed = f"ORT CPU, ORT_ENABLE_ALL, {threads} thread(s), median of {runs} runs"
    else:
        stats, timed = timer.time(path, feeds, session=sess, digest=at.digest)
    if at.memo is not None:
        outs = at.memo.run(at.digest, path, threads, feeds, sess)[1]
    else:
        outs = sess.run(None, feeds)
    env0.update({o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)})
    pred, method, derived, source, band = _predict_stage(
        ctx, step_c, stats.median_ms, (at.digest, at.memo)
    )
    walk.derived |= derived
    walk.sources.append(source)
    walk.band = max(walk.band, band)
    walk.all_host &= step_c.target.id == "host"
    walk.stages.append(
        Stage(
            name=step_c.name,
            kind="compute",
            target=step_c.target.id,
            predicted=Latency(
                ms=pred,
                kind="predicted_target",
                method=method,
                target=step_c.target.id,
                source=source,  # type: ignore[arg-type]
                band=band or None,
            ),
            measured_host=Latency(
                ms=stats.median_ms,
                p90_ms=stats.p90_ms,
                kind="measured_host",
                method=timed,
            ),
            nodes=len(step_c.nodes) if step_c.nodes is not None else None,
        )
    )
    walk.pred_total += pred
    walk.meas_total += stats.median_ms


def _predict_stage(
    ctx: PlanContext,
    step_c: Compute,
    measured_ms: float,
    shared: tuple[str, MeasurementMemo | None] = ("", None),
) -> tuple[float, str, bool, str, float]:
    """(predicted ms on the step's target, the method, whether it was derived from this very
    measurement, its source, its band). An unchanged FP32 part is the sum of its nodes'
    predictions; a changed model (quantized, pruned, converted) is predicted from its own
    nodes at its own precision with the target's figures for that precision; `shared` (the
    artifact's digest, a memo) reuses that figure for the same bytes, target and threads."""

    tier = "server" if step_c.tier not in ctx.predictions else step_c.tier
    base = ctx.predictions.get(tier) or ctx.predictions.get(ctx.server_tier or "edge")
    if step_c.nodes is not None and step_c.precision == "fp32" and base is not None:
        per_node = _tier_ms(ctx, step_c.tier)
        overhead = ctx.overhead(step_c.tier)
        pred = sum(per_node[n] for n in step_c.nodes) + overhead
        method = f"sum of per-node predictions ({len(step_c.nodes)} nodes; {base.method})" + (
            f" + {overhead:.3g} ms per inference call" if overhead else ""
        )
        return pred, method, False, base.source, base.band
    if step_c.target.id == "host":
        return (
            measured_ms,
            f"this {step_c.precision} model measured on this host (the target)",
            True,
            "measured_host",
            0.0,
        )
    prec = step_c.precision if step_c.precision in ("fp16", "int8") else "fp32"
    p = _predict_model(step_c, prec, ctx.target_threads, *shared)
    method = f"the {step_c.precision} model's own {len(p.nodes)} nodes: {p.method}"
    return p.total_ms + p.run_overhead_ms, method, False, p.source, p.band


def _predict_model(
    step_c: Compute, prec: str, threads: int | None, digest: str, memo: MeasurementMemo | None
) -> Any:
    """predict_model of the step's model, or the memo's figure for the same artifact bytes
    on the same target (its full definition) at the same precision and threads."""
    from advisor.targets.predict import predict_model

    if memo is None or not digest:
        return predict_model(step_c.model, step_c.target, prec, threads)  # type: ignore[arg-type]
    key = (digest, step_c.target.model_dump_json(), prec, threads)
    if key not in memo.predictions:
        if digest not in memo.graphs:
            from advisor.graph.load import load_model

            memo.graphs[digest] = load_model(step_c.model)
        memo.predictions[key] = predict_model(
            step_c.model,
            step_c.target,
            prec,  # type: ignore[arg-type]
            threads,
            graph=memo.graphs[digest],
        )
    return memo.predictions[key]


_TRUST = ("measured_host", "measured_target", "target_profile", "catalog_priors")


def _weakest(sources: list[str]) -> str | None:
    """The least trusted source among a plan's stages (what its total rests on)."""
    known = [s for s in sources if s in _TRUST]
    return max(known, key=_TRUST.index) if known else None


def _cascade(ctx: PlanContext, walk: _Walk, taken: np.ndarray) -> tuple[float, float, dict]:
    """A cascade's expected latencies over the measured exit shares, and its extra record."""
    shares = taken / max(1, taken.sum())
    paths = walk.paths
    pred_total = float(np.dot(shares, [p[1] for p in paths]))
    meas_total = float(np.dot(shares, [p[2] for p in paths]))
    record = {
        "samples": int(taken.sum()),
        "paths": [
            {
                "exit": e,
                "share": float(sh),
                "inputs": int(n),
                "stages": idx,
                "predicted": Latency(
                    ms=p,
                    kind="predicted_target",
                    target=ctx.device.id,
                    method="sum of stage predictions up to the exit",
                ).model_dump(),
                "measured_host": Latency(
                    ms=m,
                    kind="measured_host",
                    method="sum of stage latencies measured on this host up to the exit; "
                    "transfers from the link model",
                ).model_dump(),
            }
            for (e, p, m), sh, n, idx in zip(paths, shares, taken, walk.path_stages, strict=True)
        ],
        "worst_path_predicted_ms": max(p[1] for p in paths),
    }
    return pred_total, meas_total, record


def _result(
    ctx: PlanContext,
    cand: Candidate,
    plan_id: str,
    walk: _Walk,
    run: EvalRun,
    fid: Fidelity,
    artifacts: list[str],
) -> PlanResult:
    has_transfer = any(s.kind == "transfer" for s in walk.stages)
    extra = dict(cand.extra)
    pred_total, meas_total = walk.pred_total, walk.meas_total
    pred_method = "sum of stage predictions"
    meas_method = "compute measured on this host" + (
        "; transfers from the link model" if has_transfer else ""
    )
    if run.taken is not None:  # a cascade: the expected latency over the measured exit shares
        pred_total, meas_total, extra["cascade"] = _cascade(ctx, walk, run.taken)
        pred_method = (
            "expected over the measured exit shares: sum of share × path latency, "
            "each path the sum of stage predictions up to its exit"
        )
        meas_method = "expected over the measured exit shares: " + meas_method
    if run.prediction_error is not None:
        extra["exit_check"] = {
            "max_abs_error_vs_full_model": run.prediction_error,
            "what": "the plan's exit logits against the same output of the full multi-exit "
            "model, on every evaluation sample",
        }
    independent = walk.all_host and not walk.derived and meas_total > 0
    computes = [s for s in cand.steps if isinstance(s, Compute)]
    return PlanResult(
        id=plan_id,
        kind=cand.kind,
        title=cand.title,
        params=cand.params,
        status="candidate",
        stages=walk.stages,
        predicted=Latency(
            ms=pred_total,
            kind="predicted_target",
            method=pred_method,
            target=ctx.device.id,
            source=_weakest(walk.sources),  # type: ignore[arg-type]
            band=walk.band or None,
        ),
        measured_host=Latency(ms=meas_total, kind="measured_host", method=meas_method),
        prediction_error=abs(pred_total - meas_total) / meas_total if independent else None,
        fidelity=fid,
        size_bytes=sum(
            Path(a).stat().st_size
            for a, s in zip(artifacts, computes, strict=True)
            if s.tier == "device"
        ),
        artifacts=artifacts,
        extra=extra,
    )
