"""Streamlit page scripts, run by path through st.navigation in app/streamlit_app.py.

Not named `pages/`: Streamlit treats a `pages/` folder next to the main script as the legacy
multi-page app and serves /advise etc. straight from it, skipping st.navigation and the page
config.
"""
