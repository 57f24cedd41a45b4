"""A sweep's table (one row per cell: CSV and JSON) and its report (Markdown and HTML) with
a heatmap of model × target per link, coloured by the recommended plan's kind and shaded
by the latency margin."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from advisor.advice import Advice

__all__ = ["CellRow", "SweepResult", "cell_row", "heatmap_svg", "write_outputs"]


class CellRow(BaseModel):
    """One cell of a sweep and what its advice recommends."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep_id: str
    run_id: str
    cell_key: str
    model: str
    target: str  # 'rpi4 + edge_t4'
    device: str
    edge: str | None
    cloud: str | None
    link: str
    latency_ms: float  # the cell's latency target
    accuracy_budget: float | None
    recommended: str | None  # plan id, None when no plan met the target
    recommended_kind: str | None
    predicted_ms: float | None  # the recommended plan's (else the baseline's) end to end
    predicted_kind: str | None  # predicted_target: the figure judged against the target
    measured_ms: float | None
    measured_kind: str | None  # measured_host (compute here, transfers from the link model)
    # or measured_target (run on the device agent)
    margin: float | None  # (target - predicted) / target: > 0 met with room, < 0 missed
    fidelity: str | None  # 'accuracy drop 0.11 pts', 'top-1 agreement 100.0%', 'cosine ...'
    reasons: list[str] = Field(default_factory=list)  # rationale, or why nothing was met
    node_id: str | None = None  # the Ray node that measured it
    fingerprint_key: str | None = None  # that machine's environment fingerprint
    timing_start: float | None = None  # the interval (Unix seconds) it held the machine
    timing_end: float | None = None


class SweepResult(BaseModel):
    """A sweep's outcome: every cell's row, what ran now and what was already stored."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sweep_id: str
    name: str | None
    cells: int
    advised_now: int  # cells advised and stored in this call
    already_stored: int = 0  # cells found in the run store, not advised again
    no_plan: int  # cells where no plan met the target and the accuracy budget
    failures: list[str]  # cells that could not be advised, one line each
    notices: list[str]
    seconds: float
    rows: list[CellRow]
    outputs: dict[str, str] = Field(default_factory=dict)  # 'csv', 'json', 'md', 'html' paths


def _fidelity(p) -> str | None:
    f = p.fidelity if p is not None else None
    if f is None:
        return None
    if f.accuracy_drop_points is not None:
        return f"accuracy drop {f.accuracy_drop_points:.2f} pts"
    if f.top1_agreement is not None:
        return f"top-1 agreement {f.top1_agreement * 100:.1f}%"
    return f"cosine {f.cosine:.4f}"


def cell_row(advice: Advice, run_id: str, sweep_id: str, cell_key: str, record: dict) -> CellRow:
    req = advice.request
    rec = advice.recommended_plan
    shown = rec
    if shown is None:  # no plan met: show how far the FP32 device baseline is
        shown = next((p for p in advice.plans if p.kind == "baseline.device"), None)
    pred = shown.predicted if shown is not None else None
    meas = None
    if shown is not None:
        meas = shown.measured_target or shown.measured_host
    if rec is not None:
        reasons = [rec.rationale] if rec.rationale else []
    else:
        reasons = ["no plan meets the latency target and the accuracy budget"] + [
            f"{p.id}: {p.reasons[0]}" for p in advice.plans if p.reasons and p.status != "skipped"
        ][:4]
    return CellRow(
        sweep_id=sweep_id,
        run_id=run_id,
        cell_key=cell_key,
        model=str((record.get("cell") or {}).get("model") or req.model),  # as the SPEC names it
        target=" + ".join(t for t in (req.device, req.edge, req.cloud) if t),
        device=req.device,
        edge=req.edge,
        cloud=req.cloud,
        link=req.link or "custom",
        latency_ms=req.latency_ms,
        accuracy_budget=req.accuracy_budget,
        recommended=advice.recommended,
        recommended_kind=rec.kind if rec is not None else None,
        predicted_ms=pred.ms if pred else None,
        predicted_kind=pred.kind if pred else None,
        measured_ms=meas.ms if meas else None,
        measured_kind=meas.kind if meas else None,
        margin=(req.latency_ms - pred.ms) / req.latency_ms if pred else None,
        fidelity=_fidelity(shown),
        reasons=reasons,
        node_id=record.get("node_id"),
        fingerprint_key=record.get("fingerprint_key"),
        timing_start=record.get("timing_start"),
        timing_end=record.get("timing_end"),
    )


# --- the heatmap ---------------------------------------------------------------------------

# one colour per plan family (the part of the kind before the dot)
_FAMILY_COLOURS = {
    "baseline": "#4e79a7",
    "partition": "#f28e2b",
    "quantize": "#59a14f",
    "prune": "#b07aa1",
    "convert": "#76b7b2",
    "early_exit": "#edc948",
    "compress": "#ff9da7",
    "combo": "#9c755f",
}
_OTHER, _NONE = "#bab0ac", "#e15759"


def _colour(kind: str | None) -> str:
    if kind is None:
        return _NONE
    return _FAMILY_COLOURS.get(kind.split(".")[0], _OTHER)


def _column(r: CellRow, rows: list[CellRow]) -> str:
    col = r.target
    if len({x.latency_ms for x in rows}) > 1:
        col += f" @ {r.latency_ms:g} ms"
    if len({x.accuracy_budget for x in rows}) > 1:
        col += f" ≤{r.accuracy_budget:g} pts" if r.accuracy_budget is not None else " (default)"
    return col


def heatmap_svg(rows: list[CellRow], link: str) -> str:
    """Model × target (× latency target) for one link: fill = the recommended plan's family,
    opacity = the latency margin (pale: just met; full: half the budget or more to spare);
    red: no plan met the target. Each cell prints the plan kind and the margin."""
    sel = [r for r in rows if r.link == link]
    models = list(dict.fromkeys(r.model for r in sel))
    cols = list(dict.fromkeys(_column(r, sel) for r in sel))
    cw, ch, left, top = 150, 44, 160, 110
    w, h = left + cw * len(cols) + 130, top + ch * len(models) + 70  # room for slanted labels
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif" font-size="11" role="img" '
        f'aria-label="sweep heatmap, link {html.escape(link)}">',
        f'<text x="4" y="16" font-size="13" font-weight="bold">link {html.escape(link)}: '
        "recommended plan per model × target</text>",
    ]
    for j, c in enumerate(cols):
        x = left + j * cw + cw / 2
        out.append(
            f'<text x="{x}" y="{top - 8}" text-anchor="start" '
            f'transform="rotate(-30 {x} {top - 8})">{html.escape(c)}</text>'
        )
    for i, m in enumerate(models):
        out.append(
            f'<text x="{left - 6}" y="{top + i * ch + ch / 2 + 4}" text-anchor="end">'
            f"{html.escape(m)}</text>"
        )
    for r in sel:
        i, j = models.index(r.model), cols.index(_column(r, sel))
        margin = r.margin if r.margin is not None else -1.0
        opacity = 1.0 if r.recommended is None else 0.35 + 0.65 * min(1.0, max(0.0, margin) * 2)
        x, y = left + j * cw, top + i * ch
        kind = r.recommended_kind or "no plan met"
        tip = (
            f"{r.model} · {r.target} · {r.link} · target {r.latency_ms:g} ms: {kind}; "
            f"predicted {r.predicted_ms:.3g} ms (predicted_target), margin {margin * 100:+.0f}%"
            if r.predicted_ms is not None
            else f"{r.model} · {r.target}: {kind}"
        )
        out.append(
            f'<g><title>{html.escape(tip)}</title><rect x="{x + 1}" y="{y + 1}" '
            f'width="{cw - 2}" height="{ch - 2}" fill="{_colour(r.recommended_kind)}" '
            f'fill-opacity="{opacity:.2f}"/>'
            f'<text x="{x + cw / 2}" y="{y + 18}" text-anchor="middle">{html.escape(kind)}</text>'
            f'<text x="{x + cw / 2}" y="{y + 33}" text-anchor="middle">'
            f"margin {margin * 100:+.0f}%</text></g>"
        )
    families = dict.fromkeys(
        (r.recommended_kind.split(".")[0] if r.recommended_kind else None) for r in sel
    )
    y = top + ch * len(models) + 20
    for k, fam in enumerate(families):
        x = left + k * 110
        out.append(
            f'<rect x="{x}" y="{y}" width="12" height="12" fill="{_colour(fam)}"/>'
            f'<text x="{x + 16}" y="{y + 10}">{html.escape(fam or "no plan met")}</text>'
        )
    out.append(
        f'<text x="{left}" y="{y + 32}" fill="#555">opacity: latency margin to the target '
        "(predicted_target ms), pale = just met, full = ≥ 50% to spare</text>"
    )
    out.append("</svg>")
    return "".join(out)


# --- table and reports ---------------------------------------------------------------------

_CSV_FIELDS = [f for f in CellRow.model_fields if f != "reasons"] + ["reasons"]


def table_csv(rows: list[CellRow]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_CSV_FIELDS)
    w.writeheader()
    for r in rows:
        d = r.model_dump()
        d["reasons"] = " | ".join(r.reasons)
        w.writerow(d)
    return buf.getvalue()


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "–" if x is None else format(x, spec)


def report_markdown(result: SweepResult, svg_files: dict[str, str] | None = None) -> str:
    rows = result.rows
    lines = [
        f"# Sweep {result.name or result.sweep_id}",
        "",
        f"Sweep id `{result.sweep_id}` · {result.cells} cells · {result.no_plan} without a plan "
        f"meeting the target · {result.advised_now} advised in the last call "
        f"({result.seconds:.0f} s wall).",
        "",
        "Latencies: *predicted* is `predicted_target` on the cell's device (+ link model), the "
        "figure judged against the target; *measured* is `measured_host` (compute run in ONNX "
        "Runtime on the sweep's measuring machine, transfers from the link model) or "
        "`measured_target` (run on a device agent). Margin = (target − predicted) / target.",
        "",
    ]
    lines += [f"> note: {n}" for n in result.notices]
    for link in dict.fromkeys(r.link for r in rows):
        lines += ["", f"## Link {link}", ""]
        if svg_files and link in svg_files:
            lines.append(f"![heatmap for link {link}]({svg_files[link]})")
        lines += [
            "",
            "| model | target | target ms | recommended | predicted ms | measured ms "
            "| margin | fidelity | run |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            if r.link != link:
                continue
            lines.append(
                f"| {r.model} | {r.target} | {r.latency_ms:g} | {r.recommended or 'none met'} "
                f"| {_fmt(r.predicted_ms)} ({r.predicted_kind or '–'}) "
                f"| {_fmt(r.measured_ms)} ({r.measured_kind or '–'}) "
                f"| {_fmt(r.margin * 100 if r.margin is not None else None, '+.0f')}% "
                f"| {r.fidelity or '–'} | `{r.run_id}` |"
            )
    lines += ["", "Open a cell's full advice with `edgedl report RUN_ID --format html -o FILE`."]
    return "\n".join(lines) + "\n"


def report_html(result: SweepResult) -> str:
    links = list(dict.fromkeys(r.link for r in result.rows))
    body = [f"<h1>Sweep {html.escape(result.name or result.sweep_id)}</h1>"]
    body.append(
        f"<p>Sweep id <code>{result.sweep_id}</code> · {result.cells} cells · "
        f"{result.no_plan} without a plan meeting the target · {result.advised_now} advised "
        f"in the last call ({result.seconds:.0f} s wall).</p>"
        "<p>Predicted: <code>predicted_target</code> ms on the device (+ link model), judged "
        "against the target. Measured: <code>measured_host</code> ms (compute in ONNX Runtime "
        "on the measuring machine, transfers from the link model) or "
        "<code>measured_target</code>. Margin = (target − predicted) / target.</p>"
    )
    body += [f"<p><b>note:</b> {html.escape(n)}</p>" for n in result.notices]
    for link in links:
        body.append(f"<h2>Link {html.escape(link)}</h2>{heatmap_svg(result.rows, link)}")
        body.append(
            "<table><tr><th>model</th><th>target</th><th>target ms</th><th>recommended</th>"
            "<th>predicted ms</th><th>measured ms</th><th>margin</th><th>fidelity</th>"
            "<th>reasons</th><th>run</th></tr>"
        )
        for r in result.rows:
            if r.link != link:
                continue
            margin = f"{r.margin * 100:+.0f}%" if r.margin is not None else "–"
            body.append(
                "<tr>"
                + "".join(
                    f"<td>{html.escape(str(v))}</td>"
                    for v in (
                        r.model,
                        r.target,
                        f"{r.latency_ms:g}",
                        r.recommended or "none met",
                        f"{_fmt(r.predicted_ms)} ({r.predicted_kind or '–'})",
                        f"{_fmt(r.measured_ms)} ({r.measured_kind or '–'})",
                        margin,
                        r.fidelity or "–",
                        "; ".join(r.reasons)[:300],
                        r.run_id,
                    )
                )
                + "</tr>"
            )
        body.append("</table>")
    style = (
        "body{font-family:sans-serif;margin:2em;max-width:1200px}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;"
        "padding:3px 6px;text-align:left;vertical-align:top}"
    )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>Sweep "
        f"{html.escape(result.sweep_id)}</title><style>{style}</style></head><body>"
        + "".join(body)
        + "</body></html>\n"
    )


def write_outputs(result: SweepResult, out_dir: Path) -> dict[str, str]:
    """sweep.csv, sweep.json, sweep.md (+ one heatmap SVG per link beside it), sweep.html."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {k: out_dir / f"sweep.{k}" for k in ("csv", "json", "md", "html")}
    paths["csv"].write_text(table_csv(result.rows), encoding="utf-8")
    paths["json"].write_text(
        json.dumps([r.model_dump(mode="json") for r in result.rows], indent=1), encoding="utf-8"
    )
    svgs = {}
    for k, link in enumerate(dict.fromkeys(r.link for r in result.rows)):
        name = f"sweep-heatmap-{k}-{''.join(c if c.isalnum() else '_' for c in link)}.svg"
        (out_dir / name).write_text(heatmap_svg(result.rows, link), encoding="utf-8")
        svgs[link] = name
    paths["md"].write_text(report_markdown(result, svgs), encoding="utf-8")
    paths["html"].write_text(report_html(result), encoding="utf-8")
    return {k: str(v) for k, v in paths.items()}
