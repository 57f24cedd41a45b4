"""Streamlit entry point: `streamlit run app/streamlit_app.py` (or `edgedl app`, `make app`).

Every page answers at its own URL: Explore is the default page (served at the root) and also
at /explore; the favicon is a bundled file (no fetch from the internet).
"""

import runpy
from pathlib import Path

import streamlit as st

PAGES = Path(__file__).resolve().parent / "views"
FAVICON = Path(__file__).resolve().parent.parent / ".streamlit" / "favicon.png"


def _explore_at_its_url() -> None:
    """/explore: the Explore page itself (the default page is served at the root only)."""
    runpy.run_path(str(PAGES / "explore.py"), run_name="__main__")


st.set_page_config(
    page_title="EdgeDL Advisor",
    page_icon=str(FAVICON) if FAVICON.is_file() else None,
    layout="wide",
)
page = st.navigation(
    [
        st.Page(
            PAGES / "explore.py",
            title="Explore",
            icon=":material/search:",
            url_path="explore_home",
            default=True,
        ),
        st.Page(PAGES / "advise.py", title="Advise", icon=":material/explore:", url_path="advise"),
        st.Page(
            PAGES / "hardware.py", title="Hardware", icon=":material/memory:", url_path="hardware"
        ),
        st.Page(PAGES / "runs.py", title="Runs", icon=":material/history:", url_path="runs"),
        st.Page(
            _explore_at_its_url,
            title="Explore",
            icon=":material/search:",
            url_path="explore",
            visibility="hidden",
        ),
        st.Page(
            PAGES / "sweeps.py", title="Sweeps", icon=":material/grid_view:", url_path="sweeps"
        ),
    ]
)
page.run()
