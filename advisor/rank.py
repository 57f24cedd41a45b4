"""Judging validated plans and ranking them.

`judge` decides one plan's fate from what was measured: does it keep the accuracy budget
(task accuracy with labels, else top-1 agreement or cosine with FP32), and — for plans that
claim to be faster than FP32 — is it, timed against FP32 in alternating rounds on this host?
`rank` orders the plans, picks the recommendation (the lowest predicted_target latency among
plans meeting the latency target and the accuracy budget), writes each plan's rationale with
its knowledge-base citations, and finds the latency–fidelity Pareto front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from advisor.advice import AdviceRequest, Citation, PlanResult
from advisor.plans import Candidate

if TYPE_CHECKING:
    from advisor.memo import MeasurementMemo

DEFAULT_ACCURACY_BUDGET = 1.0  # percentage points, when labels are given and no budget is
NOISE_FLOOR = 0.05  # relative: differences under 5% are noise on a shared machine
_ORDER = {"recommended": 0, "candidate": 1, "rejected": 2, "skipped": 3}


def citations(kind: str) -> list[Citation]:
    try:
        from kb import KnowledgeBase

        entries = KnowledgeBase.open().by_action(kind)
    except Exception:  # noqa: BLE001 - citations are decoration; advice must not fail on them
        return []
    return [
        Citation(
            entry_id=e.id,
            name=e.name,
            source=", ".join(str(x) for x in (e.authors, e.venue, e.year) if x),
        )
        for e in entries
    ]


def _fidelity_score(p: PlanResult) -> float:
    f = p.fidelity
    if f is None:
        return 0.0
    if f.accuracy is not None:
        return f.accuracy
    if f.top1_agreement is not None:
        return f.top1_agreement
    return f.cosine


def pareto_front(plans: list[PlanResult]) -> list[str]:
    """Plans no other plan beats on both predicted latency and fidelity."""
    pts = [(p.id, p.predicted.ms, _fidelity_score(p)) for p in plans if p.predicted]
    front = []
    for pid, ms, fid in pts:
        dominated = any((m2 <= ms and f2 >= fid) and (m2 < ms or f2 > fid) for _, m2, f2 in pts)
        if not dominated:
            front.append(pid)
    return front


def _rationale(p: PlanResult, req: AdviceRequest, base_ms: float | None) -> str:
    bits = [f"{p.title}."]
    if p.predicted:
        bits.append(
            f"Predicted end-to-end latency on the targets: {p.predicted.ms:.3g} ms "
            f"(target {req.latency_ms:g} ms, {'met' if p.meets_latency else 'missed'})."
        )
    if p.measured_host:
        bits.append(
            f"Measured on this host: {p.measured_host.ms:.3g} ms ({p.measured_host.method})."
        )
    if base_ms and p.measured_host and p.kind not in ("baseline.device",):
        dev = sum(
            s.measured_host.ms
            for s in p.stages
            if s.kind == "compute" and s.measured_host and s.name.startswith("device")
        )
        if dev:
            bits.append(
                f"Device-side compute measured {dev:.3g} ms vs {base_ms:.3g} ms for the "
                "FP32 model on this host."
            )
    f = p.fidelity
    if f:
        if f.accuracy is not None:
            bits.append(
                f"Accuracy {f.accuracy * 100:.2f}% on {f.samples} labelled samples "
                f"(FP32 {f.baseline_accuracy * 100:.2f}%)."
                if f.baseline_accuracy is not None
                else f"Accuracy {f.accuracy * 100:.2f}%."
            )
        elif f.top1_agreement is not None:
            bits.append(
                f"Top-1 agreement with FP32 {f.top1_agreement * 100:.1f}% on {f.samples} samples."
            )
        bits.append(f"Max abs error vs FP32 {f.max_abs_error:.2g}, cosine {f.cosine:.6f}.")
    bits += _exit_notes(p)
    if p.citations:
        bits.append(
            "Implements: "
            + "; ".join(f"{c.name} ({c.source})" if c.source else c.name for c in p.citations)
            + "."
        )
    return " ".join(bits)


def _exit_notes(p: PlanResult) -> list[str]:
    """What an early-exit plan's figures mean (its outputs are an exit's, not the model's)."""
    out = []
    check = p.extra.get("exit_check")
    if isinstance(check, dict):
        out.append(
            "Its prediction comes from an early exit, so the error and cosine above "
            "compare that exit with the model's final output; the exit's own logits match "
            "the full model's same output to a max abs error of "
            f"{check['max_abs_error_vs_full_model']:.2g}."
        )
    cascade = p.extra.get("cascade")
    if isinstance(cascade, dict):
        shares = ", ".join(f"{x['exit']} {x['share'] * 100:.1f}%" for x in cascade["paths"])
        out.append(
            f"Inputs leaving at each exit (measured): {shares}. The latency is the "
            "expectation over these shares; an input that reaches the last exit takes "
            f"{cascade['worst_path_predicted_ms']:.3g} ms predicted_target."
        )
    return out


def _accuracy_verdict(
    p: PlanResult, request: AdviceRequest, labelled: bool
) -> tuple[bool, list[str]]:
    f = p.fidelity
    if f is None:
        return True, []
    budget = request.accuracy_budget
    if budget is None and labelled:
        budget = DEFAULT_ACCURACY_BUDGET
    if f.accuracy_drop_points is not None and budget is not None:
        if f.accuracy_drop_points <= budget:
            return True, []
        return False, [
            f"accuracy drops {f.accuracy_drop_points:.2f} points (budget {budget:g}) "
            f"— measured on {f.samples} labelled samples"
        ]
    if f.top1_agreement is not None:
        if f.top1_agreement >= request.min_agreement:
            return True, []
        return False, [
            f"top-1 agreement with FP32 {f.top1_agreement * 100:.1f}% < "
            f"{request.min_agreement * 100:g}%"
        ]
    if f.cosine >= 0.99:
        return True, []
    return False, [f"output cosine similarity to FP32 {f.cosine:.4f} < 0.99"]


def _speed_verdict(
    res: PlanResult,
    base: PlanResult,
    feeds: dict[str, np.ndarray],
    request: AdviceRequest,
    memo: MeasurementMemo | None = None,
) -> tuple[PlanResult, list[str]]:
    """Time the plan's device model against FP32 in alternating rounds (advisor.validate)."""
    from advisor.validate import paired_timing

    pt = paired_timing(
        base.artifacts[0],
        feeds,
        res.artifacts[0],
        feeds,
        runs=max(10, request.runs // 2),
        threads=request.threads,
        memo=memo,
    )
    res = res.model_copy(
        update={
            "extra": {
                **res.extra,
                "paired_timing": {
                    "fp32_ms": pt.base_ms,
                    "plan_ms": pt.other_ms,
                    "ratio": pt.ratio,
                    "spread": pt.spread,
                    "rounds": pt.rounds,
                    "runs_per_round": pt.runs,
                    "kind": "measured_host",
                },
            }
        }
    )
    allowance = max(NOISE_FLOOR, pt.spread)
    if pt.ratio <= 1 + allowance:
        return res, []
    return res, [
        f"measured {pt.ratio:.1f}× slower than FP32 on this host ({pt.other_ms:.3g} ms "
        f"vs {pt.base_ms:.3g} ms, medians of {pt.rounds} alternating rounds of "
        f"{pt.runs} runs; noise allowance {allowance * 100:.0f}%): not recommended "
        "for speed"
    ]


def judge(
    res: PlanResult,
    cand: Candidate,
    request: AdviceRequest,
    labelled: bool,
    base: tuple[Candidate, PlanResult] | None,
    feeds: dict[str, np.ndarray],
    memo: MeasurementMemo | None = None,
) -> PlanResult:
    """A validated plan with its status, reasons and whether it meets the targets. `memo`:
    reuse paired timings of identical files (advisor.memo.MeasurementMemo)."""
    meets_acc, reasons = _accuracy_verdict(res, request, labelled)
    if cand.speed_claim and base is not None:
        res, slower = _speed_verdict(res, base[1], feeds, request, memo)
        reasons = slower + reasons
    status = "rejected" if reasons else "candidate"
    meets_lat = res.predicted is not None and res.predicted.ms <= request.latency_ms
    if status != "rejected" and not meets_lat and res.predicted is not None:
        reasons.append(
            f"predicted {res.predicted.ms:.3g} ms misses the {request.latency_ms:g} ms target"
        )
    return res.model_copy(
        update={
            "status": status,
            "reasons": reasons,
            "meets_latency": meets_lat,
            "meets_accuracy": meets_acc,
            "citations": citations(cand.kind),
        }
    )


def _predicted_ms(p: PlanResult) -> float:
    return p.predicted.ms if p.predicted is not None else float("inf")


def rank(
    plans: list[PlanResult], request: AdviceRequest, base_ms: float | None
) -> tuple[list[PlanResult], str | None, list[str]]:
    """(plans in display order with rationales, the recommended id, the Pareto front)."""
    eligible = sorted(
        (p for p in plans if p.status == "candidate" and p.meets_latency and p.meets_accuracy),
        key=_predicted_ms,
    )
    recommended = eligible[0].id if eligible else None
    final = []
    for p in plans:
        status = "recommended" if p.id == recommended else p.status
        final.append(
            p.model_copy(update={"status": status, "rationale": _rationale(p, request, base_ms)})
        )
    final.sort(
        key=lambda p: (
            _ORDER[p.status],
            not (p.meets_latency and p.meets_accuracy),
            _predicted_ms(p),
        )
    )
    front = pareto_front([p for p in final if p.status in ("recommended", "candidate")])
    return final, recommended, front
