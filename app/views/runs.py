"""Runs: past advice runs from the shared run store; reopen one and export it."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import advice_view, ui


def main() -> None:
    st.title("Past advice runs")
    st.caption(
        "Every advice run from the Advise page or `edgedl advise` is stored in one "
        "SQLite database on this machine, shared by every browser session."
    )
    runs = ui.optional_module("advisor.runs", "The run store (advisor.runs)")
    if runs is None or not hasattr(runs, "RunStore"):
        return
    advice, run_id = None, None
    with ui.guarded("Reading the run store"):
        store = runs.RunStore()
        listed = store.list()
        if not listed:
            st.info("No runs stored yet. Run an advice on the Advise page.")
            return
        frame = pd.DataFrame([r.model_dump() for r in listed])
        frame = frame.rename(columns={"latency_ms": "latency target (ms)"})
        st.dataframe(frame, hide_index=True)
        ids = [r.id for r in listed]
        by_id = {r.id: r for r in listed}
        wanted = st.query_params.get("run")
        run_id = st.selectbox(
            "Reopen a run",
            ids,
            index=ids.index(wanted) if wanted in ids else 0,
            key="run_pick",
            format_func=lambda i: (
                f"{i} — {by_id[i].model} on {by_id[i].device}, "
                f"{by_id[i].saved[:19].replace('T', ' ')} UTC"
            ),
        )
        advice = store.get(run_id)
    if advice is not None:
        st.divider()
        with ui.guarded(f"Showing run {run_id}"):
            advice_view.show(advice, run_id)


main()
