"""The results of one advice run as Streamlit elements: shared by the Advise and Runs pages."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

from app import charts, ui

if TYPE_CHECKING:
    from advisor.advice import Advice, PlanResult

LATENCY_HELP = (
    "predicted_target: scaled to the target from this host's measurements and the hardware "
    "catalog. measured_host: run here in ONNX Runtime (median of the timed runs; a partition's "
    "transfer is computed from the bytes crossing the cut and the link model). All in ms."
)

STATUS_ICONS = {
    "recommended": ":material/check_circle:",
    "candidate": ":material/radio_button_unchecked:",
    "rejected": ":material/cancel:",
    "not_validated": ":material/block:",
    "skipped": ":material/skip_next:",
}


def save_run(advice: Advice) -> str | None:
    """Store the run in `advisor.runs.RunStore` (shared by every session); its id, or None."""
    runs = ui.optional_module("advisor.runs", "Storing runs (advisor.runs)")
    if runs is None or not hasattr(runs, "RunStore"):
        return None
    files = [str(Path(a).resolve()) for p in advice.plans for a in p.artifacts]
    folder = os.path.commonpath(files) if files else None
    if folder and Path(folder).is_file():
        folder = str(Path(folder).parent)
    try:
        return str(runs.RunStore().save(advice, artifacts_dir=folder))
    except (*ui.known_errors(), sqlite3.Error, OSError) as exc:
        st.warning(f"The advice is shown but could not be stored as a run: {exc}")
        return None


def _summary(advice: Advice) -> None:
    rec = advice.recommended_plan
    target = advice.request.latency_ms
    if rec is not None:
        pred = f"{rec.predicted.ms:.3g} ms predicted_target" if rec.predicted else "no prediction"
        host = f", {rec.measured_host.ms:.3g} ms measured_host" if rec.measured_host else ""
        st.success(
            f"Recommended: **{rec.title}** (`{rec.id}`) — {pred}{host}; target {target:g} ms."
        )
    else:
        st.warning(
            f"No plan meets the {target:g} ms target within the fidelity budget. The "
            "tables below show every plan tried and why it fell short."
        )
    m = advice.model
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Model", m.name, f"{m.nodes} nodes", delta_color="off")
    c2.metric("Compute (MFLOPs)", f"{m.flops / 1e6:.2f}")
    c3.metric("Weights", f"{m.params_bytes / 1e6:.2f} MB")
    link = advice.link
    c4.metric(
        "Link",
        str(link.get("name", link.get("id", "?"))),
        f"up {link.get('up_mbps')} Mbit/s, RTT {link.get('rtt_ms')} ms",
        delta_color="off",
    )
    for note in advice.notices:
        st.caption(f":material/info: {note}")


def _citations(plan: PlanResult) -> str:
    if not plan.citations:
        return "No knowledge-base entry is cited for this plan."
    return "Techniques: " + "; ".join(
        f"{ui.entry_link(c.entry_id, c.name)} ({c.source})" for c in plan.citations
    )


def _rationales(advice: Advice) -> None:
    st.subheader("Why each plan")
    for p in advice.plans:
        with st.expander(f"{p.title} — {p.status}", icon=STATUS_ICONS.get(p.status)):
            st.markdown(p.rationale or "_No rationale recorded._")
            if p.reasons:
                st.markdown("**Reasons:** " + "; ".join(p.reasons))
            st.markdown(_citations(p))
            if p.stages:
                st.dataframe(
                    [
                        {
                            "stage": s.name,
                            "on": s.target,
                            "predicted_target (ms)": s.predicted.ms if s.predicted else None,
                            "measured_host (ms)": s.measured_host.ms if s.measured_host else None,
                            "bytes": s.bytes,
                            "nodes": s.nodes,
                        }
                        for s in p.stages
                    ],
                    hide_index=True,
                )
            if p.params:
                st.caption("Parameters: " + json.dumps(p.params, default=str))


def _downloads(advice: Advice, run_id: str | None) -> None:
    st.subheader("Downloads")
    stem = f"advice-{advice.model.name}-{advice.created.replace(':', '')}"
    c1, c2, c3 = st.columns(3)
    c1.download_button(
        "Report (JSON)",
        advice.model_dump_json(indent=2),
        f"{stem}.json",
        "application/json",
        key="dl_json",
    )
    report = ui.optional_module(
        "advisor.report.renderers", "HTML and Markdown reports (advisor.report.renderers)"
    )
    if report is not None:
        with ui.guarded("Rendering the report"):
            c2.download_button(
                "Report (HTML)",
                report.render_html(advice),
                f"{stem}.html",
                "text/html",
                key="dl_html",
            )
            c3.download_button(
                "Report (Markdown)",
                report.render_markdown(advice),
                f"{stem}.md",
                "text/markdown",
                key="dl_md",
            )
    with_files = [p for p in advice.plans if p.artifacts]
    if with_files:
        pid = st.selectbox(
            "Plan artifacts to download", [p.id for p in with_files], key="artifact_plan"
        )
        plan = advice.plan(pid)
        blob = charts.artifacts_zip(plan)
        if blob is None:
            st.info(
                f"The artifact files of {pid} are no longer on disk (cache cleared?). "
                "Run the advice again to rebuild them."
            )
        else:
            st.download_button(
                f"Artifacts of {pid} (.zip)",
                blob,
                f"{pid}-artifacts.zip",
                "application/zip",
                key="dl_artifacts",
            )
    if run_id:
        st.caption(f"Stored as run `{run_id}` (see the Runs page).")
    if advice.command:
        st.caption("Reproduce from a terminal:")
        st.code(advice.command, language="bash")


def show(advice: Advice, run_id: str | None = None) -> None:
    """Summary, plan tables, charts, rationales with citations, and downloads."""
    st.header("Results")
    _summary(advice)
    st.subheader("Ranked plans")
    st.dataframe(charts.plans_table(advice))
    st.caption(LATENCY_HELP)
    rejected = charts.rejected_table(advice)
    if not rejected.empty:
        st.subheader("Rejected and skipped plans")
        st.dataframe(
            rejected,
            hide_index=True,
            column_config={"reasons": st.column_config.TextColumn(width="large")},
        )
    kind = st.radio(
        "Latency kind in the charts",
        ["predicted_target", "measured_host"],
        horizontal=True,
        key="chart_kind",
    )
    left, right = st.columns(2)
    stage = charts.stage_chart(advice, kind)
    if stage is not None:
        left.altair_chart(stage, width="stretch")
    pareto = charts.pareto_chart(advice, kind)
    if pareto is not None:
        right.altair_chart(pareto, width="stretch")
    exits = charts.exit_cut_chart(advice)
    if exits is not None:
        st.subheader("Early exit × cut")
        st.altair_chart(exits)
        with st.expander("Exit × cut table"):
            table = charts.exit_cut_frame(advice).drop(columns=["accuracy label", "ms label"])
            st.dataframe(table, hide_index=True)
        thresholds = charts.threshold_frame(advice)
        if not thresholds.empty:
            with st.expander("Entropy-threshold cascade (BranchyNet): accuracy, exit shares"):
                st.dataframe(thresholds, hide_index=True)
    layers = charts.layers_chart(advice)
    if layers is not None:
        st.altair_chart(layers, width="stretch")
        with st.expander("Per-layer table"):
            st.dataframe(charts.layers_frame(advice), hide_index=True)
    _rationales(advice)
    _downloads(advice, run_id)
