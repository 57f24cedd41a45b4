"""A validated plan's result: its stages walked in order (`Walk`), summed, and a cascade's
totals taken over the measured exit shares (`plan_result`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from advisor.advice import Fidelity, Latency, PlanResult, Stage
from advisor.plans import Candidate, Compute, PlanContext
from advisor.validate.fidelity import EvalRun

__all__ = ["Walk", "plan_result"]


@dataclass
class Walk:
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


_TRUST = ("measured_host", "measured_target", "target_profile", "catalog_priors")


def _weakest(sources: list[str]) -> str | None:
    """The least trusted source among a plan's stages (what its total rests on)."""
    known = [s for s in sources if s in _TRUST]
    return max(known, key=_TRUST.index) if known else None


def _cascade(ctx: PlanContext, walk: Walk, taken: np.ndarray) -> tuple[float, float, dict]:
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


def plan_result(
    ctx: PlanContext,
    cand: Candidate,
    plan_id: str,
    walk: Walk,
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
