"""What a report says, independent of its format: `sections(advice)` -> a list of `Section`s.

The content is built once from an `Advice` as plain strings, tables and charts (the blocks of
`advisor.report.blocks`); the HTML and Markdown renderers in `advisor.report.renderers` only
escape and lay it out, so both formats carry the same content. Every string here is untrusted
text (names come from the model and the user); only `Chart.svg`, built by
`advisor.report.charts` with every text escaped, is markup. The closing sections live in
`advisor.report.appendix`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from advisor.report import appendix
from advisor.report.blocks import (
    DASH,
    Block,
    Bullets,
    Chart,
    Heading,
    Para,
    Section,
    Table,
    ms,
    num,
    pct,
    shape,
    value,
    yes,
)
from advisor.report.charts import (
    stage_chart_svg,
)
from advisor.report.exits import early_exit_section

if TYPE_CHECKING:
    from advisor.advice import Advice, PlanResult

__all__ = ["sections"]

_STATUSES = ("recommended", "candidate", "misses_target", "rejected", "not_validated", "skipped")


def _kv(rows: Iterable[tuple[str, str]], header: tuple[str, str] = ("field", "value")) -> Table:
    return Table(header, tuple(rows))


def _dict_table(data: Mapping[str, object], labels: dict[str, str] | None = None) -> Table:
    labels = labels or {}
    return _kv((labels.get(k, k), value(v)) for k, v in data.items())


def _transfer(p: PlanResult) -> tuple[str, str]:
    tr = [s for s in p.stages if s.kind == "transfer"]
    if not tr:
        return DASH, DASH
    pred = [s.predicted.ms for s in tr if s.predicted is not None]
    return (num(sum(pred)) if pred else DASH), num(sum(s.bytes or 0 for s in tr))


# --- sections -----------------------------------------------------------------------------------


def _decision(a: Advice) -> Section:
    req, p = a.request, a.recommended_plan
    counts = {s: sum(q.status == s for q in a.plans) for s in _STATUSES}
    tally = Para(
        f"{len(a.plans)} plans considered: "
        + ", ".join(
            f"{n} {s.replace('_', ' ')}"
            for s, n in counts.items()
            if n or s != "not_validated"  # the line reads as before when nothing was skipped
        )
        + "."
    )
    blocks: list[Block] = []
    if p is not None:
        acc = (
            f" and the {req.accuracy_budget:g}-point accuracy budget"
            if req.accuracy_budget is not None
            else ""
        )
        blocks += [
            Para(f"Recommended: {p.title} (plan {p.id}, kind {p.kind}).", strong=True),
            Para(
                f"It meets the {req.latency_ms:g} ms latency target{acc}: "
                f"{ms(p.predicted)} ms predicted_target end to end"
                + (
                    f" (expected range {p.predicted.band_text()})."
                    if p.predicted and p.predicted.band
                    else "."
                )
            ),
            _figures(p, req.latency_ms),
        ]
        if p.rationale:
            blocks.append(Para(p.rationale))
    else:
        blocks.append(
            Para(
                f"No plan met the target: none of the validated plans meets the "
                f"{req.latency_ms:g} ms latency target and the fidelity limits.",
                strong=True,
            )
        )
        near = sorted(
            (q for q in a.plans if q.predicted is not None and q.status != "skipped"),
            key=lambda q: q.predicted.ms if q.predicted else 0.0,
        )[:3]
        if near:
            blocks.append(Para("Closest plans (lowest predicted_target latency):"))
            blocks.append(
                Table(
                    (
                        "plan id",
                        "plan",
                        "predicted_target e2e (ms)",
                        "measured_host e2e (ms)",
                        "meets latency target",
                        "meets accuracy",
                        "why not",
                    ),
                    tuple(
                        (
                            q.id,
                            q.title,
                            ms(q.predicted),
                            ms(q.measured_host),
                            yes(q.meets_latency),
                            yes(q.meets_accuracy),
                            "; ".join(q.reasons) or DASH,
                        )
                        for q in near
                    ),
                )
            )
    blocks.append(tally)
    if a.notices:
        blocks += [Heading("Notices"), Bullets(tuple(a.notices))]
    return Section("decision", "Decision summary", tuple(blocks))


def _figures(p: PlanResult, target_ms: float) -> Table:
    rows = [("latency target", f"{target_ms:g}", "ms", "requested", DASH)]
    for lat in (p.predicted, p.measured_host, p.measured_target):
        if lat is not None:
            p90 = f" (p90 {num(lat.p90_ms)})" if lat.p90_ms is not None else ""
            rows.append(("end-to-end latency", num(lat.ms) + p90, "ms", lat.kind, lat.method))
    if p.prediction_error is not None:
        rows.append(
            (
                "prediction error",
                pct(p.prediction_error, 1),
                "%",
                "|predicted_target − measured_host| / measured_host",
                DASH,
            )
        )
    f = p.fidelity
    if f is not None:
        how = f"measured_host, {f.samples} samples vs FP32"
        if f.accuracy is not None:
            rows.append(("task accuracy", pct(f.accuracy), "%", how, DASH))
        if f.accuracy_drop_points is not None:
            rows.append(("accuracy drop", num(f.accuracy_drop_points), "points", how, DASH))
        if f.top1_agreement is not None:
            rows.append(("top-1 agreement", pct(f.top1_agreement), "%", how, DASH))
        rows.append(("max abs error", num(f.max_abs_error), "output units", how, DASH))
    if p.size_bytes is not None:
        rows.append(("model on the device", num(p.size_bytes), "bytes", "file size", DASH))
    return Table(("figure", "value", "unit", "kind", "method"), tuple(rows))


def _inputs(a: Advice) -> Section:
    m, r = a.model, a.request
    model = _kv(
        [
            ("name", m.name),
            ("source", m.source),
            ("digest (sha256)", m.digest),
            ("graph nodes", num(m.nodes)),
            ("FLOPs (per inference)", num(m.flops)),
            ("parameters (bytes)", num(m.params_bytes)),
            *((f"input {k}", shape(v)) for k, v in m.inputs.items()),
            *((f"output {k}", shape(v)) for k, v in m.outputs.items()),
        ]
    )
    link = r.link or (
        f"custom: up {num(r.up_mbps)} Mbps, down {num(r.down_mbps)} Mbps, RTT {num(r.rtt_ms)} ms"
    )
    asked = [
        ("model", r.model),
        ("end device", r.device),
        ("edge server", r.edge or DASH),
        ("cloud server", r.cloud or DASH),
        ("link device ↔ server", link),
    ]
    if r.edge and r.cloud:
        asked.append(("link edge ↔ cloud", r.cloud_link))
    asked += [
        ("latency target (ms)", f"{r.latency_ms:g}"),
        ("accuracy budget (points)", num(r.accuracy_budget)),
        ("min top-1 agreement without labels (%)", pct(r.min_agreement)),
        ("data", r.data or DASH),
        (
            "input shapes given",
            ", ".join(f"{k}={shape(v)}" for k, v in r.input_shapes.items()) or DASH,
        ),
        ("plan kinds", ", ".join(r.plans) if r.plans else "all registered"),
        ("timed runs per measurement", num(r.runs)),
        ("ORT intra-op threads", num(r.threads)),
        ("max evaluation samples", num(r.max_eval_samples)),
        ("device agent", r.device_agent or DASH),
    ]
    link_units = {
        "up_mbps": "uplink (Mbps)",
        "down_mbps": "downlink (Mbps)",
        "rtt_ms": "round-trip time (ms)",
    }
    return Section(
        "inputs",
        "Inputs",
        (
            Heading("Model"),
            model,
            Heading("Request"),
            _kv(asked),
            Heading("Link used"),
            _dict_table(a.link, link_units),
        ),
    )


def _environment(a: Advice) -> Section:
    blocks: list[Block] = [
        Para("Where the measured_host figures were taken."),
        Heading("Environment fingerprint"),
        _dict_table(a.environment),
        Heading("Host calibration (attained ceilings used for predicted_target)"),
        _dict_table(a.calibration),
    ]
    if a.profile_self_check:
        labels = {
            "node_sum_ms": "sum of per-node medians, measured_host (ms)",
            "end_to_end_basic_ms": "whole model at ORT_ENABLE_BASIC, measured_host (ms)",
            "error": "relative difference",
        }
        blocks += [Heading("Profile self-check"), _dict_table(a.profile_self_check, labels)]
    if a.stage_seconds:
        blocks += [Heading("Advisor wall time per stage (s)"), _dict_table(a.stage_seconds)]
    return Section("environment", "Environment and calibration", tuple(blocks))


def _plans(a: Advice) -> Section:
    shown = [p for p in a.plans if p.status != "skipped"]
    with_target = any(p.measured_target for p in shown)
    header = [
        "plan id",
        "plan",
        "status",
        "predicted_target e2e (ms)",
        "expected range (source)",
        "measured_host e2e (ms)",
        "measured_host p90 (ms)",
    ]
    header += ["measured_target e2e (ms)"] if with_target else []
    header += [
        "transfer predicted_target (ms)",
        "bytes sent",
        "device model (bytes)",
        "accuracy (%)",
        "top-1 agreement (%)",
        "max abs error",
        "meets latency target",
        "meets accuracy",
    ]
    rows = []
    for p in shown:
        f = p.fidelity
        t_ms, t_bytes = _transfer(p)
        row = [
            p.id,
            p.title,
            p.status,
            ms(p.predicted),
            (p.predicted.band_text() or DASH) if p.predicted else DASH,
            ms(p.measured_host),
            num(p.measured_host.p90_ms) if p.measured_host else DASH,
        ]
        row += [ms(p.measured_target)] if with_target else []
        row += [
            t_ms,
            t_bytes,
            num(p.size_bytes),
            pct(f.accuracy) if f else DASH,
            pct(f.top1_agreement) if f else DASH,
            num(f.max_abs_error) if f else DASH,
            yes(p.meets_latency),
            yes(p.meets_accuracy),
        ]
        rows.append(tuple(row))
    blocks: list[Block] = [
        Para(
            "predicted_target: each stage predicted on its target from the best source there "
            "is — measured on the target through its agent, a measured target profile, or "
            "catalog priors fitted to published measurements — with the range it is expected "
            "in (about 80% of validated cases); transfers from the link model. measured_host: "
            "every compute stage run here in ONNX Runtime, transfers from the same link model. "
            "Skipped plans are listed under rejected and skipped plans."
        ),
        Table(tuple(header), tuple(rows), tuple(p.status for p in shown))
        if rows
        else Para("No plan was validated."),
        Chart(stage_chart_svg(a)),
    ]
    return Section("plans", "Candidate plans", tuple(blocks))


def _details(a: Advice) -> Section:
    blocks: list[Block] = []
    for p in a.plans:
        if p.status == "skipped":
            continue
        blocks.append(Heading(f"{p.id} — {p.title} ({p.status})"))
        if p.rationale:
            blocks.append(Para(p.rationale))
        rows = []
        for s in p.stages:
            meth = "; ".join(
                dict.fromkeys(
                    lat.method for lat in (s.predicted, s.measured_host, s.measured_target) if lat
                )
            )
            rows.append(
                (
                    s.name,
                    s.kind,
                    s.target or DASH,
                    ms(s.predicted),
                    ms(s.measured_host),
                    ms(s.measured_target),
                    num(s.bytes),
                    num(s.nodes),
                    meth or DASH,
                )
            )
        if rows:
            blocks.append(
                Table(
                    (
                        "stage",
                        "type",
                        "on",
                        "predicted_target (ms)",
                        "measured_host (ms)",
                        "measured_target (ms)",
                        "bytes",
                        "graph nodes",
                        "method",
                    ),
                    tuple(rows),
                )
            )
        if p.params:
            blocks.append(
                Para("Parameters: " + ", ".join(f"{k}={value(v)}" for k, v in p.params.items()))
            )
        if p.artifacts:
            blocks.append(Bullets(tuple(f"artifact: {x}" for x in p.artifacts)))
    return Section("details", "Plan details", tuple(blocks) or (Para("No plan was validated."),))


def _rejected(a: Advice) -> Section:
    out = [p for p in a.plans if p.status in ("rejected", "not_validated", "skipped")]
    missed = [p for p in a.plans if p.status == "misses_target"]
    blocks: list[Block] = []
    if out:
        blocks.append(
            Table(
                ("plan id", "plan", "kind", "status", "reasons"),
                tuple((p.id, p.title, p.kind, p.status, "; ".join(p.reasons) or DASH) for p in out),
                tuple(p.status for p in out),
            )
        )
    else:
        blocks.append(Para("No plan was rejected or skipped."))
    if missed:
        blocks += [
            Heading("Valid plans that miss the latency target"),
            Table(
                ("plan id", "plan", "reasons"),
                tuple((p.id, p.title, "; ".join(p.reasons)) for p in missed),
            ),
        ]
    return Section("rejected", "Rejected and skipped plans", tuple(blocks))


def sections(advice: Advice) -> list[Section]:
    """Every section of a report, in order."""
    return [
        _decision(advice),
        _inputs(advice),
        _environment(advice),
        _plans(advice),
        _rejected(advice),
        appendix.layers(advice),
        appendix.fidelity(advice),
        _details(advice),
        *([ee] if (ee := early_exit_section(advice)) else []),
        *([sv] if (sv := appendix.split_run(advice)) else []),
        appendix.citations(advice),
        appendix.reproduce(advice),
    ]
