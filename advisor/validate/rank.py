"""Judging validated plans and ranking them.

`judge` decides one plan's fate from what was measured: does it keep the accuracy budget
(task accuracy with labels, else top-1 agreement or cosine with FP32), and — for plans that
claim to be faster than FP32 — is it, timed against FP32 in alternating rounds on this host?
A valid plan whose predicted latency misses the target gets the status "misses_target",
never "candidate".

`rank` orders the plans and picks the recommendation among the plans that meet the latency
target and the accuracy budget, by the request's `prefer` (`PREFER_RULES` states each rule):
by default the plan that costs the least accuracy, then the simplest (fewest tiers, no
retraining, no change to the model), then the fastest. Plans whose predicted latencies differ
by less than their measured noise are tied (`tied`), and a tie is settled by the stated rule,
never by a noise-sized latency difference, so repeated runs recommend the same plan. An
early-exit plan that keeps only the final exit all on the device is the baseline and is named
so. `rank` also writes each plan's rationale with its knowledge-base citations and finds the
latency–fidelity Pareto front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from advisor.advice import AdviceRequest, Citation, PlanResult, Prefer
from advisor.plans import Candidate

if TYPE_CHECKING:
    from advisor.measure.memo import MeasurementMemo

DEFAULT_ACCURACY_BUDGET = 1.0  # percentage points, when labels are given and no budget is
NOISE_FLOOR = 0.05  # relative: differences under 5% are noise on a shared machine
SIZE_TIE = 0.01  # relative: device models within 1% of each other are the same size
DEFAULT_PREFER: Prefer = "accuracy"
#: the rule each `prefer` applies among plans that meet the latency target and the budget
PREFER_RULES: dict[str, str] = {
    "accuracy": "the plan that costs the least accuracy, then the simplest (fewest tiers, "
    "no retraining, no change to the model), then the fastest; once the target is met, a "
    "faster plan buys nothing worth accuracy or complexity",
    "latency": "the fastest predicted_target latency; plans within measured noise of the "
    "fastest are tied and the one costing the least accuracy, then the simplest, is chosen",
    "size": "the smallest model on the device; among models of the same size (within 1%), "
    "the one costing the least accuracy, then the simplest, then the fastest",
}
_ORDER = {
    "recommended": 0,
    "candidate": 1,
    "misses_target": 2,
    "rejected": 3,
    "not_validated": 4,
    "skipped": 5,
}
_UNCHANGED_MODEL = ("baseline.", "partition.")  # kinds that run the FP32 model as it is


def applied_budget(request: AdviceRequest, labelled: bool) -> float | None:
    """The accuracy budget (points) the advisor applies: the request's, else the default
    DEFAULT_ACCURACY_BUDGET when labels measure task accuracy, else None."""
    if request.accuracy_budget is not None:
        return request.accuracy_budget
    return DEFAULT_ACCURACY_BUDGET if labelled else None


def noise(p: PlanResult) -> float:
    """The plan's relative latency noise: its measured_host p90 over median spread, at least
    NOISE_FLOOR (a predicted latency is scaled from those host measurements)."""
    m = p.measured_host
    if m is not None and m.p90_ms is not None and m.ms > 0:
        return max(NOISE_FLOOR, (m.p90_ms - m.ms) / m.ms)
    return NOISE_FLOOR


def tied(a: PlanResult, b: PlanResult) -> bool:
    """Whether two plans' predicted latencies differ by less than their measured noise.

    >>> from advisor.advice import Latency
    >>> def plan(i, ms):
    ...     lat = Latency(ms=ms, kind="predicted_target", method="m")
    ...     return PlanResult(id=i, kind="k", title=i, status="candidate", predicted=lat)
    >>> tied(plan("a", 0.094), plan("b", 0.098)), tied(plan("a", 0.094), plan("c", 0.2))
    (True, False)
    """
    if a.predicted is None or b.predicted is None:
        return False
    x, y = a.predicted.ms, b.predicted.ms
    return abs(x - y) <= max(noise(a) * x, noise(b) * y)


def accuracy_cost(p: PlanResult) -> float:
    """What the plan costs in accuracy, in percentage points: the measured drop in task
    accuracy (a gain counts as 0), else the top-1 disagreement with FP32, else 100·(1 −
    cosine); infinite when nothing was measured."""
    f = p.fidelity
    if f is None:
        return float("inf")
    if f.accuracy_drop_points is not None:
        return max(0.0, f.accuracy_drop_points)
    if f.top1_agreement is not None:
        return 100 * (1 - f.top1_agreement)
    return 100 * (1 - f.cosine)


def _cost_key(p: PlanResult) -> float:
    """The accuracy cost in whole samples (costs under half a sample apart are equal)."""
    cost = accuracy_cost(p)
    f = p.fidelity
    if f is None or cost == float("inf"):
        return cost
    if f.accuracy_drop_points is None and f.top1_agreement is None:
        return round(cost, 4)
    return round(cost * f.samples / 100)


def complexity(p: PlanResult) -> tuple[int, int, int]:
    """(compute tiers, retrains, changes the model): smaller is simpler."""
    # the device always takes part (it holds the input), even when it only sends it away
    tiers = {"device"} | {s.name.split()[0] for s in p.stages if s.kind == "compute"}
    retrains = int(p.kind.startswith("prune."))
    changes = int(not p.kind.startswith(_UNCHANGED_MODEL) and not is_final_exit_baseline(p))
    return (len(tiers), retrains, changes)


def is_final_exit_baseline(p: PlanResult) -> bool:
    """An early-exit plan that keeps only the final exit, all on the device: the baseline."""
    params = p.params
    return (
        p.kind.startswith("early_exit.")
        and params.get("placement") == "all on device"
        and isinstance(params.get("exit_index"), int)
        and isinstance(params.get("exits"), int)
        and params["exit_index"] == int(params["exits"]) - 1  # type: ignore[call-overload]
    )


def _size(p: PlanResult) -> float:
    return float(p.size_bytes) if p.size_bytes else float("inf")


def choose(
    eligible: list[PlanResult], prefer: Prefer = DEFAULT_PREFER
) -> tuple[PlanResult | None, list[PlanResult]]:
    """(the recommended plan, the other eligible plans tied with it on latency)."""
    if not eligible:
        return None, []
    order = {p.id: i for i, p in enumerate(eligible)}

    def settle(p: PlanResult) -> tuple[object, ...]:
        return (_cost_key(p), complexity(p), order[p.id])

    if prefer == "latency":
        fastest = min(eligible, key=_predicted_ms)
        pool = [p for p in eligible if p is fastest or tied(p, fastest)]
        best = min(pool, key=settle)
    else:
        if prefer == "size":
            smallest = min(_size(p) for p in eligible)
            pool = [p for p in eligible if _size(p) <= smallest * (1 + SIZE_TIE)]
        else:
            top = min((_cost_key(p), complexity(p)) for p in eligible)
            pool = [p for p in eligible if (_cost_key(p), complexity(p)) == top]
        fastest = min(pool, key=_predicted_ms)
        near = [p for p in pool if p is fastest or tied(p, fastest)]
        best = min(near, key=settle)  # a noise-sized difference must not decide
    return best, [p for p in eligible if p is not best and tied(p, best)]


def citations(kind: str, memo: MeasurementMemo | None = None) -> list[Citation]:
    """The knowledge base's entries behind plan kind `kind`; with a `memo` (a sweep), the
    knowledge base is read once per kind, not once per plan of every cell."""
    if memo is not None:
        if kind not in memo.citations:
            memo.citations[kind] = citations(kind)
        return list(memo.citations[kind])
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
    budget = applied_budget(request, labelled)
    if f.accuracy_drop_points is not None and budget is not None:
        if f.accuracy_drop_points <= budget:
            return True, []
        default = " (the default for labelled data)" if request.accuracy_budget is None else ""
        return False, [
            f"accuracy drops {f.accuracy_drop_points:.2f} points (budget {budget:g}{default}) "
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
    """Time the plan's device model against FP32 in alternating rounds
    (advisor.validate.guard); with a `memo`, a pair timed earlier in this process is reused."""
    from advisor.validate.guard import paired_timing

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
        f"{'up to ' if pt.stopped else ''}{pt.runs} runs; noise allowance "
        f"{allowance * 100:.0f}%): not recommended for speed"
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
    """A validated plan with its status, reasons and whether it meets the targets."""
    meets_acc, reasons = _accuracy_verdict(res, request, labelled)
    if cand.speed_claim and base is not None:
        res, slower = _speed_verdict(res, base[1], feeds, request, memo)
        reasons = slower + reasons
    status = "rejected" if reasons else "candidate"
    meets_lat = res.predicted is not None and res.predicted.ms <= request.latency_ms
    if status != "rejected" and not meets_lat:
        status = "misses_target"  # valid, but never a "candidate" for this target
        reasons.append(
            f"predicted {res.predicted.ms:.3g} ms misses the {request.latency_ms:g} ms target"
            if res.predicted is not None
            else "no predicted_target latency to compare with the target"
        )
    return res.model_copy(
        update={
            "status": status,
            "reasons": reasons,
            "meets_latency": meets_lat,
            "meets_accuracy": meets_acc,
            "citations": citations(cand.kind, memo),
        }
    )


def _predicted_ms(p: PlanResult) -> float:
    return p.predicted.ms if p.predicted is not None else float("inf")


def _baseline_named(p: PlanResult) -> PlanResult:
    """An early-exit plan that is the baseline under another name, named as the baseline."""
    if not is_final_exit_baseline(p) or p.title.startswith("Baseline"):
        return p
    return p.model_copy(
        update={
            "title": f"Baseline: the full model all on the device ({p.title}: the final "
            "exit, no early exit taken)"
        }
    )


def _ranking_note(
    p: PlanResult, request: AdviceRequest, ties: list[PlanResult], eligible: int
) -> dict[str, object]:
    default = request.prefer == DEFAULT_PREFER
    labelled = p.fidelity is not None and p.fidelity.accuracy is not None
    return {
        "prefer": request.prefer,
        "accuracy_budget": applied_budget(request, labelled),
        "accuracy_budget_is_default": request.accuracy_budget is None and labelled,
        "default": default,
        "rule": PREFER_RULES[request.prefer],
        "eligible": eligible,
        "tied_with": [t.id for t in ties],
        "noise": round(noise(p), 4),
    }


def _ranking_text(note: dict[str, object], ties: list[PlanResult]) -> str:
    rule = (
        f"Chosen by the default preference (accuracy): {note['rule']}."
        if note["default"]
        else f"Chosen by the requested preference ({note['prefer']}): {note['rule']}."
    )
    budget = note["accuracy_budget"]
    if budget is not None:
        rule += f" Accuracy budget applied: {budget:g} points" + (  # type: ignore[str-format]
            " (the default for labelled data)." if note["accuracy_budget_is_default"] else "."
        )
    if ties:
        names = ", ".join(t.id for t in ties)
        rule += (
            f" Tied on latency with {names}: the predicted latencies differ by less than the "
            f"measured noise (±{float(note['noise']) * 100:.0f}%), so latency does not "  # type: ignore[arg-type]
            "separate them."
        )
    return rule


def rank(
    plans: list[PlanResult], request: AdviceRequest, base_ms: float | None
) -> tuple[list[PlanResult], str | None, list[str]]:
    """(plans in display order with rationales, the recommended id, the Pareto front)."""
    plans = [_baseline_named(p) for p in plans]
    eligible = [
        p for p in plans if p.status == "candidate" and p.meets_latency and p.meets_accuracy
    ]
    best, ties = choose(eligible, request.prefer)
    recommended = best.id if best is not None else None
    tie_ids = {t.id for t in ties}
    final = []
    for p in plans:
        status = "recommended" if p.id == recommended else p.status
        rationale = _rationale(p, request, base_ms)
        extra = p.extra
        if p.id == recommended:
            note = _ranking_note(p, request, ties, len(eligible))
            extra = {**extra, "ranking": note}
            rationale += " " + _ranking_text(note, ties)
        elif p.id in tie_ids and best is not None:
            extra = {**extra, "tied_with": [best.id]}
            rationale += (
                f" Tied on latency with the recommended plan {best.id} (difference under "
                "the measured noise); not preferred by the stated rule."
            )
        final.append(
            p.model_copy(update={"status": status, "rationale": rationale, "extra": extra})
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


def rerank(
    plans: list[PlanResult], request: AdviceRequest
) -> tuple[list[PlanResult], str | None, list[str]]:
    """Rank again after the target's own measurements changed verdicts."""
    reset = [p.model_copy(update={"status": "candidate"}) if p.status == "recommended" else p
             for p in plans]  # fmt: skip
    base = next((p for p in plans if p.id == "baseline.device"), None)
    base_ms = base.measured_host.ms if base and base.measured_host else None
    return rank(reset, request, base_ms)
