"""Validation: every candidate plan is built, loaded in ONNX Runtime and run for real.

For each candidate: its models are written to disk (the plan's artifacts) and loaded in fresh
ORT sessions; the whole pipeline — compute steps, transfers (with a real INT8 round trip of the
boundary where the plan compresses it) — runs on the evaluation inputs and is compared with the
FP32 model (max abs error, cosine, top-1 agreement, task accuracy); every compute step is timed
on this host (`measured_host`) and predicted on its target (`predicted_target`); transfers come
from the bytes that actually cross and the link model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from advisor.advice import Fidelity, Latency, PlanResult, Stage
from advisor.graph.model import ModelGraph
from advisor.measure.memo import MeasurementMemo
from advisor.measure.policy import StageTimer, file_digest
from advisor.measure.profile import make_session, measure_latency
from advisor.plans import Candidate, Compute, Exit, PlanContext, Transfer
from advisor.targets.catalog import transfer_ms
from advisor.validate.artifacts import write_artifacts
from advisor.validate.fidelity import (
    EvalRun,
    EvalSet,
    eval_key,
    feeds_for_session,
    fidelity,
    run_eval,
)
from advisor.validate.stage_predict import (
    StagePrediction,
    by_model,
    model_prediction,
    predict_stage,
)

LINK_METHOD = "link model: RTT/2 + bytes / nominal bandwidth"


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
    # per compute step, its prediction from its own model (a quantized, pruned or converted
    # model on a non-host target), made before the model was released; None: predicted later
    own: tuple[StagePrediction | None, ...] = ()
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
    release: bool = False,
    loaded: Callable[[], None] | None = None,
) -> Prepared:
    """Everything but timing: write the artifacts, load them, run the evaluation inputs and
    compare with FP32. Safe to run beside other `prepare` calls (it times nothing). Without
    `keep_sessions` the loaded sessions are dropped (`measure` loads them again). With
    `release`, the candidate's ModelProtos are released once written (`release_models`):
    the artifacts hold them, and what was predicted from them is kept in `own`. `loaded` is
    called once the sessions are loaded, before the evaluation runs (the peak of memory is
    behind: a caller bounding concurrent builds by memory lets the next one start). With a
    `memo`, artifacts whose bytes an earlier call already ran share that run, their
    predictions and (a sweep's memo) their sessions."""
    computes = [s for s in cand.steps if isinstance(s, Compute)]
    artifacts = write_artifacts(computes, out_dir / plan_id, ctx)
    digests = tuple(file_digest(a) for a in artifacts)
    if memo is not None:
        memo.file_digests.update(zip(artifacts, digests, strict=True))
    # predicted before the sessions load, so their memory and the predictor's do not add up;
    # ORT loads each artifact next (a model it cannot load rejects the plan there)
    own = tuple(
        model_prediction(ctx, c, True, (d, memo)) if by_model(ctx, c) else None
        for c, d in zip(computes, digests, strict=True)
    )
    if release:
        release_models(cand)
        computes = [s for s in cand.steps if isinstance(s, Compute)]
    names = [t.name for t in ctx.graph.outputs]
    key = _run_key(cand, ev, names, artifacts, digests) if memo is not None else None
    known = memo.eval_runs.get(key) if memo is not None and key is not None else None
    # an evaluation run of the same bytes is known (both baselines hold the FP32 model): its
    # sessions are not loaded again unless they are kept
    load = known is None or keep_sessions
    sessions = (
        [_session(a, d, threads, memo) for a, d in zip(artifacts, digests, strict=True)]
        if load
        else []
    )
    if loaded is not None:
        loaded()
    run, fid = _eval_run(cand, sessions, ev, names, key, memo)
    # of every tensor the first input produced, only those a transfer sends are read later;
    # the rest (every activation of the model) would stay in memory until timing ends
    sent = {t for s in cand.steps if isinstance(s, Transfer) for t in s.tensors}
    run = replace(run, first_env={k: v for k, v in run.first_env.items() if k in sent})
    kept = sessions if keep_sessions else []
    return Prepared(cand, plan_id, computes, artifacts, kept, run, fid, own, digests)


def release_models(cand: Candidate) -> None:
    """Replace each compute step's ModelProto by an empty one, in place, so that the
    candidate (held until the advice is assembled) stops holding its sub-models: for a
    ResNet-50-class model, every partition and quantized variant is ~25-100 MB. Call it
    once the artifacts are written; the steps keep everything else (tier, target,
    precision, nodes)."""
    for i, step in enumerate(cand.steps):
        if isinstance(step, Compute):
            cand.steps[i] = replace(step, model=onnx.ModelProto())


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
    digests = prep.digests or tuple(file_digest(a) for a in prep.artifacts)
    sessions = prep.sessions or [
        _session(a, d, threads, memo) for a, d in zip(prep.artifacts, digests, strict=True)
    ]
    own = prep.own or (None,) * len(prep.computes)
    compiled = zip(prep.computes, sessions, prep.artifacts, digests, own, strict=True)
    walk = _walk(ctx, prep.cand, ev, prep.run, compiled, runs, threads, timer, memo)
    return _result(ctx, prep.cand, prep.plan_id, walk, prep.run, prep.fid, prep.artifacts)


def _session(path: str, digest: str, threads: int, memo: MeasurementMemo | None) -> Any:
    """A session of the artifact at `path`: the memo's (shared, already run) or a new one."""
    if memo is None:
        return make_session(path, threads=threads)
    return memo.session(digest, path, threads)[0]


def _run_key(
    cand: Candidate, ev: EvalSet, names: list[str], artifacts: list[str], digests: tuple = ()
) -> tuple:
    """What identifies an evaluation run: the artifacts' bytes (or their `digests`), the
    exits, the prediction tensor, the outputs and the evaluation set."""
    return (
        digests or tuple(file_digest(a) for a in artifacts),
        tuple((s.tensor, s.threshold) for s in cand.steps if isinstance(s, Exit)),
        cand.prediction,
        tuple(names),
        eval_key(ev),
    )


def seed_reference_run(memo: MeasurementMemo, ctx: PlanContext, ev: EvalSet) -> None:
    """Record the FP32 reference outputs (`ev.reference`, computed when the model was loaded,
    with the same session options) as the evaluation run of the model's own bytes, so the
    baselines, whose artifact is those bytes, do not run the evaluation inputs again. A
    baseline whose artifact differs (its bytes have another digest) is run as before."""
    names = [t.name for t in ctx.graph.outputs]
    ref = Candidate("reference", "FP32 reference", [])
    key = _run_key(ref, ev, names, [], digests=(ctx.graph.digest,))
    first = {**ev.inputs[0], **dict(zip(names, ev.reference[0], strict=True))}
    run = EvalRun(list(ev.reference), ev, first, None, None)
    memo.eval_runs.setdefault(key, (run, fidelity(run.outputs, run.compare)))


def _eval_run(
    cand: Candidate,
    sessions: list[Any],
    ev: EvalSet,
    names: list[str],
    key: tuple | None,
    memo: MeasurementMemo | None,
) -> tuple[EvalRun, Fidelity]:
    """(the plan run on every evaluation input, its fidelity), or the same pair from the memo
    (`key`: same artifact bytes, exits, outputs and evaluation set)."""
    if memo is None or key is None:
        run = run_eval(cand, sessions, ev, names)
        return run, fidelity(run.outputs, run.compare)
    if key in memo.eval_runs:
        memo.hits += 1
    else:
        memo.misses += 1
        run = run_eval(cand, sessions, ev, names)
        memo.eval_runs[key] = (run, fidelity(run.outputs, run.compare))
    return memo.eval_runs[key]  # type: ignore[no-any-return]


def _walk(
    ctx: PlanContext,
    cand: Candidate,
    ev: EvalSet,
    run: EvalRun,
    compiled: Iterator[tuple[Compute, Any, str, str, StagePrediction | None]],
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
            step_c, sess, path, digest, own = next(compiled)
            at = _At(sess, path, digest, memo)
            _compute_step(ctx, step_c, at, env0, walk, runs, threads, timer, own)
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
    own: StagePrediction | None = None,
) -> None:
    sess, path = at.sess, at.path
    feeds = feeds_for_session(sess, env0)
    if timer is None:
        stats = measure_latency(path, feeds, runs=runs, threads=threads)
        timed = f"ORT CPU, ORT_ENABLE_ALL, {threads} thread(s), median of {runs} runs"
    else:
        stats, timed = timer.time(path, feeds, session=sess, digest=at.digest)
    # the same model on the same inputs already ran in the shared window: its outputs
    known = timer.outputs.get(StageTimer.key(path, feeds)) if timer is not None else None
    if known is not None:
        outs = known
    elif at.memo is not None:
        outs = at.memo.run(at.digest, path, threads, feeds, sess)[1]
    else:
        outs = sess.run(None, feeds)
    env0.update({o.name: v for o, v in zip(sess.get_outputs(), outs, strict=True)})
    pred, method, derived, source, band = own or predict_stage(
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
