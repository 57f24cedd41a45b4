"""The report's early-exit section: the exit × cut table, the threshold table and the cascade
as validated. Built from the `extra` tables of the early-exit plans; None when there are none.
Kept apart from `advisor.report.content` (which includes it) to keep that module small.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from advisor.report.blocks import DASH, Block, Heading, Para, Section, Table, num, pct, yes

if TYPE_CHECKING:
    from advisor.advice import Advice, PlanResult

__all__ = ["early_exit_section"]


def _dict(v: object) -> Mapping[str, Any]:
    return v if isinstance(v, Mapping) else {}


def _plan(a: Advice, kind: str) -> PlanResult | None:
    return next((p for p in a.plans if p.kind == kind), None)


def _pairs(p: PlanResult) -> list[Block]:
    rows: list[Mapping[str, Any]] = p.extra.get("exit_cut_table") or []  # type: ignore[assignment]
    if not rows:
        return []
    chosen = _dict(p.extra.get("chosen"))
    blocks: list[Block] = [
        Heading("Exit × cut (Edgent)"),
        Para(
            "Every pair of an exit and a cut of that exit's sub-model (position 0: the input is "
            "uploaded and the server runs it all; the last position: all on the device). "
            "Latency is predicted_target in ms from the partition cost model (device part + "
            "uplink + server part + downlink of the exit's logits); accuracy is the exit's, "
            "measured in ONNX Runtime on the labelled split. Chosen: the most accurate pair "
            "that meets the target, ties to the lower latency."
        ),
    ]
    body, classes = [], []
    for r in rows:
        picked = chosen.get("exit") == r["exit"] and chosen.get("position") == r["position"]
        body.append(
            (
                str(r["exit"]),
                str(r["placement"]),
                num(int(r["position"])),
                str(r["cut_after"] or DASH),
                num(float(r["predicted_ms"])),
                pct(float(r["accuracy"])),
                yes(bool(r["meets"])),
                "chosen" if picked else "",
            )
        )
        classes.append("recommended" if picked else ("candidate" if r["meets"] else "rejected"))
    blocks.append(
        Table(
            (
                "exit",
                "placement",
                "cut position",
                "cut after",
                "predicted_target (ms)",
                "accuracy (%)",
                "meets target",
                "",
            ),
            tuple(body),
            tuple(classes),
        )
    )
    return blocks


def _thresholds(p: PlanResult) -> list[Block]:
    rows: list[Mapping[str, Any]] = p.extra.get("threshold_table") or []  # type: ignore[assignment]
    if not rows:
        return []
    chosen = _dict(p.extra.get("chosen"))
    keep = {rows[0]["device_stages"], chosen.get("device_stages")}
    exits = list(rows[0]["shares"])
    body = []
    for r in rows:
        if r["device_stages"] not in keep:
            continue
        picked = (
            chosen.get("threshold") == r["threshold"]
            and chosen.get("device_stages") == r["device_stages"]
        )
        body.append(
            (
                num(float(r["threshold"])),
                str(r["placement"]),
                pct(float(r["accuracy"])),
                *(pct(float(r["shares"][e]), 1) for e in exits),
                num(float(r["expected_ms"])),
                num(float(r["worst_path_ms"])),
                yes(bool(r["meets"])),
                "chosen" if picked else "",
            )
        )
    return [
        Heading("Entropy thresholds (BranchyNet)"),
        Para(
            f"{p.extra.get('measure', '')}. Accuracy and exit shares measured on the labelled "
            "split; expected latency = sum over exits of share × predicted_target path latency "
            "(ms). Shares of each row sum to 100%. Reason: " + ("; ".join(p.reasons) or DASH)
        ),
        Table(
            (
                "threshold (nats)",
                "placement",
                "accuracy (%)",
                *(f"leave at {e} (%)" for e in exits),
                "expected predicted_target (ms)",
                "slowest path (ms)",
                "meets target",
                "",
            ),
            tuple(body),
        ),
    ]


def _cascade(p: PlanResult) -> list[Block]:
    c = _dict(p.extra.get("cascade"))
    if not c:
        return []
    body = tuple(
        (
            str(x["exit"]),
            num(int(x["inputs"])),
            pct(float(x["share"]), 1),
            num(float(x["predicted"]["ms"])),
            num(float(x["measured_host"]["ms"])),
        )
        for x in c["paths"]
    )
    return [
        Heading("The cascade as run in ONNX Runtime"),
        Para(
            f"{p.id}: each of {c['samples']} labelled inputs ran through the stage sub-models "
            "until an exit was confident enough. Expected latency "
            f"{num(p.predicted.ms if p.predicted else None)} ms predicted_target, "
            f"{num(p.measured_host.ms if p.measured_host else None)} ms measured_host."
        ),
        Table(
            (
                "exit",
                "inputs leaving",
                "share (%)",
                "path predicted_target (ms)",
                "path measured_host (ms)",
            ),
            body,
        ),
    ]


def _check(p: PlanResult) -> list[Block]:
    chk = _dict(p.extra.get("exit_check"))
    if not chk:
        return []
    acc = p.fidelity.accuracy if p.fidelity else None
    return [
        Para(
            f"{p.id}: measured accuracy {pct(acc)}%; its exit logits match the full "
            f"model's same output to a max abs error of "
            f"{float(chk['max_abs_error_vs_full_model']):.3g}."
        )
    ]


def early_exit_section(a: Advice) -> Section | None:
    part, thr = _plan(a, "early_exit.partition"), _plan(a, "early_exit.threshold")
    blocks: list[Block] = []  # a model without exits gets no section (its skips are listed)
    if part is not None:
        blocks += _pairs(part) + _check(part)
    if thr is not None:
        blocks += _thresholds(thr) + _cascade(thr) + _check(thr)
    if not blocks:
        return None
    return Section("early-exit", "Early exit", tuple(blocks))
