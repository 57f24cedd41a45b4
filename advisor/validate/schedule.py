"""The order of validation work in one advise() run, so that nothing is done twice and
timing runs alone.

1. `triage`: a plan whose prediction before building (a lower bound: FP32 parts summed node by
   node, transfers from the graph's tensor sizes, compressed parts counted as free) misses the
   latency target by more than the predictor's error band is reported `not_validated` with
   that figure, not built and timed; `baseline.device` (the guard's FP32 reference) always is.
2. `prepare_all`, no timing: `build_all` writes every plan's artifacts (and predicts its
   changed models from their own nodes) on a pool of worker threads, one per core, as many
   builds at once as a byte budget allows (`advisor.validate.budget`), the largest first;
   each plan's ModelProtos are released once written (and, in a plain advise(), the FP32
   proto itself: only the per-node view is read after this). `load_sessions` then loads
   each distinct artifact once, the largest first, and `evaluate_all` runs every plan's
   evaluation inputs on those sessions and checks fidelity, one plan per core; both
   baselines take their evaluation from the FP32 reference outputs.
3. `window_all`: only after the pools have closed (every worker joined), one shared window
   on this thread, with nothing else of ours running (so the timings see the same quiet
   machine the fixed-count flow saw), times every distinct stage model once — the sessions
   `prepare_all` loaded, each warmed by its own evaluation run — in shuffled rounds, each
   model a few runs per round (one, for a stage no tier of the request reads on this host),
   until every figure is settled: the rounds give each stage's figure (comparable across
   plans, as drift hits all alike) and, FP32 being one of the stages, each compression
   plan's paired ratio to FP32 for the speed guard.
4. `time_all`: each plan's walk reads its stages' figures from the window; a cascade's stages
   are timed one by one with the adaptive rule.

`exhaustive` keeps the former flow: each plan built, loaded and run in turn (its sessions
dropped), fixed counts per stage, the judge timing each guard in 7 alternating rounds, then
every plan again interleaved.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from advisor.advice import AdviceRequest, Latency, PlanResult
from advisor.errors import AdvisorError
from advisor.measure.heap import release_freed
from advisor.measure.memo import MeasurementMemo
from advisor.measure.policy import Policy, StageTimer, policy_for
from advisor.plans import Candidate, Compute, Exit, PlanContext, Transfer
from advisor.targets.catalog import transfer_ms
from advisor.validate.budget import (
    BUILD_MEMORY,
    WRITE_COPIES,
    MemoryGate,
    build_bytes,
    loaded_bytes,
    workers,
)
from advisor.validate.core import (
    Built,
    Prepared,
    build,
    evaluate,
    measure,
    prepare,
    seed_reference_run,
    trim_run,
)
from advisor.validate.fidelity import EvalSet
from advisor.validate.guard import (
    forget_window,
    remeasure_interleaved,
)
from advisor.validate.rank import citations
from advisor.validate.stage_predict import predict_stage
from advisor.validate.window import load_sessions, window_all

__all__ = [
    "PREDICTION_BAND",
    "lower_bound_ms",
    "prepare_all",
    "time_all",
    "triage",
    "validate_plans",
    "with_not_validated",
]

# the predictor's stated error band: p90 prediction error of one advise() run on the zoo
# (BENCHMARKS.md, prediction section: 24.4% per single run), rounded up
PREDICTION_BAND = 0.25
_ALWAYS = ("baseline.device",)  # the FP32 reference of the speed guard

Report = Callable[[str, float], None]


def lower_bound_ms(ctx: PlanContext, cand: Candidate) -> float | None:
    """A plan's predicted_target latency before it is built, counting compressed compute as
    free (its prediction needs its measurement), or None for a cascade (its latency depends
    on measured exit shares)."""
    total = 0.0
    for step in cand.steps:
        if isinstance(step, Exit):
            return None
        if isinstance(step, Transfer):
            nbytes = 0
            for t in step.tensors:
                try:
                    nbytes += ctx.graph.tensor(t).nbytes
                except AdvisorError:
                    pass  # a tensor the plan adds (a compressed boundary): counted as 0 bytes
            total += transfer_ms(nbytes, step.link, "up" if step.direction == "up" else "down")
        elif isinstance(step, Compute) and step.nodes is not None and step.precision == "fp32":
            total += predict_stage(ctx, step, 0.0)[0]  # compressed compute: 0 (lower bound)
    return total


def triage(
    ctx: PlanContext, candidates: list[tuple[str, Candidate]], latency_ms: float
) -> tuple[list[tuple[str, Candidate]], list[PlanResult]]:
    """(candidates to build and time, plans reported `not_validated`)."""
    todo, skipped = [], []
    # the widest error band of the tiers' predictions (ln space), at least PREDICTION_BAND
    band = max([math.log1p(PREDICTION_BAND)] + [p.band for p in ctx.predictions.values()])
    for pid, cand in candidates:
        low = lower_bound_ms(ctx, cand)
        if pid in _ALWAYS or low is None or low <= latency_ms * math.exp(band):
            todo.append((pid, cand))
            continue
        over = low / latency_ms
        method = (
            "before building: FP32 compute as the sum of per-node predictions, transfers "
            "from the graph's tensor sizes, compressed compute counted as 0 ms (a lower bound)"
        )
        skipped.append(
            PlanResult(
                id=pid,
                kind=cand.kind,
                title=cand.title,
                params=cand.params,
                status="not_validated",
                reasons=[
                    f"not validated: predicted {over:.1f}× over the target (at least "
                    f"{low:.3g} ms predicted_target vs {latency_ms:g} ms, beyond the "
                    f"prediction's error band ×{math.exp(band):.2f}); --validate-all builds "
                    "and times it"
                ],
                predicted=Latency(
                    ms=low, kind="predicted_target", method=method, target=ctx.device.id
                ),
                meets_latency=False,
            )
        )
    return todo, skipped


def _failed(pid: str, cand: Candidate, exc: BaseException) -> PlanResult:
    return PlanResult(
        id=pid,
        kind=cand.kind,
        title=cand.title,
        params=cand.params,
        status="rejected",
        reasons=[f"validation failed: {type(exc).__name__}: {exc}"],
    )


def prepare_all(
    ctx: PlanContext,
    todo: list[tuple[str, Candidate]],
    ev: EvalSet,
    threads: int,
    report: Report,
    parallel: bool = True,
    memory: int = BUILD_MEMORY,
    memo: MeasurementMemo | None = None,
) -> tuple[list[tuple[str, Prepared]], list[PlanResult]]:
    """Build, load and check every candidate; nothing here is timed. `parallel`: build on a
    pool (`build_all`), load each distinct artifact once (`load_sessions`), then run every
    plan's evaluation inputs on those sessions, one plan per core (`evaluate_all`); the
    sessions stay loaded for the shared window, and each plan's first-input tensors serve
    as its warm-up run. Without `parallel` (the exhaustive flow),
    one plan at a time is built, loaded and run, its sessions dropped. The pool is closed
    (every worker joined) when this returns, so the timing that follows runs alone. `memo`
    (a sweep's) shares evaluation runs and sessions of identical artifacts; without one,
    this call's shares evaluation runs."""
    shared = memo if memo is not None else MeasurementMemo(session_budget=0)
    seed_reference_run(shared, ctx, ev)
    if not parallel:
        return _one_by_one(ctx, todo, ev, threads, report, shared)
    built, failed = build_all(ctx, todo, threads, report, memory, shared)
    if memo is None:  # one advise(): nothing reads the FP32 proto again (a sweep's cells do)
        ctx.graph.release_model()
    report("load every distinct artifact once", 0.5)
    sessions = load_sessions(built, threads, memo)
    done, broken = evaluate_all(ctx, built, sessions, ev, threads, report, shared)
    release_freed()
    return done, [*failed, *broken]


def evaluate_all(
    ctx: PlanContext,
    built: list[Built],
    sessions: dict[str, Any],
    ev: EvalSet,
    threads: int,
    report: Report,
    memo: MeasurementMemo,
) -> tuple[list[tuple[str, Prepared]], list[PlanResult]]:
    """Every built plan run on the evaluation inputs with the loaded `sessions` (by
    digest), one plan per worker, each plan's inputs one after another: a session run by
    two threads at once grows its arena for both runs (on a ResNet-50-class model ~100 MB
    more at the peak). Results stay in the plans' order."""

    def one(b: Built) -> Prepared:
        got = [sessions[d] for d in b.digests]
        if bad := next((x for x in got if isinstance(x, BaseException)), None):
            raise bad
        return evaluate(ctx, b, ev, got, memo, trim=False, spread=False)

    done: list[tuple[str, Prepared]] = []
    failed: list[PlanResult] = []
    n_workers = max(1, min(len(built), workers(threads)))
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="evaluate") as pool:
        futures = [pool.submit(one, b) for b in built]
        for n, (b, fut) in enumerate(zip(built, futures, strict=True)):
            report(f"check {b.plan_id} on the evaluation inputs", 0.5 + 0.1 * n / len(built))
            try:
                done.append((b.plan_id, fut.result()))
            except Exception as exc:  # noqa: BLE001 - a broken artifact is a rejected plan
                failed.append(_failed(b.plan_id, b.cand, exc))
    return done, failed


def build_all(
    ctx: PlanContext,
    todo: list[tuple[str, Candidate]],
    threads: int,
    report: Report,
    memory: int,
    memo: MeasurementMemo,
) -> tuple[list[Built], list[PlanResult]]:
    """Write every candidate's artifacts on a thread pool, one worker per core (ONNX
    Runtime, numpy and file writes release the GIL), as many builds at once as their
    estimated memory (`build_bytes`) fits in `memory` bytes; a larger build runs beside one
    other (the budget is raised to the largest build plus the largest plan's weights). A
    free worker takes the first plan, largest first, that fits beside the builds running
    (`take_first`), so it does not idle behind a large build while a small one would fit.
    Results stay in the candidates' order."""
    failed: list[PlanResult] = []
    cost = {pid: (build_bytes(cand, WRITE_COPIES), loaded_bytes(cand)) for pid, cand in todo}
    sessions = max((s for _, s in cost.values()), default=0)
    gate = MemoryGate(max([memory, *(peak + sessions for peak, _ in cost.values())]))
    cands = dict(todo)
    # the largest builds first: their sub-models are released soonest, and the small ones
    # fill the other cores
    queue = sorted(cands, key=lambda pid: -cost[pid][1])
    results: dict[str, Future[Built]] = {pid: Future() for pid in cands}

    def work() -> None:
        while (got := gate.take_first(queue, lambda pid: cost[pid][0])) is not None:
            pid, held = got
            try:
                results[pid].set_result(
                    build(ctx, cands[pid], pid.replace("#", "-"), ctx.work_dir, memo, True)
                )
            except Exception as exc:  # noqa: BLE001 - a broken artifact is a rejected plan
                results[pid].set_exception(exc)
            finally:
                held.shrink(0)
                release_freed()

    built: list[Built] = []
    n_workers = max(1, min(len(todo), workers(threads)))
    with ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="build") as pool:
        loops = [pool.submit(work) for _ in range(n_workers)]
        for n, (pid, cand) in enumerate(todo):
            report(f"build {pid}", 0.3 + 0.2 * n / max(1, len(todo)))
            try:
                built.append(replace(results[pid].result(), plan_id=pid))
            except Exception as exc:  # noqa: BLE001 - a broken artifact is a rejected plan
                failed.append(_failed(pid, cand, exc))
        for loop in loops:
            loop.result()  # a worker's own failure (not a plan's) surfaces here
    return built, failed


def _one_by_one(
    ctx: PlanContext,
    todo: list[tuple[str, Candidate]],
    ev: EvalSet,
    threads: int,
    report: Report,
    memo: MeasurementMemo,
) -> tuple[list[tuple[str, Prepared]], list[PlanResult]]:
    """The exhaustive flow: each plan built, loaded and run in turn, its sessions dropped
    (`measure` loads them again)."""
    done: list[tuple[str, Prepared]] = []
    failed: list[PlanResult] = []
    for n, (pid, cand) in enumerate(todo):
        report(f"build and check {pid}", 0.3 + 0.3 * n / max(1, len(todo)))
        try:
            prep = prepare(
                ctx,
                cand,
                pid.replace("#", "-"),
                ev,
                ctx.work_dir,
                threads,
                keep_sessions=False,
                memo=memo,
                release=True,
                loaded=release_freed,
            )
            done.append((pid, prep))
        except Exception as exc:  # noqa: BLE001 - a broken artifact is a rejected plan
            failed.append(_failed(pid, cand, exc))
        release_freed()
    return done, failed


def time_all(
    ctx: PlanContext,
    prepared: list[tuple[str, Prepared]],
    ev: EvalSet,
    policy: Policy,
    threads: int,
    report: Report,
    memo: MeasurementMemo | None = None,
) -> tuple[dict[str, tuple[Candidate, PlanResult]], list[PlanResult]]:
    """Time every prepared plan on this thread, in order. Exhaustive: fixed counts per stage;
    else the shared window's figures (one timing per distinct model), cascades adaptively."""
    timer: StageTimer | None = None
    sessions: dict[str, list[Any]] = {}
    notes: dict[str, dict[str, object]] = {}
    if policy.stage is not None:
        report("time every plan's stages in one window", 0.6)
        timer, sessions, notes = window_all(prepared, ev.inputs[0], policy, threads, memo)
    validated: dict[str, tuple[Candidate, PlanResult]] = {}
    failed: list[PlanResult] = []
    for n, (pid, prep) in enumerate(prepared):
        report(f"time {pid}", 0.8 + 0.15 * n / max(1, len(prepared)))
        try:
            prep = replace(
                prep,
                sessions=sessions.get(pid, prep.sessions),
                run=trim_run(prep.cand, prep.run),
            )
            res = measure(ctx, prep, ev, policy.runs, threads, timer, memo)
            extra = {**res.extra, **({"guard_window": notes[pid]} if pid in notes else {})}
            validated[pid] = (prep.cand, res.model_copy(update={"id": pid, "extra": extra}))
        except Exception as exc:  # noqa: BLE001 - a broken artifact is a rejected plan
            failed.append(_failed(pid, prep.cand, exc))
    return validated, failed


def validate_plans(
    ctx: PlanContext,
    candidates: list[tuple[str, Candidate]],
    ev: EvalSet,
    request: AdviceRequest,
    report: Report,
    memo: MeasurementMemo | None = None,
) -> tuple[dict[str, tuple[Candidate, PlanResult]], list[PlanResult], list[PlanResult]]:
    """(validated plans, failed ones, ones not validated), in the order the module says.
    `exhaustive` keeps the former flow: every plan, one at a time, fixed counts. A `memo`
    (a sweep) carries timings across advise calls of one process."""
    policy = policy_for(request.measurement, request.runs)
    exhaustive = policy.mode == "exhaustive"
    todo, unbuilt = (
        (candidates, [])
        if exhaustive or request.validate_all
        else triage(ctx, candidates, request.latency_ms)
    )
    threads = request.threads
    prepared, failed = prepare_all(
        ctx, todo, ev, threads, report, parallel=not exhaustive, memory=BUILD_MEMORY, memo=memo
    )
    validated, broken = time_all(ctx, prepared, ev, policy, threads, report, memo)
    if exhaustive:  # the former flow: the judge times every guard, then all plans again
        forget_window()
        report("measure all plans, interleaved", 0.95)
        again = remeasure_interleaved(
            [res for _, res in validated.values()], ev.inputs[0], runs=request.runs, threads=threads
        )
        validated = {
            pid: (cand, res) for (pid, (cand, _)), res in zip(validated.items(), again, strict=True)
        }
    return validated, [*failed, *broken], unbuilt


def with_not_validated(
    final: list[PlanResult], unbuilt: list[PlanResult], memo: MeasurementMemo | None = None
) -> list[PlanResult]:
    """The ranked plans, then those not built (after the rejected, before the skipped)."""
    done = [p for p in final if p.status != "skipped"]
    notes = [
        p.model_copy(
            update={"rationale": f"{p.title}. {p.reasons[0]}", "citations": citations(p.kind, memo)}
        )
        for p in unbuilt
    ]
    return [*done, *notes, *(p for p in final if p.status == "skipped")]
