"""The order of validation work in one advise() run, so that nothing is done twice and
timing runs alone.

1. `triage`: a plan whose prediction before building (a lower bound: FP32 parts summed node by
   node, transfers from the graph's tensor sizes, compressed parts counted as free) misses the
   latency target by more than the predictor's error band is reported `not_validated` with
   that figure, not built and timed; `baseline.device` (the guard's FP32 reference) always is.
2. `prepare_all`: build, load, run the evaluation inputs and check fidelity for every plan —
   no timing — on a pool of worker threads, one per core (ONNX Runtime and numpy release the
   GIL, so the cores really are shared out).
3. `time_all`: only after the pool has closed (every worker finished), each plan's stages
   are timed on this thread with nothing else of ours running, so the timings see the same
   quiet machine the fixed-count flow saw; each distinct model is timed once (StageTimer).
4. `guard_all`: FP32 against every plan that claims to be faster, in one window (FP32 once per
   round), each plan's rounds stopping when its ratio is settled.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from advisor.advice import AdviceRequest, Latency, PlanResult
from advisor.errors import AdvisorError
from advisor.measure.policy import Policy, StageTimer, policy_for
from advisor.plans import Candidate, Compute, Exit, PlanContext, Transfer
from advisor.targets.catalog import transfer_ms
from advisor.validate.core import Prepared, _predict_stage, measure, prepare
from advisor.validate.fidelity import EvalSet
from advisor.validate.guard import forget_window, guard_window, remeasure_interleaved
from advisor.validate.rank import citations

__all__ = [
    "PREDICTION_BAND",
    "guard_all",
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
        elif isinstance(step, Compute):
            pred, _, derived = _predict_stage(ctx, step, 0.0)
            total += 0.0 if derived else pred
    return total


def triage(
    ctx: PlanContext, candidates: list[tuple[str, Candidate]], latency_ms: float
) -> tuple[list[tuple[str, Candidate]], list[PlanResult]]:
    """(candidates to build and time, plans reported `not_validated`)."""
    todo, skipped = [], []
    for pid, cand in candidates:
        low = lower_bound_ms(ctx, cand)
        if pid in _ALWAYS or low is None or low <= latency_ms * (1 + PREDICTION_BAND):
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
                    f"{low:.3g} ms predicted_target vs {latency_ms:g} ms; the predictor's error "
                    f"band is ±{PREDICTION_BAND:.0%}); --validate-all builds and times it"
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


def workers(threads: int) -> int:
    """One worker per `threads` cores of this machine, at least one."""
    return max(1, (os.cpu_count() or 1) // threads)


def _prepare(ctx: PlanContext, cand: Candidate, pid: str, ev: EvalSet, threads: int) -> Prepared:
    # sessions are dropped: holding every plan's loaded models until timing would add them all
    # to peak memory; time_all loads each plan's again, one plan at a time
    plan_dir = pid.replace("#", "-")
    return prepare(ctx, cand, plan_dir, ev, ctx.work_dir, threads, keep_sessions=False)


def prepare_all(
    ctx: PlanContext,
    todo: list[tuple[str, Candidate]],
    ev: EvalSet,
    threads: int,
    report: Report,
    parallel: bool = True,
) -> tuple[list[tuple[str, Prepared]], list[PlanResult]]:
    """Build and check every candidate on a thread pool (one worker without `parallel`);
    nothing here is timed. The pool is closed (every worker joined) when this returns, so
    the timing that follows runs alone."""
    done: list[tuple[str, Prepared]] = []
    failed: list[PlanResult] = []
    with ThreadPoolExecutor(
        max_workers=workers(threads) if parallel else 1, thread_name_prefix="prepare"
    ) as pool:
        futures = [
            (pid, cand, pool.submit(_prepare, ctx, cand, pid, ev, threads)) for pid, cand in todo
        ]
        for n, (pid, cand, fut) in enumerate(futures):
            report(f"build and check {pid}", 0.3 + 0.3 * n / max(1, len(futures)))
            try:
                done.append((pid, fut.result()))
            except Exception as exc:  # noqa: BLE001 - a broken artifact is a rejected plan
                failed.append(_failed(pid, cand, exc))
    return done, failed


def time_all(
    ctx: PlanContext,
    prepared: list[tuple[str, Prepared]],
    ev: EvalSet,
    policy: Policy,
    threads: int,
    report: Report,
) -> tuple[dict[str, tuple[Candidate, PlanResult]], list[PlanResult]]:
    """Time every prepared plan on this thread, in order; identical models once."""
    timer = StageTimer(policy, threads) if policy.stage is not None else None
    validated: dict[str, tuple[Candidate, PlanResult]] = {}
    failed: list[PlanResult] = []
    for n, (pid, prep) in enumerate(prepared):
        report(f"time {pid}", 0.6 + 0.25 * n / max(1, len(prepared)))
        try:
            res = measure(ctx, prep, ev, policy.runs, threads, timer)
            validated[pid] = (prep.cand, res.model_copy(update={"id": pid}))
        except Exception as exc:  # noqa: BLE001 - a broken artifact is a rejected plan
            failed.append(_failed(pid, prep.cand, exc))
    return validated, failed


def guard_all(
    validated: dict[str, tuple[Candidate, PlanResult]],
    feeds: dict[str, np.ndarray],
    policy: Policy,
    threads: int,
) -> dict[str, tuple[Candidate, PlanResult]]:
    """One guard window for every plan that claims to be faster than FP32; each keeps its
    window figures in extra['guard_window'] (the judge reads the same result)."""
    forget_window()
    base = validated.get("baseline.device")
    others = {
        pid: res.artifacts[0]
        for pid, (cand, res) in validated.items()
        if cand.speed_claim and res.artifacts and pid != "baseline.device"
    }
    if policy.guard is None or base is None or not base[1].artifacts or not others:
        return validated
    got = guard_window(
        base[1].artifacts[0], others, feeds, policy.guard, runs=policy.guard_runs, threads=threads
    )
    out = dict(validated)
    for pid, pt in got.items():
        cand, res = out[pid]
        note = {
            "rounds": pt.rounds,
            "runs_per_round": pt.runs,
            "stopped": pt.stopped,
            "method": f"FP32 and every guarded plan in shuffled rounds of {pt.runs} runs, FP32 "
            f"once per round; {policy.label(pt.stopped, pt.rounds, 'rounds')}",
            "kind": "measured_host",
        }
        out[pid] = (cand, res.model_copy(update={"extra": {**res.extra, "guard_window": note}}))
    return out


def validate_plans(
    ctx: PlanContext,
    candidates: list[tuple[str, Candidate]],
    ev: EvalSet,
    request: AdviceRequest,
    report: Report,
) -> tuple[dict[str, tuple[Candidate, PlanResult]], list[PlanResult], list[PlanResult]]:
    """(validated plans, failed ones, ones not validated), in the order the module says.
    `exhaustive` keeps the former flow: every plan, one at a time, fixed counts."""
    policy = policy_for(request.measurement, request.runs)
    exhaustive = policy.mode == "exhaustive"
    todo, unbuilt = (
        (candidates, [])
        if exhaustive or request.validate_all
        else triage(ctx, candidates, request.latency_ms)
    )
    threads = request.threads
    prepared, failed = prepare_all(ctx, todo, ev, threads, report, parallel=not exhaustive)
    validated, broken = time_all(ctx, prepared, ev, policy, threads, report)
    if exhaustive:
        forget_window()  # the judge times every guard itself, with the fixed counts
    else:
        report("speed guard: FP32 against every compression plan", 0.88)
        validated = guard_all(validated, ev.inputs[0], policy, threads)
    report("measure all plans, interleaved", 0.95)
    again = remeasure_interleaved(
        [res for _, res in validated.values()],
        ev.inputs[0],
        runs=request.runs,
        threads=threads,
        rule=policy.interleave,
    )
    validated = {
        pid: (cand, res) for (pid, (cand, _)), res in zip(validated.items(), again, strict=True)
    }
    return validated, [*failed, *broken], unbuilt


def with_not_validated(final: list[PlanResult], unbuilt: list[PlanResult]) -> list[PlanResult]:
    """The ranked plans, then those not built (after the rejected, before the skipped)."""
    done = [p for p in final if p.status != "skipped"]
    notes = [
        p.model_copy(
            update={"rationale": f"{p.title}. {p.reasons[0]}", "citations": citations(p.kind)}
        )
        for p in unbuilt
    ]
    return [*done, *notes, *(p for p in final if p.status == "skipped")]
