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
from dataclasses import dataclass, replace
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
from advisor.validate.result import Walk, plan_result
from advisor.validate.stage_predict import (
    StagePrediction,
    by_model,
    model_prediction,
    predict_stage,
)

LINK_METHOD = "link model: RTT/2 + bytes / nominal bandwidth"


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
    # its sessions ran the evaluation inputs (not a memo's run of the same bytes): each has
    # run once, and the first input's tensors in `run.first_env` are their outputs
    warm: bool = False


@dataclass(frozen=True)
class Built:
    """A candidate's artifacts written, what is predicted from its own models taken; not
    yet loaded or run (`evaluate`)."""

    cand: Candidate
    plan_id: str
    computes: list[Compute]
    artifacts: list[str]
    own: tuple[StagePrediction | None, ...]
    digests: tuple[str, ...]


def build(
    ctx: PlanContext,
    cand: Candidate,
    plan_id: str,
    out_dir: Path,
    memo: MeasurementMemo | None = None,
    release: bool = False,
) -> Built:
    """Write the artifacts and predict the changed models from their own nodes. With
    `release`, the candidate's ModelProtos are released once written (`release_models`):
    the artifacts hold them, and what was predicted from them is kept in `own`."""
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
    return Built(cand, plan_id, computes, artifacts, own, digests)


def run_key(ctx: PlanContext, b: Built, ev: EvalSet) -> tuple:
    """What identifies the built plan's evaluation run (`_run_key`)."""
    names = [t.name for t in ctx.graph.outputs]
    return _run_key(b.cand, ev, names, b.artifacts, b.digests)


def evaluate(
    ctx: PlanContext,
    b: Built,
    ev: EvalSet,
    sessions: list[Any],
    memo: MeasurementMemo | None = None,
    trim: bool = True,
    spread: bool = True,
) -> Prepared:
    """Run the built plan's `sessions` on the evaluation inputs and compare with FP32 (the
    memo's run for the same bytes when it has one). With `trim`, the first input's tensors
    are cut to those a transfer sends (the rest would stay in memory until timing ends);
    without, every stage's outputs stay (a shared window reads them as its warm-up run).
    `spread`: the inputs run over the cores (else one after another: `run_eval`)."""
    names = [t.name for t in ctx.graph.outputs]
    key = _run_key(b.cand, ev, names, b.artifacts, b.digests) if memo is not None else None
    warm = memo is None or key not in memo.eval_runs
    run, fid = _eval_run(b.cand, sessions, ev, names, key, memo, spread)
    if trim:
        run = trim_run(b.cand, run)
    return Prepared(
        b.cand, b.plan_id, b.computes, b.artifacts, sessions, run, fid, b.own, b.digests, warm
    )


def trim_run(cand: Candidate, run: EvalRun) -> EvalRun:
    """The run with, of every tensor the first input produced, only those a transfer of the
    plan sends (what `measure` reads later)."""
    sent = {t for s in cand.steps if isinstance(s, Transfer) for t in s.tensors}
    return replace(run, first_env={k: v for k, v in run.first_env.items() if k in sent})


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
    loaded: Callable[[], object] | None = None,
) -> Prepared:
    """Everything but timing, one plan at a time: `build`, load, `evaluate`. Safe to run
    beside other `prepare` calls (it times nothing). Without `keep_sessions` the loaded
    sessions are dropped (`measure` loads them again). `loaded` is called once the sessions
    are loaded, before the evaluation runs (the peak of memory is behind: a caller bounding
    concurrent builds by memory lets the next one start). With a `memo`, artifacts whose
    bytes an earlier call already ran share that run, their predictions and (a sweep's
    memo) their sessions."""
    b = build(ctx, cand, plan_id, out_dir, memo, release)
    key = run_key(ctx, b, ev) if memo is not None else None
    known = memo.eval_runs.get(key) if memo is not None and key is not None else None
    # an evaluation run of the same bytes is known (both baselines hold the FP32 model): its
    # sessions are not loaded again unless they are kept
    load = known is None or keep_sessions
    sessions = (
        [_session(a, d, threads, memo) for a, d in zip(b.artifacts, b.digests, strict=True)]
        if load
        else []
    )
    if loaded is not None:
        loaded()
    prep = evaluate(ctx, b, ev, sessions, memo)
    return prep if keep_sessions else replace(prep, sessions=[])


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
    return plan_result(ctx, prep.cand, prep.plan_id, walk, prep.run, prep.fid, prep.artifacts)


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
    spread: bool = True,
) -> tuple[EvalRun, Fidelity]:
    """(the plan run on every evaluation input, its fidelity), or the same pair from the memo
    (`key`: same artifact bytes, exits, outputs and evaluation set)."""
    if memo is None or key is None:
        run = run_eval(cand, sessions, ev, names, spread)
        return run, fidelity(run.outputs, run.compare)
    if key in memo.eval_runs:
        memo.hits += 1
    else:
        memo.misses += 1
        run = run_eval(cand, sessions, ev, names, spread)
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
) -> Walk:
    """Each step in order: exits close a path, transfers cost the link, computes are timed."""
    walk = Walk()
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


def _exit_step(g: ModelGraph, step: Exit, env0: dict[str, np.ndarray], walk: Walk) -> None:
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
    g: ModelGraph, step: Transfer, first_env: dict[str, np.ndarray] | None, walk: Walk
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
    walk: Walk,
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
