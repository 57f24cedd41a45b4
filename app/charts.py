"""Tables and Altair charts of an `Advice` and of knowledge-base views, as plain values.

Each function takes typed results and returns a DataFrame, an Altair chart, a DOT string or
bytes; the pages only place them. Every latency column names its kind and unit, e.g.
``predicted_target e2e (ms)``: a predicted figure is never shown as if it were measured.
"""

from __future__ import annotations

import io
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import altair as alt
import pandas as pd

from advisor.report.charts import fidelity_metric

if TYPE_CHECKING:
    from advisor.advice import Advice, Latency, PlanResult, Stage
    from kb import Comparison, KnowledgeBase

ChartKind = Literal["predicted_target", "measured_host"]
RANKED = ("recommended", "candidate")
STATUS_DOMAIN = ["recommended", "candidate", "misses_target", "rejected"]
STATUS_RANGE = ["#2ca02c", "#4c78a8", "#f58518", "#d62728"]
FONT = {"label": 12, "title": 13, "heading": 15}
LABEL_LIMIT = 360  # px: plan titles are long; the axis keeps this much of each


def readable(chart):
    """Fonts a reader can read at 1400 px (12-15 px), on any Altair chart."""
    return (
        chart.configure_axis(labelFontSize=FONT["label"], titleFontSize=FONT["title"])
        .configure_legend(labelFontSize=FONT["label"], titleFontSize=FONT["label"], labelLimit=300)
        .configure_title(fontSize=FONT["heading"], subtitleFontSize=FONT["label"], anchor="start")
    )


def _tied_ids(advice: Advice) -> set[str]:
    rec = advice.recommended_plan
    note = rec.extra.get("ranking") if rec is not None else None
    ties = list(note.get("tied_with") or []) if isinstance(note, dict) else []
    return {*ties, rec.id} if ties and rec is not None else set()


def column_config(frame: pd.DataFrame) -> dict[str, object]:
    """Streamlit column settings for a table of this module: units in the header, numbers
    rounded, long text wide, booleans as ticks."""
    import streamlit as st

    cfg: dict[str, object] = {}
    for col in frame.columns:
        name = str(col)
        if name == "reasons":
            cfg[name] = st.column_config.TextColumn(width="large")
        elif name in ("plan", "layer", "last node", "title"):
            cfg[name] = st.column_config.TextColumn(width="medium")
        elif name == "status":
            cfg[name] = st.column_config.TextColumn(width="small")
        elif name in ("meets target", "meets accuracy", "tied"):
            cfg[name] = st.column_config.CheckboxColumn(width="small")
        elif name == "top-1 agreement":
            cfg[name] = st.column_config.NumberColumn(format="percent")
        elif "(pp)" in name:
            cfg[name] = st.column_config.NumberColumn(format="%.2f")
        elif "(ms)" in name or "(MB)" in name or "(KB)" in name:
            cfg[name] = st.column_config.NumberColumn(format="%.3f")
        elif name == "fidelity: cosine":
            cfg[name] = st.column_config.NumberColumn(format="%.6f")
    return cfg


#: plan-table columns dropped when no plan has a value for them
OPTIONAL_COLUMNS = (
    "measured_host p90 (ms)",
    "prediction error (%)",
    "accuracy drop (pp)",
    "transfer predicted_target (ms)",
    "bytes sent",
)


def _ms(lat: Latency | None) -> float | None:
    return round(lat.ms, 3) if lat is not None else None


def _stage_latency(stage: Stage, kind: str) -> Latency | None:
    return {
        "predicted_target": stage.predicted,
        "measured_host": stage.measured_host,
        "measured_target": stage.measured_target,
    }.get(kind)


def _plan_latency(plan: PlanResult, kind: str) -> Latency | None:
    return {
        "predicted_target": plan.predicted,
        "measured_host": plan.measured_host,
        "measured_target": plan.measured_target,
    }.get(kind)


def ranked_plans(advice: Advice) -> list[PlanResult]:
    """Recommended first, then the other candidates in the advisor's order."""
    ranked = [p for p in advice.plans if p.status in RANKED]
    return sorted(ranked, key=lambda p: p.status != "recommended")


def _row(plan: PlanResult, with_target: bool) -> dict[str, object]:
    transfers = [s for s in plan.stages if s.kind == "transfer"]
    fid = plan.fidelity
    pred_transfer = [s.predicted.ms for s in transfers if s.predicted is not None]
    row: dict[str, object] = {
        "plan": plan.title,
        "status": plan.status,
        "predicted_target e2e (ms)": _ms(plan.predicted),
        "measured_host e2e (ms)": _ms(plan.measured_host),
        "transfer predicted_target (ms)": round(sum(pred_transfer), 3) if pred_transfer else None,
        "meets target": plan.meets_latency,
    }
    if with_target:
        row["measured_target e2e (ms)"] = _ms(plan.measured_target)
    row["measured_host p90 (ms)"] = (
        round(plan.measured_host.p90_ms, 3)
        if plan.measured_host and plan.measured_host.p90_ms
        else None
    )
    row["bytes sent"] = sum(s.bytes or 0 for s in transfers) if transfers else None
    row["prediction error (%)"] = (
        round(100 * plan.prediction_error, 1) if plan.prediction_error is not None else None
    )
    row["fidelity: cosine"] = round(fid.cosine, 6) if fid else None
    row["top-1 agreement"] = fid.top1_agreement if fid else None
    row["accuracy drop (pp)"] = fid.accuracy_drop_points if fid else None
    row["device model (MB)"] = round(plan.size_bytes / 1e6, 3) if plan.size_bytes else None
    row["meets accuracy"] = plan.meets_accuracy
    row["id"] = plan.id
    row["kind"] = plan.kind
    return row


def plans_table(advice: Advice) -> pd.DataFrame:
    """The ranked plans (recommended and candidates), one row each, rank as the index;
    `tied` marks the recommended plan and those within measured noise of its latency."""
    with_target = any(p.measured_target for p in advice.plans)
    ties = _tied_ids(advice)
    rows = [{**_row(p, with_target), "tied": p.id in ties} for p in ranked_plans(advice)]
    frame = pd.DataFrame(rows)
    optional = [c for c in OPTIONAL_COLUMNS if c in frame and frame[c].isna().all()]
    frame = frame.drop(columns=optional)
    frame.index = pd.RangeIndex(1, len(rows) + 1, name="rank")
    return frame


def rejected_table(advice: Advice) -> pd.DataFrame:
    """Rejected and skipped plans with their reasons and whatever was measured."""
    rows = []
    for p in advice.plans:
        if p.status in RANKED:
            continue
        rows.append(
            {
                "plan": p.title,
                "status": p.status,
                "reasons": "; ".join(p.reasons) or "—",
                "predicted_target e2e (ms)": _ms(p.predicted),
                "measured_host e2e (ms)": _ms(p.measured_host),
                "id": p.id,
                "kind": p.kind,
            }
        )
    return pd.DataFrame(rows)


def stages_frame(advice: Advice, kind: ChartKind = "predicted_target") -> pd.DataFrame:
    """One row per (plan, stage) with that stage's latency of `kind` in ms."""
    rows = []
    for p in advice.plans:
        if p.status == "skipped":
            continue
        for i, s in enumerate(p.stages):
            lat = _stage_latency(s, kind)
            if lat is None and s.kind == "transfer":
                # a transfer is computed from its bytes and the link in every kind: the
                # plan's measured_host total includes it, so the chart must too
                lat = s.predicted
            if lat is None:
                continue
            rows.append(
                {
                    "plan": p.id,
                    "title": _chart_title(p, advice),
                    "stage": s.name,
                    "order": i,
                    "type": s.kind,
                    "on": s.target or "",
                    "ms": lat.ms,
                    "latency kind": kind if s.kind == "transfer" else lat.kind,
                    "method": lat.method,
                    "bytes": s.bytes,
                }
            )
    return pd.DataFrame(rows)


def _chart_title(p: PlanResult, advice: Advice) -> str:
    mark = "★ " if p.id == advice.recommended else ""
    return f"{mark}{p.title}"


def stage_chart(advice: Advice, kind: ChartKind = "predicted_target"):
    """Horizontal stacked bars: each plan's latency split into compute and transfer stages,
    plans named by their titles (★ the recommended one), the target as a dashed rule."""
    frame = stages_frame(advice, kind)
    if frame.empty:
        return None
    target = advice.request.latency_ms
    bars = (
        alt.Chart(frame)
        .mark_bar()
        .encode(
            x=alt.X("sum(ms):Q", title=f"{kind} latency (ms)"),
            y=alt.Y("title:N", sort="x", title=None, axis=alt.Axis(labelLimit=LABEL_LIMIT)),
            color=alt.Color("stage:N", title="stage"),
            order=alt.Order("order:Q"),
            tooltip=[
                "title",
                "plan",
                "stage",
                "on",
                alt.Tooltip("ms:Q", format=".3f", title="ms"),
                "latency kind",
                "method",
                "bytes",
            ],
        )
    )
    rule = (
        alt.Chart(pd.DataFrame({"ms": [target]}))
        .mark_rule(strokeDash=[4, 3])
        .encode(x="ms:Q", tooltip=[alt.Tooltip("ms:Q", title="latency target (ms)")])
    )
    return readable(
        (bars + rule).properties(
            title=alt.TitleParams(
                f"Latency per stage ({kind}, ms)",
                subtitle=f"dashed: the {target:g} ms target; ★ recommended; transfers from "
                "the link model in both kinds",
            )
        )
    )


def layers_frame(advice: Advice) -> pd.DataFrame:
    """Per-layer rows along the model: consecutive nodes of one layer summed."""
    rows: list[dict[str, object]] = []
    for r in advice.layers:
        if rows and rows[-1]["layer"] == r.layer:
            last = rows[-1]
            last["nodes"] = int(last["nodes"]) + 1  # type: ignore[call-overload]
            last["measured_host (ms)"] += r.host_ms  # type: ignore[operator]
            for key, val in (
                ("predicted_target device (ms)", r.device_ms),
                ("predicted_target server (ms)", r.server_ms),
            ):
                if val is not None:
                    last[key] = (last[key] or 0.0) + val  # type: ignore[operator]
            last["output (KB)"] = r.output_bytes / 1024
            last["last node"] = r.name
            continue
        rows.append(
            {
                "position": len(rows),
                "layer": r.layer,
                "last node": r.name,
                "op": r.op_type,
                "nodes": 1,
                "measured_host (ms)": r.host_ms,
                "predicted_target device (ms)": r.device_ms,
                "predicted_target server (ms)": r.server_ms,
                "output (KB)": r.output_bytes / 1024,
            }
        )
    return pd.DataFrame(rows)


def layers_chart(advice: Advice):
    """The classic partition picture: latency per layer (bars) and output size (line)."""
    frame = layers_frame(advice)
    if frame.empty:
        return None
    lat_cols = [
        c for c in ("measured_host (ms)", "predicted_target device (ms)") if frame[c].notna().any()
    ]
    frame = frame.assign(
        name=[f"{i}: {n}" for i, n in zip(frame["position"], frame["layer"], strict=True)]
    )
    long = frame.melt(
        id_vars=["position", "layer", "op", "name"],
        value_vars=lat_cols,
        var_name="latency",
        value_name="ms",
    )
    order = list(frame["name"])
    x = alt.X(
        "name:N",
        sort=order,
        title="layer (in execution order)",
        axis=alt.Axis(labels=len(frame) <= 60, labelAngle=-40, labelLimit=180),
    )
    bars = (
        alt.Chart(long)
        .mark_bar(opacity=0.75)
        .encode(
            x=x,
            xOffset="latency:N",
            y=alt.Y("ms:Q", title="latency per layer (ms)"),
            color=alt.Color("latency:N", title="latency kind"),
            tooltip=["layer", "op", "latency", alt.Tooltip("ms:Q", format=".4f")],
        )
    )
    line = (
        alt.Chart(frame)
        .mark_line(point=True, color="#d62728")
        .encode(
            x=x,
            y=alt.Y("output (KB):Q", title="output size (KB, red line)"),
            tooltip=["layer", "last node", alt.Tooltip("output (KB):Q", format=".1f")],
        )
    )
    return readable(
        alt.layer(bars, line)
        .resolve_scale(y="independent")
        .properties(title="Per-layer latency and output size along the model", height=360)
    )


def pareto_frame(advice: Advice, kind: ChartKind = "predicted_target") -> pd.DataFrame:
    metric, _ = fidelity_metric(advice)
    rows = []
    for p in advice.plans:
        lat = _plan_latency(p, kind)
        value = getattr(p.fidelity, metric) if p.fidelity else None
        if lat is None or value is None:
            continue
        rows.append(
            {
                "plan": p.id,
                "title": p.title,
                "status": p.status,
                "ms": lat.ms,
                "fidelity": value,
                "pareto": p.id in advice.pareto,
            }
        )
    return pd.DataFrame(rows)


def pareto_chart(advice: Advice, kind: ChartKind = "predicted_target"):
    """Latency against fidelity for every measured plan; the Pareto front joined by a line;
    the recommended plan drawn last (on top), larger and labelled."""
    frame = pareto_frame(advice, kind)
    if frame.empty:
        return None
    _, label = fidelity_metric(advice)
    frame = frame.assign(recommended=frame["plan"] == (advice.recommended or ""))
    x_max = max(float(frame["ms"].max()), advice.request.latency_ms)
    base = alt.Chart(frame)
    x = alt.X("ms:Q", title=f"{kind} e2e latency (ms)")
    y = alt.Y("fidelity:Q", title=label, scale=alt.Scale(zero=False))
    tooltip = [
        "title",
        "plan",
        "status",
        alt.Tooltip("ms:Q", format=".3f"),
        alt.Tooltip("fidelity:Q", format=".5f"),
    ]
    color = alt.Color(
        "status:N", scale=alt.Scale(domain=STATUS_DOMAIN, range=STATUS_RANGE), title="status"
    )
    points = (
        base.transform_filter("!datum.recommended")
        .mark_point(filled=True, size=80, opacity=0.8)
        .encode(
            x=x, y=y, color=color, shape=alt.Shape("pareto:N", title="on Pareto front"),
            tooltip=tooltip,
        )
    )  # fmt: skip
    front = (
        base.transform_filter("datum.pareto")
        .mark_line(strokeDash=[2, 2], color="gray")
        .encode(x="ms:Q", y="fidelity:Q", order="ms:Q")
    )
    target = (
        alt.Chart(pd.DataFrame({"ms": [advice.request.latency_ms]}))
        .mark_rule(color="gray", strokeDash=[4, 3])
        .encode(x="ms:Q")
    )
    chosen = base.transform_filter("datum.recommended")
    star = chosen.mark_point(
        shape="diamond", filled=True, size=260, stroke="black", strokeWidth=1.5
    ).encode(x=x, y=y, color=color, tooltip=tooltip)
    # the label on the side with room: left of the point when it sits in the right half
    right_half = bool((frame["ms"][frame["recommended"]] > 0.5 * x_max).any())
    name = chosen.mark_text(
        align="right" if right_half else "left",
        dx=-12 if right_half else 12,
        dy=-12,
        fontSize=FONT["label"],
        fontWeight="bold",
        limit=LABEL_LIMIT,
    ).encode(x="ms:Q", y="fidelity:Q", text="title:N")
    return readable(
        alt.layer(target, front, points, star, name).properties(
            title=alt.TitleParams(
                f"Latency ({kind}) vs fidelity",
                subtitle="dashed rule: the latency target; dotted line: Pareto front; "
                "diamond: recommended",
            )
        )
    )


def exit_cut_frame(advice: Advice) -> pd.DataFrame:
    """The early-exit plan's exit × cut table: one row per (exit, cut) pair, empty without."""
    plan = next((p for p in advice.plans if p.kind == "early_exit.partition"), None)
    rows = (plan.extra.get("exit_cut_table") or []) if plan is not None else []
    if not rows:
        return pd.DataFrame()
    chosen = plan.extra.get("chosen") or {}  # type: ignore[union-attr]
    frame = pd.DataFrame(
        [
            {
                "exit": r["exit"],
                "exit index": r["exit_index"],
                "cut position": r["position"],
                "placement": r["placement"],
                "cut after": r["cut_after"] or "—",
                "predicted_target (ms)": r["predicted_ms"],
                "accuracy (%)": round(100 * r["accuracy"], 2),
                "meets target": r["meets"],
                "chosen": chosen.get("exit") == r["exit"]
                and chosen.get("position") == r["position"],
            }
            for r in rows
        ]
    )
    frame["accuracy label"] = [f"{a:.1f}%" for a in frame["accuracy (%)"]]
    frame["ms label"] = [f"{ms:.3g} ms" for ms in frame["predicted_target (ms)"]]
    return frame


def exit_cut_chart(advice: Advice) -> alt.LayerChart | None:
    """Heat map of predicted latency over exit × cut position, labelled with each exit's
    measured accuracy; pairs that meet the target outlined, the chosen one in black."""
    frame = exit_cut_frame(advice)
    if frame.empty:
        return None
    order = list(dict.fromkeys(frame.sort_values("exit index")["exit"]))
    base = alt.Chart(frame).encode(
        x=alt.X("cut position:O", title="cut position in the exit's sub-model (0: all on server)"),
        y=alt.Y("exit:N", sort=order, title="exit (shallowest first)"),
    )
    tiles = base.mark_rect().encode(
        color=alt.Color(
            "predicted_target (ms):Q",
            scale=alt.Scale(type="log", scheme="orangered"),
            title="predicted_target (ms)",
        ),
        stroke=alt.condition("datum.chosen", alt.value("black"), alt.value(None)),
        strokeWidth=alt.condition("datum.chosen", alt.value(3), alt.value(0)),
        opacity=alt.condition("datum['meets target']", alt.value(1.0), alt.value(0.45)),
        tooltip=[
            "exit",
            "cut position",
            "placement",
            "cut after",
            alt.Tooltip("predicted_target (ms):Q", format=".4g"),
            alt.Tooltip("accuracy (%):Q", format=".2f"),
            "meets target",
            "chosen",
        ],
    )
    acc = base.mark_text(fontSize=FONT["label"], dy=-8).encode(text="accuracy label:N")
    lat = base.mark_text(fontSize=11, dy=8).encode(text="ms label:N")
    return readable(alt.layer(tiles, acc, lat)).properties(
        height=alt.Step(48),
        width=alt.Step(72),
        title=alt.TitleParams(
            "Exit × cut: predicted_target latency (ms) and measured accuracy",
            subtitle=f"target {advice.request.latency_ms:g} ms; faded: misses it; outlined: "
            "chosen (most accurate pair that meets it)",
        ),
    )


def threshold_frame(advice: Advice) -> pd.DataFrame:
    """The entropy-threshold table of the early-exit cascade planner, empty without one."""
    plan = next((p for p in advice.plans if p.kind == "early_exit.threshold"), None)
    rows = (plan.extra.get("threshold_table") or []) if plan is not None else []
    return pd.DataFrame(
        [
            {
                "threshold (nats)": r["threshold"],
                "placement": r["placement"],
                "accuracy (%)": round(100 * r["accuracy"], 2),
                **{f"leave at {e} (%)": round(100 * v, 1) for e, v in r["shares"].items()},
                "expected predicted_target (ms)": r["expected_ms"],
                "slowest path predicted_target (ms)": r["worst_path_ms"],
                "meets target": r["meets"],
            }
            for r in rows
        ]
    )


def artifacts_zip(plan: PlanResult) -> bytes | None:
    """A zip of the plan's artifact files (folders included), or None when none exist."""
    files: list[tuple[Path, str]] = []
    for name in plan.artifacts:
        path = Path(name)
        if path.is_file():
            files.append((path, path.name))
        elif path.is_dir():
            files.extend(
                (f, str(Path(path.name) / f.relative_to(path)))
                for f in sorted(path.rglob("*"))
                if f.is_file()
            )
    if not files:
        return None
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, arc in files:
            zf.write(path, arcname=f"{plan.id}/{arc}")
    return buf.getvalue()


# --- knowledge base ------------------------------------------------------------------------


def comparison_frame(comparison: Comparison) -> pd.DataFrame:
    """Attributes as rows, entries as columns."""
    frame = pd.DataFrame(
        [vals for _, vals in comparison.rows],
        columns=comparison.names,
        index=[a for a, _ in comparison.rows],
    )
    frame.index.name = "attribute"
    return frame


def _dot_text(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def relation_dot(base: KnowledgeBase, entry_id: str, depth: int = 1) -> str:
    """Graphviz DOT of the entry, its related entries within `depth`, and their relations."""
    near = {e.id: (e, d) for e, d in base.related(entry_id, depth=depth)}
    nodes = {entry_id, *near}
    G = base.graph
    lines = [
        "digraph related {",
        '  rankdir="LR";',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11];',
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    for n in sorted(nodes):
        name = G.nodes[n].get("name", n)
        fill = (
            "#ffd59e"
            if n == entry_id
            else ("#dbe9f6" if near.get(n, (None, 1))[1] == 1 else "#f0f0f0")
        )
        lines.append(f'  "{_dot_text(n)}" [label="{_dot_text(name)}", fillcolor="{fill}"];')
    for u, v, data in G.edges(data=True):
        if u in nodes and v in nodes and data.get("type") != "contains":
            lines.append(
                f'  "{_dot_text(u)}" -> "{_dot_text(v)}" '
                f'[label="{_dot_text(str(data.get("type", "")))}"];'
            )
    lines.append("}")
    return "\n".join(lines)
