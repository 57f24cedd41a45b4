"""The closing sections of a report: per-layer latencies, fidelity, the early-exit and split
runs' details, citations and the command that reproduces the run (`advisor.report.content`
puts them in order).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from advisor.report.blocks import (
    DASH,
    Block,
    Chart,
    Code,
    Para,
    Section,
    Table,
    ms,
    num,
    pct,
    yes,
)
from advisor.report.charts import (
    fidelity_metric,
    layer_groups,
    layers_chart_svg,
    pareto_chart_svg,
)

if TYPE_CHECKING:
    from advisor.advice import Advice

__all__ = ["layers", "fidelity", "citations", "reproduce", "split_run"]


def _kv(rows: Iterable[tuple[str, str]], header: tuple[str, str] = ("field", "value")) -> Table:
    return Table(header, tuple(rows))


def layers(a: Advice) -> Section:
    groups = layer_groups(a)
    server = a.request.edge or a.request.cloud
    if not groups:
        return Section("layers", "Per-layer profile", (Para("No per-layer profile recorded."),))
    header = (
        "#",
        "layer",
        "ops",
        "nodes",
        "last node",
        "FLOPs",
        "output (bytes)",
        "measured_host (ms)",
        f"predicted_target {a.request.device} (ms)",
        f"predicted_target {server or 'server'} (ms)",
    )
    rows = tuple(
        (
            str(i),
            g.layer,
            ", ".join(g.ops),
            num(g.nodes),
            g.last_node,
            num(g.flops),
            num(g.output_bytes),
            num(g.host_ms),
            num(g.device_ms),
            num(g.server_ms),
        )
        for i, g in enumerate(groups, 1)
    )
    return Section(
        "layers",
        "Per-layer profile",
        (
            Para(
                "Consecutive graph nodes of one layer summed, in execution order. measured_host: "
                "per-node medians from ONNX Runtime's profiler on this host (ORT_ENABLE_BASIC); "
                "predicted_target: the advisor's per-node prediction on each target. Output bytes "
                "are those of the layer's last node, i.e. what crosses a cut right after it."
            ),
            Chart(layers_chart_svg(a)),
            Table(header, rows),
        ),
    )


def fidelity(a: Advice) -> Section:
    metric, label = fidelity_metric(a)
    shown = [p for p in a.plans if p.fidelity is not None]
    rows = []
    for p in shown:
        f = p.fidelity
        if f is None:
            continue
        rows.append(
            (
                p.id,
                p.status,
                num(f.samples),
                pct(f.accuracy),
                pct(f.baseline_accuracy),
                num(f.accuracy_drop_points),
                pct(f.top1_agreement),
                num(f.max_abs_error),
                f"{f.cosine:.6f}",
                yes(p.meets_accuracy),
            )
        )
    blocks: list[Block] = [
        Para(
            "Each plan's outputs compared with the FP32 model's on the same inputs, run here "
            f"(measured_host). The trade-off chart uses {label}."
        )
    ]
    if rows:
        blocks.append(
            Table(
                (
                    "plan id",
                    "status",
                    "samples",
                    "accuracy (%)",
                    "FP32 accuracy (%)",
                    "accuracy drop (points)",
                    "top-1 agreement (%)",
                    "max abs error",
                    "cosine to FP32",
                    "meets accuracy",
                ),
                tuple(rows),
                tuple(p.status for p in shown),
            )
        )
    else:
        blocks.append(Para("No fidelity was measured."))
    blocks.append(Chart(pareto_chart_svg(a)))
    front = ", ".join(a.pareto) or DASH
    blocks.append(Para(f"Pareto front (predicted_target latency vs {metric}): {front}."))
    return Section("fidelity", "Fidelity", tuple(blocks))


def citations(a: Advice) -> Section:
    cited: dict[str, tuple[str, str, list[str]]] = {}
    for p in a.plans:
        for c in p.citations:
            cited.setdefault(c.entry_id, (c.name, c.source, []))[2].append(p.id)
    if not cited:
        return Section(
            "citations",
            "Techniques cited",
            (
                Para(
                    "No knowledge-base entry was cited (no entry matches these plan kinds, or the "
                    "knowledge base was unavailable)."
                ),
            ),
        )
    rows = tuple(
        (eid, name, src or DASH, ", ".join(dict.fromkeys(ids)))
        for eid, (name, src, ids) in cited.items()
    )
    return Section(
        "citations",
        "Techniques cited",
        (
            Para(
                "Entries of the EdgeDL knowledge base (from the survey “Convergence of Edge "
                "Computing and Deep Learning”, Wang et al., IEEE COMST 2020) that the plans "
                "implement; see them with `edgedl kb show ID`."
            ),
            Table(("entry id", "technique", "source", "cited by plans"), rows),
        ),
    )


def reproduce(a: Advice) -> Section:
    blocks: list[Block] = [
        Para(
            f"Advice created {a.created}. Run this to reproduce it "
            "(measurements vary with the host and its load):"
        )
    ]
    blocks.append(Code(a.command) if a.command else Para("No command was recorded."))
    return Section("reproduce", "Reproduce", tuple(blocks))


def split_run(a: Advice) -> Section | None:
    sv = a.split_validation
    if sv is None:
        return None
    rows = [
        ("plan", sv.plan_id),
        ("server agent", sv.server_agent),
        ("link", sv.link),
        (
            "end to end, measured_target (ms)",
            f"{ms(sv.end_to_end)} (median of {sv.repeats}; p90 {num(sv.p90_ms)})",
        ),
        ("plan's own figure, measured_host + link model (ms)", num(sv.planned_ms)),
        ("joined output vs full model, max abs error", f"{sv.max_abs_error:.3g}"),
        ("output check", "matches" if sv.output_matches else "MISMATCH"),
    ]
    rows += [(f"{k} (ms, median)", num(v)) for k, v in sv.breakdown_ms.items()]
    return Section(
        "split-run",
        "Split run through the server agent",
        (
            Para(sv.end_to_end.method),
            _kv(rows),
        ),
    )
