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
    "predicted_target: on the target, from the best source there is (measured on the target "
    "through its agent, a measured target profile, or catalog priors fitted to published "
    "measurements), with the range it is expected in. measured_host: run here in ONNX Runtime "
    "(median of the timed runs; a partition's transfer is computed from the bytes crossing "
    "the cut and the link model). All in ms."
)

STATUS_ICONS = {
    "recommended": ":material/check_circle:",
    "candidate": ":material/radio_button_unchecked:",
    "misses_target": ":material/timer_off:",
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


def _where(plan: PlanResult, device: str) -> str:
    """Where each part runs: 'device `rpi4` → over `wifi` → edge `edge_t4`'."""
    parts = [] if plan.stages and plan.stages[0].kind == "compute" else [f"device `{device}`"]
    for st_ in plan.stages:
        if st_.kind == "compute":
            parts.append(f"{st_.name.split()[0]} `{st_.target}`")
        elif "up" in st_.name and st_.target:
            parts.append(f"over `{st_.target}`")
    return " → ".join(dict.fromkeys(parts)) or "—"


def _fidelity_metric(plan: PlanResult) -> tuple[str, str, str]:
    """(label, value, comparison with FP32) for the summary card."""
    f = plan.fidelity
    if f is None:
        return "Fidelity vs FP32", "not measured", ""
    if f.accuracy is not None:
        base = f"FP32 {f.baseline_accuracy:.2%}, " if f.baseline_accuracy is not None else ""
        drop = f.accuracy_drop_points
        return (
            "Accuracy drop (pp vs FP32)",
            f"{drop:.2f}" if drop is not None else "—",
            f"{f.accuracy:.2%} ({base}{f.samples} samples)",
        )
    if f.top1_agreement is not None:
        return (
            "Top-1 agreement with FP32",
            f"{f.top1_agreement:.1%}",
            f"on {f.samples} inputs (no labels)",
        )
    return "Cosine similarity to FP32", f"{f.cosine:.5f}", f"on {f.samples} inputs"


def _points(x: float) -> str:
    return f"{x:g} point{'' if x == 1 else 's'}"


def summary_card(advice: Advice, run_id: str | None = None) -> None:
    """The decision at a glance: plan, latency vs target with margin and noise band, accuracy
    vs FP32, device model size, where each part runs, ties and the rule that chose it."""
    rec = advice.recommended_plan
    target = advice.request.latency_ms
    box = st.container(border=True, key="summary_card")
    if rec is None:
        box.warning(
            f"No plan meets the {target:g} ms target within the accuracy budget. The Plans "
            "tab shows every plan tried and why it fell short."
        )
        _stored(box, run_id)
        return
    raw = rec.extra.get("ranking")
    note: dict[str, object] = raw if isinstance(raw, dict) else {}
    box.success(f"Recommended: **{rec.title}**", icon=":material/check_circle:")
    c1, c2, c3, c4 = box.columns(4)
    noise = float(note.get("noise", 0.05))  # type: ignore[arg-type]
    if rec.predicted is not None:
        ms = rec.predicted.ms
        c1.metric(
            "Latency, predicted_target (ms)",
            f"{ms:.3g}",
            f"{target - ms:.2g} ms margin, target {target:g}",
            delta_color="normal" if ms <= target else "inverse",
            delta_arrow="off",
            help=f"Band: ±{noise:.0%}, the measured_host p90 spread (at least 5%). " + LATENCY_HELP,
        )
    label, value, vs = _fidelity_metric(rec)
    c2.metric(label, value, vs, delta_color="off", delta_arrow="off")
    c3.metric(
        "Device model (MB)",
        f"{rec.size_bytes / 1e6:.3g}" if rec.size_bytes else "none",
        "what the device holds" if rec.size_bytes else "the device only sends the input",
        delta_color="off",
        delta_arrow="off",
    )
    c4.metric(
        "Measured on this host (ms)",
        f"{rec.measured_host.ms:.3g}" if rec.measured_host else "—",
        "measured_host, ONNX Runtime here",
        delta_color="off",
        delta_arrow="off",
    )
    lines = [f"**Runs on:** {_where(rec, advice.request.device)}"]
    if rec.predicted is not None:
        ms = rec.predicted.ms
        margin = (target - ms) / target
        lines.append(
            f"**Latency:** {ms:.3g} ms predicted_target against the {target:g} ms target: "
            f"margin {target - ms:.3g} ms ({margin:.0%}), noise band ±{noise:.0%}."
            + (f" Expected range {rec.predicted.band_text()}." if rec.predicted.band else "")
            + (
                " :material/warning: The margin is inside the band: the target may be missed."
                if 0 <= margin < noise
                else ""
            )
        )
    if note:
        rule = "the default" if note.get("default") else "asked for"
        lines.append(f"**Preference: {note.get('prefer')}** ({rule}) — {note.get('rule')}.")
        budget = note.get("accuracy_budget")
        if isinstance(budget, int | float):
            default = (
                " (the default for labelled data)" if note.get("accuracy_budget_is_default") else ""
            )
            lines.append(f"**Accuracy budget applied:** {_points(budget)}{default}.")
        ties = note.get("tied_with") or []
        if ties:
            titles = ", ".join(advice.plan(t).title for t in ties)  # type: ignore[union-attr]
            lines.append(
                f":material/balance: **Tied on latency** with {titles}: the predicted "
                "latencies differ by less than the measured noise, so the rule above, not "
                "speed, decided."
            )
    box.markdown("  \n".join(lines))
    _stored(box, run_id)


def _stored(where, run_id: str | None) -> None:
    if run_id:
        where.caption(f"Stored as run `{run_id}` — reopen it on the Runs page.")


def _context(advice: Advice, label: str | None) -> None:
    m = advice.model
    c1, c2, c3, c4 = st.columns(4)
    c1.metric("Model", label or m.name, f"{m.nodes} nodes", delta_color="off")
    c2.metric("Compute (MFLOPs)", f"{m.flops / 1e6:.2f}")
    c3.metric("Weights (MB)", f"{m.params_bytes / 1e6:.2f}")
    link = advice.link
    c4.metric(
        "Link",
        str(link.get("name", link.get("id", "?"))),
        f"up {link.get('up_mbps')} Mbit/s, RTT {link.get('rtt_ms')} ms",
        delta_color="off",
    )
    for note in advice.notices:
        st.caption(f":material/info: {ui.web_text(note)}")


def _cell(value: float | int | None) -> str:
    """A table cell as text: '—' where nothing applies (not 'None'), ms to 3 decimals."""
    if value is None:
        return "—"
    return f"{value:,}" if isinstance(value, int) else f"{value:.3f}"


def _citations(plan: PlanResult) -> str:
    if not plan.citations:
        return "No knowledge-base entry is cited for this plan."
    return "Techniques: " + "; ".join(
        f"{ui.entry_link(c.entry_id, c.name)} ({c.source})" for c in plan.citations
    )


def _rationales(advice: Advice) -> None:
    st.subheader("Why each plan")
    for p in advice.plans:
        with st.expander(
            f"{p.title} — {p.status.replace('_', ' ')}", icon=STATUS_ICONS.get(p.status)
        ):
            st.markdown(ui.web_text(p.rationale) or "_No rationale recorded._")
            if p.reasons:
                st.markdown("**Reasons:** " + ui.web_text("; ".join(p.reasons)))
            st.markdown(_citations(p))
            if p.stages:
                st.dataframe(
                    [
                        {
                            "stage": s.name,
                            "on": s.target or "—",
                            "predicted_target (ms)": _cell(s.predicted.ms if s.predicted else None),
                            "measured_host (ms)": _cell(
                                s.measured_host.ms if s.measured_host else None
                            ),
                            "bytes": _cell(s.bytes),
                            "nodes": _cell(s.nodes),
                        }
                        for s in p.stages
                    ],
                    hide_index=True,
                )
            if p.params:
                st.caption("Parameters: " + json.dumps(p.params, default=str))


def _downloads(advice: Advice, run_id: str | None, label: str | None = None) -> None:
    st.subheader("Downloads")
    name = Path(label).stem if label else advice.model.name
    stem = f"advice-{ui.safe_name(name, '')}-{advice.created.replace(':', '')}"
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
    if advice.command:
        req = advice.request
        command, names = ui.runnable_command(advice.command, [req.model, req.data])
        where = f" in the folder that holds {' and '.join(names)}" if names else ""
        st.caption(f"Reproduce from a terminal{where}:")
        st.code(command, language="bash")


#: the plan-table columns shown at first; the others are under "All columns"
DECISIVE = (
    "plan",
    "status",
    "meets target",
    "predicted_target e2e (ms)",
    "accuracy drop (pp)",
    "device model (MB)",
    "tied",
)


def _plans_tab(advice: Advice) -> None:
    st.subheader("Ranked plans")
    table = charts.plans_table(advice)
    config = charts.column_config(table)
    st.dataframe(
        table,
        column_order=[c for c in DECISIVE if c in table],
        column_config=config,
        width="stretch",
    )
    st.caption(LATENCY_HELP)
    with st.expander("All columns"):
        st.dataframe(table, column_config=config)
    rejected = charts.rejected_table(advice)
    if not rejected.empty:
        st.subheader("Plans that miss the target, rejected and skipped")
        st.dataframe(
            rejected,
            hide_index=True,
            column_order=["plan", "status", "reasons", "predicted_target e2e (ms)"],
            column_config={
                **charts.column_config(rejected),
                "reasons": st.column_config.TextColumn(width="large"),
            },
        )
    _rationales(advice)


def _charts_tab(advice: Advice) -> None:
    kind = st.radio(
        "Latency kind in every chart",
        ["predicted_target", "measured_host"],
        horizontal=True,
        key="chart_kind",
    )
    stage = charts.stage_chart(advice, kind)
    if stage is not None:
        st.altair_chart(stage, width="stretch")
    pareto = charts.pareto_chart(advice, kind)
    if pareto is not None:
        st.altair_chart(pareto, width="stretch")
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


def _layers_tab(advice: Advice) -> None:
    layers = charts.layers_chart(advice)
    if layers is None:
        st.info("No per-layer profile was recorded for this run.")
        return
    st.altair_chart(layers, width="stretch")
    frame = charts.layers_frame(advice)
    st.dataframe(frame, hide_index=True, column_config=charts.column_config(frame))


def show(
    advice: Advice, run_id: str | None = None, label: str | None = None, stale: bool = False
) -> None:
    """Summary card, then tabs: Plans, Charts, Layers, Report (downloads)."""
    st.header("Results")
    if stale:
        st.warning(
            "These results are for earlier inputs: the fields above have changed since. "
            "Run advice again to update them.",
            icon=":material/update:",
        )
    summary_card(advice, run_id)
    _context(advice, label)
    plans, chart_tab, layers, report = st.tabs(["Plans", "Charts", "Layers", "Report"])
    with plans:
        _plans_tab(advice)
    with chart_tab:
        _charts_tab(advice)
    with layers:
        _layers_tab(advice)
    with report:
        _downloads(advice, run_id, label)
