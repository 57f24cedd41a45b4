"""Sweeps: the stored design-space sweeps (`edgedl sweep`), a heatmap of model × target per
link, and any cell's full advice."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from app import advice_view, ui


@st.cache_data(show_spinner=False)
def _rows(db_path: str, sweep_id: str, n_cells: int) -> list[dict]:
    """A sweep's rows as dicts (n_cells: part of the cache key, so new cells show)."""
    from advisor.runs import RunStore
    from advisor.sweep import sweep_rows

    return [r.model_dump() for r in sweep_rows(RunStore(db_path), sweep_id)]


def main() -> None:
    st.title("Design-space sweeps")
    st.caption(
        "Each sweep (`edgedl sweep SPEC.yaml`) advises every model × target × link × latency "
        "target; every cell is a stored run. Colour: the recommended plan's family; opacity: "
        "the latency margin to the target (predicted_target ms); red: no plan met it."
    )
    mod = ui.optional_module("advisor.sweep", "Sweeps (advisor.sweep)")
    if mod is None:
        return
    from advisor.runs import RunStore
    from advisor.sweep import CellRow, heatmap_svg

    advice, run_id = None, None
    with ui.guarded("Reading the sweeps"):
        store = RunStore()
        listed = {str(w["sweep_id"]): w for w in store.sweeps()}
        if not listed:
            st.info("No sweeps stored yet. Run `edgedl sweep SPEC.yaml` (see the README).")
            return
        ids = list(listed)
        wanted = st.query_params.get("sweep")
        sweep_id = st.selectbox(
            "Sweep",
            ids,
            index=ids.index(wanted) if wanted in ids else len(ids) - 1,
            key="sweep_pick",
            format_func=lambda i: (
                f"{listed[i]['name'] or i} — {listed[i]['cells']} cells, {listed[i]['saved']}"
            ),
        )
        done = len(store.stored_cells(store.sweep_members(sweep_id)))
        if done < int(listed[sweep_id]["cells"] or 0):
            st.caption(
                f"{done} of {listed[sweep_id]['cells']} cells stored; run the same SPEC again "
                "to complete the others."
            )
        rows = [CellRow(**r) for r in _rows(str(store.path), sweep_id, done)]
        links = list(dict.fromkeys(r.link for r in rows))
        link = st.radio("Link", links, horizontal=True, key="sweep_link") if links else None
        if link is not None:
            st.html(heatmap_svg(rows, link))
        frame = pd.DataFrame(
            [
                {
                    "model": r.model,
                    "target": r.target,
                    "link": r.link,
                    "latency target (ms)": r.latency_ms,
                    "recommended": r.recommended or "none met",
                    "predicted_target (ms)": r.predicted_ms,
                    "measured (ms)": r.measured_ms,
                    "measured kind": r.measured_kind,
                    "margin (%)": round(r.margin * 100, 1) if r.margin is not None else None,
                    "fidelity": r.fidelity,
                    "run": r.run_id,
                }
                for r in rows
            ]
        )
        st.dataframe(frame, hide_index=True)
        by_run = {r.run_id: r for r in rows}
        run_id = st.selectbox(
            "Open a cell's advice",
            list(by_run),
            key="cell_pick",
            format_func=lambda i: (
                f"{by_run[i].model} · {by_run[i].target} · {by_run[i].link} · "
                f"{by_run[i].latency_ms:g} ms → {by_run[i].recommended or 'none met'}"
            ),
        )
        advice = store.get(run_id) if run_id else None
    if advice is not None:
        st.divider()
        with ui.guarded(f"Showing run {run_id}"):
            advice_view.show(advice, run_id)


main()
