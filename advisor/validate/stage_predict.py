"""What a plan's compute stage is predicted to take on its target, beside what it measured.

An unchanged FP32 part sums its nodes' per-tier predictions; a stage on this host is its own
measurement; a changed model (quantized, pruned, converted) on another target is predicted
from its own nodes at its own precision, once per artifact's bytes when a memo is given.
`advisor.validate.core` calls these while it times a plan; `schedule` for triage.
"""

from __future__ import annotations

from typing import Any

from advisor.measure.memo import MeasurementMemo
from advisor.plans import Compute, PlanContext

__all__ = ["StagePrediction", "by_model", "predict_stage", "model_prediction", "tier_ms"]

#: (predicted ms, the method, derived from this very measurement, its source, its band)
StagePrediction = tuple[float, str, bool, str, float]


def tier_ms(ctx: PlanContext, tier: str) -> dict[str, float]:
    """The per-node predictions of the tier a stage runs on."""
    return {
        "device": ctx.device_ms,
        "edge": ctx.edge_ms or ctx.server_ms,
        "cloud": ctx.cloud_ms or ctx.server_ms,
    }.get(tier, ctx.server_ms)


def by_model(ctx: PlanContext, step_c: Compute) -> bool:
    """Whether `predict_stage` predicts this step from its own model (not node by node,
    not from its measurement on this host)."""
    tier = "server" if step_c.tier not in ctx.predictions else step_c.tier
    base = ctx.predictions.get(tier) or ctx.predictions.get(ctx.server_tier or "edge")
    unchanged = step_c.nodes is not None and step_c.precision == "fp32" and base is not None
    return not unchanged and step_c.target.id != "host"


def predict_stage(
    ctx: PlanContext,
    step_c: Compute,
    measured_ms: float,
    shared: tuple[str, MeasurementMemo | None] = ("", None),
) -> StagePrediction:
    """(predicted ms on the step's target, the method, whether it was derived from this very
    measurement, its source, its band). An unchanged FP32 part is the sum of its nodes'
    predictions; a changed model (quantized, pruned, converted) is predicted from its own
    nodes at its own precision with the target's figures for that precision; `shared` (the
    artifact's digest, a memo) reuses that figure for the same bytes, target and threads."""
    tier = "server" if step_c.tier not in ctx.predictions else step_c.tier
    base = ctx.predictions.get(tier) or ctx.predictions.get(ctx.server_tier or "edge")
    if step_c.nodes is not None and step_c.precision == "fp32" and base is not None:
        per_node = tier_ms(ctx, step_c.tier)
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
    return model_prediction(ctx, step_c, True, shared)


def model_prediction(
    ctx: PlanContext,
    step_c: Compute,
    loaded: bool,
    shared: tuple[str, MeasurementMemo | None] = ("", None),
) -> StagePrediction:
    """A changed model (quantized, pruned, converted) on a non-host target, predicted from
    its own nodes at its own precision. `loaded`: ORT loads (or has loaded) its artifact;
    `shared`: (its digest, a memo) to reuse the figure for the same bytes and target."""
    prec = step_c.precision if step_c.precision in ("fp16", "int8") else "fp32"
    p = _predict_model(step_c, prec, ctx.target_threads, loaded, *shared)
    method = f"the {step_c.precision} model's own {len(p.nodes)} nodes: {p.method}"
    return p.total_ms + p.run_overhead_ms, method, False, p.source, p.band


def _predict_model(
    step_c: Compute,
    prec: str,
    threads: int | None,
    loaded: bool,
    digest: str,
    memo: MeasurementMemo | None,
) -> Any:
    """predict_model of the step's model, or the memo's figure for the same artifact bytes
    on the same target (its full definition) at the same precision and threads."""
    from advisor.targets.predict import predict_model

    if memo is None or not digest:
        return predict_model(step_c.model, step_c.target, prec, threads, loaded=loaded)  # type: ignore[arg-type]
    key = (digest, step_c.target.model_dump_json(), prec, threads)
    if key not in memo.predictions:
        if digest not in memo.graphs:
            from advisor.graph.load import load_model

            memo.graphs[digest] = load_model(step_c.model, ort_check=not loaded, compact=False)
        memo.predictions[key] = predict_model(
            step_c.model,
            step_c.target,
            prec,  # type: ignore[arg-type]
            threads,
            graph=memo.graphs[digest],
        )
    return memo.predictions[key]
