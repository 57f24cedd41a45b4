"""Streamlit entry point: `streamlit run app/streamlit_app.py` (or `edgedl app`, `make app`)."""

from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "views"

st.set_page_config(page_title="EdgeDL Advisor", page_icon=":material/hub:", layout="wide")
page = st.navigation(
    [
        st.Page(
            PAGES / "explore.py",
            title="Explore",
            icon=":material/search:",
            url_path="explore",
            default=True,
        ),
        st.Page(PAGES / "advise.py", title="Advise", icon=":material/explore:", url_path="advise"),
        st.Page(
            PAGES / "hardware.py", title="Hardware", icon=":material/memory:", url_path="hardware"
        ),
        st.Page(PAGES / "runs.py", title="Runs", icon=":material/history:", url_path="runs"),
        st.Page(
            PAGES / "sweeps.py", title="Sweeps", icon=":material/grid_view:", url_path="sweeps"
        ),
    ]
)
page.run()
